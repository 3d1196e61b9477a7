"""Property tests: Bedrock -> IR -> Bedrock is the identity for requests and responses already in canonical
form (see trigate/formats/bedrock.py), and IR -> event-stream bytes -> IR is the identity for streams."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from trigate.formats.bedrock import CODEC
from trigate.translate import ir
from trigate.wire.eventstream import EventStreamDecoder

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"

text = st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s)
name = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_-]{0,15}", fullmatch=True)
b64 = st.binary(min_size=1, max_size=24).map(lambda b: base64.b64encode(b).decode())
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=10))
json_obj = st.dictionaries(st.text(min_size=1, max_size=8), json_scalar, max_size=4)
cache_point = st.sampled_from([{"cachePoint": {"type": "default"}}, {"cachePoint": {"type": "default", "ttl": "1h"}}])


@st.composite
def maybe_cached(draw, block) -> list[dict]:
    out = [block]
    if draw(st.booleans()) and draw(st.booleans()):
        out.append(draw(cache_point))
    return out


@st.composite
def user_media(draw, doc_names: set[str]) -> list[dict]:
    kind = draw(st.sampled_from(["text", "text", "image", "document"]))
    if kind == "text":
        block = {"text": draw(text)}
    elif kind == "image":
        block = {
            "image": {"format": draw(st.sampled_from(["png", "jpeg", "gif", "webp"])), "source": {"bytes": draw(b64)}}
        }
    else:
        doc_name = draw(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}( [A-Za-z0-9]{1,6})?", fullmatch=True))
        if doc_name in doc_names:
            block = {"text": draw(text)}
        else:
            doc_names.add(doc_name)
            block = {
                "document": {
                    "format": draw(st.sampled_from(["pdf", "csv", "docx", "html", "md"])),
                    "name": doc_name,
                    "source": {"bytes": draw(b64)},
                }
            }
    return draw(maybe_cached(block))


@st.composite
def requests(draw) -> dict:
    tools = draw(st.lists(name, min_size=0, max_size=3, unique=True))
    doc_names: set[str] = set()
    messages: list[dict] = []
    pending: list[str] = []
    n_turns = draw(st.integers(1, 6))
    call_no = 0
    for turn in range(n_turns):
        if turn % 2 == 0:
            content: list[dict] = []
            for tid in pending:
                result: dict = {
                    "toolUseId": tid,
                    "content": [
                        draw(
                            st.one_of(
                                st.builds(lambda t: {"text": t}, text), st.builds(lambda o: {"json": o}, json_obj)
                            )
                        )
                    ],
                }
                if draw(st.booleans()):
                    result["status"] = "error"
                content += draw(maybe_cached({"toolResult": result}))
            if not pending or draw(st.booleans()):
                for _ in range(draw(st.integers(1, 3))):
                    content += draw(user_media(doc_names))
            messages.append({"role": "user", "content": content})
            pending = []
        else:
            content = []
            if draw(st.booleans()):
                content.append({"reasoningContent": {"reasoningText": {"text": draw(text), "signature": draw(b64)}}})
            if draw(st.booleans()):
                content.append({"reasoningContent": {"redactedContent": draw(b64)}})
            if draw(st.booleans()) or not tools:
                content += draw(maybe_cached({"text": draw(text)}))
            if tools and draw(st.booleans()):
                for _ in range(draw(st.integers(1, 3))):
                    call_no += 1
                    tid = f"tooluse_{call_no}{draw(st.from_regex(r'[a-zA-Z0-9_.:-]{0,10}', fullmatch=True))}"
                    content += draw(
                        maybe_cached(
                            {
                                "toolUse": {
                                    "toolUseId": tid,
                                    "name": draw(st.sampled_from(tools)),
                                    "input": draw(json_obj),
                                }
                            }
                        )
                    )
                    pending.append(tid)
            if not any("text" in b or "toolUse" in b for b in content):
                content += draw(maybe_cached({"text": draw(text)}))
            messages.append({"role": "assistant", "content": content})
    body: dict = {"messages": messages}
    system = []
    for _ in range(draw(st.integers(0, 2))):
        system += draw(maybe_cached({"text": draw(text)}))
    if system:
        body["system"] = system
    thinking = draw(st.booleans())
    max_tokens = draw(st.integers(2048, 64000))
    inference: dict = {"maxTokens": max_tokens}
    if not thinking:
        if draw(st.booleans()):
            inference["temperature"] = draw(st.floats(0, 1))
        if draw(st.booleans()):
            inference["topP"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        inference["stopSequences"] = draw(st.lists(text, min_size=1, max_size=3))
    body["inferenceConfig"] = inference
    if tools:
        specs = [
            {"toolSpec": {"name": t, "inputSchema": {"json": {"type": "object", "properties": {}}}}} for t in tools
        ]
        cfg: dict = {"tools": specs}
        choice = draw(st.sampled_from(["none", "auto", "any", "tool"]))
        if choice == "tool":
            cfg["toolChoice"] = {"tool": {"name": draw(st.sampled_from(tools))}}
            thinking = False  # Claude refuses thinking with a forced tool; the codec drops it
        elif choice != "none":
            cfg["toolChoice"] = {choice: {}}
        body["toolConfig"] = cfg
    fields: dict = {}
    if thinking:
        fields["thinking"] = {"type": "enabled", "budget_tokens": draw(st.integers(1024, max_tokens - 1))}
    elif draw(st.booleans()):
        fields["top_k"] = draw(st.integers(1, 500))
    if draw(st.booleans()):
        fields["anthropic_beta"] = ["some-beta"]
    if fields:
        body["additionalModelRequestFields"] = fields
    if draw(st.booleans()):
        body["requestMetadata"] = draw(st.dictionaries(name, name, min_size=1, max_size=3))
    if draw(st.booleans()):
        body["serviceTier"] = {"type": draw(st.sampled_from(["priority", "default", "flex", "reserved"]))}
    if draw(st.booleans()):
        body["guardrailConfig"] = {"guardrailIdentifier": draw(name), "guardrailVersion": "1"}
    return body


@settings(max_examples=200, deadline=None)
@given(requests())
def test_request_round_trip(body: dict) -> None:
    assert CODEC.encode_request(CODEC.decode_request(body), MODEL) == body


STOP_REASONS = [
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "guardrail_intervened",
    "content_filtered",
    "malformed_model_output",
    "malformed_tool_use",
    "model_context_window_exceeded",
]


@st.composite
def responses(draw) -> dict:
    content: list[dict] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["text", "toolUse", "reasoning", "redacted"]))
        if kind == "text":
            content.append({"text": draw(text)})
        elif kind == "toolUse":
            content.append(
                {"toolUse": {"toolUseId": f"tooluse_{draw(name)}", "name": draw(name), "input": draw(json_obj)}}
            )
        elif kind == "reasoning":
            rt = {"text": draw(text)}
            if draw(st.booleans()):
                rt["signature"] = draw(b64)
            content.append({"reasoningContent": {"reasoningText": rt}})
        else:
            content.append({"reasoningContent": {"redactedContent": draw(b64)}})
    inp, out = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**5))
    usage = {"inputTokens": inp, "outputTokens": out}
    read, write = draw(st.integers(0, 10**5)), draw(st.integers(0, 10**5))
    if read or write:
        usage.update(cacheReadInputTokens=read, cacheWriteInputTokens=write)
    usage["totalTokens"] = inp + out + read + write
    body = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": draw(st.sampled_from(STOP_REASONS)),
        "usage": usage,
        "metrics": {"latencyMs": draw(st.integers(0, 10**5))},
    }
    if draw(st.booleans()):
        body["additionalModelResponseFields"] = {"stop_sequence": draw(st.one_of(st.none(), text))}
    if draw(st.booleans()):
        body["trace"] = {"guardrail": {"x": draw(json_obj)}}
    return body


@settings(max_examples=200, deadline=None)
@given(responses())
def test_response_round_trip(body: dict) -> None:
    assert CODEC.encode_response(CODEC.decode_response(body), ir.Request(model="m")) == body


@st.composite
def ir_streams(draw) -> list[ir.StreamEvent]:
    events: list[ir.StreamEvent] = [ir.MessageStart("x", "m")]
    for index in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "reasoning", "tool_call", "redacted_reasoning"]))
        if kind == "tool_call":
            events.append(ir.BlockStart(index, kind, tool_id=f"tooluse_{index}", tool_name=draw(name)))
            events += [ir.ToolArgsDelta(index, f) for f in draw(st.lists(text, max_size=4))]
        elif kind == "redacted_reasoning":
            events.append(ir.BlockStart(index, kind, data=draw(b64)))
        elif kind == "text":
            events.append(ir.BlockStart(index, kind))
            events += [ir.TextDelta(index, t) for t in draw(st.lists(text, min_size=1, max_size=4))]
        else:
            events.append(ir.BlockStart(index, kind))
            events += [ir.ReasoningDelta(index, t) for t in draw(st.lists(text, min_size=1, max_size=3))]
            if draw(st.booleans()):
                events.append(ir.SignatureDelta(index, draw(b64)))
        events.append(ir.BlockStop(index))
    read, write = draw(st.integers(0, 1000)), draw(st.integers(0, 1000))
    usage = ir.Usage(
        input_tokens=read + write + draw(st.integers(0, 1000)),
        output_tokens=draw(st.integers(0, 999)),
        cache_read_tokens=read,
        cache_write_tokens=write,
    )
    stop = draw(
        st.sampled_from(
            ["end_turn", "stop_sequence", "max_tokens", "tool_use", "content_filter", "context_window_exceeded"]
        )
    )
    events.append(ir.MessageEnd(stop, draw(st.one_of(st.none(), text)), usage))
    return events


@settings(max_examples=150, deadline=None)
@given(ir_streams(), st.randoms(use_true_random=False))
def test_stream_round_trip(events: list[ir.StreamEvent], rng) -> None:
    enc = CODEC.stream_encoder(ir.Request(model="m"))
    raw = b"".join(enc.encode(e) for e in events)
    framer, dec = EventStreamDecoder(), CODEC.stream_decoder(ir.Request(model="m"))
    got: list[ir.StreamEvent] = []
    pos = 0
    while pos < len(raw):
        step = rng.randint(1, 40)
        for msg in framer.feed(raw[pos : pos + step]):
            got += dec.feed(msg)
        pos += step
    got += dec.close()
    assert got[0].model == ""  # Bedrock streams name no model (the pipeline fills in the one it called)
    assert got[1:] == events[1:]
