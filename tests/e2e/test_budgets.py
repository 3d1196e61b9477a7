"""Spend budgets end to end: real gateway, real fake upstream, the official SDKs.

Prices are set in the config for the mock's models so every cost is known: gpt-4o-mini costs nothing for
input and 10 USD per million output tokens, and with ``max_tokens=4`` the fake upstream answers exactly
4 output tokens, so one call costs 4e-5 USD, and its estimate (the output cap at the output price) is the
same amount.
"""

from __future__ import annotations

import math
import threading
import uuid
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from tests.harness import UPSTREAM_KEY, GatewayProcess, MockProcess, Servers, free_loopback_port, openai_config

ADMIN = {"authorization": "Bearer sk-budget-admin"}
PRICES = {"gpt-4o-mini": {"input": 0, "output": 10}, "rerank-v3.5": {"input": 1000, "output": 0}}
MAX_TOKENS = 4
USER = [{"role": "user", "content": "hi"}]


def config(mock_url: str, keys: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    cfg = openai_config(mock_url)
    cfg["auth"] = {"keys": keys, "admin_keys": [{"id": "admin", "key": "sk-budget-admin"}], **extra.pop("auth", {})}
    cfg["observability"] = {"prices": PRICES}
    cfg.update(extra)
    return cfg


def counting_client(module: Any = httpx) -> tuple[Any, list[str]]:
    """An HTTP client for an SDK (``httpx``, or ``httpx2`` for the Anthropic SDK) that records every
    request the SDK sends, retries included."""
    sent: list[str] = []
    return module.Client(event_hooks={"request": [lambda r: sent.append(r.url.path)]}), sent


def call_cost(usage: Any) -> float:
    return (usage.prompt_tokens * PRICES["gpt-4o-mini"]["input"]
            + usage.completion_tokens * PRICES["gpt-4o-mini"]["output"]) * 1e-6


def test_openai_sdk_until_refused_headers_count_down_no_retry() -> None:
    limit = 1e-4
    keys = [{"id": "tiny", "key": "sk-tiny", "budget": {"usd": limit, "window": "daily"}}]
    with Servers(lambda url: config(url, keys), mock_key=UPSTREAM_KEY) as s:
        http, sent = counting_client()
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="sk-tiny", http_client=http)  # default retries on
        remaining, spent = [], 0.0
        while True:
            try:
                raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER,
                                                                       max_tokens=MAX_TOKENS)
            except openai.RateLimitError as exc:
                refused = exc
                break
            spent += call_cost(raw.parse().usage)
            remaining.append(float(raw.headers["x-trigate-budget-remaining-usd"]))
            assert float(raw.headers["x-trigate-budget-limit-usd"]) == limit
            assert raw.headers["x-trigate-budget-reset"].endswith("T00:00:00Z")  # the next UTC midnight
            assert len(remaining) < 10, "never refused"
        per_call = MAX_TOKENS * PRICES["gpt-4o-mini"]["output"] * 1e-6
        # two calls fit whole; the third runs on the half call's worth left (its reservation is capped at
        # what is left) and overshoots by less than one call; then nothing is left
        allowed = math.ceil(limit / per_call)
        assert len(remaining) == allowed == 3
        assert remaining == pytest.approx([max(0.0, limit - per_call * (i + 1)) for i in range(allowed)])
        assert spent == pytest.approx(per_call * allowed) and spent - limit < per_call
        assert refused.status_code == 429
        body = refused.body
        assert body["type"] == "insufficient_quota" and body["code"] == "budget_exceeded", body
        assert "tiny" in body["message"] and "daily" in body["message"]
        assert refused.response.headers["x-should-retry"] == "false"
        assert float(refused.response.headers["x-trigate-budget-remaining-usd"]) == 0
        assert "retry-after" not in refused.response.headers
        # the SDK sent the refused request once (no retries), and it never reached the upstream
        assert len(sent) == allowed + 1
        assert len([r for r in s.mock.requests if "chat/completions" in r.path]) == allowed
        report = httpx.get(s.url + "/admin/keys/tiny/budget", headers=ADMIN).json()
        assert report["spend_usd"] == pytest.approx(spent) and report["window"] == "daily"
        assert report["remaining_usd"] == 0
        # a manual reset starts a new window now: the key works again
        assert httpx.post(s.url + "/admin/keys/tiny/budget/reset", headers=ADMIN).json()["spend_usd"] == 0
        assert client.chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=MAX_TOKENS).usage


