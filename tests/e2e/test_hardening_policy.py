"""Issue 13, items 6, 7 and 15, through the real gateway and fake upstream: /metrics label values stay
bounded by the config whatever model names clients send; passthrough obeys each key's provider list and
its limits; Anthropic clients get their request id in Anthropic's own ``request-id`` header."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import UPSTREAM_KEY, LogCapture, Servers, openai_config
from trigate.mock.state import Fault

WIDE = "sk-wide-0123456789abcdef"  # no models, no providers: everything, passthrough included
GPT_ONLY = "sk-gpt-only-0123456789abcdef"  # models [gpt-*], no providers: no passthrough
OPENAI_PASS = "sk-openai-pass-0123456789abcdef"  # models [gpt-*], providers [openai]
AZURE_ANY = "sk-azure-any-0123456789abcdef"  # providers [azure*] (a pattern), models unrestricted
RPM2 = "sk-rpm2-0123456789abcdef"
ONE_AT_A_TIME = "sk-one-0123456789abcdef"

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def policy_config(mock_url: str, **extra: Any) -> dict[str, Any]:
    cfg = openai_config(mock_url, **extra)
    cfg["auth"] = {"keys": [
        {"id": "wide", "key": WIDE},
        {"id": "gpt-only", "key": GPT_ONLY, "models": ["gpt-*"]},
        {"id": "openai-pass", "key": OPENAI_PASS, "models": ["gpt-*"], "providers": ["openai"]},
        {"id": "azure-any", "key": AZURE_ANY, "providers": ["azure*"]},
        {"id": "rpm2", "key": RPM2, "rpm": 2},
        {"id": "one-at-a-time", "key": ONE_AT_A_TIME, "max_concurrent": 1},
    ]}
    return cfg


@pytest.fixture(scope="module")
def gw(access_log: LogCapture) -> Iterator[Servers]:
    with Servers(policy_config, mock_key=UPSTREAM_KEY) as s:
        yield s


@pytest.fixture
def mock(gw: Servers):
    gw.mock.reset()
    return gw.mock


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def series(s: Servers) -> set[tuple[str, frozenset]]:
    r = httpx.get(s.url + "/metrics")
    assert r.status_code == 200
    return {(x.name, frozenset(x.labels.items()))
            for fam in text_string_to_metric_families(r.text) for x in fam.samples}


def label_values(found: set[tuple[str, frozenset]], label: str) -> set[str]:
    return {dict(ls)[label] for n, ls in found if n == "trigate_requests_total" and label in dict(ls)}


def wait_for_line(access_log: LogCapture, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for raw in access_log.snapshot():
            rec = json.loads(raw)
            if rec.get("request_id") == request_id:
                return rec
        time.sleep(0.01)
    raise AssertionError(f"no access-log line for {request_id}")


# ----------------------------------------------------------------------- 6: bounded metric labels


def test_client_chosen_model_names_do_not_grow_the_metrics(gw: Servers, mock) -> None:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=WIDE, max_retries=0)
    msgs = [{"role": "user", "content": "x"}]

    def unknown(i: int) -> None:
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model=f"no-such-model-{i}", messages=msgs)

    def wildcard(i: int) -> None:  # any name under openai/* reaches the (accepting) fake upstream
        c.chat.completions.create(model=f"openai/made-up-{i}", messages=msgs)

    def snapshot(i: int) -> None:  # names the price table recognises, spelled a new way each time
        c.chat.completions.create(model=f"openai/gpt-4o-{1000 + i}", messages=msgs)

    kinds = (unknown, wildcard, snapshot)
    for each in kinds:  # the first of each kind may add its series
        each(0)
    before = series(gw)
    for i in range(1, 51):
        for each in kinds:
            each(i)
    after = series(gw)
    assert after - before == set()
    requested = label_values(after, "gen_ai_request_model")
    assert {"_other", "openai/*"} <= requested
    assert not any(v.startswith(("no-such-model-", "openai/made-up-", "openai/gpt-4o-1")) for v in requested)
    served = label_values(after, "gen_ai_response_model")
    assert {"openai/*", "gpt-4o"} <= served and not any(v.startswith(("made-up-", "gpt-4o-")) for v in served)
    # per-key series are bounded the same way, and /admin/usage's ledger with them
    keyed = {dict(ls)["model"] for n, ls in after if n == "trigate_key_requests_total" and dict(ls)["key_id"] == "wide"}
    assert {"_other", "openai/*", "gpt-4o"} <= keyed and len(keyed) <= 6
    assert mock.requests[-1].body["model"] == "gpt-4o-1050"  # the upstream still got the real name


def test_configured_names_keep_their_own_labels(gw: Servers, mock) -> None:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=WIDE, max_retries=0)
    c.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    c.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "x"}])
    found = series(gw)
    pairs = {(dict(ls)["gen_ai_request_model"], dict(ls)["gen_ai_response_model"])
             for n, ls in found if n == "trigate_requests_total" and dict(ls).get("status") == "200"}
    assert ("fast", "gpt-4o-mini") in pairs  # an exact route and its fixed upstream model
    assert ("claude-sonnet-4-6", "claude-sonnet-4-6") in pairs  # wildcard-routed, but a listed model


# ------------------------------------------------------------------ 7: passthrough provider policy


def test_a_key_held_to_models_gets_no_passthrough(gw: Servers, mock) -> None:
    r = httpx.post(gw.url + "/anthropic/v1/messages", headers={**bearer(GPT_ONLY), "anthropic-version": "2023-06-01"},
                   json=MESSAGE)
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["type"] == "permission_error" and err["code"] == "provider_not_allowed" and "anthropic" in err["message"]
    assert UPSTREAM_KEY not in r.text
    # even the provider its models would route to
    assert httpx.post(gw.url + "/openai/v1/chat/completions", headers=bearer(GPT_ONLY), json=CHAT).status_code == 403
    assert mock.requests == []  # nothing reached the upstream
    # the routed API still works for it
    assert httpx.post(gw.url + "/v1/chat/completions", headers=bearer(GPT_ONLY), json=CHAT).status_code == 200


def test_a_provider_list_allows_those_providers_only(gw: Servers, mock) -> None:
    r = httpx.post(gw.url + "/openai/v1/chat/completions", headers=bearer(OPENAI_PASS), json=CHAT)
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    assert mock.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    r = httpx.post(gw.url + "/anthropic/v1/messages", headers=bearer(OPENAI_PASS), json=MESSAGE)
    assert r.status_code == 403 and r.json()["error"]["code"] == "provider_not_allowed"
    # patterns, as for models
    for path in ("/azure/openai/v1/chat/completions",
                 "/azure-dated/openai/deployments/d/chat/completions?api-version=2024-10-21"):
        assert httpx.post(gw.url + path, headers=bearer(AZURE_ANY), json=CHAT).status_code == 200, path
    assert httpx.post(gw.url + "/openai/v1/chat/completions", headers=bearer(AZURE_ANY), json=CHAT).status_code == 403
    # a key with neither list keeps full access
    assert httpx.post(gw.url + "/anthropic/v1/messages", headers=bearer(WIDE), json=MESSAGE).status_code == 200


def test_passthrough_counts_against_the_keys_rpm(gw: Servers, mock, access_log: LogCapture) -> None:
    url = gw.url + "/openai/v1/chat/completions"
    for _ in range(2):
        assert httpx.post(url, headers=bearer(RPM2), json=CHAT).status_code == 200
    r = httpx.post(url, headers={**bearer(RPM2), "x-request-id": "rid-pass-429"}, json=CHAT)
    assert r.status_code == 429
    assert (r.json()["error"]["type"], r.json()["error"]["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert r.headers["x-ratelimit-limit-requests"] == "2" and r.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(r.headers["retry-after"]) >= 1
    assert len(mock.requests) == 2
    line = wait_for_line(access_log, "rid-pass-429")
    assert (line["api"], line["status"], line["key_id"], line["limit_scope"]) == ("passthrough", 429, "rpm2", "key")
    # the same budget covers the routed API
    assert httpx.post(gw.url + "/v1/chat/completions", headers=bearer(RPM2), json=CHAT).status_code == 429


def test_passthrough_holds_a_concurrency_slot_until_its_answer_ends(gw: Servers, mock) -> None:
    url = gw.url + "/openai/v1/chat/completions"
    mock.add_fault(Fault(latency_ms=600, path="/v1/chat/completions"))
    first: dict[str, int] = {}
    slow = threading.Thread(target=lambda: first.update(
        status=httpx.post(url, headers=bearer(ONE_AT_A_TIME), json=CHAT, timeout=10).status_code))
    slow.start()
    deadline = time.monotonic() + 5
    while not mock.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    r = httpx.post(url, headers=bearer(ONE_AT_A_TIME), json=CHAT)
    assert r.status_code == 429 and "concurrent" in r.json()["error"]["message"]
    slow.join(10)
    assert first["status"] == 200
    # the slot came back, streams included
    with httpx.stream("POST", url, headers=bearer(ONE_AT_A_TIME), json={**CHAT, "stream": True}) as resp:
        assert resp.status_code == 200
        resp.read()
    assert httpx.post(url, headers=bearer(ONE_AT_A_TIME), json=CHAT).status_code == 200


def test_global_limits_cover_passthrough(access_log: LogCapture) -> None:
    with Servers(lambda url: policy_config(url, limits={"global_limits": {"rpm": 1}}), mock_key=UPSTREAM_KEY) as s:
        url = s.url + "/openai/v1/chat/completions"
        assert httpx.post(url, headers=bearer(WIDE), json=CHAT).status_code == 200
        r = httpx.post(url, headers=bearer(WIDE), json=CHAT)
        assert r.status_code == 429 and "global" in r.json()["error"]["message"]


# ---------------------------------------------------------------- 15: Anthropic's request-id header


def ant(s: Servers, key: str = WIDE) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=s.url, api_key=key, max_retries=0)


def test_anthropic_sdk_gets_the_request_id(gw: Servers, mock, access_log: LogCapture) -> None:
    raw = ant(gw).messages.with_raw_response.create(**MESSAGE)
    message = raw.parse()
    assert message._request_id is not None
    assert message._request_id == raw.headers["x-request-id"] == raw.headers["request-id"]
    assert wait_for_line(access_log, message._request_id)["api"] == "messages"
    # a caller's own valid id is the one echoed, under both names
    given = ant(gw).messages.create(**MESSAGE, extra_headers={"x-request-id": "rid-ant-given"})
    assert given._request_id == "rid-ant-given"
    counted = ant(gw).messages.count_tokens(model=MESSAGE["model"], messages=MESSAGE["messages"])
    assert counted._request_id is not None and wait_for_line(access_log, counted._request_id)


def test_anthropic_stream_carries_the_request_id(gw: Servers, mock, access_log: LogCapture) -> None:
    with ant(gw).messages.stream(**MESSAGE) as stream:
        rid = stream.response.headers.get("request-id")
        assert rid is not None and rid == stream.response.headers["x-request-id"]
        stream.get_final_message()
    assert wait_for_line(access_log, rid)["stream"] is True


def test_anthropic_errors_carry_the_request_id(gw: Servers, mock, access_log: LogCapture) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        ant(gw).messages.create(**{**MESSAGE, "model": "no-such-model"})
    assert raised.value.request_id is not None
    assert raised.value.response.headers["x-request-id"] == raised.value.request_id
    assert wait_for_line(access_log, raised.value.request_id)["status"] == 404
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        ant(gw, "sk-wrong-key").messages.create(**MESSAGE)
    assert bad_key.value.request_id is not None
    with pytest.raises(anthropic.PermissionDeniedError) as refused:  # passthrough, to an Anthropic client
        anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key=GPT_ONLY, max_retries=0).messages.create(**MESSAGE)
    assert refused.value.request_id == refused.value.response.headers["x-request-id"]


def test_openai_sdk_gets_the_same_kind_of_id(gw: Servers, mock) -> None:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=WIDE, max_retries=0)
    raw = c.chat.completions.with_raw_response.create(**CHAT)
    assert raw.parse()._request_id == raw.headers["x-request-id"]
    assert "request-id" not in raw.headers  # Anthropic's name only where Anthropic's format is spoken
