"""Responses API streams: golden files (fed at awkward byte boundaries), decoder and encoder behaviour,
acceptance by the official openai SDK's own stream machinery, and a property over random IR streams."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from trigate.errors import GatewayError
from trigate.formats import openai_responses as R
from trigate.formats.openai_responses_stream import ResponsesStreamDecoder, ResponsesStreamEncoder
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder, SSEEvent

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_responses" / "streams"
CASES = sorted(p.name[: -len(".in.sse")] for p in FIXTURES.glob("*.in.sse"))
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def pieces(raw: bytes, how: str) -> Iterator[bytes]:
    if how == "whole":
        yield raw
    elif how == "bytes":
        for i in range(len(raw)):
            yield raw[i : i + 1]
    elif how == "sevens":
        for i in range(0, len(raw), 7):
            yield raw[i : i + 7]
    elif how == "random":
        rng = random.Random(len(raw))
        i = 0
        while i < len(raw):
            n = rng.randint(1, 64)
            yield raw[i : i + n]
            i += n
    elif how == "crlf":
        # same stream with \r\n line ends, split right between \r and \n
        data = raw.replace(b"\n", b"\r\n")
        cut = [i + 1 for i in range(len(data)) if data[i : i + 1] == b"\r"]
        start = 0
        for c in cut:
            yield data[start:c]
            start = c
        yield data[start:]
    else:
        raise AssertionError(how)


def decode_stream(chunks: Iterator[bytes], req: ir.Request) -> list[ir.StreamEvent]:
    sse = SSEDecoder()
    dec = ResponsesStreamDecoder(req)
    out: list[ir.StreamEvent] = []
    for chunk in chunks:
        for ev in sse.feed(chunk):
            out += dec.feed(ev)
    for ev in sse.close():
        out += dec.feed(ev)
    out += dec.close()
    return out


def norm(events: list[ir.StreamEvent]) -> list[Any]:
    """Comparable events (GatewayError compares by identity)."""
    return [
        ("StreamError", e.error.kind, e.error.message, e.error.status, e.error.code, e.error.param)
        if isinstance(e, ir.StreamError)
        else e
        for e in events
    ]


def check_grammar(events: list[ir.StreamEvent]) -> None:
    """The IR event grammar of ir.py: MessageStart, blocks numbered 0.. in order, one terminal event."""
    assert events, "no events"
    terminal = events[-1]
    assert isinstance(terminal, (ir.MessageEnd, ir.StreamError))
    body = events[:-1]
    if isinstance(terminal, ir.MessageEnd):
        assert isinstance(body[0], ir.MessageStart)
    if body:
        assert isinstance(body[0], ir.MessageStart)
    assert not any(isinstance(e, (ir.MessageStart, ir.MessageEnd, ir.StreamError)) for e in body[1:])
    expected, open_index = 0, None
    for e in body[1:]:
        if isinstance(e, ir.BlockStart):
            assert open_index is None and e.index == expected
            open_index, expected = e.index, expected + 1
        elif isinstance(e, ir.BlockStop):
            assert e.index == open_index
            open_index = None
        else:
            assert e.index == open_index  # type: ignore[union-attr]
    if isinstance(terminal, ir.MessageEnd):
        assert open_index is None


def sse_events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    sse = SSEDecoder()
    evs = sse.feed(raw) + sse.close()
    return [(e.event, orjson.loads(e.data)) for e in evs]


def check_wire(raw: bytes) -> list[dict[str, Any]]:
    """Every frame is a named event whose data the SDK's event union accepts; sequence numbers count from 0."""
    events = sse_events(raw)
    for n, (name, data) in enumerate(events):
        assert name == data["type"]
        assert data["sequence_number"] == n
        EVENT_ADAPTER.validate_python(data)
    return [d for _, d in events]


def sdk_client(raw: bytes) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    transport = httpx2.MockTransport(handler)
    return openai.OpenAI(
        api_key="sk-test", base_url="http://gateway.test/v1", http_client=httpx2.Client(transport=transport)
    )


def sdk_accumulate(raw: bytes) -> tuple[list[str], Any]:
    """Run the bytes through the SDK's ResponseStreamManager: the event types it yields and its final
    Response (None when the stream did not complete)."""
    with sdk_client(raw).responses.stream(model="gpt-4.1", input="hi") as stream:
        types = [e.type for e in stream]
        try:
            final = stream.get_final_response()
        except RuntimeError:
            final = None
    return types, final


