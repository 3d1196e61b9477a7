"""Golden files for the Anthropic codec: Anthropic -> IR -> Anthropic for requests, responses and streams.

Each ``<case>.in.*`` is decoded into the IR and encoded back; the result must equal ``<case>.out.*``
(identical to the input except for the canonical forms documented in trigate/formats/anthropic.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import anthropic
import httpx2
import pytest

from trigate.formats.anthropic import CODEC, server_tools
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "anthropic"


def _cases(kind: str, ext: str) -> list[str]:
    return sorted(p.name[: -len(f".in.{ext}")] for p in (FIXTURES / kind).glob(f"*.in.{ext}"))


def _load(kind: str, name: str) -> tuple[dict, dict]:
    d = FIXTURES / kind
    return json.loads((d / f"{name}.in.json").read_text()), json.loads((d / f"{name}.out.json").read_text())


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _cases("requests", "json"))
def test_request_golden(name: str) -> None:
    body, expected = _load("requests", name)
    req = CODEC.decode_request(body)
    assert CODEC.encode_request(req, body["model"]) == expected


def test_request_cases_present() -> None:
    # Guards against the glob silently finding nothing (a moved fixture directory would pass vacuously).
    assert len(_cases("requests", "json")) >= 12
    assert len(_cases("responses", "json")) >= 6
    assert len(_cases("streams", "sse")) >= 6


def test_request_ir_system_and_cache_control() -> None:
    body, _ = _load("requests", "system_blocks_cache")
    req = CODEC.decode_request(body)
    first = req.messages[0]
    assert first.role == "system"
    assert [p.text for p in first.content] == [
        "You are a contract analyst.",
        "<contract>Lorem ipsum dolor sit amet ...</contract>",
    ]
    assert first.content[1].cache_control == {"type": "ephemeral", "ttl": "1h"}
    assert req.tools[0].cache_control == {"type": "ephemeral"}
    assert req.extras["anthropic"]["cache_control"] == {"type": "ephemeral"}


def test_request_ir_tool_turns() -> None:
    body, _ = _load("requests", "parallel_tool_turns")
    req = CODEC.decode_request(body)
    roles = [m.role for m in req.messages]
    # The user turn with tool results splits into a tool message and a user message with the rest.
    assert roles == ["user", "assistant", "tool", "user", "assistant", "tool"]
    calls = [p for p in req.messages[1].content if isinstance(p, ir.ToolCall)]
    assert [c.id for c in calls] == ["toolu_01A", "toolu_01B", "toolu_01C"]
    assert json.loads(calls[2].arguments) == {"q": "Paris", "size": {"w": 64, "h": 64}}
    results = req.messages[2].content
    assert [r.call_id for r in results] == ["toolu_01A", "toolu_01B", "toolu_01C"]
    assert [r.is_error for r in results] == [False, True, False]
    assert isinstance(results[2].content[1], ir.Image)
    assert req.messages[3].content[0].text == "Retry London if it failed."
    assert req.messages[5].content[0].content == []


def test_request_ir_thinking_and_tool_choice() -> None:
    body, _ = _load("requests", "thinking_history")
    req = CODEC.decode_request(body)
    assert req.reasoning == ir.ReasoningConfig(budget_tokens=10000, mode="enabled", display="summarized")
    thinking, redacted = req.messages[1].content[:2]
    assert thinking.signature.startswith("EqQB") and thinking.text == "I should use the calculator."
    assert redacted.redacted.startswith("EmwK")

    body, _ = _load("requests", "tools_choice_any")
    req = CODEC.decode_request(body)
    assert req.tool_choice == ir.ToolChoice("required")
    assert req.parallel_tool_calls is False
    assert req.tools[0].strict is True

    body, _ = _load("requests", "output_config_format")
    req = CODEC.decode_request(body)
    assert req.response_format.type == "json_schema"
    assert req.response_format.schema["required"] == ["name", "age"]
    assert req.reasoning.mode == "adaptive" and req.reasoning.effort == "high"


def test_request_ir_user_metadata_and_extras() -> None:
    body, _ = _load("requests", "system_string_multiturn")
    req = CODEC.decode_request(body)
    assert req.user == "user-1234"
    assert req.stream is True and req.include_usage is True
    assert req.stop == ["\n\nHuman:", "END"]
    assert req.extras["anthropic"] == {"inference_geo": "us", "speed": "standard"}


def test_request_ir_server_tools_kept_opaque() -> None:
    body, _ = _load("requests", "server_tools")
    req = CODEC.decode_request(body)
    # Only the custom tool is an IR tool; the typed server tool waits in extras for an Anthropic encoder.
    assert [t.name for t in req.tools] == ["save_note"]
    assert req.extras["anthropic"]["_server_tools"] == [[0, body["tools"][0]]]
    assert server_tools(req) == [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    assert server_tools(ir.Request(model="m")) == []
    assistant = req.messages[1]
    assert [p.text for p in assistant.content] == ["", "", "Top story: A."]


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _cases("responses", "json"))
def test_response_golden(name: str) -> None:
    body, expected = _load("responses", name)
    resp = CODEC.decode_response(body)
    assert CODEC.encode_response(resp, ir.Request(model="ignored")) == expected


def test_response_ir_facts() -> None:
    body, _ = _load("responses", "cache_usage")
    resp = CODEC.decode_response(body)
    # IR input is the whole prompt: uncached + cache writes + cache reads.
    assert resp.usage == ir.Usage(
        input_tokens=25 + 1200 + 30000, output_tokens=7, cache_read_tokens=30000, cache_write_tokens=1200
    )
    assert resp.stop_reason == "stop_sequence" and resp.stop_sequence == "END"

    body, _ = _load("responses", "tool_use")
    resp = CODEC.decode_response(body)
    assert resp.stop_reason == "tool_use"
    calls = [p for p in resp.content if isinstance(p, ir.ToolCall)]
    assert [c.id for c in calls] == ["toolu_01A09q90qw90lq917835lq9", "toolu_01B"]
    assert json.loads(calls[1].arguments) == {"city": "London", "opts": {"hourly": [1, 2, 3], "raw": None}}

    body, _ = _load("responses", "thinking")
    resp = CODEC.decode_response(body)
    assert resp.usage.reasoning_tokens == 350
    assert isinstance(resp.content[0], ir.Reasoning) and resp.content[0].signature.startswith("EqQB")
    assert resp.content[1].redacted.startswith("EmwK")

    body, _ = _load("responses", "max_tokens")
    assert CODEC.decode_response(body).stop_reason == "max_tokens"
    body, _ = _load("responses", "server_tool_refusal")
    assert CODEC.decode_response(body).stop_reason == "content_filter"


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def _split(raw: bytes, mode: str) -> list[bytes]:
    if mode == "whole":
        return [raw]
    if mode == "bytewise":
        return [raw[i : i + 1] for i in range(len(raw))]
    if mode == "crlf":
        crlf = raw.replace(b"\n", b"\r\n")
        return [crlf[i : i + 5] for i in range(0, len(crlf), 5)]
    rng = random.Random(len(raw))
    pieces, i = [], 0
    while i < len(raw):
        n = rng.randint(1, 40)
        pieces.append(raw[i : i + n])
        i += n
    return pieces


def transcode(pieces: list[bytes]) -> tuple[list[ir.StreamEvent], bytes]:
    req = ir.Request(model="claude-sonnet-4-5", stream=True)
    sse = SSEDecoder()
    dec = CODEC.stream_decoder(req)
    enc = CODEC.stream_encoder(req)
    events: list[ir.StreamEvent] = []
    for piece in pieces:
        for ev in sse.feed(piece):
            events.extend(dec.feed(ev))
    for ev in sse.close():
        events.extend(dec.feed(ev))
    events.extend(dec.close())
    return events, b"".join(enc.encode(e) for e in events)


@pytest.mark.parametrize("mode", ["whole", "bytewise", "crlf", "random"])
@pytest.mark.parametrize("name", _cases("streams", "sse"))
def test_stream_golden(name: str, mode: str) -> None:
    raw = (FIXTURES / "streams" / f"{name}.in.sse").read_bytes()
    expected = (FIXTURES / "streams" / f"{name}.out.sse").read_bytes()
    _, out = transcode(_split(raw, mode))
    assert out == expected


def _events(name: str) -> list[ir.StreamEvent]:
    raw = (FIXTURES / "streams" / f"{name}.in.sse").read_bytes()
    return transcode(_split(raw, "random"))[0]


def test_stream_ir_text_usage_and_ping() -> None:
    events = _events("text_ping")
    assert isinstance(events[0], ir.MessageStart) and events[0].usage.input_tokens == 25
    texts = "".join(e.text for e in events if isinstance(e, ir.TextDelta))
    assert texts == 'Hello wörld! 👋\n"quoted"'
    end = events[-1]
    assert isinstance(end, ir.MessageEnd)
    assert end.stop_reason == "end_turn"
    assert end.usage == ir.Usage(input_tokens=25, output_tokens=15)


def test_stream_ir_thinking_cache_usage() -> None:
    events = _events("thinking_signature")
    sigs = [e.signature for e in events if isinstance(e, ir.SignatureDelta)]
    assert sigs == ["EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"]
    redacted = [e for e in events if isinstance(e, ir.BlockStart) and e.kind == "redacted_reasoning"]
    assert redacted[0].data.startswith("EmwK") and redacted[0].index == 1
    end = events[-1]
    # message_delta only said output tokens: input and cache numbers come from message_start.
    assert end.usage == ir.Usage(
        input_tokens=40 + 100 + 2000,
        output_tokens=310,
        cache_read_tokens=2000,
        cache_write_tokens=100,
        reasoning_tokens=280,
    )


def test_stream_ir_parallel_tools() -> None:
    events = _events("parallel_tool_use")
    starts = [e for e in events if isinstance(e, ir.BlockStart) and e.kind == "tool_call"]
    assert [(s.index, s.tool_id, s.tool_name) for s in starts] == [
        (1, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        (2, "toolu_02London", "get_weather"),
        (3, "toolu_03NoArgs", "get_time"),
    ]
    args: dict[int, str] = {}
    for e in events:
        if isinstance(e, ir.ToolArgsDelta):
            args[e.index] = args.get(e.index, "") + e.fragment
    assert json.loads(args[1]) == {"city": "Paris"} and json.loads(args[2]) == {"city": "London"}
    assert 3 not in args  # an empty input has no fragments; {} is implied
    assert events[-1].stop_reason == "tool_use"


def test_stream_ir_server_blocks_renumbered() -> None:
    events = _events("server_tool_blocks")
    starts = [e for e in events if isinstance(e, ir.BlockStart)]
    assert [(s.index, s.kind) for s in starts] == [(0, "text")]
    # message_delta repeated the input side: the later, larger numbers win.
    assert events[-1].usage.input_tokens == 10682


def test_stream_ir_errors() -> None:
    err = _events("midstream_error")[-1]
    assert isinstance(err, ir.StreamError)
    assert err.error.kind == "overloaded" and err.error.status == 529 and err.error.message == "Overloaded"
    trunc = _events("truncated")[-1]
    assert isinstance(trunc, ir.StreamError) and trunc.error.kind == "upstream_unavailable"


# --------------------------------------------------------------------------------------------
# The official SDK accepts what the encoder writes
# --------------------------------------------------------------------------------------------


def sdk_client(body: bytes) -> anthropic.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return anthropic.Anthropic(
        api_key="test", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0
    )


def sdk_final_message(body: bytes) -> anthropic.types.Message:
    client = sdk_client(body)
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
        return s.get_final_message()


def test_sdk_accepts_text_stream() -> None:
    msg = sdk_final_message((FIXTURES / "streams" / "text_ping.out.sse").read_bytes())
    assert msg.content[0].text == 'Hello wörld! 👋\n"quoted"'
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (25, 15)


def test_sdk_accepts_thinking_stream() -> None:
    msg = sdk_final_message((FIXTURES / "streams" / "thinking_signature.out.sse").read_bytes())
    assert [b.type for b in msg.content] == ["thinking", "redacted_thinking", "text"]
    assert msg.content[0].signature == "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
    assert msg.usage.cache_read_input_tokens == 2000 and msg.usage.cache_creation_input_tokens == 100
    assert msg.usage.output_tokens_details.thinking_tokens == 280


def test_sdk_accepts_tool_stream() -> None:
    msg = sdk_final_message((FIXTURES / "streams" / "parallel_tool_use.out.sse").read_bytes())
    assert [(b.type, getattr(b, "input", None)) for b in msg.content] == [
        ("text", None),
        ("tool_use", {"city": "Paris"}),
        ("tool_use", {"city": "London"}),
        ("tool_use", {}),
    ]
    assert msg.stop_reason == "tool_use"


@pytest.mark.parametrize("name", ["midstream_error", "truncated"])
def test_sdk_raises_on_error_event(name: str) -> None:
    body = (FIXTURES / "streams" / f"{name}.out.sse").read_bytes()
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk_final_message(body)
    assert info.value.body["type"] == "error"


def test_sdk_raw_event_iteration() -> None:
    client = sdk_client((FIXTURES / "streams" / "server_tool_blocks.out.sse").read_bytes())
    stream = client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}], stream=True)
    types = [e.type for e in stream]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
