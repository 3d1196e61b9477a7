"""Property tests for the Anthropic codec.

- requests and responses in canonical form (see trigate/formats/anthropic.py) survive decode -> encode;
- mangled requests only ever fail with a 400 GatewayError, never another exception;
- any grammar-valid IR stream survives encode -> SSE -> decode, and the official SDK accumulates it.
"""

from __future__ import annotations

import copy
import string
from typing import Any

import anthropic
import httpx2
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trigate.errors import GatewayError
from trigate.formats.anthropic import CODEC
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder

ident = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
text = st.text(min_size=1, max_size=20)
cache_control = st.sampled_from([{"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)


def _with_optional(base: dict[str, Any], draw: st.DrawFn, **optional: st.SearchStrategy[Any]) -> dict[str, Any]:
    for key, strat in optional.items():
        if draw(st.booleans()):
            base[key] = draw(strat)
    return base


def _canon(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # The encoder writes a lone plain text block as a string.
    if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
        return blocks[0]["text"]
    return blocks


@st.composite
def text_blocks(draw: st.DrawFn) -> dict[str, Any]:
    return _with_optional({"type": "text", "text": draw(text)}, draw, cache_control=cache_control)


@st.composite
def image_blocks(draw: st.DrawFn) -> dict[str, Any]:
    source = draw(
        st.sampled_from(["base64", "url", "file"]).map(
            lambda kind: {"type": kind},
        )
    )
    if source["type"] == "base64":
        source["media_type"] = draw(st.sampled_from(["image/jpeg", "image/png", "image/gif", "image/webp"]))
        source["data"] = draw(ident)
    elif source["type"] == "url":
        source["url"] = "https://example.com/" + draw(ident)
    else:
        source["file_id"] = "file_" + draw(ident)
    return _with_optional({"type": "image", "source": source}, draw, cache_control=cache_control)


@st.composite
def document_blocks(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["base64", "text", "url", "file"]))
    if kind == "base64":
        source = {"type": "base64", "media_type": "application/pdf", "data": draw(ident)}
    elif kind == "text":
        source = {"type": "text", "media_type": "text/plain", "data": draw(text)}
    elif kind == "url":
        source = {"type": "url", "url": "https://example.com/" + draw(ident)}
    else:
        source = {"type": "file", "file_id": "file_" + draw(ident)}
    return _with_optional(
        {"type": "document", "source": source},
        draw,
        title=text,
        context=text,
        citations=st.just({"enabled": True}),
        cache_control=cache_control,
    )


@st.composite
def tool_results(draw: st.DrawFn) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": draw(ident)}
    content = draw(st.lists(text_blocks() | image_blocks(), max_size=3))
    if content:
        block["content"] = _canon(content)
    if draw(st.booleans()):
        block["is_error"] = True
    return _with_optional(block, draw, cache_control=cache_control)


@st.composite
def assistant_blocks(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "tool_use", "thinking", "redacted"]))
    if kind == "text":
        return draw(text_blocks())
    if kind == "tool_use":
        block = {"type": "tool_use", "id": draw(ident), "name": draw(ident), "input": draw(json_objects)}
        return _with_optional(block, draw, cache_control=cache_control)
    if kind == "thinking":
        return {"type": "thinking", "thinking": draw(st.text(max_size=20)), "signature": draw(ident)}
    return {"type": "redacted_thinking", "data": draw(ident)}


@st.composite
def messages(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        if i % 2 == 0:
            results = draw(st.lists(tool_results(), max_size=2)) if i else []
            rest = draw(
                st.lists(text_blocks() | image_blocks() | document_blocks(), min_size=0 if results else 1, max_size=3)
            )
            out.append({"role": "user", "content": _canon(results + rest)})
        else:
            out.append(
                {"role": "assistant", "content": _canon(draw(st.lists(assistant_blocks(), min_size=1, max_size=4)))}
            )
    return out


@st.composite
def custom_tools(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(ident, max_size=3, unique=True))
    tools = []
    for name in names:
        schema = {"type": "object", "properties": {p: {"type": "string"} for p in draw(st.lists(ident, max_size=2))}}
        tools.append(
            _with_optional(
                {"name": name, "input_schema": schema},
                draw,
                description=text,
                strict=st.booleans(),
                cache_control=cache_control,
            )
        )
    return tools


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    max_tokens = draw(st.integers(1, 100_000))
    body: dict[str, Any] = {"model": draw(ident), "max_tokens": max_tokens, "messages": draw(messages())}
    system = draw(
        st.none()
        | text
        | st.lists(text_blocks(), min_size=2, max_size=3)
        | st.builds(lambda t, c: [{"type": "text", "text": t, "cache_control": c}], text, cache_control)
    )
    if system is not None:
        body["system"] = system
    thinking_choices = [None, {"type": "disabled"}, {"type": "adaptive"}]
    if max_tokens > 1024:
        thinking_choices.append({"type": "enabled", "budget_tokens": draw(st.integers(1024, max_tokens - 1))})
    thinking = draw(st.sampled_from(thinking_choices))
    if thinking is not None:
        thinking = dict(thinking)
        if thinking["type"] != "disabled" and draw(st.booleans()):
            thinking["display"] = draw(st.sampled_from(["summarized", "omitted"]))
        body["thinking"] = thinking
    if thinking is None or thinking["type"] == "disabled":
        _with_optional(
            body,
            draw,
            temperature=st.floats(0, 1),
            top_p=st.floats(0, 1),
            top_k=st.integers(1, 500),
        )
    tools = draw(custom_tools())
    if draw(st.booleans()):
        tools.insert(
            draw(st.integers(0, len(tools))), {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
        )
    if tools:
        body["tools"] = tools
        named = [t["name"] for t in tools if "type" not in t]
        choice = draw(st.sampled_from(["auto", "any", "none"] + (["tool"] if named else [])))
        if draw(st.booleans()):
            tc: dict[str, Any] = {"type": choice}
            if choice == "tool":
                tc["name"] = draw(st.sampled_from(named))
            if choice != "none" and draw(st.booleans()):
                tc["disable_parallel_tool_use"] = True
            body["tool_choice"] = tc
    output_config: dict[str, Any] = {}
    if draw(st.booleans()):
        output_config["effort"] = draw(st.sampled_from(["low", "medium", "high", "xhigh", "max"]))
    if draw(st.booleans()):
        output_config["format"] = {"type": "json_schema", "schema": {"type": "object", "properties": {}}}
    if output_config:
        body["output_config"] = output_config
    return _with_optional(
        body,
        draw,
        stop_sequences=st.lists(text, min_size=1, max_size=3),
        metadata=st.builds(lambda u: {"user_id": u}, ident),
        service_tier=st.sampled_from(["auto", "standard_only"]),
        stream=st.just(True),
        inference_geo=st.just("us"),
        container=ident,
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_request_round_trip(body: dict[str, Any]) -> None:
    original = copy.deepcopy(body)
    req = CODEC.decode_request(body)
    assert body == original  # decoding must not mutate the client's body
    assert CODEC.encode_request(req, body["model"]) == body


@st.composite
def responses(draw: st.DrawFn) -> dict[str, Any]:
    def block() -> dict[str, Any]:
        kind = draw(st.sampled_from(["text", "tool_use", "thinking", "redacted"]))
        if kind == "text":
            b: dict[str, Any] = {"type": "text", "text": draw(st.text(max_size=20))}
            if draw(st.booleans()):
                b["citations"] = [{"type": "char_location", "cited_text": draw(text), "document_index": 0}]
            return b
        if kind == "tool_use":
            return {"type": "tool_use", "id": "toolu_" + draw(ident), "name": draw(ident), "input": draw(json_objects)}
        if kind == "thinking":
            return {"type": "thinking", "thinking": draw(st.text(max_size=20)), "signature": draw(ident)}
        return {"type": "redacted_thinking", "data": draw(ident)}

    stop = draw(
        st.sampled_from(
            [
                None,
                "end_turn",
                "max_tokens",
                "stop_sequence",
                "tool_use",
                "pause_turn",
                "refusal",
                "model_context_window_exceeded",
            ]
        )
    )
    counts = st.integers(0, 10**6)
    usage = {
        "input_tokens": draw(counts),
        "output_tokens": draw(counts),
        "cache_creation_input_tokens": draw(counts),
        "cache_read_input_tokens": draw(counts),
    }
    if draw(st.booleans()):
        usage["output_tokens_details"] = {"thinking_tokens": draw(counts)}
    if draw(st.booleans()):
        usage["service_tier"] = "standard"
    body = {
        "id": "msg_" + draw(ident),
        "type": "message",
        "role": "assistant",
        "model": draw(ident),
        "content": [block() for _ in range(draw(st.integers(0, 4)))],
        "stop_reason": stop,
        "stop_sequence": draw(text) if stop == "stop_sequence" else None,
        "usage": usage,
    }
    if draw(st.booleans()):
        body["container"] = None
    return body


# Thinking blocks (some empty but signed) go back only to a caller that asked for thinking.
_THINKING_REQUEST = ir.Request(model="m", reasoning=ir.ReasoningConfig(mode="enabled", budget_tokens=1024))


@settings(max_examples=300)
@given(responses())
def test_response_round_trip(body: dict[str, Any]) -> None:
    resp = CODEC.decode_response(body)
    assert CODEC.encode_response(resp, _THINKING_REQUEST) == body


# --------------------------------------------------------------------------------------------
# Garbage in: only ever a 400
# --------------------------------------------------------------------------------------------

junk = st.sampled_from([None, 0, -1, 1.5, True, "", "x", [], [1], {}, {"type": "bogus"}, {"type": "text"}])


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.data())
def test_mangled_requests_fail_cleanly(body: dict[str, Any], data: st.DataObject) -> None:
    body = copy.deepcopy(body)  # strategies may share objects (st.just) between examples
    paths = _paths(body)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths[1:]))
        node: Any = body
        try:
            for key in path[:-1]:
                node = node[key]
            if isinstance(node, dict) != isinstance(path[-1], str):
                continue  # an earlier mutation changed the shape; JSON has only string keys
            if data.draw(st.booleans()) and isinstance(node, dict):
                del node[path[-1]]
            else:
                node[path[-1]] = data.draw(junk)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    try:
        req = CODEC.decode_request(body)
    except GatewayError as exc:
        assert exc.kind == "invalid_request" and exc.status == 400
        return
    try:
        CODEC.encode_request(req, "claude-sonnet-4-5")
    except GatewayError as exc:
        assert exc.kind == "invalid_request"


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------

counts = st.integers(0, 10**6)


@st.composite
def usages(draw: st.DrawFn) -> ir.Usage:
    cr, cw, rest = draw(counts), draw(counts), draw(counts)
    return ir.Usage(
        input_tokens=cr + cw + rest,
        output_tokens=draw(counts),
        cache_read_tokens=cr,
        cache_write_tokens=cw,
        reasoning_tokens=draw(st.none() | counts),
    )


@st.composite
def ir_streams(draw: st.DrawFn) -> list[ir.StreamEvent]:
    start_usage = draw(usages())
    start_usage.reasoning_tokens = None
    events: list[ir.StreamEvent] = [ir.MessageStart(id="msg_" + draw(ident), model=draw(ident), usage=start_usage)]
    for index in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "reasoning", "redacted_reasoning", "tool_call"]))
        if kind == "tool_call":
            events.append(ir.BlockStart(index, kind, tool_id="toolu_" + draw(ident), tool_name=draw(ident)))
            args = orjson.dumps(draw(json_objects)).decode()
            cuts = sorted(draw(st.lists(st.integers(1, max(len(args) - 1, 1)), max_size=4, unique=True)))
            for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True):
                if args[a:b]:
                    events.append(ir.ToolArgsDelta(index, args[a:b]))
        elif kind == "redacted_reasoning":
            events.append(ir.BlockStart(index, kind, data=draw(ident)))
        elif kind == "text":
            events.append(ir.BlockStart(index, kind))
            events.extend(ir.TextDelta(index, t) for t in draw(st.lists(text, max_size=4)))
        else:
            events.append(ir.BlockStart(index, kind))
            events.extend(ir.ReasoningDelta(index, t) for t in draw(st.lists(text, max_size=4)))
            events.append(ir.SignatureDelta(index, draw(ident)))
        events.append(ir.BlockStop(index))
    stop = draw(
        st.sampled_from(["end_turn", "stop_sequence", "max_tokens", "tool_use", "pause_turn", "content_filter"])
    )
    end_usage = draw(usages())
    events.append(ir.MessageEnd(stop, draw(text) if stop == "stop_sequence" else None, end_usage))
    return events


