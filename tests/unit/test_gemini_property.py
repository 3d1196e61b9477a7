"""Property tests for the Gemini codec.

- requests and responses in canonical form (see trigate/formats/gemini.py) survive decode -> encode;
- mangled requests only ever fail with a 400 GatewayError, never another exception;
- any grammar-valid IR stream survives encode -> SSE bytes -> decode with the same content.
"""

from __future__ import annotations

import copy
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trigate.errors import GatewayError
from trigate.formats.gemini import CODEC
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder

ident = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
b64 = st.text(alphabet=string.ascii_letters + string.digits + "+/", min_size=4, max_size=24).map(
    lambda s: s[: len(s) // 4 * 4]
)
text = st.text(min_size=1, max_size=20)
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
schemas = st.fixed_dictionaries(
    {"type": st.just("object"), "properties": st.dictionaries(ident, st.just({"type": "string"}), max_size=3)}
)


def _maybe(draw: st.DrawFn, base: dict[str, Any], **optional: st.SearchStrategy[Any]) -> dict[str, Any]:
    for key, strat in optional.items():
        if draw(st.booleans()):
            base[key] = draw(strat)
    return base


@st.composite
def user_parts(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "image", "pdf", "audio", "file"]))
    if kind == "text":
        return {"text": draw(text)}
    if kind == "image":
        return {
            "inlineData": {
                "mimeType": draw(st.sampled_from(["image/png", "image/jpeg", "image/webp"])),
                "data": draw(b64),
            }
        }
    if kind == "pdf":
        return {"inlineData": {"mimeType": "application/pdf", "data": draw(b64)}}
    if kind == "audio":
        return {
            "inlineData": {
                "mimeType": draw(st.sampled_from(["audio/wav", "audio/mp3", "audio/flac"])),
                "data": draw(b64),
            }
        }
    mime = draw(st.sampled_from(["image/png", "application/pdf", "video/mp4"]))
    return {"fileData": {"mimeType": mime, "fileUri": "gs://bucket/" + draw(ident)}}