def sdk_output(final: Any) -> list[dict[str, Any]]:
    """The SDK's accumulated output items, without the fields the SDK itself adds (parsed_*)."""

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in ("parsed", "parsed_arguments")}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(final.model_dump(mode="json", exclude_unset=True)["output"])


def stream_req(case: str) -> ir.Request:
    return R.decode_request(json.loads((FIXTURES / f"{case}.request.json").read_text()))


# --------------------------------------------------------------------------------------------
# Golden streams
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["whole", "bytes", "sevens", "random", "crlf"])
@pytest.mark.parametrize("case", CASES)
def test_golden_stream(case: str, how: str) -> None:
    req = stream_req(case)
    raw = (FIXTURES / f"{case}.in.sse").read_bytes()
    events = decode_stream(pieces(raw, how), req)
    check_grammar(events)
    assert norm(events) == norm(decode_stream(pieces(raw, "whole"), req))
    enc = ResponsesStreamEncoder(req)
    enc.response_id = f"resp_gw_{case}"
    out = b"".join(enc.encode(e) for e in events)
    assert out == (FIXTURES / f"{case}.out.sse").read_bytes()


def test_golden_cases_present() -> None:
    assert {"text", "function_call", "reasoning", "failure", "truncated", "incomplete"} <= set(CASES)


def golden_ir(case: str) -> list[ir.StreamEvent]:
    return decode_stream(pieces((FIXTURES / f"{case}.in.sse").read_bytes(), "random"), stream_req(case))


def test_text_stream_ir() -> None:
    events = golden_ir("text")
    assert events[0] == ir.MessageStart(
        "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654", "gpt-4.1-2025-04-14", 1741290958
    )
    assert "".join(e.text for e in events if isinstance(e, ir.TextDelta)) == "Hi there! How can I help you today? 😊"
    end = events[-1]
    assert isinstance(end, ir.MessageEnd) and end.stop_reason == "end_turn"
    assert end.usage == ir.Usage(input_tokens=37, output_tokens=11, cache_read_tokens=16, reasoning_tokens=0)


def test_function_call_stream_ir() -> None:
    events = golden_ir("function_call")
    starts = [e for e in events if isinstance(e, ir.BlockStart)]
    assert [(s.kind, s.tool_id, s.tool_name) for s in starts] == [
        ("tool_call", "call_8Yl2mQ", "get_weather"),
        ("tool_call", "call_Xk3pR7", "get_weather"),
    ]
    args = ["".join(e.fragment for e in events if isinstance(e, ir.ToolArgsDelta) and e.index == i) for i in (0, 1)]
    assert args == ['{"city":"Paris"}', '{"city":"Bogotá"}']
    end = events[-1]
    assert isinstance(end, ir.MessageEnd) and end.stop_reason == "tool_use" and end.usage is not None
    assert end.usage.input_tokens == 291


def test_reasoning_stream_ir() -> None:
    events = golden_ir("reasoning")
    text = "".join(e.text for e in events if isinstance(e, ir.ReasoningDelta))
    assert text == "**Checking parity**\n\n17 is not divisible by 2.\n\n**Answer**\n\nSo 17 is odd."
    (sig,) = [e for e in events if isinstance(e, ir.SignatureDelta)]
    # the reasoning item's id and encrypted_content ride in the signature and come back as an OpenAI item
    follow = R.encode_request(
        ir.Request(
            model="o4-mini", messages=[ir.Message("assistant", [ir.Reasoning(text=text, signature=sig.signature)])]
        ),
        "o4-mini",
    )
    assert follow["input"] == [
        {
            "id": "rs_6876a3c6f1d08191b2a3c4d5e6f70819",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}],
            "encrypted_content": "gAAAAABodqPJENCRYPTED_REASONING_BLOB==",
        }
    ]
    end = events[-1]
    assert isinstance(end, ir.MessageEnd) and end.usage is not None and end.usage.reasoning_tokens == 192


