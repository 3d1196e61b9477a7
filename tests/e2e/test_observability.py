"""Issue 8, end to end: request ids, Prometheus metrics, OTLP traces, the access log (bodies redacted),
per-key cost and /admin/usage, after real SDK calls through the gateway to the fake upstream.

The last test is the issue's "done when": after a mixed run, /metrics, the JSON log and /admin/usage
agree with each other and with the usage the fake upstream reported, to the token.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from tests.harness import UPSTREAM_KEY, LogCapture, Servers, openai_config
from trigate.mock.state import Fault

KEY_A = "sk-team-a-0123456789abcdef"
KEY_B = "sk-team-b-0123456789abcdef"
KEY_LIMITED = "sk-limited-0123456789abcdef"
ADMIN = "sk-admin-0123456789abcdef"
HEX = set("0123456789abcdef")


# ------------------------------------------------------------------------------------------ helpers


class Collector:
    """A minimal OTLP/HTTP trace collector: decodes the protobuf export requests it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    raw = gzip.decompress(raw)
                req = ExportTraceServiceRequest()
                req.ParseFromString(raw)
                with collector._lock:
                    for rs in req.resource_spans:
                        service = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name")
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                collector.spans.append({
                                    "service": service, "name": s.name, "kind": s.kind,
                                    "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                                    "parent_span_id": s.parent_span_id.hex(), "status": s.status.code,
                                    "attributes": {a.key: getattr(a.value, a.value.WhichOneof("value"))
                                                   for a in s.attributes}})
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def close(self) -> None:
        self.server.shutdown()


def obs_config(mock_url: str, **observability: Any) -> dict[str, Any]:
    cfg = openai_config(mock_url)
    cfg["auth"] = {"keys": [{"id": "team-a", "key": KEY_A}, {"id": "team-b", "key": KEY_B},
                            {"id": "limited", "key": KEY_LIMITED, "rpm": 1}],
                   "admin_keys": [{"id": "ops", "key": ADMIN}]}
    cfg["retry"] = {"attempts": 2, "backoff_base": 0.01}
    cfg["models"] = [{"name": "house-model", "provider": "openai", "model": "house-v1"}, *cfg["models"]]
    cfg["observability"] = observability
    return cfg


def scrape(s: Servers, **headers: str) -> dict[tuple[str, frozenset], float]:
    r = httpx.get(s.url + "/metrics", headers=headers)
    assert r.status_code == 200, r.text
    return {(x.name, frozenset(x.labels.items())): x.value
            for fam in text_string_to_metric_families(r.text) for x in fam.samples}


def total(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and all((k, x) in ls for k, x in labels.items()))