def test_refusal_in_anthropic_and_cohere_formats() -> None:
    # the budget is below one call's estimate: the first call still runs on it (nothing else could), and
    # spends it all; the next is refused before reaching the upstream
    keys = [{"id": "poor", "key": "sk-poor", "budget": {"usd": 1e-6, "window": "total"}}]
    with Servers(lambda url: config(url, keys), mock_key=UPSTREAM_KEY) as s:
        http, sent = counting_client(httpx2)
        client = anthropic.Anthropic(base_url=s.url, api_key="sk-poor", http_client=http)
        assert client.messages.create(model="gpt-4o-mini", max_tokens=MAX_TOKENS, messages=USER).content
        served = len(s.mock.requests)
        sent.clear()
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model="gpt-4o-mini", max_tokens=MAX_TOKENS, messages=USER)
        err = caught.value
        assert err.status_code == 429 and err.body["type"] == "error", err.body
        assert err.body["error"]["type"] == "rate_limit_error"
        assert "Budget exceeded" in err.body["error"]["message"]
        assert err.response.headers["x-should-retry"] == "false"
        assert err.response.headers["x-trigate-budget-limit-usd"] == "0.000001"
        assert "x-trigate-budget-reset" not in err.response.headers  # a total budget never resets itself
        assert len(sent) == 1

        # rerank is priced per input token here: its estimate comes from the request size
        r = httpx.post(s.url + "/v2/rerank", headers={"authorization": "Bearer sk-poor"},
                       json={"model": "cohere/rerank-v3.5", "query": "q", "documents": ["a", "b"]})
        assert r.status_code == 429 and set(r.json()) == {"message"}, r.text
        assert "Budget exceeded" in r.json()["message"]
        assert r.headers["x-should-retry"] == "false"
        assert len(s.mock.requests) == served


