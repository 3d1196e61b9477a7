"""Telemetry without servers: registries kept apart, one finish feeding metrics, the usage row and log alike,
request ids and redaction."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import LogCapture
from trigate.config import parse_config
from trigate.observability.names import limit_scope, semconv_provider
from trigate.observability.redact import REDACTED, redact, redact_body
from trigate.observability.request_id import RequestContext, current, effective_request_id, valid_request_id
from trigate.observability.telemetry import Telemetry
from trigate.policies.limits import Rule, rate_limited
from trigate.store.sql import Database
from trigate.store.usage import COLUMNS, UsageStore, UsageWriter
from trigate.telemetry import Exchange, log_exchange
from trigate.translate.ir import Usage


def samples(tel: Telemetry) -> dict[tuple[str, frozenset], float]:
    body, _ = tel.metrics.exposition(None)
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


def total(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and all((k, v2) in ls for k, v2 in labels.items()))


def telemetry(**observability) -> Telemetry:
    return Telemetry(parse_config({"auth": {"open": True}, "observability": observability}, env={}))


@pytest.fixture
def log() -> LogCapture:
    handler = LogCapture()
    logger = logging.getLogger("trigate.access")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def exchange(tel: Telemetry, **fields) -> Exchange:
    token = current.set(RequestContext(request_id="req-test", telemetry=tel))
    try:
        ex = Exchange(method="POST", path="/v1/chat/completions", api="chat", client_format="openai_chat")
    finally:
        current.reset(token)
    for k, v in fields.items():
        setattr(ex, k, v)
    return ex


def test_each_gateway_has_its_own_registry(log: LogCapture) -> None:
    a, b = telemetry(), telemetry()
    log_exchange(exchange(a, model="gpt-4o-mini", upstream_model="gpt-4o-mini", provider="openai", status=200,
                          key_id="k1", usage=Usage(input_tokens=7, output_tokens=3)))
    assert total(samples(a), "trigate_requests_total") == 1
    assert total(samples(b), "trigate_requests_total") == 0


def test_one_finish_feeds_metrics_usage_row_and_log_alike(log: LogCapture) -> None:
    tel = telemetry(prices={"my-model": {"input": 2.0, "output": 4.0, "cached_input": 0.5}})
    writer = UsageWriter(UsageStore(Database.open(":memory:")))
    tel.usage = writer
    u = Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400, reasoning_tokens=50)
    ex = exchange(tel, model="alias", upstream_model="my-model", provider="p", status=200, key_id="team", usage=u)
    log_exchange(ex)
    log_exchange(ex)  # finishing twice changes nothing
    assert len(log.lines) == 1
    line = json.loads(log.lines[0])
    cost = (600 * 2.0 + 400 * 0.5 + 200 * 4.0) / 1e6
    assert line["cost_usd"] == pytest.approx(cost) and line["request_id"] == "req-test"
    assert (line["input_tokens"], line["output_tokens"], line["cached_tokens"], line["reasoning_tokens"]) == \
        (1000, 200, 400, 50)
    found = samples(tel)
    assert total(found, "trigate_key_tokens_total", key_id="team", model="my-model", gen_ai_token_type="input") == 1000
    assert total(found, "trigate_key_tokens_total", key_id="team", gen_ai_token_type="cache_read") == 400
    assert total(found, "trigate_key_tokens_total", key_id="team", gen_ai_token_type="reasoning") == 50
    assert total(found, "trigate_cost_usd_total", key_id="team", model="my-model") == pytest.approx(cost)
    assert total(found, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 200
    assert writer.offered == 1
    row = dict(zip(COLUMNS, writer._receive.receive_nowait(), strict=True))
    assert (row["key_id"], row["model"], row["upstream_model"], row["model_label"]) == \
        ("team", "alias", "my-model", "my-model")
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"], row["reasoning_tokens"]) == \
        (1000, 200, 400, 50)
    assert row["cost_usd"] == pytest.approx(cost) and row["status"] == 200 and row["error"] is None


def test_failed_attempts_count_as_upstream_errors_and_retries(log: LogCapture) -> None:
    tel = telemetry()
    ex = exchange(tel, model="m", provider="a", status=502, error="upstream_unavailable")
    first = ex.begin_try("a", "openai", "m")
    ex.end_try(first, "server_error")
    second = ex.begin_try("a", "openai", "m")
    ex.end_try(second, "server_error")
    third = ex.begin_try("b", "anthropic", "m2")
    ex.end_try(third, "upstream_unavailable")
    log_exchange(ex)
    found = samples(tel)
    assert total(found, "trigate_upstream_errors_total", provider="a", error_type="server_error") == 2
    assert total(found, "trigate_upstream_errors_total", provider="b", gen_ai_provider_name="anthropic") == 1
    assert total(found, "trigate_upstream_retries_total", reason="retry", error_type="server_error") == 1
    assert total(found, "trigate_upstream_retries_total", reason="fallback", provider="a") == 1
    assert total(found, "gen_ai_client_operation_duration_seconds_count") == 3


def test_rate_limit_rejections_are_counted_by_scope(log: LogCapture) -> None:
    tel = telemetry()
    for scope in ("key:team-a", "model:gpt-4o", "key:team-b"):
        ex = exchange(tel, status=429)
        ex.fail(rate_limited(Rule(scope, rpm=1), "requests", 1, 3.0))
        log_exchange(ex)
    found = samples(tel)
    assert total(found, "trigate_rate_limit_rejections_total", scope="key") == 2
    assert total(found, "trigate_rate_limit_rejections_total", scope="model") == 1
    assert json.loads(log.lines[0])["limit_scope"] == "key"


def test_model_labels_are_bounded_by_the_config(log: LogCapture) -> None:
    tel = Telemetry(parse_config({"auth": {"open": True}, "providers": {"p": {"kind": "openai"}}, "models": [
        {"name": "alias", "provider": "p", "model": "house-v1"}, {"name": "p/*", "provider": "p"}]}, env={}))
    for i in range(6):
        log_exchange(exchange(tel, model=f"client-chosen-{i}", status=404, error="not_found"))
        log_exchange(exchange(tel, model=f"p/x-{i}", upstream_model=f"x-{i}", provider="p", status=200))
    log_exchange(exchange(tel, model="alias", upstream_model="house-v1", provider="p", status=200))
    log_exchange(exchange(tel, model="p/gpt-4o-mini", upstream_model="gpt-4o-mini", provider="p", status=200))
    pairs = {(dict(ls)["gen_ai_request_model"], dict(ls)["gen_ai_response_model"])
             for (n, ls) in samples(tel) if n == "trigate_requests_total"}
    # unrouted names share one value, wildcard-routed ones their route's pattern unless the price table
    # lists them; names the config fixes stay themselves
    assert pairs == {("_other", ""), ("p/*", "p/*"), ("alias", "house-v1"), ("p/*", "gpt-4o-mini")}


@pytest.mark.parametrize(("given", "kept"), [
    ("abc-123", True), ("req_" + "x" * 124, True), ("x" * 129, False), ("", False), ("tab\there", False),
    ("new\nline", False), (" padded", False), ("ünïcode", False), ("has space inside", True),
])
def test_request_id_validation(given: str, kept: bool) -> None:
    assert valid_request_id(given) is kept
    out = effective_request_id(given)
    assert (out == given) is kept
    if not kept:
        assert len(out) == 32 and int(out, 16) >= 0


def test_redaction_masks_secrets_and_cuts_blobs() -> None:
    blob = "A" * 5000
    body = {"model": "m", "api_key": "sk-live-secret", "max_tokens": 10, "input_tokens": 5,
            "headers": {"Authorization": "Bearer abcdefghijkl", "X-Api-Key": "k"},
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "my key is sk-abcdefghijklmnop0123 ok"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{blob}"}},
                {"type": "input_audio", "input_audio": {"data": blob, "format": "wav"}}]}]}
    out = redact(body)
    assert out["api_key"] == REDACTED and out["headers"]["Authorization"] == REDACTED
    assert out["headers"]["X-Api-Key"] == REDACTED
    assert out["max_tokens"] == 10 and out["input_tokens"] == 5  # token counts are not secrets
    parts = out["messages"][0]["content"]
    assert parts[0]["text"] == f"my key is {REDACTED} ok"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,AAAA") and "5000 chars" in \
        parts[1]["image_url"]["url"]
    assert len(parts[2]["input_audio"]["data"]) < 100
    assert "sk-live-secret" not in json.dumps(out) and blob not in json.dumps(out)
    assert redact_body(b"not json, Bearer abcdefghijklmnop", 1000) == f"not json, {REDACTED}"
    cut = redact_body(json.dumps({"text": "hello world " * 1000}).encode(), 500)
    assert isinstance(cut, str) and len(cut) < 600 and cut.endswith("chars omitted]")


def test_names() -> None:
    assert semconv_provider("bedrock", "bedrock-key") == "aws.bedrock"
    assert semconv_provider("vertex", "x") == "gcp.vertex_ai"
    assert semconv_provider("together", "t") == "together"
    assert semconv_provider(None, "gone") == "gone"
    assert limit_scope(rate_limited(Rule("global", rpm=1), "requests", 1, 1.0)) == "global"


def test_tracing_is_a_no_op_without_the_sdk(monkeypatch: pytest.MonkeyPatch, log: LogCapture) -> None:
    import sys

    from trigate.config import TracingConfig
    from trigate.observability.tracing import make_tracing

    assert make_tracing(TracingConfig(enabled=False)) is None
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if the otel extra were missing
    assert make_tracing(TracingConfig(enabled=True, otlp_endpoint="http://127.0.0.1:1")) is None
    tel = telemetry(tracing={"enabled": True})
    assert tel.tracing is None
    ex = exchange(tel, model="m", status=200)
    headers: dict[str, str] = {}
    ex.upstream_headers(headers)
    assert ex.span is None and headers == {"x-request-id": "req-test"}
    log_exchange(ex)
    assert json.loads(log.lines[-1])["request_id"] == "req-test"