def wait_for(check: Callable[[], Any], within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def lines_by_id(access_log: LogCapture, prefix: str) -> dict[str, dict[str, Any]]:
    out = {}
    for raw in access_log.snapshot():
        rec = json.loads(raw)
        if str(rec.get("request_id", "")).startswith(prefix):
            out[rec["request_id"]] = rec
    return out


def oa(s: Servers, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.url + "/v1", api_key=key, max_retries=0)


def upstream_usage(seen: Any) -> tuple[int, int, int]:
    """(input incl. cache, output, cache reads) as the fake upstream reported them, in any format."""
    u = seen.usage
    if "prompt_tokens" in u:  # OpenAI chat
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        return u["prompt_tokens"], u["completion_tokens"], cached
    if "inputTokens" in u:  # Bedrock
        read = u.get("cacheReadInputTokens", 0)
        return u["inputTokens"] + read + u.get("cacheWriteInputTokens", 0), u["outputTokens"], read
    if "cache_read_input_tokens" in u:  # Anthropic
        read = u["cache_read_input_tokens"]
        return u["input_tokens"] + read + u["cache_creation_input_tokens"], u["output_tokens"], read
    return u["input_tokens"], u["output_tokens"], (u.get("input_tokens_details") or {}).get("cached_tokens", 0)


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def obs(access_log: LogCapture, collector: Collector) -> Iterator[Servers]:
    tracing = {"enabled": True, "otlp_endpoint": collector.url, "service_name": "trigate-test"}
    with Servers(lambda url: obs_config(url, tracing=tracing), mock_key=UPSTREAM_KEY) as s:
        yield s


@pytest.fixture
def mock(obs: Servers):
    obs.mock.reset()
    return obs.mock


def flush(s: Servers) -> None:
    assert s.running is not None
    tracing = s.running.gateway.telemetry.tracing
    assert tracing is not None and tracing.flush()


# ---------------------------------------------------------------------------------------- request id


def test_request_id_is_kept_forwarded_and_returned(obs: Servers, mock, access_log: LogCapture) -> None:
    c = oa(obs)
    r = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                                    extra_headers={"x-request-id": "rid-given-1"})
    assert r.headers["x-request-id"] == "rid-given-1"
    assert mock.requests[-1].headers["x-request-id"] == "rid-given-1"
    assert wait_for(lambda: lines_by_id(access_log, "rid-given-1"))["rid-given-1"]["status"] == 200

    for bad in ("x" * 129, "bad\x7fid"):
        r = c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": bad})
        rid = r.headers["x-request-id"]
        assert rid != bad and len(rid) == 32 and set(rid) <= HEX
        assert mock.requests[-1].headers["x-request-id"] == rid  # upstream sees the effective id
        assert wait_for(lambda rid=rid: lines_by_id(access_log, rid))

    r = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    generated = r.headers["x-request-id"]
    assert set(generated) <= HEX and mock.requests[-1].headers["x-request-id"] == generated

    with httpx.stream("POST", obs.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY_A}",
                      "x-request-id": "rid-stream"}, json={"model": "claude-sonnet-4-6", "stream": True,
                      "messages": [{"role": "user", "content": "stream"}]}) as resp:
        assert resp.headers["x-request-id"] == "rid-stream"
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = resp.read()
    assert b"[DONE]" in body and mock.requests[-1].headers["x-request-id"] == "rid-stream"


async def test_realtime_sessions_carry_the_request_id_and_are_counted(obs: Servers, access_log: LogCapture) -> None:
    url = "ws" + obs.url.removeprefix("http") + "/v1/realtime?model=openai/gpt-realtime"
    async with open_websocket_url(url, extra_headers=[(b"authorization", f"Bearer {KEY_A}".encode()),
                                                      (b"x-request-id", b"rid-ws")]) as ws:
        assert dict(ws.handshake_headers)[b"x-request-id"] == b"rid-ws"
        during = await trio.to_thread.run_sync(scrape, obs)
        assert total(during, "trigate_realtime_sessions_open") == 1
    logged = await trio.to_thread.run_sync(lambda: wait_for(lambda: lines_by_id(access_log, "rid-ws")))
    assert logged["rid-ws"]["api"] == "realtime"
    after = await trio.to_thread.run_sync(scrape, obs)
    assert total(after, "trigate_realtime_sessions_open") == 0
    assert total(after, "trigate_requests_total", api="realtime", status="101") >= 1


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("GET", "/v1/nope", {}, 404),
    ("POST", "/v1/chat/completions", {"content": b"{not json"}, 400),
    ("POST", "/v1/chat/completions",
     {"json": {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}}, 404),
    ("GET", "/health", {}, 200),
    ("GET", "/v1/models", {}, 200),
    ("POST", "/v1/messages/count_tokens", {"json": {"model": "claude-sonnet-4-6", "messages": []}}, 200),
])
def test_every_answer_carries_the_request_id(obs: Servers, method: str, path: str, kwargs: dict, status: int,
                                             access_log: LogCapture) -> None:
    r = httpx.request(method, obs.url + path, headers={"authorization": f"Bearer {KEY_A}",
                                                       "x-request-id": f"rid-any-{status}-{len(path)}"}, **kwargs)
    assert r.status_code == status
    assert r.headers["x-request-id"] == f"rid-any-{status}-{len(path)}"
    if path != "/health":  # probes are not logged; everything else is, exactly once
        wait_for(lambda: lines_by_id(access_log, f"rid-any-{status}-{len(path)}"))
        assert [json.loads(x).get("request_id") for x in access_log.snapshot()].count(
            f"rid-any-{status}-{len(path)}") == 1
    r = httpx.request(method, obs.url + path, **kwargs)
    assert len(r.headers["x-request-id"]) == 32  # 401s too