def test_reasoning_survives_client_round_trip() -> None:
    """OpenAI upstream -> IR stream -> Responses client -> next turn -> OpenAI: the original item again."""
    req = stream_req("reasoning")
    enc = ResponsesStreamEncoder(req)
    for e in golden_ir("reasoning"):
        enc.encode(e)
    final = enc.final_response()
    assert final is not None
    nxt = R.decode_request(
        {"model": "o4-mini", "store": False, "input": [*R.output_items(final), {"role": "user", "content": "and 18?"}]}
    )
    item = R.encode_request(nxt, "o4-mini")["input"][0]
    assert item["id"] == "rs_6876a3c6f1d08191b2a3c4d5e6f70819"
    assert item["encrypted_content"] == "gAAAAABodqPJENCRYPTED_REASONING_BLOB=="


def test_failure_and_truncation_ir() -> None:
    failure = golden_ir("failure")
    err = failure[-1]
    assert isinstance(err, ir.StreamError) and err.error.kind == "server_error" and err.error.code == "server_error"
    trunc = golden_ir("truncated")
    err = trunc[-1]
    assert isinstance(err, ir.StreamError) and err.error.kind == "upstream_unavailable" and err.error.status == 502
    assert "".join(e.text for e in trunc if isinstance(e, ir.TextDelta)) == "The quick brown fox"
    inc = golden_ir("incomplete")[-1]
    assert isinstance(inc, ir.MessageEnd) and inc.stop_reason == "max_tokens"


@pytest.mark.parametrize("case", CASES)
def test_golden_output_accepted_by_sdk(case: str) -> None:
    raw = (FIXTURES / f"{case}.out.sse").read_bytes()
    datas = check_wire(raw)
    types, final = sdk_accumulate(raw)
    assert types == [d["type"] for d in datas]
    if case in ("failure", "truncated"):
        assert final is None
        assert types[-2:] == ["error", "response.failed"]
        assert datas[-1]["response"]["status"] == "failed" and datas[-1]["response"]["error"]["code"]
        return
    last = datas[-1]["response"]
    SDKResponse.model_validate(last)
    if case == "incomplete":
        # the SDK's helper only hands out completed responses, as with OpenAI itself
        assert final is None and types[-1] == "response.incomplete" and last["status"] == "incomplete"
        return
    assert final is not None
    assert final.id == last["id"] == f"resp_gw_{case}"
    assert sdk_output(final) == last["output"]
    assert final.status == last["status"]


def test_sdk_output_text_and_calls() -> None:
    _, final = sdk_accumulate((FIXTURES / "text.out.sse").read_bytes())
    assert final.output_text == "Hi there! How can I help you today? 😊"
    assert final.usage.input_tokens_details.cached_tokens == 16
    _, final = sdk_accumulate((FIXTURES / "function_call.out.sse").read_bytes())
    calls = [(o.call_id, o.arguments) for o in final.output if o.type == "function_call"]
    assert calls == [("call_8Yl2mQ", '{"city":"Paris"}'), ("call_Xk3pR7", '{"city":"Bogotá"}')]


