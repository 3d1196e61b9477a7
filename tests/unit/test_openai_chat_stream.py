"""Chat stream decoder / encoder: edge cases, IR grammar, and the official SDK parsing our output."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionChunk

from trigate.errors import GatewayError
from trigate.formats.openai_chat import CODEC
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder, SSEEvent

from .test_openai_chat_golden import translate_stream

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_chat" / "streams"
HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def _req(**kw: Any) -> ir.Request:
    return ir.Request(model="m", messages=[ir.Message("user", [ir.Text("hi")])], stream=True, **kw)


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> SSEEvent:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return SSEEvent(orjson.dumps({**HEAD, "choices": choices, **extra}).decode())


def _decode(*events: SSEEvent, close: bool = True) -> list[ir.StreamEvent]:
    dec = CODEC.stream_decoder(_req())
    out: list[ir.StreamEvent] = []
    for e in events:
        out.extend(dec.feed(e))
    if close:
        out.extend(dec.close())
    return out


DONE = SSEEvent("[DONE]")


def check_grammar(events: list[ir.StreamEvent]) -> None:
    """MessageStart, contiguous blocks numbered 0.., exactly one MessageEnd; or a terminal StreamError."""
    if events and isinstance(events[-1], ir.StreamError):
        events = events[:-1]
        terminal_error = True
    else:
        terminal_error = False
    assert not any(isinstance(e, ir.StreamError) for e in events)
    if not events:
        assert terminal_error
        return
    assert isinstance(events[0], ir.MessageStart)
    open_idx, next_idx = None, 0
    for e in events[1:-1] if not terminal_error else events[1:]:
        if isinstance(e, ir.BlockStart):
            assert open_idx is None and e.index == next_idx
            open_idx, next_idx = e.index, next_idx + 1
        elif isinstance(e, ir.BlockStop):
            assert e.index == open_idx
            open_idx = None
        elif isinstance(e, ir.MessageEnd | ir.MessageStart):
            raise AssertionError(f"misplaced {e}")
        else:
            assert e.index == open_idx, e  # type: ignore[union-attr]
    if not terminal_error:
        assert isinstance(events[-1], ir.MessageEnd) and open_idx is None


# -- decoder ------------------------------------------------------------------------------------


def test_fixture_streams_follow_the_grammar() -> None:
    for path in sorted(FIXTURES.glob("*.in.sse")):
        events, _ = translate_stream(path.read_bytes(), _req(include_usage=True))
        check_grammar(events)


def test_parallel_tool_calls_ir() -> None:
    events, _ = translate_stream((FIXTURES / "parallel_tool_calls.in.sse").read_bytes(), _req())
    starts = [e for e in events if isinstance(e, ir.BlockStart)]
    assert [(s.index, s.tool_id, s.tool_name) for s in starts] == [
        (0, "call_a", "get_weather"),
        (1, "call_b", "get_time"),
    ]
    args: dict[int, str] = {}
    for e in events:
        if isinstance(e, ir.ToolArgsDelta):
            args[e.index] = args.get(e.index, "") + e.fragment
    assert args == {0: '{"city":"Paris"}', 1: '{"tz":"Europe/Paris"}'}
    end = events[-1]
    assert isinstance(end, ir.MessageEnd) and end.stop_reason == "tool_use"
    assert end.usage == ir.Usage(input_tokens=80, output_tokens=40, cache_read_tokens=64, reasoning_tokens=0)


def test_usage_chunk_after_finish_lands_in_message_end() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    events = _decode(
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "hi"}),
        _chunk({}, "stop"),
        _chunk(None, usage=usage),
        DONE,
    )
    assert [type(e).__name__ for e in events] == ["MessageStart", "BlockStart", "TextDelta", "BlockStop", "MessageEnd"]
    end = events[-1]
    assert isinstance(end, ir.MessageEnd) and end.stop_reason == "end_turn" and end.usage == ir.Usage(5, 2)


def test_message_end_waits_for_usage_but_not_forever() -> None:
    dec = CODEC.stream_decoder(_req())
    dec.feed(_chunk({"content": "x"}))
    assert not any(isinstance(e, ir.MessageEnd) for e in dec.feed(_chunk({}, "length")))
    end = dec.close()  # EOF after the finish chunk: complete, just no usage
    assert (
        len(end) == 1
        and isinstance(end[0], ir.MessageEnd)
        and end[0].stop_reason == "max_tokens"
        and end[0].usage is None
    )


def test_finish_in_chunk_with_content_and_whole_arguments() -> None:
    tc = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    events = _decode(_chunk({"content": "x", "tool_calls": [tc]}, "tool_calls"), DONE)
    check_grammar(events)
    assert ir.TextDelta(0, "x") in events and ir.ToolArgsDelta(1, '{"a":1}') in events
    assert isinstance(events[-1], ir.MessageEnd) and events[-1].stop_reason == "tool_use"


def test_repeated_ids_and_names_are_ignored() -> None:
    frag = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{"}}
    events = _decode(
        _chunk({"tool_calls": [frag]}),
        _chunk({"tool_calls": [{**frag, "function": {"name": "f", "arguments": "}"}}]}),
        _chunk({}, "tool_calls"),
        DONE,
    )
    assert sum(isinstance(e, ir.BlockStart) for e in events) == 1
    assert [e.fragment for e in events if isinstance(e, ir.ToolArgsDelta)] == ["{", "}"]


def test_missing_tool_id_is_synthesised_and_signature_kept() -> None:
    tc = {
        "index": 0,
        "function": {"name": "f", "arguments": "{}"},
        "extra_content": {"google": {"thought_signature": "TS"}},
    }
    events = _decode(_chunk({"tool_calls": [tc]}), _chunk({}, "tool_calls"), DONE)
    start = next(e for e in events if isinstance(e, ir.BlockStart))
    assert start.tool_id == "call_chatcmpl-1_0" and start.signature == "TS"


def test_empty_choice_chunks_obfuscation_and_other_choices() -> None:
    azure = SSEEvent('{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}')
    other = SSEEvent(
        orjson.dumps({**HEAD, "choices": [{"index": 1, "delta": {"content": "B"}, "finish_reason": None}]}).decode()
    )
    events = _decode(azure, _chunk({"content": "A"}, obfuscation="zz"), other, _chunk({}, "stop"), DONE)
    assert isinstance(events[0], ir.MessageStart) and events[0].id == "chatcmpl-1"  # not the Azure filter chunk's ""
    assert [e.text for e in events if isinstance(e, ir.TextDelta)] == ["A"]


def test_reasoning_signature_redacted_refusal_deltas() -> None:
    events = _decode(
        _chunk({"reasoning_content": "think"}),
        _chunk({"reasoning_signature": "SIG"}),
        _chunk({"reasoning_redacted": "RED"}),
        _chunk({"refusal": "no"}),
        _chunk({}, "content_filter"),
        DONE,
    )
    check_grammar(events)
    assert ir.ReasoningDelta(0, "think") in events and ir.SignatureDelta(0, "SIG") in events
    assert ir.BlockStart(1, "redacted_reasoning", data="RED") in events
    assert ir.BlockStart(2, "refusal") in events and ir.RefusalDelta(2, "no") in events
    assert isinstance(events[-1], ir.MessageEnd) and events[-1].stop_reason == "content_filter"


def test_custom_and_legacy_function_call_deltas() -> None:
    custom = {"index": 0, "id": "c9", "type": "custom", "custom": {"name": "sql", "input": "SELECT"}}
    events = _decode(
        _chunk({"tool_calls": [custom]}),
        _chunk({"tool_calls": [{"index": 0, "custom": {"input": " 1"}}]}),
        _chunk({}, "tool_calls"),
        DONE,
    )
    assert [e.fragment for e in events if isinstance(e, ir.ToolArgsDelta)] == ["SELECT", " 1"]
    events = _decode(
        _chunk({"function_call": {"name": "f", "arguments": ""}}),
        _chunk({"function_call": {"arguments": "{}"}}),
        _chunk({}, "function_call"),
        DONE,
    )
    assert ir.ToolArgsDelta(0, "{}") in events
    start = events[1]
    assert isinstance(start, ir.BlockStart) and start.tool_name == "f"
    assert isinstance(events[-1], ir.MessageEnd) and events[-1].stop_reason == "tool_use"


def test_in_stream_error() -> None:
    err = SSEEvent('{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}')
    events = _decode(_chunk({"content": "a"}), err, _chunk({"content": "ignored"}))
    assert isinstance(events[-1], ir.StreamError)
    e = events[-1].error
    assert (
        isinstance(e, GatewayError) and e.kind == "rate_limit" and e.code == "rate_limit_exceeded" and e.status == 429
    )
    assert e.message == "Rate limit reached" and not e.from_gateway
    assert not any(isinstance(x, ir.TextDelta) and x.text == "ignored" for x in events)


@pytest.mark.parametrize(
    "events",
    [
        [_chunk({"content": "a"})],  # EOF before finish
        [],  # nothing at all
        [DONE],  # [DONE] before any chunk
        [_chunk({"content": "a"}), SSEEvent("{not json")],
        [SSEEvent("[1,2]")],
    ],
)
def test_incomplete_or_broken_streams_end_in_one_stream_error(events: list[SSEEvent]) -> None:
    out = _decode(*events)
    errors = [e for e in out if isinstance(e, ir.StreamError)]
    assert len(errors) == 1 and out[-1] is errors[0]
    assert errors[0].error.kind == "upstream_unavailable"
    assert not any(isinstance(e, ir.MessageEnd) for e in out)


def test_done_without_finish_reason_is_tolerated() -> None:
    out = _decode(_chunk({"content": "a"}), DONE)
    assert isinstance(out[-1], ir.MessageEnd) and out[-1].stop_reason == "end_turn"


def test_nothing_after_the_end() -> None:
    dec = CODEC.stream_decoder(_req())
    dec.feed(_chunk({}, "stop"))
    assert isinstance(dec.feed(DONE)[-1], ir.MessageEnd)
    assert dec.feed(_chunk({"content": "late"})) == [] and dec.close() == []


# -- encoder ------------------------------------------------------------------------------------


def _anthropic_like_events() -> list[ir.StreamEvent]:
    return [
        ir.MessageStart(id="msg_1", model="claude-x", usage=ir.Usage(input_tokens=10)),
        ir.BlockStart(0, "reasoning"),
        ir.ReasoningDelta(0, "hmm"),
        ir.SignatureDelta(0, "SIG"),
        ir.BlockStop(0),
        ir.BlockStart(1, "redacted_reasoning", data="RED"),
        ir.BlockStop(1),
        ir.BlockStart(2, "text"),
        ir.TextDelta(2, "Hi"),
        ir.BlockStop(2),
        ir.BlockStart(3, "tool_call", tool_id="toolu_1", tool_name="f"),
        ir.ToolArgsDelta(3, '{"a":'),
        ir.ToolArgsDelta(3, "1}"),
        ir.BlockStop(3),
        ir.BlockStart(4, "tool_call", tool_id="toolu_2", tool_name="g"),
        ir.ToolArgsDelta(4, "{}"),
        ir.BlockStop(4),
        ir.MessageEnd("tool_use", usage=ir.Usage(input_tokens=10, output_tokens=7)),
    ]


def _frames(raw: bytes) -> list[Any]:
    return [e.data if e.data == "[DONE]" else orjson.loads(e.data) for e in SSEDecoder().feed(raw)]


def test_encoder_cross_format_events() -> None:
    enc = CODEC.stream_encoder(_req(include_usage=True))
    frames = _frames(b"".join(enc.encode(e) for e in _anthropic_like_events()))
    assert frames[-1] == "[DONE]"
    chunks = frames[:-1]
    assert {(c["id"], c["model"], c["created"]) for c in chunks} == {("msg_1", "claude-x", chunks[0]["created"])}
    assert chunks[0]["created"] > 1_600_000_000
    assert all("usage" in c for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert {"reasoning_content": "hmm"} in deltas and {"reasoning_signature": "SIG"} in deltas
    assert {"reasoning_redacted": "RED"} in deltas
    tool_deltas = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [t["index"] for t in tool_deltas] == [0, 0, 0, 1, 1]  # counts tool calls only, not IR blocks
    assert tool_deltas[0] == {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "tool_calls" and finish[0]["usage"] is None
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 17


def test_encoder_without_include_usage_strips_usage() -> None:
    enc = CODEC.stream_encoder(_req(include_usage=False))
    frames = _frames(b"".join(enc.encode(e) for e in _anthropic_like_events()))
    assert all("usage" not in c for c in frames[:-1]) and all(c["choices"] for c in frames[:-1])


def test_encoder_message_end_without_usage() -> None:
    enc = CODEC.stream_encoder(_req(include_usage=True))
    raw = b"".join(enc.encode(e) for e in [ir.MessageStart("x", "m", 5), ir.MessageEnd(None)])
    frames = _frames(raw)
    assert frames[1]["choices"][0]["finish_reason"] == "stop"
    assert frames[2]["usage"]["total_tokens"] == 0 and frames[3] == "[DONE]"


def test_encoder_stream_error_is_terminal() -> None:
    enc = CODEC.stream_encoder(_req())
    first = enc.encode(ir.StreamError(GatewayError("overloaded", "busy", status=529)))
    assert _frames(first) == [{"error": {"message": "busy", "type": "server_error", "param": None, "code": None}}]
    assert enc.encode(ir.TextDelta(0, "late")) == b"" and enc.encode(ir.MessageEnd("end_turn")) == b""


def test_encoder_events_before_message_start() -> None:
    enc = CODEC.stream_encoder(_req())
    frames = _frames(enc.encode(ir.TextDelta(0, "x")))
    assert frames[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert frames[1]["choices"][0]["delta"] == {"content": "x"} and frames[1]["model"] == "m"


def test_encoder_custom_tools_and_signatures() -> None:
    req = _req(tools=[ir.Tool("sql", kind="custom"), ir.Tool("f")])
    enc = CODEC.stream_encoder(req)
    events = [
        ir.MessageStart("x", "m", 5),
        ir.BlockStart(0, "tool_call", tool_id="c1", tool_name="f", signature="TS"),
        ir.ToolArgsDelta(0, "{}"),
        ir.BlockStop(0),
        ir.BlockStart(1, "tool_call", tool_id="c2", tool_name="sql"),
        ir.ToolArgsDelta(1, "SELECT 1"),
        ir.BlockStop(1),
        ir.MessageEnd("tool_use"),
    ]
    deltas = [f["choices"][0]["delta"] for f in _frames(b"".join(enc.encode(e) for e in events))[:-1]]
    assert deltas[1]["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "TS"}}
    assert deltas[3]["tool_calls"][0] == {
        "index": 1,
        "id": "c2",
        "type": "custom",
        "custom": {"name": "sql", "input": ""},
    }
    assert deltas[4]["tool_calls"][0] == {"index": 1, "custom": {"input": "SELECT 1"}}
    # and our own decoder reads custom deltas back
    enc2 = CODEC.stream_encoder(req)
    events2, _ = translate_stream(b"".join(enc2.encode(e) for e in events), req)
    assert ir.ToolArgsDelta(1, "SELECT 1") in events2


def test_encoder_legacy_function_call() -> None:
    req = CODEC.decode_request(
        {"model": "m", "messages": [{"role": "user", "content": "q"}], "functions": [{"name": "f"}], "stream": True}
    )
    enc = CODEC.stream_encoder(req)
    events = [
        ir.MessageStart("x", "m", 5),
        ir.BlockStart(0, "tool_call", tool_id="c1", tool_name="f"),
        ir.ToolArgsDelta(0, "{}"),
        ir.BlockStop(0),
        ir.BlockStart(1, "tool_call", tool_id="c2", tool_name="f"),
        ir.ToolArgsDelta(1, "{}"),
        ir.BlockStop(1),
        ir.MessageEnd("tool_use"),
    ]
    frames = _frames(b"".join(enc.encode(e) for e in events))
    deltas = [f["choices"][0]["delta"] for f in frames[:-1]]
    assert deltas[1:3] == [{"function_call": {"name": "f", "arguments": ""}}, {"function_call": {"arguments": "{}"}}]
    assert len(deltas) == 4 and frames[-2]["choices"][0]["finish_reason"] == "function_call"


# -- the official SDK parses what we emit ------------------------------------------------------


def _sdk_client(raw: bytes) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    return openai.OpenAI(
        api_key="test",
        base_url="http://gateway.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def _client_stream(case: str, req: ir.Request) -> bytes:
    return translate_stream((FIXTURES / f"{case}.in.sse").read_bytes(), req)[1]


def test_sdk_stream_iteration_and_accumulation() -> None:
    req = _req(include_usage=True, tools=[ir.Tool("get_weather"), ir.Tool("get_time")])
    raw = _client_stream("parallel_tool_calls", req)
    client = _sdk_client(raw)
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 80
    with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("call_a", "get_weather", '{"city":"Paris"}'),
        ("call_b", "get_time", '{"tz":"Europe/Paris"}'),
    ]
    assert (
        final.choices[0].finish_reason == "tool_calls" and final.usage is not None and final.usage.total_tokens == 120
    )


def test_sdk_accumulates_reasoning_fields() -> None:
    enc = CODEC.stream_encoder(_req())
    raw = b"".join(enc.encode(e) for e in _anthropic_like_events())
    with _sdk_client(raw).chat.completions.stream(model="m", messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_completion()
    msg = final.choices[0].message.to_dict()
    assert msg["content"] == "Hi" and msg["reasoning_content"] == "hmm"
    assert msg["reasoning_signature"] == "SIG" and msg["reasoning_redacted"] == "RED"
    calls = msg["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("toolu_1", "f", '{"a":1}'),
        ("toolu_2", "g", "{}"),
    ]


def test_sdk_text_stream() -> None:
    raw = _client_stream("text_only", _req())
    chunks = list(
        _sdk_client(raw).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello, wörld 🌍"
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("case", ["mid_stream_error", "truncated"])
def test_sdk_raises_on_in_stream_error(case: str) -> None:
    raw = _client_stream(case, _req())
    stream = _sdk_client(raw).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True
    )
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for c in stream:
            got.append(c.choices[0].delta.content or "")
    assert got and info.value.message


def test_throughput_is_not_pathological() -> None:
    """The target is > 50k chunks/s through decode + encode; this only guards against a gross regression."""
    req = _req(include_usage=True)
    n = 20_000
    frames = [_chunk({"content": f"tok{i} "}) for i in range(n)]
    dec, enc = CODEC.stream_decoder(req), CODEC.stream_encoder(req)
    t0 = time.perf_counter()
    for f in frames:
        for e in dec.feed(f):
            enc.encode(e)
    elapsed = time.perf_counter() - t0
    assert n / elapsed > 10_000


def test_encoder_function_call_without_arguments_gets_empty_object() -> None:
    """Anthropic streams ``input: {}`` as no fragments at all; Chat clients json-parse arguments."""
    req = _req(tools=[ir.Tool("sql", kind="custom")])
    enc = CODEC.stream_encoder(req)
    events = [
        ir.MessageStart("x", "m", 5),
        ir.BlockStart(0, "tool_call", tool_id="c1", tool_name="now"),
        ir.BlockStop(0),
        ir.BlockStart(1, "tool_call", tool_id="c2", tool_name="sql"),  # custom input may be empty
        ir.BlockStop(1),
        ir.BlockStart(2, "tool_call", tool_id="c3", tool_name="f"),
        ir.ToolArgsDelta(2, '{"a":1}'),
        ir.BlockStop(2),
        ir.MessageEnd("tool_use"),
    ]
    deltas = [f["choices"][0]["delta"] for f in _frames(b"".join(enc.encode(e) for e in events))[1:-2]]
    args = [d["tool_calls"][0] for d in deltas if "function" in d["tool_calls"][0] and "id" not in d["tool_calls"][0]]
    assert args == [{"index": 0, "function": {"arguments": "{}"}}, {"index": 2, "function": {"arguments": '{"a":1}'}}]
    assert len(deltas) == 5