def test_passthrough_forwards_the_effective_id_and_is_accounted(obs: Servers, mock) -> None:
    before = scrape(obs)
    r = httpx.post(obs.url + "/openai/v1/chat/completions", headers={"authorization": f"Bearer {KEY_B}",
                   "x-request-id": "rid-pass"}, json={"model": "gpt-4o-mini",
                                                      "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and r.headers["x-request-id"] == "rid-pass"
    assert mock.requests[-1].headers["x-request-id"] == "rid-pass"
    assert mock.requests[-1].headers["traceparent"].startswith("00-")
    assert httpx.get(obs.url + "/no-such-provider/v1/x").status_code == 404
    after = scrape(obs)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # the usage the passthrough picked out of the answer is the key's, under the API's name
    assert delta("trigate_key_tokens_total", key_id="team-b", model="(passthrough)", gen_ai_token_type="output") \
        == upstream_usage(mock.requests[-1])[1]
    # a path naming no provider is not turned into a label value
    assert delta("trigate_requests_total", api="passthrough", provider="_unknown", status="404") == 1


# ------------------------------------------------------------------------------------------- metrics


def test_metrics_after_sdk_calls(obs: Servers, mock, access_log: LogCapture) -> None:
    before = scrape(obs)
    a, b = oa(obs, KEY_A), oa(obs, KEY_B)
    a.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}])
    plain = upstream_usage(mock.requests[-1])
    list(a.chat.completions.create(model="claude-sonnet-4-6", stream=True,
                                   messages=[{"role": "user", "content": "a translated stream"}]))
    translated = upstream_usage(mock.requests[-1])
    with anthropic.Anthropic(base_url=obs.url, api_key=KEY_B, max_retries=0).messages.stream(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "native stream"}]) as st:
        st.get_final_message()
    native = upstream_usage(mock.requests[-1])
    mock.add_fault(Fault(status=500, message="boom", times=2))
    with pytest.raises(openai.InternalServerError):
        b.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "fails"}],
                                  extra_headers={"x-request-id": "rid-metrics-fail"})
    failed_line = wait_for(lambda: lines_by_id(access_log, "rid-metrics-fail"))["rid-metrics-fail"]
    after = scrape(obs)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("trigate_requests_total", gen_ai_request_model="gpt-4o-mini", status="200") == 1
    assert delta("trigate_requests_total", gen_ai_response_model="claude-sonnet-4-6", api="chat",
                 gen_ai_provider_name="anthropic", status="200") == 1
    assert delta("trigate_requests_total", api="messages", gen_ai_operation_name="chat", status="200") == 1
    assert delta("trigate_requests_total", status="500", error_type=failed_line["error"]) == 1
    for usage, model in ((plain, "gpt-4o-mini"), (translated, "claude-sonnet-4-6"), (native, "claude-haiku-4-5")):
        assert delta("gen_ai_client_token_usage_sum", gen_ai_response_model=model, gen_ai_token_type="input") \
            == usage[0]
        assert delta("gen_ai_client_token_usage_sum", gen_ai_response_model=model, gen_ai_token_type="output") \
            == usage[1]
    assert delta("trigate_key_tokens_total", key_id="team-a", gen_ai_token_type="input") == plain[0] + translated[0]
    assert delta("trigate_key_tokens_total", key_id="team-b", gen_ai_token_type="output") == native[1]
    assert delta("trigate_key_errors_total", key_id="team-b") == 1
    # the failure: two failed attempts upstream, the second a retry of the first
    assert delta("trigate_upstream_errors_total", provider="openai") == 2
    assert delta("trigate_upstream_retries_total", provider="openai", reason="retry") == 1
    assert delta("gen_ai_client_operation_duration_seconds_count", provider="openai") == 3
    # streams get a time to first token; the failed one does not
    assert delta("gen_ai_server_time_to_first_token_seconds_count") == 2
    assert delta("gen_ai_server_request_duration_seconds_count") == 4
    assert total(after, "trigate_requests_in_flight") == 1  # the scrape itself
    assert total(after, "trigate_streams_open") == 0
    # cost counts only what has a price: all three have one
    assert delta("trigate_cost_usd_total", key_id="team-a") == pytest.approx(
        (plain[0] * 0.15 + plain[1] * 0.60 + translated[0] * 3 + translated[1] * 15) / 1e6)


