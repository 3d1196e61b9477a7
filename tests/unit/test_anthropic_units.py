"""Smaller behaviours of the Anthropic codec: input validation, errors, usage helpers, the shared reasoning
tables, stream decoder/encoder edge cases and the IR grammar under arbitrary upstream events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trigate.errors import GatewayError
from trigate.formats.anthropic import CODEC, usage_from_body, usage_from_event
from trigate.translate import ir
from trigate.translate.reasoning import (
    FALLBACK_MAX_TOKENS,
    budget_for_effort,
    default_max_tokens,
    effort_for_budget,
    fit_thinking,
)
from trigate.wire.sse import SSEDecoder, SSEEvent

MSG = [{"role": "user", "content": "hi"}]


def _body(**kw: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": MSG, **kw}


# --------------------------------------------------------------------------------------------
# Request validation: garbage becomes a 400 naming the field
# --------------------------------------------------------------------------------------------

BAD_REQUESTS = [
    ({"max_tokens": 1, "messages": MSG}, "model"),
    (_body(max_tokens="100"), "max_tokens"),
    (_body(max_tokens=True), "max_tokens"),
    (_body(messages={"role": "user"}), "messages"),
    (_body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
    (_body(messages=[{"role": "user"}]), "messages[0].content"),
    (_body(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (_body(messages=[{"role": "user", "content": [{"type": "video"}]}]), "messages[0].content[0].type"),
    (_body(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content[0].text"),
    (_body(messages=[{"role": "user", "content": ["text"]}]), "messages[0].content[0]"),
    (
        _body(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "svg"}}]}]),
        "messages[0].content[0].source.type",
    ),
    (
        _body(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}]),
        "messages[0].content[0].source.media_type",
    ),
    (
        _body(messages=[{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]),
        "messages[0].content[0].type",
    ),
    (
        _body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": []}]}]),
        "messages[0].content[0].input",
    ),
    (
        _body(messages=[{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "a"}]}]),
        "messages[0].content[0].type",
    ),
    (
        _body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "is_error": "yes"}]}]),
        "messages[0].content[0].is_error",
    ),
    (
        _body(
            messages=[
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": [{"type": "x"}]}]}
            ]
        ),
        "messages[0].content[0].content[0].type",
    ),
    (_body(system=[{"type": "image"}]), "system[0]"),
    (_body(system=5), "system"),
    (_body(stop_sequences="END"), "stop_sequences"),
    (_body(temperature="hot"), "temperature"),
    (_body(top_k=1.5), "top_k"),
    (_body(stream="yes"), "stream"),
    (_body(tools=[{"name": "f"}]), "tools[0].input_schema"),
    (_body(tools=[{"input_schema": {}}]), "tools[0].name"),
    (_body(tools={}), "tools"),
    (_body(tool_choice={"type": "sometimes"}), "tool_choice.type"),
    (_body(tool_choice={"type": "tool"}), "tool_choice.name"),
    (_body(tool_choice={"type": "auto", "disable_parallel_tool_use": "no"}), "tool_choice.disable_parallel_tool_use"),
    (_body(thinking={"type": "on"}), "thinking.type"),
    (_body(thinking={"type": "enabled"}), "thinking.budget_tokens"),
    (_body(thinking={"type": "enabled", "budget_tokens": -1}), "thinking.budget_tokens"),
    (_body(output_config={"format": {"type": "regex"}}), "output_config.format.type"),
    (_body(output_config={"format": {"type": "json_schema"}}), "output_config.format.schema"),
    (_body(output_config={"effort": 3}), "output_config.effort"),
    (_body(metadata={"user_id": 5}), "metadata.user_id"),
    (_body(metadata="u"), "metadata"),
    (_body(service_tier=1), "service_tier"),
]


@pytest.mark.parametrize(("body", "param"), BAD_REQUESTS)
def test_bad_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as e:
        CODEC.decode_request(body)
    assert e.value.kind == "invalid_request" and e.value.status == 400
    assert e.value.param == param


def test_non_object_body() -> None:
    with pytest.raises(GatewayError) as e:
        CODEC.decode_request([])  # type: ignore[arg-type]
    assert e.value.status == 400


def test_system_turn_inside_messages_is_hoisted() -> None:
    body = _body(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "system", "content": [{"type": "text", "text": "late rule"}]},
            {"role": "user", "content": "b"},
        ],
        system="early rule",
    )
    req = CODEC.decode_request(body)
    assert [m.role for m in req.messages] == ["system", "user", "system", "user"]
    out = CODEC.encode_request(req, "claude-sonnet-4-5")
    assert out["system"] == "early rule\n\nlate rule"
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_forced_tool_wins_over_foreign_effort() -> None:
    req = ir.Request(
        model="x",
        messages=[ir.Message("user", [ir.Text("q")])],
        tools=[ir.Tool("f")],
        tool_choice=ir.ToolChoice("required"),
        reasoning=ir.ReasoningConfig(effort="high"),
    )
    body = CODEC.encode_request(req, "claude-sonnet-4-5")
    assert "thinking" not in body and body["tool_choice"] == {"type": "any"}


def test_parallel_false_without_choice_becomes_auto_with_flag() -> None:
    req = ir.Request(
        model="x", messages=[ir.Message("user", [ir.Text("q")])], tools=[ir.Tool("f")], parallel_tool_calls=False
    )
    assert CODEC.encode_request(req, "m")["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


# --------------------------------------------------------------------------------------------
# Responses from foreign IR
# --------------------------------------------------------------------------------------------


def test_encode_response_from_foreign_ir() -> None:
    resp = ir.Response(
        id="chatcmpl-123",
        model="gpt-4o",
        content=[
            ir.Reasoning(text="because", signature=None),
            ir.Reasoning(encrypted_content="gAAAA", id="rs_1"),
            ir.Refusal("No."),
            ir.Text("ok", citations=[{"type": "url_citation", "url": "https://x"}]),
            ir.ToolCall("call_1", "f", '{"a": 1'),
            ir.ToolCall("call_2", "g", ""),
            ir.Image(url="https://x/y.png"),
        ],
        stop_reason="content_filter",
        usage=ir.Usage(input_tokens=100, output_tokens=20, cache_read_tokens=60, reasoning_tokens=5),
    )
    body = CODEC.encode_response(resp, ir.Request(model="gpt-4o"))
    assert body["id"] == "msg_chatcmpl-123"
    assert body["content"] == [
        {"type": "thinking", "thinking": "because", "signature": ""},
        {"type": "text", "text": "No."},
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"_raw": '{"a": 1'}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
    ]
    assert body["stop_reason"] == "refusal"
    assert body["usage"] == {
        "input_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 60,
        "output_tokens": 20,
        "output_tokens_details": {"thinking_tokens": 5},
    }


@pytest.mark.parametrize(
    ("ir_reason", "wire"),
    [("context_window_exceeded", "model_context_window_exceeded"), ("pause_turn", "pause_turn"), (None, None)],
)
def test_stop_reason_mapping(ir_reason: Any, wire: Any) -> None:
    body = CODEC.encode_response(ir.Response(id="msg_1", model="m", stop_reason=ir_reason), ir.Request(model="m"))
    assert body["stop_reason"] == wire
    assert CODEC.decode_response(body).stop_reason == ir_reason


def test_unknown_upstream_stop_reason_means_end_turn() -> None:
    body = {"id": "msg_1", "model": "m", "content": [], "stop_reason": "brand_new_reason", "usage": {}}
    assert CODEC.decode_response(body).stop_reason == "end_turn"


def test_malformed_response_is_an_upstream_error() -> None:
    with pytest.raises(GatewayError) as e:
        CODEC.decode_response({"id": "x", "content": "text"})
    assert e.value.kind == "upstream_unavailable"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "etype"),
    [
        ("invalid_request", 400, "invalid_request_error"),
        ("authentication", 401, "authentication_error"),
        ("billing", 402, "billing_error"),
        ("permission", 403, "permission_error"),
        ("not_found", 404, "not_found_error"),
        ("request_too_large", 413, "request_too_large"),
        ("rate_limit", 429, "rate_limit_error"),
        ("server_error", 500, "api_error"),
        ("upstream_unavailable", 502, "api_error"),
        ("overloaded", 529, "overloaded_error"),
        ("timeout", 504, "timeout_error"),
    ],
)
def test_render_error(kind: Any, status: int, etype: str) -> None:
    got_status, body = CODEC.render_error(GatewayError(kind, "boom"))
    assert got_status == status
    assert body == {"type": "error", "error": {"type": etype, "message": "boom"}}


def test_render_stream_error_is_a_named_sse_event() -> None:
    raw = CODEC.render_stream_error(GatewayError("rate_limit", "slow down"))
    (ev,) = SSEDecoder().feed(raw)
    assert ev.event == "error"
    assert orjson.loads(ev.data) == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


def test_parse_error_bodies() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}'
    err = CODEC.parse_error(529, body)
    assert (err.kind, err.status, err.message, err.from_gateway) == ("overloaded", 529, "Overloaded", False)
    err = CODEC.parse_error(400, b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}')
    assert (err.kind, err.status, err.message) == ("invalid_request", 400, "bad")
    err = CODEC.parse_error(503, b"<html>Service Unavailable</html>")
    assert (err.kind, err.status) == ("overloaded", 503) and "Service Unavailable" in err.message
    err = CODEC.parse_error(500, b"")
    assert (err.kind, err.status) == ("server_error", 500)
    err = CODEC.parse_error(418, b'{"error": {"type": "teapot_error"}}')
    assert err.kind == "invalid_request" and err.message == "teapot_error"
    err = CODEC.parse_error(429, b'{"error": "nope"}')
    assert err.kind == "rate_limit"


# --------------------------------------------------------------------------------------------
# Usage helpers for natively forwarded traffic
# --------------------------------------------------------------------------------------------


def test_usage_from_event_accumulates() -> None:
    acc = ir.Usage()
    start = {
        "type": "message_start",
        "message": {
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": 5,
                "cache_read_input_tokens": 100,
                "output_tokens": 1,
            }
        },
    }
    usage_from_event("message_start", start, acc)
    assert acc == ir.Usage(input_tokens=115, output_tokens=1, cache_read_tokens=100, cache_write_tokens=5)
    usage_from_event("content_block_delta", {"type": "content_block_delta"}, acc)
    usage_from_event("message_delta", {"type": "message_delta", "usage": {"output_tokens": 42}}, acc)
    assert acc == ir.Usage(input_tokens=115, output_tokens=42, cache_read_tokens=100, cache_write_tokens=5)
    # Newer API versions repeat the input side in message_delta; cumulative values replace.
    usage_from_event(None, {"type": "message_delta", "usage": {"output_tokens": 50, "input_tokens": 12}}, acc)  # type: ignore[arg-type]
    assert acc == ir.Usage(input_tokens=117, output_tokens=50, cache_read_tokens=100, cache_write_tokens=5)


def test_usage_from_body() -> None:
    assert usage_from_body({"usage": {"input_tokens": 3, "output_tokens": 4}}) == ir.Usage(3, 4)
    assert usage_from_body({"content": []}) is None
    assert usage_from_body("nope") is None


# --------------------------------------------------------------------------------------------
# Shared reasoning tables
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        ("claude-3-haiku-20240307", 4096),
        ("claude-3-5-sonnet-20241022", 8192),
        ("claude-3-7-sonnet-latest", 64000),
        ("claude-sonnet-4-20250514", 64000),
        ("claude-sonnet-4-5", 64000),
        ("claude-opus-4-20250514", 32000),
        ("claude-opus-4-1", 32000),
        ("claude-opus-4-5-20251101", 64000),
        ("claude-haiku-4-5", 64000),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", 64000),
        ("us.anthropic.claude-opus-4-1-20250805-v1:0", 32000),
        ("claude-opus-4-1@20250805", 32000),
        ("deepseek-chat", FALLBACK_MAX_TOKENS),
    ],
)
def test_default_max_tokens(model: str, limit: int) -> None:
    assert default_max_tokens(model) == limit


def test_effort_budget_mapping_is_monotonic_and_invertible() -> None:
    efforts = ["minimal", "low", "medium", "high", "xhigh"]
    budgets = [budget_for_effort(e) for e in efforts]
    assert budgets == sorted(budgets) and len(set(budgets)) == len(budgets)
    assert [effort_for_budget(b) for b in budgets] == efforts
    assert effort_for_budget(3000) == "medium" and effort_for_budget(10**6) == "xhigh"
    assert budget_for_effort(None) == budget_for_effort("medium") == budget_for_effort("unheard-of")


def test_fit_thinking() -> None:
    assert fit_thinking(8192, 64000) == (8192, 64000)
    assert fit_thinking(500, 64000) == (1024, 64000)
    assert fit_thinking(16384, 1000) == (16384, 17384)
    assert fit_thinking(2048, 2048) == (2048, 4096)


# --------------------------------------------------------------------------------------------
# Stream decoder edge cases
# --------------------------------------------------------------------------------------------


def _feed(*events: dict[str, Any] | str) -> list[ir.StreamEvent]:
    dec = CODEC.stream_decoder(ir.Request(model="m"))
    out: list[ir.StreamEvent] = []
    for e in events:
        data = e if isinstance(e, str) else orjson.dumps(e).decode()
        name = None if isinstance(e, str) else e.get("type")
        out.extend(dec.feed(SSEEvent(data, name)))
    out.extend(dec.close())
    return out


START = {
    "type": "message_start",
    "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 1, "output_tokens": 1}},
}
STOP = {"type": "message_stop"}


def _block(i: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": i, "content_block": block}


def _delta(i: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": i, "delta": delta}


def test_tool_input_sent_whole_in_start() -> None:
    events = _feed(
        START,
        _block(0, {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}),
        {"type": "content_block_stop", "index": 0},
        STOP,
    )
    assert [e.fragment for e in events if isinstance(e, ir.ToolArgsDelta)] == ['{"a":1}']


def test_tool_input_in_start_and_deltas_is_not_doubled() -> None:
    events = _feed(
        START,
        _block(0, {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}),
        _delta(0, {"type": "input_json_delta", "partial_json": '{"a": 1}'}),
        {"type": "content_block_stop", "index": 0},
        STOP,
    )
    assert [e.fragment for e in events if isinstance(e, ir.ToolArgsDelta)] == ['{"a": 1}']


def test_interleaved_blocks_are_closed_in_order() -> None:
    events = _feed(
        START,
        _block(0, {"type": "text", "text": ""}),
        _block(1, {"type": "text", "text": ""}),
        _delta(0, {"type": "text_delta", "text": "late"}),
        _delta(1, {"type": "text_delta", "text": "b"}),
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_stop", "index": 0},
        STOP,
    )
    kinds = [type(e).__name__ + str(getattr(e, "index", "")) for e in events]
    assert kinds == [
        "MessageStart",
        "BlockStart0",
        "BlockStop0",
        "BlockStart1",
        "TextDelta1",
        "BlockStop1",
        "MessageEnd",
    ]


def test_mismatched_delta_kind_is_dropped() -> None:
    events = _feed(
        START, _block(0, {"type": "text", "text": ""}), _delta(0, {"type": "thinking_delta", "thinking": "x"}), STOP
    )
    assert not any(isinstance(e, ir.ReasoningDelta) for e in events)
    assert isinstance(events[-1], ir.MessageEnd)


def test_open_block_closed_at_message_stop_and_missing_start_tolerated() -> None:
    events = _feed(_block(0, {"type": "text", "text": "pre"}), STOP)
    assert [type(e).__name__ for e in events] == ["MessageStart", "BlockStart", "TextDelta", "BlockStop", "MessageEnd"]


def test_garbage_event_is_a_stream_error_and_the_rest_is_ignored() -> None:
    events = _feed(START, "not json", _block(0, {"type": "text", "text": ""}), STOP)
    assert [type(e).__name__ for e in events] == ["MessageStart", "StreamError"]
    assert events[1].error.kind == "upstream_unavailable"
    events = _feed(START, {"type": "content_block_start", "index": 0}, STOP)
    assert isinstance(events[-1], ir.StreamError)


def test_error_event_kinds() -> None:
    events = _feed(START, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}})
    assert (events[-1].error.kind, events[-1].error.status) == ("rate_limit", 429)
    events = _feed({"type": "error", "error": {"type": "api_error", "message": "Internal"}})
    assert (events[-1].error.kind, events[-1].error.status) == ("server_error", 500)
    assert len(events) == 1


# --------------------------------------------------------------------------------------------
# Stream encoder with IR other decoders produce
# --------------------------------------------------------------------------------------------


def _encode(*events: ir.StreamEvent) -> list[tuple[str | None, dict[str, Any]]]:
    enc = CODEC.stream_encoder(ir.Request(model="m"))
    raw = b"".join(enc.encode(e) for e in events)
    return [(ev.event, orjson.loads(ev.data)) for ev in SSEDecoder().feed(raw)]


def test_encoder_tolerates_chat_style_ir() -> None:
    out = _encode(
        ir.MessageStart(id="chatcmpl-1", model="gpt-4o"),
        ir.BlockStart(0, "text"),
        ir.TextDelta(0, ""),
        ir.TextDelta(0, "hi"),
        # a tool call opening while text is open: the text block is closed first
        ir.BlockStart(1, "tool_call", tool_id="call_1", tool_name="f"),
        ir.ToolArgsDelta(1, '{"a":1}'),
        ir.TextDelta(7, "delta for a block never opened"),
        ir.BlockStart(2, "refusal"),
        ir.RefusalDelta(2, "no"),
        ir.MessageEnd("tool_use", usage=None),
        ir.TextDelta(0, "after the end"),
    )
    names = [n for n, _ in out]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert out[0][1]["message"]["id"] == "msg_chatcmpl-1"
    assert out[0][1]["message"]["usage"] == {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
    }
    assert out[7][1]["content_block"] == {"type": "text", "text": ""}
    assert out[10][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 0},
    }


def test_encoder_error_before_anything() -> None:
    out = _encode(ir.StreamError(GatewayError("timeout", "too slow")), ir.MessageStart(id="m", model="x"))
    assert out == [("error", {"type": "error", "error": {"type": "timeout_error", "message": "too slow"}})]


def test_encoder_block_before_message_start() -> None:
    out = _encode(ir.BlockStart(0, "text"), ir.TextDelta(0, "x"), ir.MessageEnd(None))
    assert out[0][0] == "message_start"
    assert out[-2][1]["delta"]["stop_reason"] == "end_turn"


# --------------------------------------------------------------------------------------------
# Whatever the upstream sends, the decoder's output follows the IR grammar
# --------------------------------------------------------------------------------------------


def check_grammar(events: list[ir.StreamEvent]) -> None:
    assert events, "a stream always ends with a terminal event"
    *body, last = events
    assert isinstance(last, (ir.MessageEnd, ir.StreamError))
    if isinstance(last, ir.MessageEnd):
        assert body and isinstance(body[0], ir.MessageStart)
    allowed = {
        "text": ir.TextDelta,
        "reasoning": (ir.ReasoningDelta, ir.SignatureDelta),
        "tool_call": ir.ToolArgsDelta,
        "redacted_reasoning": (),
    }
    open_block: ir.BlockStart | None = None
    next_index = 0
    for i, e in enumerate(body):
        assert not isinstance(e, (ir.MessageEnd, ir.StreamError))
        if isinstance(e, ir.MessageStart):
            assert i == 0
        elif isinstance(e, ir.BlockStart):
            assert open_block is None and e.index == next_index
            open_block, next_index = e, next_index + 1
        elif isinstance(e, ir.BlockStop):
            assert open_block is not None and e.index == open_block.index
            open_block = None
        else:
            assert open_block is not None and e.index == open_block.index
            assert isinstance(e, allowed[open_block.kind])
    if isinstance(last, ir.MessageEnd):
        assert open_block is None


upstream_events = st.one_of(
    st.just(START),
    st.just(STOP),
    st.just({"type": "ping"}),
    st.builds(
        _block,
        st.integers(0, 3),
        st.sampled_from(
            [
                {"type": "text", "text": ""},
                {"type": "thinking", "thinking": "", "signature": ""},
                {"type": "redacted_thinking", "data": "x"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
            ]
        ),
    ),
    st.builds(
        _delta,
        st.integers(0, 3),
        st.sampled_from(
            [
                {"type": "text_delta", "text": "a"},
                {"type": "thinking_delta", "thinking": "b"},
                {"type": "signature_delta", "signature": "c"},
                {"type": "input_json_delta", "partial_json": "{}"},
                {"type": "citations_delta", "citation": {}},
            ]
        ),
    ),
    st.builds(lambda i: {"type": "content_block_stop", "index": i}, st.integers(0, 3)),
    st.builds(
        lambda r: {"type": "message_delta", "delta": {"stop_reason": r}, "usage": {"output_tokens": 3}},
        st.sampled_from(["end_turn", "tool_use", "max_tokens"]),
    ),
    st.just({"type": "error", "error": {"type": "overloaded_error", "message": "o"}}),
    st.just({"type": "content_block_delta", "index": 0}),
    st.just("garbage"),
)


@settings(max_examples=500)
@given(st.lists(upstream_events, max_size=25))
def test_decoder_output_always_follows_the_grammar(events: list[Any]) -> None:
    check_grammar(_feed(*events))
