"""Issue 7, end to end: client keys, limits (memory and Redis), retries, fallbacks, balancing,
ejection, each timeout kind, and reload under load — real gateway, fake upstream faults, SDK clients."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.harness import UPSTREAM_KEY, Servers, free_loopback_port, wait_healthy
from trigate.mock.state import Fault

KEYS = {"team-a": "sk-team-a-0001", "team-b": "sk-team-b-0002", "narrow": "sk-narrow-0003",
        "solo": "sk-solo-0004", "free": "sk-free-0005"}
USER = [{"role": "user", "content": "hello policies"}]


def policy_config(mock_url: str, backend: str = "memory", redis_url: str | None = None,
                  dead_url: str = "http://127.0.0.1:9/v1", **extra: Any) -> dict[str, Any]:
    target = lambda model, weight=1: {"provider": "openai", "model": model, "weight": weight}  # noqa: E731
    cfg: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "auth": {"keys": [
            {"id": "team-a", "key": KEYS["team-a"], "rpm": 5, "metadata": {"team": "a"}},
            {"id": "team-b", "key_sha256": hashlib.sha256(KEYS["team-b"].encode()).hexdigest(), "tpm": 400},
            {"id": "narrow", "key": KEYS["narrow"], "models": ["gpt-4o-mini"]},
            {"id": "solo", "key": KEYS["solo"], "max_concurrent": 1},
            {"id": "free", "key": KEYS["free"]},
        ]},
        "providers": {
            "openai": {"kind": "openai", "base_url": f"{mock_url}/v1", "api_key": UPSTREAM_KEY},
            "anthropic": {"kind": "anthropic", "base_url": mock_url, "api_key": UPSTREAM_KEY},
            "dead": {"kind": "openai", "base_url": dead_url, "api_key": "x"},
        },
        "models": [
            {"name": "gpt-4o-mini", "provider": "openai"},
            {"name": "claude-*", "provider": "anthropic"},
            {"name": "resilient", "provider": "openai", "model": "gpt-flaky", "fallbacks": ["claude-fallback"]},
            {"name": "deadend", "provider": "dead", "model": "x", "fallbacks": ["gpt-4o-mini"]},
            {"name": "group", "targets": [target("gpt-a", 3), target("gpt-b", 1)]},
            {"name": "ordered", "targets": [target("gpt-a"), target("gpt-b")], "strategy": "ordered"},
            {"name": "least", "targets": [target("gpt-a"), target("gpt-b")], "strategy": "least_inflight"},
            {"name": "slow-ttft", "provider": "openai", "model": "gpt-slow", "fallback_on": [],
             "timeouts": {"first_token": 0.3}, "retry": {"attempts": 1}},
            {"name": "limited", "provider": "openai", "model": "gpt-4o-mini", "rpm": 2},
        ],
        "limits": {"backend": backend, "redis_url": redis_url},
        "retry": {"attempts": 2, "backoff_base": 0.01},
        "health": {"eject_after": 2, "eject_seconds": 0.5},
    }
    cfg.update(extra)
    return cfg


def flush_redis(url: str) -> None:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as c:
        c.sendall(b"FLUSHALL\r\n")
        assert c.recv(16).startswith(b"+OK")


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if request.param == "memory":
        return "memory", None
    url = request.getfixturevalue("redis_url")
    flush_redis(url)
    return "redis", url


@pytest.fixture
def gw(backend: tuple[str, str | None]) -> Iterator[Servers]:
    with Servers(lambda url: policy_config(url, *backend), mock_key=UPSTREAM_KEY) as s:
        yield s


def oai(s: Servers, key: str = KEYS["free"]) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.url + "/v1", api_key=key, max_retries=0)


def ant(s: Servers, key: str = KEYS["free"]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=s.url, api_key=key, max_retries=0)


def chat(s: Servers, key: str, model: str = "gpt-4o-mini", **kw: Any) -> httpx.Response:
    return httpx.post(s.url + "/v1/chat/completions", json={"model": model, "messages": USER, **kw},
                      headers={"authorization": f"Bearer {key}"}, timeout=20)


# ---------------------------------------------------------------------------------------------- keys


def test_keys_for_each_client_style(gw: Servers) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        oai(gw, "sk-wrong").chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER})
    assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as ainfo:
        ant(gw, "sk-wrong").messages.create(model="claude-x", max_tokens=10, messages=USER)
    assert ainfo.value.body["type"] == "error" and ainfo.value.body["error"]["type"] == "authentication_error"
    # Anthropic clients send x-api-key; a key stored only as a hash works the same
    assert ant(gw, KEYS["team-b"]).messages.create(model="claude-x", max_tokens=10, messages=USER).content
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER},
                   headers={"x-api-key": KEYS["free"]})
    assert r.status_code == 200
    # the provider never sees the client's key
    assert gw.mock.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_model_permissions_are_403_in_the_callers_format(gw: Servers) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        oai(gw, KEYS["narrow"]).chat.completions.create(model="claude-x", messages=USER)
    assert info.value.status_code == 403
    with pytest.raises(anthropic.PermissionDeniedError):
        ant(gw, KEYS["narrow"]).messages.create(model="claude-x", max_tokens=5, messages=USER)
    assert oai(gw, KEYS["narrow"]).chat.completions.create(model="gpt-4o-mini", messages=USER).choices
    assert [m.id for m in oai(gw, KEYS["narrow"]).models.list()] == ["gpt-4o-mini"]


# -------------------------------------------------------------------------------------------- limits


def test_requests_per_minute_per_key(gw: Servers) -> None:
    for i in range(5):
        r = chat(gw, KEYS["team-a"])
        assert r.status_code == 200, r.text
        assert r.headers["x-ratelimit-limit-requests"] == "5"
        assert r.headers["x-ratelimit-remaining-requests"] == str(4 - i)
    r = chat(gw, KEYS["team-a"])
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded" and "key:team-a" in r.json()["error"]["message"]
    # the sliding window frees capacity up to one window and a bit later, depending on the second
    assert 1 <= int(r.headers["retry-after"]) <= 120
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    # Anthropic clients get Anthropic's headers and error shape
    with pytest.raises(anthropic.RateLimitError) as info:
        ant(gw, KEYS["team-a"]).messages.create(model="claude-x", max_tokens=5, messages=USER)
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert info.value.response.headers["anthropic-ratelimit-requests-limit"] == "5"
    # other keys are not affected
    assert chat(gw, KEYS["free"]).status_code == 200


def test_per_model_limit_applies_across_keys(gw: Servers) -> None:
    assert chat(gw, KEYS["free"], "limited").status_code == 200
    assert chat(gw, KEYS["team-a"], "limited").status_code == 200
    r = chat(gw, KEYS["solo"], "limited")
    assert r.status_code == 429 and "model:limited" in r.json()["error"]["message"]


def test_tokens_per_minute_reserve_then_settle(gw: Servers) -> None:
    # team-b: 400 tokens/min. Each call reserves ~body/4 + max_tokens (300) up front; real usage is
    # ~20 tokens. Without settling, the second call would not fit.
    for _ in range(3):
        r = chat(gw, KEYS["team-b"], max_tokens=300)
        assert r.status_code == 200, r.text
        used = r.json()["usage"]["total_tokens"]
        assert used < 60
    r = chat(gw, KEYS["team-b"], max_tokens=1000)  # can never fit in 400/min
    assert r.status_code == 429 and "tokens per minute" in r.json()["error"]["message"]
    assert "retry-after" not in r.headers


def test_concurrent_requests_cap(backend: tuple[str, str | None]) -> None:
    with Servers(lambda url: policy_config(url, *backend), mock_key=UPSTREAM_KEY, token_delay_ms=30) as s:
        body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "w " * 30}]}
        with httpx.stream("POST", s.url + "/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {KEYS['solo']}"}, timeout=20) as held:
            lines = held.iter_lines()  # keep the iterator: dropping it would close the stream
            assert next(lines).startswith("data: ")
            r = chat(s, KEYS["solo"])
            assert r.status_code == 429 and "concurrent" in r.json()["error"]["message"]
            for _ in lines:
                pass
        time.sleep(0.05)
        assert chat(s, KEYS["solo"]).status_code == 200


# ------------------------------------------------------------------------------- retries / fallbacks


def last_log(access_log: Any) -> dict[str, Any]:
    time.sleep(0.05)
    return json.loads(access_log.snapshot()[-1])


def test_retry_on_5xx_then_success(gw: Servers, access_log: Any) -> None:
    gw.mock.add_fault(Fault(status=503, message="busy", model="gpt-4o-mini"))
    r = oai(gw).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert r.choices[0].message.content
    line = last_log(access_log)
    assert line["attempts"] == 2 and line["status"] == 200


def test_retry_respects_retry_after(gw: Servers) -> None:
    gw.mock.add_fault(Fault(status=429, message="slow down", headers={"retry-after": "1"}, model="gpt-4o-mini"))
    t0 = time.monotonic()
    assert chat(gw, KEYS["free"]).status_code == 200
    assert time.monotonic() - t0 >= 1.0


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_from_openai_to_anthropic(gw: Servers, stream: bool) -> None:
    gw.mock.add_fault(Fault(status=500, message="down", model="gpt-flaky", times=2))
    if stream:
        chunks = list(oai(gw).chat.completions.create(model="resilient", messages=USER, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = oai(gw).chat.completions.create(model="resilient", messages=USER).choices[0].message.content
    assert text == "Hello from the trigate mock. You said: hello policies"
    assert gw.mock.requests[-1].path == "/v1/messages"  # the answer came from the Anthropic provider
    assert gw.mock.requests[-1].body["model"] == "claude-fallback"


def test_fallback_on_context_length(gw: Servers) -> None:
    gw.mock.add_fault(Fault(status=400, model="gpt-flaky", error_type="invalid_request_error",
                            message="This model's maximum context length is 8192 tokens."))
    r = chat(gw, KEYS["free"], "resilient")
    assert r.status_code == 200 and gw.mock.requests[-1].path == "/v1/messages"


def test_plain_client_errors_do_not_fall_back(gw: Servers) -> None:
    gw.mock.add_fault(Fault(status=400, model="gpt-flaky", message="bad temperature"))
    r = chat(gw, KEYS["free"], "resilient")
    assert r.status_code == 400 and r.json()["error"]["message"] == "bad temperature"


def test_connect_error_retries_then_falls_back(gw: Servers, access_log: Any) -> None:
    r = chat(gw, KEYS["free"], "deadend")
    assert r.status_code == 200
    line = last_log(access_log)
    assert line["attempts"] == 3 and line["provider"] == "openai"


# --------------------------------------------------------------------------------- balancing/ejection


def upstream_models(mock: Any, since: int) -> list[str]:
    return [r.body["model"] for r in mock.requests[since:] if isinstance(r.body, dict)]


def test_weighted_balancing(gw: Servers) -> None:
    before = len(gw.mock.requests)
    counts: Counter[str] = Counter()
    with httpx.Client(timeout=20, headers={"authorization": f"Bearer {KEYS['free']}"}) as c:
        for _ in range(200):
            assert c.post(gw.url + "/v1/chat/completions", json={"model": "group", "messages": USER}).status_code == 200
    counts.update(upstream_models(gw.mock, before))
    share = counts["gpt-a"] / (counts["gpt-a"] + counts["gpt-b"])
    assert 0.62 <= share <= 0.88, counts


def test_least_inflight_balancing() -> None:
    with Servers(lambda url: policy_config(url), mock_key=UPSTREAM_KEY, token_delay_ms=20) as s:
        body = {"model": "least", "stream": True, "messages": [{"role": "user", "content": "w " * 20}]}
        hdrs = {"authorization": f"Bearer {KEYS['free']}"}
        with httpx.stream("POST", s.url + "/v1/chat/completions", json=body, headers=hdrs, timeout=20) as held:
            lines = held.iter_lines()
            next(lines)
            assert s.mock.requests[-1].body["model"] == "gpt-a"
            assert chat(s, KEYS["free"], "least").status_code == 200
            assert s.mock.requests[-1].body["model"] == "gpt-b"  # gpt-a is busy with the stream
            for _ in lines:
                pass


def test_failing_target_is_ejected_then_recovers(gw: Servers) -> None:
    gw.mock.add_fault(Fault(status=500, message="broken", model="gpt-a", times=1000))
    before = len(gw.mock.requests)
    assert chat(gw, KEYS["free"], "ordered").status_code == 200
    assert upstream_models(gw.mock, before) == ["gpt-a", "gpt-a", "gpt-b"]  # two failures: ejected
    before = len(gw.mock.requests)
    assert chat(gw, KEYS["free"], "ordered").status_code == 200
    assert upstream_models(gw.mock, before) == ["gpt-b"]  # skipped while ejected
    gw.mock.reset()
    time.sleep(0.6)
    assert chat(gw, KEYS["free"], "ordered").status_code == 200
    assert upstream_models(gw.mock, 0) == ["gpt-a"]  # back after the cooldown


# ------------------------------------------------------------------------------------------ timeouts


def test_first_token_timeout(gw: Servers) -> None:
    gw.mock.add_fault(Fault(latency_ms=2000, model="gpt-slow"))
    t0 = time.monotonic()
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "slow-ttft", "messages": USER, "stream": True},
                   headers={"authorization": f"Bearer {KEYS['free']}"}, timeout=20)
    assert time.monotonic() - t0 < 1.5
    assert r.status_code == 504 and "no first token after 0.3s" in r.json()["error"]["message"]
    gw.mock.add_fault(Fault(latency_ms=2000, model="gpt-slow"))
    with pytest.raises(anthropic.APIStatusError) as info:
        ant(gw).messages.create(model="slow-ttft", max_tokens=10, messages=USER, stream=True)
    assert info.value.status_code == 504 and info.value.body["error"]["type"] == "timeout_error"


@pytest.mark.parametrize(("timeouts", "expected"), [
    ({"idle": 0.15}, "no data between stream chunks after 0.15s"),
    ({"total": 0.6}, "the whole exchange took too long after 0.6s"),
])
def test_idle_and_total_timeouts_end_the_stream_with_an_error_event(timeouts: dict, expected: str) -> None:
    def cfg(url: str) -> dict[str, Any]:
        c = policy_config(url)
        c["models"].append({"name": "timed", "provider": "openai", "model": "gpt-4o-mini", "timeouts": timeouts,
                            "retry": {"attempts": 1}})
        return c

    with Servers(cfg, mock_key=UPSTREAM_KEY, token_delay_ms=250) as s:
        with pytest.raises(openai.APIError, match=expected):
            for _ in oai(s).chat.completions.create(model="timed", stream=True, messages=[
                    {"role": "user", "content": "w " * 10}]):
                pass
        seen = s.mock.requests[-1]
        deadline = time.monotonic() + 2
        while seen.disconnected is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen.disconnected is not None and seen.finished is None  # the upstream was cancelled too


def test_connect_timeout() -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(f)

    def cfg(url: str) -> dict[str, Any]:
        c = policy_config(url, dead_url=f"http://127.0.0.1:{port}/v1")
        c["models"].append({"name": "hang", "provider": "dead", "model": "x", "timeouts": {"connect": 0.3},
                            "retry": {"attempts": 1}})
        return c

    try:
        with Servers(cfg, mock_key=UPSTREAM_KEY) as s:
            t0 = time.monotonic()
            r = chat(s, KEYS["free"], "hang")
            assert time.monotonic() - t0 < 2
            assert r.status_code == 504 and "timed out" in r.json()["error"]["message"]
    finally:
        for f in fillers:
            f.close()
        lsock.close()


# ------------------------------------------------------------------------------- redis shared limits


@contextmanager
def gateway_process(config: dict[str, Any], path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_loopback_port()
    config = {**config, "listen": {"host": "127.0.0.1", "port": port},
              "store": {"responses_path": str(path.with_suffix(".sqlite3"))}}
    path.write_text(yaml.safe_dump(config))
    log = path.with_suffix(".log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--config", str(path)],
                            stderr=log, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, 20, path.with_suffix(".log").read_text)
        yield proc, url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_two_gateway_processes_share_limits_through_redis(redis_url: str, tmp_path: Path) -> None:
    flush_redis(redis_url)
    with Servers(lambda url: policy_config(url), mock_key=UPSTREAM_KEY) as s:
        cfg = policy_config(s.mock_url, "redis", redis_url)
        with gateway_process(cfg, tmp_path / "a.yaml") as (_, a), gateway_process(cfg, tmp_path / "b.yaml") as (_, b):
            hdrs = {"authorization": f"Bearer {KEYS['team-a']}"}
            body = {"model": "gpt-4o-mini", "messages": USER}
            statuses = [httpx.post(url + "/v1/chat/completions", json=body, headers=hdrs).status_code
                        for url in (a, b, a, b, a)]
            assert statuses == [200] * 5
            assert httpx.post(b + "/v1/chat/completions", json=body, headers=hdrs).status_code == 429
            assert httpx.post(a + "/v1/chat/completions", json=body, headers=hdrs).status_code == 429


# ------------------------------------------------------------------------------------------- reload


def test_reload_under_load_loses_no_request(tmp_path: Path) -> None:
    with Servers(lambda url: policy_config(url), mock_key=UPSTREAM_KEY) as s:
        cfg = policy_config(s.mock_url, server={"reload_poll_seconds": 0.1})
        path = tmp_path / "live.yaml"
        with gateway_process(cfg, path) as (proc, url):
            statuses: list[int] = []
            stop = threading.Event()

            def load() -> None:
                with httpx.Client(timeout=20, headers={"authorization": f"Bearer {KEYS['free']}"}) as c:
                    while not stop.is_set():
                        statuses.append(c.post(url + "/v1/chat/completions",
                                               json={"model": "gpt-4o-mini", "messages": USER}).status_code)

            workers = [threading.Thread(target=load) for _ in range(4)]
            for w in workers:
                w.start()
            for i in range(3):  # rewrite the file while requests are flowing
                time.sleep(0.3)
                new = policy_config(s.mock_url, server={"reload_poll_seconds": 0.1})
                new["models"].append({"name": f"fresh-{i}", "provider": "openai", "model": "gpt-4o-mini"})
                path.write_text(yaml.safe_dump({**new, "listen": cfg["listen"] | {"port": int(url.rsplit(':', 1)[1])}}))
            time.sleep(0.4)
            stop.set()
            for w in workers:
                w.join()
            assert len(statuses) > 20 and set(statuses) == {200}, Counter(statuses)
            assert chat_url(url, "fresh-2").status_code == 200
            # a broken config is refused and the running one keeps serving
            path.write_text("models: [{name: x, provider: nope}]\n")
            time.sleep(0.4)
            assert chat_url(url, "fresh-2").status_code == 200
            # SIGHUP reloads too
            new = policy_config(s.mock_url, server={"reload_poll_seconds": 30})
            new["models"].append({"name": "by-sighup", "provider": "openai", "model": "gpt-4o-mini"})
            port = int(url.rsplit(":", 1)[1])
            path.write_text(yaml.safe_dump({**new, "listen": {"host": "127.0.0.1", "port": port}}))
            proc.send_signal(1)
            time.sleep(0.5)
            assert chat_url(url, "by-sighup").status_code == 200
        assert "config reload failed" in path.with_suffix(".log").read_text()


def chat_url(url: str, model: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": model, "messages": USER},
                      headers={"authorization": f"Bearer {KEYS['free']}"})


# ----------------------------------------------------------------------------------- realtime keys


async def test_realtime_keys_by_header_and_browser_subprotocol(gw: Servers) -> None:
    from trio_websocket import ConnectionRejected, open_websocket_url

    ws_url = gw.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-4o-mini"
    for offered, headers in ((["realtime", "openai-insecure-api-key.sk-wrong"], None),
                             (["realtime"], None),
                             (None, [("authorization", "Bearer sk-wrong")])):
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(ws_url, subprotocols=offered, extra_headers=headers):
                pass
        assert info.value.status_code == 401
        assert json.loads(info.value.body)["error"]["type"] == "authentication_error"
    # the narrow key may not use a model outside its list
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(gw.url.replace("http://", "ws://") + "/v1/realtime?model=claude-x",
                                      subprotocols=["realtime", f"openai-insecure-api-key.{KEYS['narrow']}"]):
            pass
    assert info.value.status_code in (403, 404)
    async with open_websocket_url(ws_url, subprotocols=["realtime", f"openai-insecure-api-key.{KEYS['free']}"]) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(await ws.get_message())["type"] == "session.created"
    async with open_websocket_url(ws_url, extra_headers=[("authorization", f"Bearer {KEYS['free']}")]) as ws:
        assert json.loads(await ws.get_message())["type"] == "session.created"