def test_streams_open_gauge_while_a_stream_runs(obs: Servers, mock) -> None:
    mock.token_delay_ms = 100
    try:
        with httpx.stream("POST", obs.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY_A}"},
                          json={"model": "gpt-4o-mini", "stream": True,
                                "messages": [{"role": "user", "content": "slow " * 20}]}) as resp:
            lines = resp.iter_lines()  # kept: dropping the iterator would close the stream
            next(lines)
            during = scrape(obs)
        assert total(during, "trigate_streams_open") == 1
        assert total(during, "trigate_requests_in_flight") == 2
        assert wait_for(lambda: total(scrape(obs), "trigate_streams_open") == 0)
    finally:
        mock.token_delay_ms = 0


def test_rate_limit_rejections_are_counted_by_scope(obs: Servers, mock, access_log: LogCapture) -> None:
    before = scrape(obs)
    c = oa(obs, KEY_LIMITED)
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                  extra_headers={"x-request-id": "rid-limited"})
    assert wait_for(lambda: lines_by_id(access_log, "rid-limited"))["rid-limited"]["limit_scope"] == "key"
    after = scrape(obs)
    assert total(after, "trigate_rate_limit_rejections_total", scope="key") - \
        total(before, "trigate_rate_limit_rejections_total", scope="key") == 1


def test_metrics_can_require_an_admin_key() -> None:
    cfg = lambda url: obs_config(url, metrics_require_admin=True)  # noqa: E731
    with Servers(cfg, mock_key=UPSTREAM_KEY) as s:
        assert httpx.get(s.url + "/metrics").status_code == 401
        assert httpx.get(s.url + "/metrics", headers={"authorization": f"Bearer {KEY_A}"}).status_code == 401
        assert "trigate_requests_total" in httpx.get(s.url + "/metrics",
                                                     headers={"authorization": f"Bearer {ADMIN}"}).text


# -------------------------------------------------------------------------------------------- admin


