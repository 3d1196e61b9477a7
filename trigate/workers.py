"""Several gateway processes on one address: ``serve_workers(config, n)`` (``trigate serve --workers N``).

A trio loop runs on one core; more cores need more processes. Each worker is a fresh interpreter
(multiprocessing "spawn": no trio state, threads or sockets are inherited) running the ordinary
``run_gateway`` with the same config, bound to the same host:port with SO_REUSEPORT, so the kernel
spreads new connections across the workers. The parent only supervises: it forwards SIGTERM/SIGINT
(graceful drain) and SIGHUP (config reload) to every worker, and when one worker dies on its own it
stops the others and exits non-zero, for the service manager to restart the whole set.

Per-process state stays per process: with the in-memory limiter each worker enforces the configured
rpm/tpm/concurrency limits on its own share of the traffic (use ``limits.backend: redis`` for shared
limits); embedded mock providers run once per worker.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from functools import partial
from typing import Any

from trigate.config import Config, ConfigError


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to this worker if the supervising parent goes away."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_count(text: str) -> int:
    """``--workers``: a process count, at least one (0 or less would silently mean one)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def _worker(config: Config, config_path: str | None, index: int) -> None:
    import trio

    import trigate.server
    from trigate.logs import setup_logging

    os.setpgrp()  # a terminal's Ctrl-C reaches the parent only; it forwards one signal to each worker
    _die_with_parent()
    listener = setup_logging(config.server.access_log)
    try:
        trio.run(partial(trigate.server.run_gateway, config, handle_signals=True, announce=index == 0,
                         config_path=config_path, reuse_port=True))
    except KeyboardInterrupt:
        pass
    except trigate.server.ListenError as exc:
        print(f"trigate: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        listener.stop()


def _check_listen(config: Config) -> None:
    """Bind the address once as the workers will, so a busy port is one error before any worker starts."""
    from trigate.server import ListenConfig

    probe = ListenConfig()
    probe.reuse_port = True
    probe.bind = [f"{config.listen.host}:{config.listen.port}"]
    for sock in probe.create_sockets().insecure_sockets:
        sock.close()


def serve_workers(config: Config, workers: int, config_path: str | None = None) -> int:
    """Run ``workers`` gateway processes on ``config.listen`` until SIGTERM/SIGINT; returns the exit code."""
    if workers < 1:
        raise ConfigError(["--workers: must be at least 1"])
    if workers > 1 and config.listen.port == 0:
        raise ConfigError(["listen.port: several workers need a fixed port (not 0)"])
    made_dir: str | None = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # /metrics must add up every worker: prometheus-client's multiprocess mode, in a fresh directory
        # of our own, removed when the workers are gone (a directory the operator named is theirs)
        import tempfile

        made_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="trigate-metrics-")
    try:
        _check_listen(config)
        return _supervise(config, workers, config_path)
    finally:
        if made_dir is not None:
            import shutil

            shutil.rmtree(made_dir, ignore_errors=True)
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _supervise(config: Config, workers: int, config_path: str | None) -> int:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(config, config_path, i), name=f"trigate-worker-{i}", daemon=False)
             for i in range(workers)]
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                try:
                    os.kill(p.pid, signum)
                except ProcessLookupError:
                    pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    for p in procs:
        p.start()
    print(f"trigate: {workers} workers on {config.listen.host}:{config.listen.port} "
          f"(pids {', '.join(str(p.pid) for p in procs)})", file=sys.stderr, flush=True)
    code = 0
    alive = list(procs)
    while alive:
        multiprocessing.connection.wait([p.sentinel for p in alive])
        for p in [p for p in alive if p.exitcode is not None]:
            alive.remove(p)
            if not stopping:
                print(f"trigate: worker {p.name} (pid {p.pid}) exited with {p.exitcode}; stopping the others",
                      file=sys.stderr, flush=True)
                code = 1
                forward(signal.SIGTERM, None)
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m trigate.workers [--config FILE] [--workers N] [--host H] [--port P]``: the same as
    ``trigate serve --workers N`` (for use before the CLI has the flag)."""
    from attrs import evolve

    from trigate.config import default_config, load_config
    from trigate.server import ListenError

    parser = argparse.ArgumentParser(prog="python -m trigate.workers")
    parser.add_argument("--config", "-c")
    parser.add_argument("--workers", "-w", type=worker_count, default=os.cpu_count() or 1)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    try:
        cfg = default_config() if args.config is None else load_config(args.config)
        if args.host or args.port is not None:
            cfg = evolve(cfg, listen=evolve(cfg.listen, host=args.host or cfg.listen.host,
                                            port=cfg.listen.port if args.port is None else args.port))
        return serve_workers(cfg, args.workers, config_path=args.config)
    except ListenError as exc:
        print(f"trigate: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print("trigate: invalid config:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
