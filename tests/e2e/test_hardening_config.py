"""A running ``trigate serve`` whose config file turns bad keeps serving the old config, whatever the
failure, and still picks up the next good one; a config ``serve`` cannot build is refused at start with
the same one-line reason ``trigate check`` gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness import free_loopback_port, wait_healthy

FAILED = "config reload failed, keeping the running config"
NO_KEYS = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}


def config(port: int, models: list[str], **extra: Any) -> dict[str, Any]:
    """Models ``models`` on the embedded mock, on loopback ``port``, reloaded quickly; ``extra`` overrides."""
    return {"listen": {"host": "127.0.0.1", "port": port}, "auth": {"open": True},
            "server": {"reload_poll_seconds": 0.05}, "store": {"responses_path": ":memory:"},
            "providers": {"mock": {"kind": "mock"}},
            "models": [{"name": m, "provider": "mock"} for m in models], **extra}


def replace_file(path: Path, text: str) -> None:
    """Whole-file replacement, so the watcher never reads a half-written file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def gateway(path: Path, port: int) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    log = path.with_suffix(".log")
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--config", str(path)],
                                env=NO_KEYS, stderr=err, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(proc, url, 20, log.read_text)
            yield proc, url, log
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def wait_for_lines(log: Path, needle: str, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while log.read_text().count(needle) < count:
        assert proc.poll() is None, f"the gateway died:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {needle!r} line #{count}:\n{log.read_text()}"
        time.sleep(0.02)


def chat(url: str, model: str) -> int:
    return httpx.post(url + "/v1/chat/completions", timeout=10,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]}).status_code


def test_a_running_gateway_survives_every_kind_of_bad_reload(tmp_path: Path) -> None:
    port = free_loopback_port()
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(config(port, ["old-model"])))
    vertex = {"kind": "vertex", "project": "my-project", "region": "us-east5",
              "credentials_file": str(tmp_path / "missing-sa.json")}
    bad = {
        # the case: valid config, but the credentials file cannot be read
        "unreadable credentials_file": (
            yaml.safe_dump(config(port, ["old-model", "new-model"], providers={"mock": {"kind": "mock"},
                                                                                "vertex": vertex})),
            f"providers.vertex.credentials_file: cannot read {tmp_path / 'missing-sa.json'}: No such file"),
        # embedded mocks start with the gateway only
        "a new embedded mock": (
            yaml.safe_dump(config(port, ["old-model", "new-model"], providers={"mock": {"kind": "mock"},
                                                                                "mock2": {"kind": "mock"}})),
            "providers.mock2: no embedded mock is running for it"),
        "a negative limit": (
            yaml.safe_dump(config(port, ["new-model"], auth={"open": True, "admin_keys": [
                {"id": "ops", "key": "k", "rpm": -5}]})),
            "auth.admin_keys[0].rpm: must be a positive integer, got -5"),
        "invalid YAML": ("models: [{name: new-model", "<file>: invalid YAML at line 1, column 26: while parsing a "
                         "flow mapping: expected ',' or '}', but got '<stream end>'"),
    }
    with gateway(path, port) as (proc, url, log):
        assert chat(url, "old-model") == 200
        for n, (case, (text, reason)) in enumerate(bad.items(), start=1):
            replace_file(path, text)
            wait_for_lines(log, FAILED, n, proc)
            lines = [line for line in log.read_text().splitlines() if FAILED in line]
            assert len(lines) == n and lines[-1].startswith(f"{FAILED}: {reason}"), (case, lines[-1])
            assert chat(url, "old-model") == 200, case
            assert chat(url, "new-model") == 404, case
        # SIGHUP takes the same path
        os.kill(proc.pid, signal.SIGHUP)
        wait_for_lines(log, FAILED, len(bad) + 1, proc)
        assert chat(url, "old-model") == 200
        # and the next good config is still picked up
        replace_file(path, yaml.safe_dump(config(port, ["new-model"])))
        wait_for_lines(log, "config reloaded from", 1, proc)
        assert chat(url, "new-model") == 200
        assert chat(url, "old-model") == 404


def test_serve_refuses_at_start_what_it_could_not_build(tmp_path: Path) -> None:
    path = tmp_path / "vertex.yaml"
    cfg = config(free_loopback_port(), [], providers={"vertex": {"kind": "vertex", "project": "my-project",
                                                        "region": "us-east5",
                                                        "credentials_file": "/nonexistent/sa.json"}})
    cfg["models"] = [{"name": "gemini-*", "provider": "vertex"}]
    path.write_text(yaml.safe_dump(cfg))
    for command in (["check", str(path)], ["serve", "--config", str(path)]):
        done = subprocess.run([sys.executable, "-m", "trigate.cli", *command], env=NO_KEYS, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.splitlines() == [
            "trigate: invalid config:",
            "  providers.vertex.credentials_file: cannot read /nonexistent/sa.json: No such file or directory"]