def test_raw_sdk_stream_iteration() -> None:
    raw = (FIXTURES / "reasoning.out.sse").read_bytes()
    events = list(sdk_client(raw).responses.create(model="o4-mini", input="x", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


# --------------------------------------------------------------------------------------------
# Decoder behaviour
# --------------------------------------------------------------------------------------------


def feed_all(datas: list[dict[str, Any]], close: bool = True) -> list[ir.StreamEvent]:
    dec = ResponsesStreamDecoder(ir.Request(model="fallback-model"))
    out: list[ir.StreamEvent] = []
    for d in datas:
        out += dec.feed(SSEEvent(orjson.dumps(d).decode(), d.get("type")))
    if close:
        out += dec.close()
    return out


def ev(t: str, oi: int = 0, **kw: Any) -> dict[str, Any]:
    return {"type": f"response.{t}", "output_index": oi, **kw}


def _resp(status: str, output: list[Any], **kw: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 5,
        "model": "m",
        "status": status,
        "output": output,
        **kw,
    }


def test_decoder_done_only_items() -> None:
    """An upstream that skips deltas: output_item.done alone carries the content."""
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "content": [
        {"type": "output_text", "text": "Hello", "annotations": []}, {"type": "refusal", "refusal": "no"}]}  # fmt: skip
    call = {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'}
    events = feed_all(
        [
            {"type": "response.created", "response": _resp("in_progress", [])},
            {"type": "response.output_item.done", "output_index": 0, "item": msg},
            {"type": "response.output_item.done", "output_index": 1, "item": call},
            {"type": "response.completed", "response": _resp("completed", [msg, call])},
        ]
    )
    check_grammar(events)
    assert events[1:] == [
        ir.BlockStart(0, "text"), ir.TextDelta(0, "Hello"), ir.BlockStop(0),
        ir.BlockStart(1, "refusal"), ir.RefusalDelta(1, "no"), ir.BlockStop(1),
        ir.BlockStart(2, "tool_call", tool_id="c1", tool_name="f"), ir.ToolArgsDelta(2, '{"a":1}'), ir.BlockStop(2),
        ir.MessageEnd("tool_use"),
    ]  # fmt: skip


def test_decoder_completed_only() -> None:
    """No item events at all: response.completed's output is emitted as blocks."""
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}
    events = feed_all(
        [
            {
                "type": "response.completed",
                "response": _resp("completed", [msg], usage={"input_tokens": 3, "output_tokens": 1}),
            }
        ]
    )
    check_grammar(events)
    assert events == [
        ir.MessageStart("resp_1", "m", 5),
        ir.BlockStart(0, "text"),
        ir.TextDelta(0, "Hi"),
        ir.BlockStop(0),
        ir.MessageEnd("end_turn", usage=ir.Usage(3, 1)),
    ]


def test_decoder_done_text_longer_than_deltas() -> None:
    events = feed_all(
        [
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"type": "message", "id": "m", "content": []},
            },
            {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "Hel"},
            {"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": "Hello"},
            {"type": "response.completed", "response": _resp("completed", [])},
        ]
    )
    check_grammar(events)
    # the upstream named no model: the decoder says so (the pipeline fills in the one it called)
    assert isinstance(events[0], ir.MessageStart) and events[0].model == ""
    assert [e.text for e in events if isinstance(e, ir.TextDelta)] == ["Hel", "lo"]


def test_decoder_ignores_unknown_and_late_events() -> None:
    events = feed_all(
        [
            {"type": "response.created", "response": _resp("in_progress", [])},
            {"type": "response.web_search_call.searching", "output_index": 0, "item_id": "ws_1"},
            {"type": "response.output_text.annotation.added", "output_index": 0},
            {"type": "response.audio.delta", "delta": "AAAA"},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"type": "web_search_call", "id": "ws_1"},
            },
            {"type": "response.completed", "response": _resp("completed", [{"type": "web_search_call", "id": "ws_1"}])},
            {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "late"},
        ]
    )
    assert events == [ir.MessageStart("resp_1", "m", 5), ir.MessageEnd("end_turn")]


def test_decoder_custom_tool_and_refusal_deltas() -> None:
    call = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "c9", "name": "sql", "input": ""}
    events = feed_all(
        [
            ev("output_item.added", item=call),
            ev("custom_tool_call_input.delta", item_id="ctc_1", delta="SELECT "),
            ev("custom_tool_call_input.delta", item_id="ctc_1", delta="1"),
            ev("custom_tool_call_input.done", item_id="ctc_1", input="SELECT 1"),
            ev("output_item.added", 1, item={"type": "message", "id": "m"}),
            ev("content_part.added", 1, content_index=0, part={"type": "refusal", "refusal": ""}),
            ev("refusal.delta", 1, content_index=0, delta="Sorry"),
            ev("refusal.done", 1, content_index=0, refusal="Sorry"),
            {"type": "response.completed", "response": _resp("completed", [])},
        ]
    )
    check_grammar(events)
    assert events[1] == ir.BlockStart(0, "tool_call", tool_id="c9", tool_name="sql")
    assert [e.fragment for e in events if isinstance(e, ir.ToolArgsDelta)] == ["SELECT ", "1"]
    assert ir.RefusalDelta(1, "Sorry") in events
    assert events[-1] == ir.MessageEnd("tool_use")


