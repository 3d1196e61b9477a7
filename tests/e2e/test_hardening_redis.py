"""Issue 13.4, end to end: the Redis limits backend unreachable (never started, killed, hung) gives a
503 in each caller's own error format and a 503 /ready, logs one warning per outage, fails open when
configured to, and recovers when Redis comes back — a real redis-server of the test's own on a fixed
port, the real gateway, the official SDKs."""

from __future__ import annotations

import logging
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.harness import UPSTREAM_KEY, Servers, free_loopback_port, start_redis
from trigate.config import ConfigError, parse_config

FREE, LIMITED = "sk-free-redis-0001", "sk-limited-redis-0002"
USER = [{"role": "user", "content": "hello redis"}]
PASSWORD = "redis-pass-never-shown"


def redis_config(port: int, **limits: Any) -> Callable[[str], dict[str, Any]]:
    def make(mock_url: str) -> dict[str, Any]:
        return {
            "listen": {"host": "127.0.0.1", "port": 0},
            "auth": {"keys": [{"id": "free", "key": FREE}, {"id": "limited", "key": LIMITED, "rpm": 2}]},
            "providers": {
                "openai": {"kind": "openai", "base_url": f"{mock_url}/v1", "api_key": UPSTREAM_KEY},
                "anthropic": {"kind": "anthropic", "base_url": mock_url, "api_key": UPSTREAM_KEY},
                "cohere": {"kind": "cohere", "base_url": mock_url, "api_key": UPSTREAM_KEY},
            },
            "models": [{"name": "gpt-4o-mini", "provider": "openai"}, {"name": "claude-*", "provider": "anthropic"},
                       {"name": "cohere/*", "provider": "cohere"}],
            # every request is limited (globally), so every request needs the backend
            "limits": {"backend": "redis", "redis_url": f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
                       "global_limits": {"rpm": 100000}, **limits},
            "store": {"responses_path": ":memory:"},
        }

    return make


class Records(logging.Handler):
    """Every log record at WARNING or above, from any logger (the gateway runs in this process)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def outage_warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.name == "trigate.limits" and "unreachable" in r.getMessage()]

    def problems(self) -> list[str]:
        """Errors and tracebacks: there should be none, only the limiter's own warning lines."""
        return [f"{r.name}: {r.getMessage()}" for r in self.records
                if r.levelno >= logging.ERROR or r.exc_info or r.name != "trigate.limits"]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