def test_team_budget_across_two_keys_and_admin_changes() -> None:
    per_call = MAX_TOKENS * PRICES["gpt-4o-mini"]["output"] * 1e-6
    keys = [{"id": f"a{i}", "key": f"sk-a{i}", "metadata": {"team": "alpha"}} for i in (1, 2)]
    teams = {"alpha": {"budget": {"usd": 3 * per_call, "window": "monthly"}}}
    with Servers(lambda url: config(url, keys, auth={"teams": teams}), mock_key=UPSTREAM_KEY) as s:

        def call(key: str) -> httpx.Response:
            return httpx.post(s.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                              json={"model": "gpt-4o-mini", "messages": USER, "max_tokens": MAX_TOKENS})

        statuses = [call(k).status_code for k in ("sk-a1", "sk-a2", "sk-a1", "sk-a2", "sk-a1")]
        assert statuses == [200, 200, 200, 429, 429]
        # the provider's raw API too: nothing to price before the call, but nothing is left either
        raw_call = httpx.post(s.url + "/openai/v1/chat/completions", headers={"authorization": "Bearer sk-a2"},
                              json={"model": "gpt-4o-mini", "messages": USER})
        assert raw_call.status_code == 429 and raw_call.json()["error"]["code"] == "budget_exceeded"
        assert raw_call.headers["x-should-retry"] == "false"
        assert len([r for r in s.mock.requests if "chat/completions" in r.path]) == 3
        team = httpx.get(s.url + "/admin/teams/alpha", headers=ADMIN).json()
        assert team["source"] == "config" and team["window"] == "monthly"
        assert team["spend_usd"] == pytest.approx(3 * per_call) and team["remaining_usd"] == pytest.approx(0)
        assert team["resets_at"].endswith("-01T00:00:00Z")

        raised = httpx.put(s.url + "/admin/teams/alpha/budget", headers=ADMIN, json={"usd": 4 * per_call,
                                                                                     "window": "monthly"})
        assert raised.json()["source"] == "admin" and raised.json()["remaining_usd"] == pytest.approx(per_call)
        r = call("sk-a2")
        assert r.status_code == 200
        assert float(r.headers["x-trigate-budget-remaining-usd"]) == pytest.approx(0)
        assert call("sk-a1").status_code == 429

        assert httpx.post(s.url + "/admin/teams/alpha/budget/reset", headers=ADMIN).json()["spend_usd"] == 0
        assert call("sk-a1").status_code == 200
        cleared = httpx.delete(s.url + "/admin/teams/alpha/budget", headers=ADMIN).json()
        assert cleared["budget"] is None
        r = call("sk-a1")
        assert r.status_code == 200 and "x-trigate-budget-limit-usd" not in r.headers

        bad = httpx.put(s.url + "/admin/teams/alpha/budget", headers=ADMIN, json={"usd": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "usd"
        bad = httpx.put(s.url + "/admin/teams/alpha/budget", headers=ADMIN, json={"usd": 1, "window": "weekly"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "window"
        assert httpx.get(s.url + "/admin/teams/alpha", headers={"authorization": "Bearer sk-a1"}).status_code == 403
        assert httpx.get(s.url + "/admin/keys/nobody/budget", headers=ADMIN).status_code == 404


def _chat(base: str, key: str) -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o-mini", "messages": USER, "max_tokens": MAX_TOKENS}, timeout=30)


def _process_config(upstream: str, database: str, **extra: Any) -> dict[str, Any]:
    return {"auth": {"admin_keys": [{"id": "admin", "key": "sk-budget-admin"}], "keys": [{"id": "cfg", "key": "sk-c"}]},
            "database": {"url": database}, "store": {"responses_path": ":memory:"},
            "observability": {"prices": PRICES},
            "providers": {"up": {"kind": "openai", "base_url": f"{upstream}/v1", "api_key": UPSTREAM_KEY}},
            "models": [{"name": "gpt-4o-mini", "provider": "up"}], **extra}


def test_runtime_key_budget_survives_kill_and_restart_on_sqlite(tmp_path: Path) -> None:
    per_call = MAX_TOKENS * PRICES["gpt-4o-mini"]["output"] * 1e-6
    upstream = MockProcess()
    gw = None
    try:
        gw = GatewayProcess(_process_config(upstream.url, str(tmp_path / "state.sqlite3")), tmp_path, "solo")
        made = httpx.post(gw.url + "/admin/keys", headers=ADMIN,
                          json={"id": "durable", "budget": {"usd": 2.5 * per_call, "window": "monthly"}})
        assert made.status_code == 201, made.text
        secret = made.json()["key"]
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret)
        ok = 0
        with pytest.raises(openai.RateLimitError) as caught:
            for _ in range(10):
                client.chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=MAX_TOKENS)
                ok += 1
        # two whole calls, then one on the half call's worth left (see the first test)
        assert ok == 3 and caught.value.body["code"] == "budget_exceeded"
        httpx.get(gw.url + "/admin/usage", headers=ADMIN)  # waits until this process's usage rows are written
        before = httpx.get(gw.url + "/admin/keys/durable/budget", headers=ADMIN).json()
        assert before["spend_usd"] == pytest.approx(3 * per_call)

        gw.kill()
        gw.start()
        after = httpx.get(gw.url + "/admin/keys/durable/budget", headers=ADMIN).json()
        assert after["spend_usd"] == pytest.approx(before["spend_usd"]), gw.log()
        r = _chat(gw.url, secret)
        assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
        seen = httpx.get(upstream.url + "/_mock/requests").json()
        assert len([x for x in seen if "chat/completions" in x["path"]]) == 3
    finally:
        if gw is not None:
            gw.stop()
        upstream.stop()


def test_two_replicas_share_one_budget_under_concurrent_load(tmp_path: Path, redis_url: str,
                                                             postgres_url: str) -> None:
    per_call = MAX_TOKENS * PRICES["gpt-4o-mini"]["output"] * 1e-6
    allowed = 10
    key_id, secret = f"load-{uuid.uuid4().hex[:8]}", f"sk-load-{uuid.uuid4().hex}"
    upstream = MockProcess(token_delay_ms=20)  # calls overlap: each takes ~100 ms
    replicas: list[GatewayProcess] = []
    try:
        cfg = _process_config(upstream.url, postgres_url,
                              limits={"backend": "redis", "redis_url": redis_url})
        cfg["auth"]["keys"].append({"id": key_id, "key": secret,
                                    "budget": {"usd": allowed * per_call, "window": "daily"}})
        replicas = [GatewayProcess(cfg, tmp_path, "a"), GatewayProcess(cfg, tmp_path, "b")]
        statuses: list[int] = []
        lock = threading.Lock()

        def one(base: str) -> None:
            r = _chat(base, secret)
            assert r.status_code in (200, 429), r.text
            with lock:
                statuses.append(r.status_code)

        threads = [threading.Thread(target=one, args=(replicas[i % 2].url,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(statuses) == 40
        assert statuses.count(200) == allowed, statuses
        for gw in replicas:
            report = httpx.get(gw.url + f"/admin/keys/{key_id}/budget", headers=ADMIN).json()
            assert report["spend_usd"] <= allowed * per_call + per_call
            assert report["spend_usd"] == pytest.approx(allowed * per_call)
        seen = httpx.get(upstream.url + "/_mock/requests").json()
        assert len([x for x in seen if "chat/completions" in x["path"]]) == allowed
    finally:
        for gw in replicas:
            gw.stop()
        upstream.stop()


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_budget_counters_unreachable_follow_on_backend_error(on_error: str) -> None:
    dead = f"redis://127.0.0.1:{free_loopback_port()}/0"  # nothing listens there
    keys = [{"id": "b", "key": "sk-b", "budget": {"usd": 1.0, "window": "daily"}}]
    limits = {"backend": "redis", "redis_url": dead, "on_backend_error": on_error}
    with Servers(lambda url: config(url, keys, limits=limits), mock_key=UPSTREAM_KEY) as s:
        r = _chat(s.url, "sk-b")
        if on_error == "closed":
            assert r.status_code == 503 and r.json()["error"]["code"] == "budget_backend_unavailable", r.text
            assert "spend budgets" in r.json()["error"]["message"] and r.headers["retry-after"] == "1"
            assert not s.mock.requests
        else:
            assert r.status_code == 200 and "x-trigate-budget-limit-usd" not in r.headers
            assert len(s.mock.requests) == 1