def test_admin_usage_needs_an_admin_key(obs: Servers, mock) -> None:
    oa(obs, KEY_A).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    url = obs.url + "/admin/usage"
    r = httpx.get(url)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(url, headers={"authorization": "Bearer sk-wrong"}).status_code == 401
    r = httpx.get(url, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    r = httpx.get(url, headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and r.json()["keys"]["team-a"]["requests"] >= 1
    assert httpx.get(url, headers={"x-api-key": ADMIN}).status_code == 200
    r = httpx.get(url, params={"since": "yesterday-ish"}, headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "since"
    future = httpx.get(url, params={"since": str(time.time() + 3600)}, headers={"authorization": f"Bearer {ADMIN}"})
    assert future.json()["keys"] == {} and future.json()["totals"]["requests"] == 0
    recent = httpx.get(url, params={"since": "10m"}, headers={"authorization": f"Bearer {ADMIN}"}).json()
    assert recent["keys"]["team-a"]["requests"] >= 1 and recent["since"] is not None


# ------------------------------------------------------------------------------------------- tracing


def test_trace_has_a_request_span_an_attempt_span_and_propagates(obs: Servers, mock, collector: Collector) -> None:
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    oa(obs).chat.completions.create(model="fast", max_tokens=50, messages=[{"role": "user", "content": "trace me"}],
                                    extra_headers={"traceparent": f"00-{trace_id}-{caller_span}-01"})
    seen = mock.requests[-1]
    flush(obs)
    spans = wait_for(lambda: collector.trace(trace_id) if len(collector.trace(trace_id)) >= 2 else None)
    server = next(s for s in spans if s["kind"] == 2)  # SPAN_KIND_SERVER
    client = next(s for s in spans if s["kind"] == 3)  # SPAN_KIND_CLIENT
    assert server["name"] == "chat fast" and server["parent_span_id"] == caller_span
    assert server["service"] == "trigate-test"
    attrs = server["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "fast" and attrs["gen_ai.response.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == upstream_usage(seen)[:2]
    assert attrs["http.response.status_code"] == 200 and attrs["trigate.key_id"] == "team-a"
    assert client["name"] == "chat gpt-4o-mini" and client["parent_span_id"] == server["span_id"]
    assert client["attributes"]["gen_ai.request.model"] == "gpt-4o-mini"
    # the upstream got W3C trace context naming the attempt span
    version, up_trace, up_parent, _flags = seen.headers["traceparent"].split("-")
    assert (version, up_trace, up_parent) == ("00", trace_id, client["span_id"])


def test_a_retried_request_has_one_span_per_attempt(obs: Servers, mock, collector: Collector) -> None:
    mock.add_fault(Fault(status=500, message="once"))
    r = oa(obs).chat.completions.with_raw_response.create(model="gpt-4o-mini", stream=True,
                                                          messages=[{"role": "user", "content": "retry me"}])
    list(r.parse())
    parents = [q.headers["traceparent"].split("-") for q in mock.requests[-2:]]
    trace_id = parents[0][1]
    assert parents[1][1] == trace_id and parents[0][2] != parents[1][2]
    flush(obs)
    spans = wait_for(lambda: collector.trace(trace_id) if len(collector.trace(trace_id)) >= 3 else None)
    server = next(s for s in spans if s["kind"] == 2)
    attempts = sorted((s for s in spans if s["kind"] == 3), key=lambda s: s["attributes"]["trigate.attempt"])
    assert [s["span_id"] for s in attempts] == [parents[0][2], parents[1][2]]
    assert all(s["parent_span_id"] == server["span_id"] for s in attempts)
    assert attempts[0]["attributes"]["error.type"] and attempts[0]["status"] == 2  # STATUS_CODE_ERROR
    assert "error.type" not in attempts[1]["attributes"]
    assert attempts[1]["attributes"]["gen_ai.usage.output_tokens"] == upstream_usage(mock.requests[-1])[1]
    assert server["attributes"]["trigate.attempts"] == 2 and server["attributes"]["trigate.stream"] is True


# ----------------------------------------------------------------------------------- body logging


def test_bodies_are_logged_only_when_asked_and_redacted(access_log: LogCapture) -> None:
    secret = "sk-proj-abcdefghijklmnopqrstuvwx"
    blob = "iVBORw0KGgo" + "A" * 4000
    with Servers(lambda url: obs_config(url, log_bodies=True), mock_key=UPSTREAM_KEY) as s:
        c = oa(s)
        c.chat.completions.create(
            model="gpt-4o-mini", extra_headers={"x-request-id": "rid-body-1"},
            metadata={"api_key": "plain-secret-value", "team": "blue"},
            messages=[{"role": "user", "content": [
                {"type": "text", "text": f"my key is {secret}, keep it"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{blob}"}}]}])
        list(c.chat.completions.create(model="gpt-4o-mini", stream=True, extra_headers={"x-request-id": "rid-body-2"},
                                       messages=[{"role": "user", "content": "stream body"}]))
        lines = wait_for(lambda: (found := lines_by_id(access_log, "rid-body-")) and len(found) == 2 and found)
    logged = lines["rid-body-1"]
    req = logged["request_body"]
    assert req["metadata"] == {"api_key": "[REDACTED]", "team": "blue"}
    text_part, image_part = req["messages"][0]["content"]
    assert text_part["text"] == "my key is [REDACTED], keep it"
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert "chars of base64 omitted" in image_part["image_url"]["url"]
    assert logged["response_body"]["choices"][0]["message"]["content"].startswith("Hello from the trigate mock")
    streamed = lines["rid-body-2"]["response_body"]
    assert isinstance(streamed, str) and "data: " in streamed and "[DONE]" in streamed
    everything = "\n".join(access_log.snapshot())
    assert secret not in everything and "plain-secret-value" not in everything and blob not in everything
    assert KEY_A not in everything and UPSTREAM_KEY not in everything


def test_bodies_are_not_logged_by_default(obs: Servers, mock, access_log: LogCapture) -> None:
    oa(obs).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "private"}],
                                    extra_headers={"x-request-id": "rid-nobody"})
    line = wait_for(lambda: lines_by_id(access_log, "rid-nobody"))["rid-nobody"]
    assert "request_body" not in line and "response_body" not in line


# ----------------------------------------------------------------------------------- the mixed run

# USD per million tokens (input, output), from the providers' price pages; house-v1 from the config.
PRICES = {"gpt-4o-mini": (0.15, 0.60), "claude-sonnet-4-6": (3.0, 15.0), "claude-haiku-4-5": (1.0, 5.0),
          "claude-sonnet-4-5": (3.0, 15.0), "gpt-4.1-mini": (0.40, 1.60), "house-v1": (1.0, 2.0)}
# the served-model label of an upstream name the config does not fix: the price table's own name for it
LABELS = {"anthropic.claude-sonnet-4-5-20250929-v1:0": "claude-sonnet-4-5"}


def test_mixed_run_metrics_log_and_admin_usage_agree_to_the_token(access_log: LogCapture) -> None:
    prices = {"house-v1": {"input": 1.0, "output": 2.0}}
    with Servers(lambda url: obs_config(url, prices=prices), mock_key=UPSTREAM_KEY) as s:
        expected: dict[tuple[str, str], dict[str, float]] = defaultdict(
            lambda: {"requests": 0, "errors": 0, "input": 0, "output": 0, "cached": 0, "cost": 0.0})
        n = 0

        def rid() -> dict[str, str]:
            nonlocal n
            n += 1
            return {"x-request-id": f"mix-{n}"}

        def account(key: str, model: str, failed: bool = False) -> None:
            e = expected[(key, model)]
            e["requests"] += 1
            if failed:
                e["errors"] += 1
                return
            inp, out, cached = upstream_usage(s.mock.requests[-1])
            e["input"] += inp
            e["output"] += out
            e["cached"] += cached
            e["cost"] += (inp * PRICES[model][0] + out * PRICES[model][1]) / 1e6

        a, b = oa(s, KEY_A), oa(s, KEY_B)
        a.chat.completions.create(model="gpt-4o-mini", extra_headers=rid(),
                                  messages=[{"role": "user", "content": "plain and simple"}])
        account("team-a", "gpt-4o-mini")
        list(a.chat.completions.create(model="gpt-4o-mini", stream=True, extra_headers=rid(),
                                       stream_options={"include_usage": True},
                                       messages=[{"role": "user", "content": "a native stream of words"}]))
        account("team-a", "gpt-4o-mini")
        list(b.chat.completions.create(model="claude-sonnet-4-6", stream=True, extra_headers=rid(),
                                       messages=[{"role": "user", "content": "translated to anthropic"}]))
        account("team-b", "claude-sonnet-4-6")
        anthropic.Anthropic(base_url=s.url, api_key=KEY_B, max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=100, extra_headers=rid(),
            messages=[{"role": "user", "content": "native anthropic, not streamed"}])
        account("team-b", "claude-haiku-4-5")
        a.chat.completions.create(model="bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", extra_headers=rid(),
                                  messages=[{"role": "user", "content": "over bedrock"}])
        account("team-a", LABELS["anthropic.claude-sonnet-4-5-20250929-v1:0"])
        with b.responses.stream(model="openai/gpt-4.1-mini", input="the responses api, streamed",
                                extra_headers=rid()) as st:
            st.get_final_response()
        account("team-b", "gpt-4.1-mini")
        b.chat.completions.create(model="house-model", extra_headers=rid(),
                                  messages=[{"role": "user", "content": "priced by the config"}])
        account("team-b", "house-v1")
        s.mock.add_fault(Fault(status=503, message="down", times=2))
        with pytest.raises(openai.APIStatusError):
            a.chat.completions.create(model="gpt-4o-mini", extra_headers=rid(),
                                      messages=[{"role": "user", "content": "this one fails"}])
        account("team-a", "gpt-4o-mini", failed=True)

        lines = wait_for(lambda: (found := lines_by_id(access_log, "mix-")) and len(found) == n and found)
        admin = httpx.get(s.url + "/admin/usage", headers={"authorization": f"Bearer {ADMIN}"}).json()
        metrics = scrape(s)

    # the log, grouped the way /admin/usage groups
    logged: dict[tuple[str, str], dict[str, float]] = defaultdict(
        lambda: {"requests": 0, "errors": 0, "input": 0, "output": 0, "cached": 0, "cost": 0.0})
    for line in lines.values():
        e = logged[(line["key_id"], LABELS.get(line["upstream_model"], line["upstream_model"]))]
        e["requests"] += 1
        e["errors"] += line["status"] >= 400
        e["input"] += line.get("input_tokens", 0)
        e["output"] += line.get("output_tokens", 0)
        e["cached"] += line.get("cached_tokens", 0)
        e["cost"] += line.get("cost_usd", 0.0)
    assert set(logged) == set(expected)
    assert set(admin["keys"]) == {"team-a", "team-b"}
    for (key, model), want in expected.items():
        got_log = logged[(key, model)]
        got_admin = admin["keys"][key]["models"][model]
        got_metrics = {
            "requests": total(metrics, "trigate_key_requests_total", key_id=key, model=model),
            "errors": total(metrics, "trigate_key_errors_total", key_id=key, model=model),
            "input": total(metrics, "trigate_key_tokens_total", key_id=key, model=model, gen_ai_token_type="input"),
            "output": total(metrics, "trigate_key_tokens_total", key_id=key, model=model,
                            gen_ai_token_type="output"),
            "cached": total(metrics, "trigate_key_tokens_total", key_id=key, model=model,
                            gen_ai_token_type="cache_read"),
            "cost": total(metrics, "trigate_cost_usd_total", key_id=key, model=model)}
        admin_view = {"requests": got_admin["requests"], "errors": got_admin["errors"],
                      "input": got_admin["input_tokens"], "output": got_admin["output_tokens"],
                      "cached": got_admin["cached_tokens"], "cost": got_admin["cost_usd"]}
        for view in (got_log, admin_view, got_metrics):
            assert {k: v for k, v in view.items() if k != "cost"} == \
                {k: v for k, v in want.items() if k != "cost"}, (key, model, view)
            assert view["cost"] == pytest.approx(want["cost"], rel=1e-9, abs=1e-15), (key, model)
        assert want["input"] > 0 or want["errors"]  # the run really moved tokens
    # totals agree too, and the GenAI token histogram sums to the same tokens per served model
    assert admin["totals"]["requests"] == n == total(metrics, "trigate_key_requests_total")
    assert admin["totals"]["input_tokens"] == sum(e["input"] for e in expected.values())
    for model in {m for _, m in expected}:
        assert total(metrics, "gen_ai_client_token_usage_sum", gen_ai_response_model=model,
                     gen_ai_token_type="output") == sum(e["output"] for (_, m), e in expected.items() if m == model)
    # every logged request is counted: the run, plus the /admin/usage call made before the scrape
    assert total(metrics, "trigate_requests_total") == n + 1
    assert total(metrics, "trigate_requests_total", api="admin", status="200") == 1
    assert total(metrics, "trigate_requests_total", status="503") == 1
    assert total(metrics, "trigate_unpriced_requests_total") == 0
