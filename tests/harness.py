"""Real servers for end-to-end tests: a fake upstream and the gateway, each on a loopback port,
served by Hypercorn on their own trio loop in a background thread, so tests can drive them with the
official sync and async SDKs alike."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.lowlevel

from trigate.config import Config, parse_config
from trigate.mock.run import serve_mock
from trigate.mock.state import MockState
from trigate.server import Running, run_gateway

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
AWS_CREDENTIALS = ("AKIDTRIGATETEST", "aws-secret-for-tests-0123456789")


class LogCapture(logging.Handler):
    """Collects access-log lines (thread-safe: the gateway logs from its own thread)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.lines.append(record.getMessage())

    def snapshot(self) -> list[str]:
        with self._lock2:
            return list(self.lines)


class Servers:
    """A fake upstream plus a gateway configured by ``make_config(mock_url)``.

    Use as a context manager; attributes: ``url`` (gateway base URL), ``mock`` (MockState),
    ``mock_url``, ``running`` (the gateway's Running)."""

    def __init__(self, make_config: Callable[[str], Config | dict[str, Any]], *, mock_key: str | None = None,
                 token_delay_ms: float = 0.0) -> None:
        self._make_config = make_config
        self.mock = MockState(api_key=mock_key, token_delay_ms=token_delay_ms, aws_credentials=AWS_CREDENTIALS)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self.url = ""
        self.mock_url = ""
        self.running: Running | None = None

    def __enter__(self) -> Servers:
        self._thread = threading.Thread(target=self._run, name="trigate-test-servers", daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("servers did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(15)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # surfaced to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            mock_done = trio.Event()
            self.mock_url = await nursery.start(
                partial(serve_mock, self.mock, shutdown_trigger=mock_done.wait))
            cfg = self._make_config(self.mock_url)
            if not isinstance(cfg, Config):
                cfg = parse_config(cfg, env={})
            self.running = await nursery.start(partial(run_gateway, cfg, shutdown_trigger=self._stop.wait))
            self.url = self.running.url
            self._ready.set()
            await self._stop.wait()
            # the gateway drains first, then the upstream goes away
            await trio.lowlevel.checkpoint()
            mock_done.set()


def openai_config(mock_url: str, **extra: Any) -> dict[str, Any]:
    """A config with the fake upstream as an OpenAI provider (requiring UPSTREAM_KEY)."""
    cfg: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "auth": {"open": True},
        "providers": {
            "openai": {"kind": "openai", "base_url": f"{mock_url}/v1", "api_key": UPSTREAM_KEY},
            "anthropic": {"kind": "anthropic", "base_url": mock_url, "api_key": UPSTREAM_KEY},
            "azure": {"kind": "azure", "base_url": mock_url, "api_key": UPSTREAM_KEY},
            "azure-dated": {"kind": "azure", "base_url": mock_url, "api_key": UPSTREAM_KEY,
                            "api_version": "2024-10-21"},
            "groq": {"kind": "groq", "base_url": f"{mock_url}/v1", "api_key": UPSTREAM_KEY},
            "bedrock": {"kind": "bedrock", "base_url": mock_url, "region": "us-east-1",
                        "aws_access_key_id": AWS_CREDENTIALS[0], "aws_secret_access_key": AWS_CREDENTIALS[1]},
            "bedrock-key": {"kind": "bedrock", "base_url": mock_url, "region": "us-west-2", "api_key": UPSTREAM_KEY},
            "gemini": {"kind": "gemini", "base_url": mock_url, "api_key": UPSTREAM_KEY},
            # the fake upstream accepts UPSTREAM_KEY as the Google access token
            "vertex": {"kind": "vertex", "base_url": mock_url, "project": "test-project", "region": "us-east5",
                       "access_token": UPSTREAM_KEY},
            "cohere": {"kind": "cohere", "base_url": mock_url, "api_key": UPSTREAM_KEY},
            "jina": {"kind": "jina", "base_url": f"{mock_url}/jina/v1", "api_key": UPSTREAM_KEY},
            "voyage": {"kind": "voyage", "base_url": f"{mock_url}/voyage/v1", "api_key": UPSTREAM_KEY},
            "vllm": {"kind": "vllm", "base_url": f"{mock_url}/vllm/v1", "api_key": UPSTREAM_KEY},
        },
        "models": [
            {"name": "gpt-4o-mini", "provider": "openai"},
            {"name": "openai/*", "provider": "openai", "expand": True},
            {"name": "fast", "provider": "openai", "model": "gpt-4o-mini"},
            {"name": "claude-*", "provider": "anthropic", "expand": True},
            {"name": "anthropic/*", "provider": "anthropic"},
            {"name": "azure/*", "provider": "azure"},
            {"name": "azure-dated/*", "provider": "azure-dated"},
            {"name": "groq/*", "provider": "groq"},
            {"name": "bedrock/*", "provider": "bedrock"},
            {"name": "bedrock-key/*", "provider": "bedrock-key"},
            {"name": "gemini-*", "provider": "gemini"},
            {"name": "vertex/*", "provider": "vertex"},
            {"name": "cohere/*", "provider": "cohere"},
            {"name": "jina/*", "provider": "jina"},
            {"name": "voyage/*", "provider": "voyage"},
            {"name": "vllm/*", "provider": "vllm"},
        ],
        "store": {"responses_path": ":memory:"},
        "database": {"url": ":memory:"},
    }
    cfg.update(extra)
    return cfg


def wait_healthy(proc: subprocess.Popen[Any], url: str, seconds: float, log: Callable[[], str] = lambda: "") -> None:
    """Wait until a ``trigate serve`` process answers /health; fails with its log if it exits first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log()
        assert time.monotonic() < deadline, "gateway did not come up"
        time.sleep(0.05)


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A real redis-server on a loopback ``port`` (no persistence), once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server); the Redis tests need it")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)


POSTGRES_BIN = Path("/usr/lib/postgresql")


def postgres_binary(name: str) -> str:
    """A PostgreSQL server program (``initdb``, ``postgres``): Debian keeps them under its versioned dir."""
    found = sorted(POSTGRES_BIN.glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])
    binary = shutil.which(name)
    if binary is None:
        raise RuntimeError(f"{name} not found (apt-get install postgresql); the PostgreSQL tests need it")
    return binary


class Postgres:
    """A real PostgreSQL server of the test's own on a loopback ``port``, with trust auth for the
    ``trigate`` role and a ``trigate`` database, started once it accepts connections.

    The server refuses to run as root, so as root it runs as the ``postgres`` user the Debian package
    creates, in a directory of its own outside pytest's (root-only) temporary tree."""

    def __init__(self, port: int) -> None:
        import os
        import tempfile

        self.port = port
        self.url = f"postgresql://trigate@127.0.0.1:{port}/trigate"
        self.dir = Path(tempfile.mkdtemp(prefix="trigate-pg-"))
        data = self.dir / "pgdata"
        data.mkdir()
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(data, "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*as_user, postgres_binary("initdb"), "-D", str(data), "-U", "trigate", "-A", "trust",
                        "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.proc = subprocess.Popen([*as_user, postgres_binary("postgres"), "-D", str(data), "-p", str(port),
                                      "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off",
                                      "-c", "max_connections=200"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import psycopg

        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(f"postgresql://trigate@127.0.0.1:{port}/postgres", connect_timeout=1,
                                     autocommit=True) as conn:
                    conn.execute("create database trigate")
                    return
            except psycopg.OperationalError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres did not start on port {port}")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MockProcess:
    """``trigate mock`` as its own process (an upstream shared by several gateway processes)."""

    def __init__(self, token_delay_ms: float = 0.0) -> None:
        import sys

        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "mock", "--port", str(self.port),
                                      "--token-delay-ms", str(token_delay_ms)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(self.url + "/_mock/requests", timeout=1)
                return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("trigate mock did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[Any] | None, grace: float = 10) -> None:
    """SIGTERM, ``grace`` seconds to exit, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class GatewayProcess:
    """``trigate serve --config FILE`` as a real process: one replica of several sharing a database or
    Redis. ``config`` is the YAML document as a dict (its listen port is set here); stderr goes to
    ``log_path``. ``kill()`` is kill -9; ``start()`` runs it again on the same port and config. ``env``
    adds to the process's environment (a None value removes that variable)."""

    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "gw",
                 env: dict[str, str | None] | None = None) -> None:
        import yaml

        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.workdir = workdir
        self.env = dict(env or {})
        cfg = dict(config)
        cfg["listen"] = {"host": "127.0.0.1", "port": self.port}
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        import os
        import sys

        merged = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")} | self.env
        env = {k: v for k, v in merged.items() if v is not None}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--config",
                                          str(self.config_path)], cwd=self.workdir, env=env,
                                         stdout=log, stderr=log)
        wait_healthy(self.proc, self.url, 30, self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM: the gateway drains (up to its graceful timeout) and writes what it holds."""
        stop_process(self.proc, grace=20)