@pytest.mark.parametrize(
    ("event", "kind", "code"),
    [
        (
            {"type": "error", "code": "rate_limit_exceeded", "message": "slow", "param": None},
            "rate_limit",
            "rate_limit_exceeded",
        ),
        ({"type": "error", "error": {"code": "insufficient_quota", "message": "pay"}}, "billing", "insufficient_quota"),
        (
            {
                "type": "response.failed",
                "response": _resp("failed", [], error={"code": "server_error", "message": "x"}),
            },
            "server_error",
            "server_error",
        ),
    ],
)
def test_decoder_errors(event: dict[str, Any], kind: str, code: str) -> None:
    events = feed_all(
        [
            {"type": "response.created", "response": _resp("in_progress", [])},
            event,
            {"type": "response.completed", "response": _resp("completed", [])},
        ]
    )
    assert len(events) == 2
    err = events[-1]
    assert isinstance(err, ir.StreamError) and isinstance(err.error, GatewayError)
    assert (err.error.kind, err.error.code) == (kind, code)


def test_decoder_bad_json_and_eof() -> None:
    dec = ResponsesStreamDecoder(ir.Request(model="m"))
    (err,) = dec.feed(SSEEvent("{not json", "response.output_text.delta"))
    assert isinstance(err, ir.StreamError) and err.error.kind == "upstream_unavailable"
    assert dec.feed(SSEEvent("{}", "x")) == [] and dec.close() == []
    dec = ResponsesStreamDecoder(ir.Request(model="m"))
    (err,) = dec.close()
    assert isinstance(err, ir.StreamError) and err.error.status == 502


def test_decoder_multiple_summary_parts_without_part_events() -> None:
    done = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text", "text": "bc"}],
    }
    events = feed_all(
        [
            ev("output_item.added", item={"type": "reasoning", "id": "rs_1", "summary": []}),
            ev("reasoning_summary_text.delta", summary_index=0, delta="a"),
            ev("reasoning_summary_text.delta", summary_index=1, delta="b"),
            ev("output_item.done", item=done),
            {"type": "response.completed", "response": _resp("completed", [])},
        ]
    )
    check_grammar(events)
    assert [e.text for e in events if isinstance(e, ir.ReasoningDelta)] == ["a", "\n\n", "b", "c"]


# --------------------------------------------------------------------------------------------
# Encoder behaviour
# --------------------------------------------------------------------------------------------


def encode_all(events: list[ir.StreamEvent], req: ir.Request | None = None) -> tuple[ResponsesStreamEncoder, bytes]:
    enc = ResponsesStreamEncoder(req or ir.Request(model="gpt-4.1"))
    enc.response_id = "resp_enc"
    return enc, b"".join(enc.encode(e) for e in events)


def test_encoder_error_before_start() -> None:
    enc, raw = encode_all([ir.StreamError(GatewayError("overloaded", "upstream busy"))])
    datas = check_wire(raw)
    assert [d["type"] for d in datas] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert datas[2]["code"] == "overloaded" and datas[2]["message"] == "upstream busy"
    failed = datas[3]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "server_error", "message": "upstream busy"}
    assert enc.final_response() == failed
    types, final = sdk_accumulate(raw)
    assert final is None and types[-1] == "response.failed"
    assert enc.encode(ir.MessageEnd("end_turn")) == b""