class RedisProcess:
    """A redis-server of the test's own on a fixed port, to kill, restart and freeze."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_redis(self.port, self.workdir)
        # the gateway's URL carries a password (which must never show): this Redis requires it
        with socket.create_connection(("127.0.0.1", self.port)) as c:
            c.sendall(f"CONFIG SET requirepass {PASSWORD}\r\n".encode())
            assert c.recv(16).startswith(b"+OK")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)
        self.proc = None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    r = RedisProcess(free_loopback_port(), tmp_path)
    yield r
    if r.proc is not None:
        r.proc.send_signal(signal.SIGCONT)
        r.kill()


def oai(s: Servers, key: str = FREE) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.url + "/v1", api_key=key, max_retries=0)


def ant(s: Servers, key: str = FREE) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=s.url, api_key=key, max_retries=0)


def chat(s: Servers, key: str = FREE) -> httpx.Response:
    return httpx.post(s.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER},
                      headers={"authorization": f"Bearer {key}"}, timeout=20)


def eventually(check: Callable[[], bool], seconds: float = 8.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def assert_refused_in_each_format(s: Servers) -> None:
    with pytest.raises(openai.InternalServerError) as oe:
        oai(s).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert oe.value.status_code == 503
    err = oe.value.response.json()["error"]
    assert err["type"] == "server_error" and err["code"] == "limits_backend_unavailable"
    assert "limits backend" in err["message"]
    assert oe.value.response.headers["retry-after"] == "1"

    with pytest.raises(anthropic.InternalServerError) as ae:
        ant(s).messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER)
    assert ae.value.status_code == 503
    body = ae.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "limits backend" in body["error"]["message"]

    r = httpx.post(s.url + "/v2/rerank", json={"model": "cohere/rerank-v3.5", "query": "q", "documents": ["a"]},
                   headers={"authorization": f"Bearer {FREE}"})
    assert r.status_code == 503 and set(r.json()) == {"message"} and "limits backend" in r.json()["message"]

    # passthrough is limited too, so it is refused the same way
    p = passthrough(s)
    assert p.status_code == 503 and p.json()["error"]["code"] == "limits_backend_unavailable"

    for resp in (oe.value.response, ae.value.response, r, p):
        assert PASSWORD not in resp.text


def passthrough(s: Servers, key: str = FREE) -> httpx.Response:
    return httpx.post(s.url + "/openai/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER},
                      headers={"authorization": f"Bearer {key}"}, timeout=20)


def ready(s: Servers) -> httpx.Response:
    return httpx.get(s.url + "/ready")


def test_no_redis_at_start_refuses_with_503_in_each_format(records: Records) -> None:
    with Servers(redis_config(free_loopback_port()), mock_key=UPSTREAM_KEY) as s:
        assert_refused_in_each_format(s)
        assert_refused_in_each_format(s)
        r = ready(s)
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "reason": "limits backend (Redis) unreachable"}
        assert httpx.get(s.url + "/health").status_code == 200  # alive, just not ready
    # six refused requests and a /ready: one warning line, no traceback, no other error
    assert len(records.outage_warnings()) == 1, records.outage_warnings()
    assert records.problems() == []
    assert all(PASSWORD not in r.getMessage() for r in records.records)


def test_redis_killed_mid_run_then_restarted(redis: RedisProcess, records: Records) -> None:
    redis.start()
    with Servers(redis_config(redis.port), mock_key=UPSTREAM_KEY) as s:
        assert chat(s).status_code == 200
        assert ready(s).status_code == 200

        redis.kill()
        assert_refused_in_each_format(s)
        eventually(lambda: ready(s).status_code == 503)

        redis.start()  # same port, empty data
        eventually(lambda: chat(s).status_code == 200)
        eventually(lambda: ready(s).status_code == 200)
        # limits are enforced again: rpm=2 lets two through and refuses the third
        assert [chat(s, LIMITED).status_code for _ in range(3)] == [200, 200, 429]
    assert len(records.outage_warnings()) == 1
    assert [m for m in (r.getMessage() for r in records.records) if "reachable again" in m]
    assert records.problems() == []


def test_hung_redis_costs_a_request_at_most_about_a_second(redis: RedisProcess, records: Records) -> None:
    redis.start()
    with Servers(redis_config(redis.port), mock_key=UPSTREAM_KEY) as s:
        assert chat(s).status_code == 200
        redis.signal(signal.SIGSTOP)  # connections still open, commands never answered
        waits = []
        for _ in range(4):
            t0 = time.monotonic()
            assert chat(s).status_code == 503
            waits.append(time.monotonic() - t0)
        t0 = time.monotonic()
        assert ready(s).status_code == 503
        ready_wait = time.monotonic() - t0
        # the first waits for the command timeout; the rest are answered at once while it is down
        assert waits[0] < 1.5, waits
        assert max(waits[1:]) < 0.3, waits
        assert ready_wait < 1.5
        redis.signal(signal.SIGCONT)
        eventually(lambda: chat(s).status_code == 200)
        assert ready(s).status_code == 200
    assert records.problems() == []


def metric(s: Servers, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", httpx.get(s.url + "/metrics").text, re.M)
    return float(m.group(1)) if m else 0.0


def test_fail_open_serves_without_limits_while_redis_is_down(redis: RedisProcess, records: Records) -> None:
    with Servers(redis_config(redis.port, on_backend_error="open"), mock_key=UPSTREAM_KEY) as s:
        # rpm=2, but nothing can count: six requests pass, in both client formats and passthrough
        assert [chat(s, LIMITED).status_code for _ in range(4)] == [200] * 4
        ant(s, LIMITED).messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER)
        assert passthrough(s, LIMITED).status_code == 200
        assert metric(s, "trigate_limits_unenforced_requests_total") == 6
        r = ready(s)
        assert r.status_code == 200 and "serving without limits" in r.json()["degraded"]

        redis.start()
        eventually(lambda: "degraded" not in ready(s).json())
        assert [chat(s, LIMITED).status_code for _ in range(3)] == [200, 200, 429]
        assert metric(s, "trigate_limits_unenforced_requests_total") == 6
    assert len(records.outage_warnings()) == 1
    assert records.problems() == []


def test_on_backend_error_is_validated() -> None:
    base = {"auth": {"open": True}, "limits": {"backend": "redis", "redis_url": "redis://127.0.0.1:6379/0"}}
    assert parse_config(base, env={}).limits.on_backend_error == "closed"
    with pytest.raises(ConfigError) as info:
        parse_config({**base, "limits": {**base["limits"], "on_backend_error": "maybe"}}, env={})
    assert "limits.on_backend_error: must be closed or open" in info.value.problems