@st.composite
def model_parts(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "thought", "call"] if names else ["text", "thought"]))
    if kind == "text":
        return _maybe(draw, {"text": draw(text)}, thoughtSignature=b64)
    if kind == "thought":
        return _maybe(draw, {"text": draw(text), "thought": True}, thoughtSignature=b64)
    fc = _maybe(
        draw, {"name": draw(st.sampled_from(names)), "args": draw(json_objects)}, id=ident.map(lambda s: "fc-" + s)
    )
    return _maybe(draw, {"functionCall": fc}, thoughtSignature=b64)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(ident, max_size=3, unique=True))
    body: dict[str, Any] = {}
    contents: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # the previous model turn's calls, to answer
    for k in range(draw(st.integers(1, 5))):
        if k % 2 == 0:
            parts = []
            for call in pending:
                fr = {"name": call["name"], "response": draw(json_objects | st.just({"error": "failed"}))}
                if "id" in call:
                    fr["id"] = call["id"]
                parts.append({"functionResponse": fr})
            parts += draw(st.lists(user_parts(), min_size=0 if parts else 1, max_size=3))
            contents.append({"role": "user", "parts": parts})
            pending = []
        else:
            parts = draw(st.lists(model_parts(names), min_size=1, max_size=4))
            pending = [p["functionCall"] for p in parts if "functionCall" in p]
            contents.append({"role": "model", "parts": parts})
    body["contents"] = contents
    if draw(st.booleans()):
        body["systemInstruction"] = {"parts": [{"text": t} for t in draw(st.lists(text, min_size=1, max_size=2))]}
    if names:
        decls = []
        for n in names:
            decls.append(_maybe(draw, {"name": n}, description=text, parametersJsonSchema=schemas))
        body["tools"] = [{"functionDeclarations": decls}]
        if draw(st.booleans()):
            body["tools"].append({"googleSearch": {}})
        choice = draw(st.sampled_from([None, "AUTO", "ANY", "NONE", "FORCED", "VALIDATED"]))
        if choice == "FORCED":
            body["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [names[0]]}}
        elif choice is not None:
            body["toolConfig"] = {"functionCallingConfig": {"mode": choice}}
    gc = _maybe(
        draw,
        {},
        maxOutputTokens=st.integers(1, 10**5),
        temperature=st.floats(0, 2),
        topP=st.floats(0, 1),
        topK=st.integers(1, 100),
        stopSequences=st.lists(text, min_size=1, max_size=3),
        candidateCount=st.integers(1, 4),
        seed=st.integers(0, 2**31),
        presencePenalty=st.floats(-2, 2),
        frequencyPenalty=st.floats(-2, 2),
        responseLogprobs=st.booleans(),
        thinkingConfig=st.sampled_from(
            [
                {"thinkingBudget": 0},
                {"thinkingBudget": 1024, "includeThoughts": True},
                {"thinkingBudget": -1, "includeThoughts": True},
                {"thinkingBudget": 512},
                {"thinkingLevel": "LOW"},
                {"includeThoughts": True},
            ]
        ),
    )
    fmt = draw(st.sampled_from([None, "json", "schema", "text", "openapi"]))
    if fmt == "json":
        gc["responseMimeType"] = "application/json"
    elif fmt == "schema":
        gc.update({"responseMimeType": "application/json", "responseJsonSchema": draw(schemas)})
    elif fmt == "text":
        gc["responseMimeType"] = "text/plain"
    elif fmt == "openapi":
        gc.update({"responseMimeType": "application/json", "responseSchema": {"type": "STRING"}})
    if gc:
        body["generationConfig"] = gc
    if draw(st.booleans()):
        body["safetySettings"] = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    return body


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_request_round_trip(body: dict[str, Any]) -> None:
    original = copy.deepcopy(body)
    req = CODEC.decode_request(body)
    assert body == original  # decoding does not mutate the client's body
    assert CODEC.encode_request(req, "gemini-2.5-flash") == original


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.data())
def test_mangled_requests_fail_cleanly(body: dict[str, Any], data: st.DataObject) -> None:
    paths = [p for p in _paths(body) if p]
    path = data.draw(st.sampled_from(paths))
    garbage = data.draw(
        st.none() | st.integers() | st.text(max_size=3) | st.lists(st.integers(), max_size=2) | st.just({})
    )
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = garbage
    try:
        req = CODEC.decode_request(body)
    except GatewayError as err:
        assert err.kind == "invalid_request" and err.status == 400
        return
    try:
        CODEC.encode_request(req, "gemini-3-pro-preview")
    except GatewayError as err:
        assert err.status == 400


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


@st.composite
def responses(draw: st.DrawFn) -> dict[str, Any]:
    parts = draw(st.lists(model_parts(["get_weather", "f"]), max_size=4))
    cand: dict[str, Any] = {}
    if parts:
        cand["content"] = {"parts": parts, "role": "model"}
    cand["finishReason"] = draw(
        st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "OTHER", "MALFORMED_FUNCTION_CALL"])
    )
    cand["index"] = 0
    _maybe(
        draw,
        cand,
        safetyRatings=st.just([{"category": "HARM_CATEGORY_HARASSMENT", "probability": "LOW"}]),
        avgLogprobs=st.floats(-5, 0),
    )
    p, c = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    usage: dict[str, Any] = {"promptTokenCount": p, "candidatesTokenCount": c}
    total = p + c
    for key in ("thoughtsTokenCount", "toolUsePromptTokenCount"):
        if draw(st.booleans()):
            n = draw(st.integers(0, 10**5))
            usage[key] = n
            total += n
    if draw(st.booleans()):
        usage["cachedContentTokenCount"] = draw(st.integers(1, p)) if p else 0
        if not usage["cachedContentTokenCount"]:
            del usage["cachedContentTokenCount"]
    usage["totalTokenCount"] = total
    body: dict[str, Any] = {
        "candidates": [cand],
        "usageMetadata": usage,
        "modelVersion": draw(st.sampled_from(["gemini-2.5-flash", "gemini-2.5-pro"])),
    }
    if draw(st.booleans()):
        body["responseId"] = draw(ident)
    return body


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
def test_response_round_trip(body: dict[str, Any]) -> None:
    resp = CODEC.decode_response(copy.deepcopy(body))
    assert CODEC.encode_response(resp, ir.Request(model="unused")) == body
    if resp.usage is not None:
        assert resp.usage.total_tokens == body["usageMetadata"]["totalTokenCount"]