def test_encoder_error_mid_tool_call() -> None:
    _, raw = encode_all(
        [
            ir.MessageStart("x", "claude", 10),
            ir.BlockStart(0, "text"),
            ir.TextDelta(0, "Let me look"),
            ir.BlockStop(0),
            ir.BlockStart(1, "tool_call", tool_id="toolu_1", tool_name="f"),
            ir.ToolArgsDelta(1, '{"a":'),
            ir.StreamError(GatewayError("rate_limit", "slow", code="rate_limit_exceeded")),
        ]
    )
    datas = check_wire(raw)
    assert [d["type"] for d in datas][-2:] == ["error", "response.failed"]
    output = datas[-1]["response"]["output"]
    assert output[0]["type"] == "message" and output[0]["status"] == "completed"
    assert output[1]["type"] == "function_call" and output[1]["status"] == "incomplete"
    assert output[1]["arguments"] == '{"a":'
    assert datas[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
    sdk_accumulate(raw)


def test_encoder_message_end_without_usage_and_start() -> None:
    _, raw = encode_all([ir.BlockStart(0, "text"), ir.TextDelta(0, "x"), ir.BlockStop(0), ir.MessageEnd(None)])
    datas = check_wire(raw)
    assert datas[0]["type"] == "response.created" and datas[0]["response"]["status"] == "in_progress"
    assert datas[-1]["type"] == "response.completed" and datas[-1]["response"]["usage"] is None
    _, final = sdk_accumulate(raw)
    assert final.output_text == "x"


def test_encoder_tolerates_missing_block_events() -> None:
    # deltas without BlockStart, a block never stopped, an unknown block index
    _, raw = encode_all(
        [
            ir.MessageStart("x", "m"),
            ir.TextDelta(0, "a"),
            ir.ReasoningDelta(5, "opens a reasoning block"),
            ir.ToolArgsDelta(9, "dropped"),
            ir.BlockStop(42),
            ir.MessageEnd("end_turn", usage=ir.Usage(1, 2)),
        ]
    )
    datas = check_wire(raw)
    _, final = sdk_accumulate(raw)
    assert [o.type for o in final.output] == ["message", "reasoning"]
    assert final.output_text == "a"
    assert datas[-1]["response"]["usage"]["total_tokens"] == 3


def test_encoder_gathers_text_blocks_and_matches_encode_response() -> None:
    req = ir.Request(model="gpt-4.1")
    events: list[ir.StreamEvent] = [
        ir.MessageStart("x", "m", 7),
        ir.BlockStart(0, "text"), ir.TextDelta(0, "one"), ir.BlockStop(0),
        ir.BlockStart(1, "refusal"), ir.RefusalDelta(1, "no"), ir.BlockStop(1),
        ir.BlockStart(2, "text"), ir.BlockStop(2),
        ir.BlockStart(3, "tool_call", tool_id="", tool_name="f"), ir.BlockStop(3),
        ir.BlockStart(4, "text"), ir.TextDelta(4, "two"), ir.BlockStop(4),
        ir.MessageEnd("max_tokens", usage=ir.Usage(3, 4)),
    ]  # fmt: skip
    enc, raw = encode_all(events, req)
    datas = check_wire(raw)
    final = enc.final_response()
    assert final is not None and final["status"] == "incomplete"
    msg, call, msg2 = final["output"]
    assert [p["type"] for p in msg["content"]] == ["output_text", "refusal", "output_text"]
    assert msg["status"] == "completed" and msg2["status"] == "incomplete"
    assert call["call_id"].startswith("call_") and call["arguments"] == ""
    # the streamed items are exactly those encode_response would give for the same IR response
    resp = ir.Response(
        id="resp_enc", model="m", created=7, stop_reason="max_tokens", usage=ir.Usage(3, 4),
        content=[ir.Text("one"), ir.Refusal("no"), ir.Text(""), ir.ToolCall("", "f"), ir.Text("two")],
    )  # fmt: skip
    assert final == R.encode_response(resp, req)
    dones = [d["item"] for d in datas if d["type"] == "response.output_item.done"]
    assert dones == final["output"]
    assert datas[-1]["type"] == "response.incomplete"
    sdk_accumulate(raw)


def test_encoder_custom_tool_and_redacted_reasoning() -> None:
    req = R.decode_request({"model": "m", "input": "x", "tools": [{"type": "custom", "name": "sql"}]})
    enc, raw = encode_all(
        [
            ir.MessageStart("x", "m"),
            ir.BlockStart(0, "redacted_reasoning", data="REDACTED=="),
            ir.BlockStop(0),
            ir.BlockStart(1, "tool_call", tool_id="toolu_2", tool_name="sql"),
            ir.ToolArgsDelta(1, "SELECT 1"),
            ir.BlockStop(1),
            ir.MessageEnd("tool_use"),
        ],
        req,
    )
    datas = check_wire(raw)
    assert "response.custom_tool_call_input.delta" in [d["type"] for d in datas]
    final = enc.final_response()
    assert final is not None
    _, call = final["output"]
    assert call == {
        "type": "custom_tool_call",
        "call_id": "toolu_2",
        "name": "sql",
        "input": "SELECT 1",
        "id": call["id"],
    }
    assert call["id"].startswith("ctc_")
    turn = R.decode_request({"model": "m", "input": R.output_items(final)}).messages[0].content
    assert isinstance(turn[0], ir.Reasoning) and turn[0].redacted == "REDACTED=="
    assert isinstance(turn[1], ir.ToolCall) and turn[1].kind == "custom"
    sdk_accumulate(raw)


def test_encoder_response_id_and_final_response() -> None:
    enc = ResponsesStreamEncoder(ir.Request(model="m"))
    assert enc.response_id.startswith("resp_") and enc.final_response() is None
    enc.response_id = "resp_from_shell"
    raw = enc.encode(ir.MessageStart("msg_anthropic", "m"))
    assert b'"id":"resp_from_shell"' in raw and enc.final_response() is None
    raw += enc.encode(ir.MessageEnd("end_turn"))
    final = enc.final_response()
    assert final is not None and final["id"] == "resp_from_shell" and final["output"] == []
    assert enc.encode(ir.TextDelta(0, "late")) == b""


def test_encoder_echoes_request() -> None:
    req = R.decode_request(
        {"model": "m", "input": "x", "instructions": "sys", "temperature": 0.2, "max_output_tokens": 99,
         "text": {"format": {"type": "json_object"}}, "metadata": {"k": "v"}, "store": False}
    )  # fmt: skip
    _, raw = encode_all([ir.MessageStart("x", "m"), ir.MessageEnd("end_turn")], req)
    created = check_wire(raw)[0]["response"]
    assert created["instructions"] == "sys" and created["temperature"] == 0.2
    assert created["max_output_tokens"] == 99 and created["text"] == {"format": {"type": "json_object"}}
    assert created["metadata"] == {"k": "v"} and created["store"] is False


# --------------------------------------------------------------------------------------------
# Property: any IR stream encodes into something the SDK accepts, consistent with encode_response,
# and decodes back into the same content
# --------------------------------------------------------------------------------------------

_chunk = st.text(min_size=1, max_size=6)


@st.composite
def _ir_streams(draw: st.DrawFn) -> list[ir.StreamEvent]:
    events: list[ir.StreamEvent] = [ir.MessageStart("up_1", "model-x", 1_700_000_000)]
    n_blocks = draw(st.integers(0, 5))
    for i in range(n_blocks):
        kind = draw(st.sampled_from(["text", "refusal", "reasoning", "tool_call", "redacted_reasoning"]))
        if kind == "tool_call":
            events.append(
                ir.BlockStart(i, kind, tool_id=draw(st.sampled_from(["", f"call_{i}"])), tool_name=f"tool{i}")
            )
        elif kind == "redacted_reasoning":
            events.append(ir.BlockStart(i, kind, data="REDACTED"))
        else:
            events.append(ir.BlockStart(i, kind))
        if kind != "redacted_reasoning":
            for c in draw(st.lists(_chunk, max_size=4)):
                events.append(
                    {
                        "text": ir.TextDelta,
                        "refusal": ir.RefusalDelta,
                        "reasoning": ir.ReasoningDelta,
                        "tool_call": ir.ToolArgsDelta,
                    }[kind](i, c)
                )
        if kind == "reasoning" and draw(st.booleans()):
            events.append(ir.SignatureDelta(i, "sig"))
        events.append(ir.BlockStop(i))
    if draw(st.integers(0, 4)) == 0:
        cut = draw(st.integers(1, len(events)))
        return [*events[:cut], ir.StreamError(GatewayError("server_error", "boom"))]
    stop = draw(
        st.sampled_from(["end_turn", "tool_use", "max_tokens", "content_filter", "stop_sequence", "pause_turn", None])
    )
    usage = draw(st.none() | st.builds(ir.Usage, st.integers(0, 99), st.integers(0, 99)))
    return [*events, ir.MessageEnd(stop, usage=usage)]


def _ir_content(events: list[ir.StreamEvent]) -> list[ir.Part]:
    """The IR content a stream describes (what a non-streaming decoder would have produced)."""
    parts: dict[int, ir.Part] = {}
    for e in events:
        if isinstance(e, ir.BlockStart):
            if e.kind == "text":
                parts[e.index] = ir.Text("")
            elif e.kind == "refusal":
                parts[e.index] = ir.Refusal("")
            elif e.kind == "tool_call":
                parts[e.index] = ir.ToolCall(e.tool_id or "", e.tool_name or "")
            elif e.kind == "reasoning":
                parts[e.index] = ir.Reasoning()
            else:
                parts[e.index] = ir.Reasoning(redacted=e.data)
        elif isinstance(e, (ir.TextDelta, ir.RefusalDelta, ir.ReasoningDelta)):
            parts[e.index].text += e.text  # type: ignore[union-attr]
        elif isinstance(e, ir.ToolArgsDelta):
            parts[e.index].arguments += e.fragment  # type: ignore[union-attr]
        elif isinstance(e, ir.SignatureDelta):
            parts[e.index].signature = e.signature  # type: ignore[union-attr]
    return [parts[k] for k in sorted(parts)]


def _summary(events: list[ir.StreamEvent]) -> list[tuple[str, str]]:
    """Kind and text of every block; a redacted block is an empty reasoning one once it went through the wire."""
    out: dict[int, list[str]] = {}
    kinds: dict[int, str] = {}
    for e in events:
        if isinstance(e, ir.BlockStart):
            kinds[e.index] = "reasoning" if e.kind == "redacted_reasoning" else e.kind
            out[e.index] = []
        elif isinstance(e, (ir.TextDelta, ir.RefusalDelta, ir.ReasoningDelta)):
            out[e.index].append(e.text)
        elif isinstance(e, ir.ToolArgsDelta):
            out[e.index].append(e.fragment)
    return [(kinds[k], "".join(out[k])) for k in sorted(out)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ir_streams())
def test_any_ir_stream(events: list[ir.StreamEvent]) -> None:
    req = ir.Request(model="gpt-4.1")
    enc, raw = encode_all(events, req)
    datas = check_wire(raw)
    final = enc.final_response()
    assert final is not None and final["id"] == "resp_enc"
    assert all(d["response"]["id"] == "resp_enc" for d in datas if "response" in d)
    types, sdk_final = sdk_accumulate(raw)
    assert types == [d["type"] for d in datas]
    terminal = events[-1]
    if isinstance(terminal, ir.StreamError):
        assert types[-2:] == ["error", "response.failed"] and sdk_final is None
        assert final["status"] == "failed"
        return
    assert isinstance(terminal, ir.MessageEnd)
    resp = ir.Response(
        id="resp_enc",
        model="model-x",
        content=_ir_content(events),
        stop_reason=terminal.stop_reason,
        usage=terminal.usage,
        created=1_700_000_000,
    )
    assert final == R.encode_response(resp, req)
    if final["status"] == "completed":
        assert sdk_output(sdk_final) == final["output"]
    else:
        assert sdk_final is None and types[-1] == "response.incomplete"
    # and our own decoder reads it back: same blocks, same text
    back = decode_stream(iter([raw]), req)
    check_grammar(back)
    assert _summary(back) == _summary(events)
    end = back[-1]
    assert isinstance(end, ir.MessageEnd)
    assert end.stop_reason == R.stop_reason_for(final["status"], final["incomplete_details"], any(
        isinstance(p, ir.ToolCall) for p in resp.content))  # fmt: skip


# --------------------------------------------------------------------------------------------
# Throughput (a floor far below the target, so slow CI machines don't flake)
# --------------------------------------------------------------------------------------------


def test_throughput() -> None:
    n = 20_000
    head = (
        b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_p","model":"m",'
        b'"created_at":1,"status":"in_progress","output":[]},"sequence_number":0}\n\n'
        b'event: response.output_item.added\ndata: {"type":"response.output_item.added","output_index":0,'
        b'"item":{"type":"message","id":"msg_p","role":"assistant","content":[]},"sequence_number":1}\n\n'
        b'event: response.content_part.added\ndata: {"type":"response.content_part.added","item_id":"msg_p",'
        b'"output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]},"sequence_number":2}\n\n'
    )
    delta = (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_p",'
        b'"output_index":0,"content_index":0,"delta":"word ","logprobs":[],"sequence_number":3}\n\n'
    )
    raw = head + delta * n
    sse = SSEDecoder()
    dec = ResponsesStreamDecoder(ir.Request(model="m"))
    enc = ResponsesStreamEncoder(ir.Request(model="m"))
    t0 = time.perf_counter()
    out = 0
    for i in range(0, len(raw), 4096):
        for ev in sse.feed(raw[i : i + 4096]):
            for e in dec.feed(ev):
                out += len(enc.encode(e))
    rate = n / (time.perf_counter() - t0)
    assert out > 0
    assert rate > 10_000, f"{rate:.0f} chunks/s"
