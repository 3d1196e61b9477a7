"""Command line: ``trigate serve | check | mock | version``."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from importlib import metadata

import trio

from trigate import __version__
from trigate.config import Config, ConfigError, default_config, load_config
from trigate.logs import setup_logging
from trigate.workers import worker_count


def version_line() -> str:
    """``trigate 0.1.0``: the installed distribution's version (the source's own when run uninstalled)."""
    try:
        return f"trigate {metadata.version('trigate')}"
    except metadata.PackageNotFoundError:
        return f"trigate {__version__}"


def _load(path: str | None) -> Config:
    """The config ``serve`` and ``check`` both accept: valid, and every provider buildable as serving builds it."""
    from trigate.upstream.providers import check_providers

    cfg = default_config() if path is None else load_config(path)
    check_providers(cfg)
    return cfg


def cmd_serve(args: argparse.Namespace) -> int:
    from attrs import evolve

    from trigate.server import ListenError, run_gateway

    cfg = _load(args.config)
    if args.host or args.port is not None:
        listen = evolve(cfg.listen, host=args.host or cfg.listen.host,
                        port=cfg.listen.port if args.port is None else args.port)
        cfg = evolve(cfg, listen=listen)
    try:
        if args.workers > 1:
            from trigate.workers import serve_workers

            return serve_workers(cfg, args.workers, config_path=args.config)
        listener = setup_logging(cfg.server.access_log)
        try:
            trio.run(partial(run_gateway, cfg, handle_signals=True, announce=True, config_path=args.config))
        finally:
            listener.stop()  # flushes what is queued
    except ListenError as exc:
        print(f"trigate: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    print(f"{args.config}: ok ({len(cfg.providers)} providers, {len(cfg.models)} model routes)")
    return 0


def cmd_mock(args: argparse.Namespace) -> int:
    from trigate.mock.run import serve_mock
    from trigate.mock.state import MockState

    state = MockState(latency_ms=args.latency_ms, token_delay_ms=args.token_delay_ms, api_key=args.api_key)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve_mock, state, args.host, args.port))
            print(f"trigate mock upstream on {url} (OpenAI: {url}/v1)", file=sys.stderr, flush=True)

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trigate", description="A Trio-native LLM API gateway")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway (no --config: embedded default with a local mock)")
    p.add_argument("--config", "-c", help="YAML config file")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", "-w", type=worker_count, default=1,
                   help="gateway processes sharing the port (SO_REUSEPORT); one trio loop runs on one core")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="validate a config file without serving")
    p.add_argument("config")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("mock", help="run the fake upstream (OpenAI-compatible) for tests and demos")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4010)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--token-delay-ms", type=float, default=0.0)
    p.add_argument("--api-key", help="require this key from callers")
    p.set_defaults(func=cmd_mock)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=lambda a: print(version_line()) or 0)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print("trigate: invalid config:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