# --------------------------------------------------------------------------------------------
# Streams: IR -> Gemini SSE -> IR
# --------------------------------------------------------------------------------------------


@st.composite
def ir_streams(draw: st.DrawFn) -> list[ir.StreamEvent]:
    events: list[ir.StreamEvent] = [ir.MessageStart(id=draw(ident), model="gemini-2.5-flash")]
    calls = 0
    prev = None
    for idx in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "reasoning", "tool_call"]))
        if kind == prev and kind != "tool_call":
            kind = "tool_call"  # adjacent text (or thought) blocks are one block on the Gemini wire
        prev = kind
        if kind == "tool_call":
            calls += 1
            tid = draw(st.sampled_from(["call_gm_x", "toolu_" + draw(ident)]))
            events.append(
                ir.BlockStart(
                    idx, "tool_call", tool_id=tid + str(idx), tool_name=draw(ident), signature=draw(st.none() | b64)
                )
            )
            args = draw(json_objects)
            import orjson

            raw = orjson.dumps(args).decode()
            cut = draw(st.integers(0, len(raw)))
            events += [ir.ToolArgsDelta(idx, raw[:cut]), ir.ToolArgsDelta(idx, raw[cut:])]
        else:
            events.append(ir.BlockStart(idx, kind))  # type: ignore[arg-type]
            for t in draw(st.lists(text, min_size=1, max_size=3)):
                events.append(ir.TextDelta(idx, t) if kind == "text" else ir.ReasoningDelta(idx, t))
            if kind == "reasoning" and draw(st.booleans()):
                events.append(ir.SignatureDelta(idx, draw(b64)))
        events.append(ir.BlockStop(idx))
    stop = "tool_use" if calls else draw(st.sampled_from(["end_turn", "max_tokens", "content_filter"]))
    usage = draw(st.none() | st.builds(ir.Usage, st.integers(0, 10**6), st.integers(0, 10**6)))
    events.append(ir.MessageEnd(stop, usage=usage))  # type: ignore[arg-type]
    return events


def _summary(events: list[ir.StreamEvent]) -> list[Any]:
    """What a client sees: per block its kind and content, then the ending (ids of synthetic calls aside)."""
    import json

    out: list[Any] = []
    blocks: dict[int, list[Any]] = {}
    for e in events:
        if isinstance(e, ir.BlockStart):
            tid = None if (e.tool_id or "").startswith("call_gm_") else e.tool_id
            blocks[e.index] = [e.kind, tid, e.tool_name, e.signature or None, ""]
            out.append(blocks[e.index])
        elif isinstance(e, (ir.TextDelta, ir.ReasoningDelta)):
            blocks[e.index][4] += e.text
        elif isinstance(e, ir.ToolArgsDelta):
            blocks[e.index][4] += e.fragment
        elif isinstance(e, ir.SignatureDelta):
            blocks[e.index][3] = e.signature
        elif isinstance(e, ir.MessageEnd):
            out.append(("end", e.stop_reason, e.usage))
    for b in out:
        if isinstance(b, list) and b[0] == "tool_call":
            b[4] = json.loads(b[4] or "{}")
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(ir_streams(), st.integers(1, 50))
def test_stream_round_trip(events: list[ir.StreamEvent], piece: int) -> None:
    req = ir.Request(model="gemini-2.5-flash", stream=True)
    enc = CODEC.stream_encoder(req)
    raw = b"".join(enc.encode(e) for e in events)
    sse = SSEDecoder()
    dec = CODEC.stream_decoder(req)
    back: list[ir.StreamEvent] = []
    for i in range(0, len(raw), piece):
        for ev in sse.feed(raw[i : i + piece]):
            back.extend(dec.feed(ev))
    for ev in sse.close():
        back.extend(dec.feed(ev))
    back.extend(dec.close())
    assert isinstance(back[0], ir.MessageStart) and back[0].id == events[0].id
    assert _summary(back) == _summary(events)