def _decode_bytes(raw: bytes) -> list[ir.StreamEvent]:
    sse = SSEDecoder()
    dec = CODEC.stream_decoder(ir.Request(model="m"))
    out: list[ir.StreamEvent] = []
    for ev in sse.feed(raw) + sse.close():
        out.extend(dec.feed(ev))
    out.extend(dec.close())
    return out


@settings(max_examples=200)
@given(ir_streams())
def test_stream_round_trip(events: list[ir.StreamEvent]) -> None:
    enc = CODEC.stream_encoder(_THINKING_REQUEST)
    raw = b"".join(enc.encode(e) for e in events)
    assert _decode_bytes(raw) == events


@settings(max_examples=40, deadline=None)
@given(ir_streams())
def test_sdk_accumulates_any_stream(events: list[ir.StreamEvent]) -> None:
    enc = CODEC.stream_encoder(_THINKING_REQUEST)
    raw = b"".join(enc.encode(e) for e in events)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    client = anthropic.Anthropic(
        api_key="t", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0
    )
    with client.messages.stream(model="m", max_tokens=1, messages=[{"role": "user", "content": "q"}]) as s:
        msg = s.get_final_message()
    starts = [e for e in events if isinstance(e, ir.BlockStart)]
    assert len(msg.content) == len(starts)
    for block, start in zip(msg.content, starts, strict=True):
        expected = {
            "text": "text",
            "reasoning": "thinking",
            "redacted_reasoning": "redacted_thinking",
            "tool_call": "tool_use",
        }
        assert block.type == expected[start.kind]
        if start.kind == "tool_call":
            args = "".join(e.fragment for e in events if isinstance(e, ir.ToolArgsDelta) and e.index == start.index)
            assert block.input == orjson.loads(args)
    end = events[-1]
    assert msg.usage.output_tokens == end.usage.output_tokens
    assert msg.usage.cache_read_input_tokens == end.usage.cache_read_tokens
