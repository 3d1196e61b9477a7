"""Golden files for the Gemini codec: Gemini -> IR -> Gemini for requests, responses and streams, plus other
formats' requests -> IR -> Gemini (``cross``).

Each ``<case>.in.*`` is decoded into the IR and encoded back; the result must equal ``<case>.out.*``
(identical to the input except for the canonical forms documented in trigate/formats/gemini.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from trigate.formats import get_codec
from trigate.formats.gemini import CODEC, SKIP_SIGNATURE, SYNTHETIC_ID_PREFIX, synthetic_call_id
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gemini"


def _cases(kind: str, ext: str) -> list[str]:
    return sorted(p.name[: -len(f".in.{ext}")] for p in (FIXTURES / kind).glob(f"*.in.{ext}"))


def _load(kind: str, name: str) -> tuple[dict, dict]:
    d = FIXTURES / kind
    return json.loads((d / f"{name}.in.json").read_text()), json.loads((d / f"{name}.out.json").read_text())


def test_cases_present() -> None:
    # Guards against the glob silently finding nothing (a moved fixture directory would pass vacuously).
    assert len(_cases("requests", "json")) >= 15
    assert len(_cases("responses", "json")) >= 8
    assert len(_cases("streams", "sse")) >= 9
    assert len(list((FIXTURES / "cross").glob("*.out.json"))) >= 3


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _cases("requests", "json"))
def test_request_golden(name: str) -> None:
    body, expected = _load("requests", name)
    req = CODEC.decode_request(body)
    assert CODEC.encode_request(req, "gemini-2.5-flash") == expected


def test_request_ir_system_and_generation() -> None:
    body, _ = _load("requests", "system_multiturn")
    req = CODEC.decode_request(body)
    assert req.messages[0].role == "system"
    assert [p.text for p in req.messages[0].content] == ["You are a terse assistant.", "Answer in French."]
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "user", "user"]
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k) == (256, 0.7, 0.95, 40)
    assert (req.n, req.seed, req.presence_penalty, req.frequency_penalty) == (2, 7, 0.5, -0.5)
    assert req.stop == ["END", "\n\n"]
    extras = req.extras["gemini"]
    assert extras["cachedContent"] == "cachedContents/abc123"
    assert extras["_generation_config"] == {"responseLogprobs": True, "logprobs": 3}


def test_request_ir_media() -> None:
    body, _ = _load("requests", "images_inline")
    parts = CODEC.decode_request(body).messages[0].content
    kinds = [type(p).__name__ for p in parts]
    assert kinds == [
        "Text",
        "Image",
        "Image",
        "Image",
        "Document",
        "Document",
        "Audio",
        "Document",
        "Document",
        "Document",
    ]
    assert parts[1].media_type == "image/png" and parts[1].data.startswith("iVBOR")
    assert parts[3].url == "gs://my-bucket/photos/cat.webp" and parts[3].data is None
    assert parts[6].format == "mp3"
    # text/plain documents are plain text in the IR
    assert parts[7].media_type == "text/plain" and parts[7].data == "Hello world"


def test_request_ir_tool_pairing() -> None:
    body, _ = _load("requests", "tools_parallel_responses")
    req = CODEC.decode_request(body)
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "assistant", "user"]
    calls = req.messages[1].content
    assert [c.id for c in calls] == ["call_gm_1_0", "call_gm_1_1", "call_gm_1_2"]
    assert calls[0].signature == "CiQBVHhIdGVzdC1zaWduYXR1cmUtb25l" and calls[1].signature is None
    assert json.loads(calls[1].arguments) == {"city": "London"}
    results = req.messages[2].content
    # Responses without ids answer the open calls of their name, oldest first.
    assert [(r.call_id, r.name, r.is_error) for r in results] == [
        ("call_gm_1_0", "get_weather", False),
        ("call_gm_1_1", "get_weather", True),
        ("call_gm_1_2", "get_time", False),
    ]
    assert json.loads(results[0].content[0].text) == {"temp": 21, "sky": "clear"}
    assert req.tool_choice == ir.ToolChoice("auto")
    assert [t.name for t in req.tools] == ["get_weather", "get_time"]


def test_request_ir_tool_choices() -> None:
    expected = {
        "tools_choice_any": ir.ToolChoice("required"),
        "tools_choice_none": ir.ToolChoice("none"),
        "tools_choice_forced": ir.ToolChoice("tool", name="get_weather"),
        "tools_choice_validated": ir.ToolChoice("auto"),
    }
    for name, choice in expected.items():
        req = CODEC.decode_request(_load("requests", name)[0])
        assert req.tool_choice == choice, name
    # Only the choice the IR cannot say is kept raw for a Gemini round trip.
    assert "_tool_config" in CODEC.decode_request(_load("requests", "tools_choice_validated")[0]).extras["gemini"]
    assert "gemini" not in CODEC.decode_request(_load("requests", "tools_choice_forced")[0]).extras


def test_request_ir_thoughts_and_ids() -> None:
    req = CODEC.decode_request(_load("requests", "thought_signatures")[0])
    model_turn = req.messages[1].content
    assert isinstance(model_turn[0], ir.Reasoning) and model_turn[0].text.startswith("The user wants")
    # A signature on a text part becomes signature-only reasoning right after that text.
    assert isinstance(model_turn[1], ir.Text) and model_turn[1].text == "Let me check."
    assert model_turn[2] == ir.Reasoning(text="", signature="Cj0BVHh0ZXh0LXNpZ25hdHVyZS10aHJlZQ==")
    assert req.reasoning == ir.ReasoningConfig(budget_tokens=2048, summary="auto")

    req = CODEC.decode_request(_load("requests", "function_ids")[0])
    call = req.messages[1].content[0]
    result = req.messages[2].content[0]
    assert call.id == "fc-7f3a" and result.call_id == "fc-7f3a"
    assert isinstance(result.content[1], ir.Image)  # functionResponse.parts


def test_request_ir_formats_and_thinking() -> None:
    req = CODEC.decode_request(_load("requests", "json_schema")[0])
    assert req.response_format.type == "json_schema"
    assert req.response_format.schema["required"] == ["name", "age"]
    assert CODEC.decode_request(_load("requests", "json_object")[0]).response_format == ir.ResponseFormat("json_object")
    assert CODEC.decode_request(_load("requests", "thinking_disabled")[0]).reasoning.mode == "disabled"
    assert CODEC.decode_request(_load("requests", "thinking_level")[0]).reasoning.effort == "high"
    dyn = CODEC.decode_request(_load("requests", "thinking_dynamic")[0]).reasoning
    assert (dyn.budget_tokens, dyn.effort) == (-1, "medium")


def test_request_snake_case_is_read() -> None:
    req = CODEC.decode_request(_load("requests", "snake_case")[0])
    assert req.messages[0].content[0].text == "Be exact."
    assert isinstance(req.messages[1].content[1], ir.Image)
    assert req.messages[2].content[0].signature == "CiQBVHhIdGVzdC1zaWduYXR1cmUtb25l"
    assert req.tool_choice == ir.ToolChoice("tool", name="get_weather")
    assert (req.max_tokens, req.top_k, req.stop) == (100, 5, ["STOP"])
    assert req.response_format == ir.ResponseFormat("text")
    # Unknown fields stay as the client spelled them.
    assert "safety_settings" in req.extras["gemini"]


# --------------------------------------------------------------------------------------------
# Other formats -> Gemini
# --------------------------------------------------------------------------------------------

CROSS = {
    "chat_tools_history": ("chat", "openai_chat", "gemini-2.5-flash"),
    "anthropic_thinking": ("anthropic", "anthropic", "gemini-3-pro-preview"),
    "responses_items": ("responses", "openai_responses", "gemini-2.5-flash-lite"),
}


@pytest.mark.parametrize("name", sorted(CROSS))
def test_cross_golden(name: str) -> None:
    suffix, fmt, model = CROSS[name]
    body = json.loads((FIXTURES / "cross" / f"{name}.{suffix}.json").read_text())
    expected = json.loads((FIXTURES / "cross" / f"{name}.out.json").read_text())
    req = get_codec(fmt).decode_request(body)
    assert CODEC.encode_request(req, model) == expected


def test_cross_facts() -> None:
    out = json.loads((FIXTURES / "cross" / "chat_tools_history.out.json").read_text())
    # Chat tool results have no name: recovered from the assistant's calls; strings wrapped as objects.
    responses = [p["functionResponse"] for p in out["contents"][2]["parts"] if "functionResponse" in p]
    assert [(r["name"], r["id"], r["response"]) for r in responses] == [
        ("get_weather", "call_abc", {"temp": 21}),
        ("get_weather", "call_def", {"result": "sunny, 30C"}),
    ]
    # Mid-conversation developer message hoisted into systemInstruction; effort high -> Gemini's 24576.
    assert [p["text"] for p in out["systemInstruction"]["parts"]] == ["You are helpful.", "Answer in one sentence."]
    assert out["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}
    assert "user" not in json.dumps(out["generationConfig"]) and "metadata" not in out

    out = json.loads((FIXTURES / "cross" / "anthropic_thinking.out.json").read_text())
    call = out["contents"][1]["parts"][2]
    # Gemini 3 needs a signature on replayed calls; Anthropic history has none to give.
    assert call["thoughtSignature"] == SKIP_SIGNATURE
    result = out["contents"][2]["parts"][0]["functionResponse"]
    assert (
        result["response"] == {"error": "renderer crashed"}
        and result["parts"][0]["inlineData"]["mimeType"] == "image/png"
    )


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _cases("responses", "json"))
def test_response_golden(name: str) -> None:
    body, expected = _load("responses", name)
    resp = CODEC.decode_response(body)
    assert CODEC.encode_response(resp, ir.Request(model="ignored")) == expected


def test_response_ir_facts() -> None:
    resp = CODEC.decode_response(_load("responses", "text_stop")[0])
    assert (resp.id, resp.model, resp.stop_reason) == ("mAitaOrNHIyYvdIPq-2FuQw", "gemini-2.5-flash", "end_turn")
    assert resp.usage == ir.Usage(input_tokens=20, output_tokens=11)

    resp = CODEC.decode_response(_load("responses", "function_calls_no_ids")[0])
    assert resp.stop_reason == "tool_use"  # STOP with function calls
    calls = [p for p in resp.content if isinstance(p, ir.ToolCall)]
    assert [c.id for c in calls] == [
        synthetic_call_id("resp-fc-1", 0, "get_weather", '{"city":"Paris"}'),
        synthetic_call_id("resp-fc-1", 1, "get_weather", '{"city":"London","units":{"temp":"C"}}'),
    ]
    assert all(c.id.startswith(SYNTHETIC_ID_PREFIX) for c in calls) and calls[0].id != calls[1].id
    assert calls[0].signature == "CiQBVHhIdGVzdC1zaWduYXR1cmUtb25l" and calls[1].signature is None
    # output = candidates + thoughts; reasoning = thoughts
    assert resp.usage == ir.Usage(input_tokens=52, output_tokens=150, reasoning_tokens=120)

    resp = CODEC.decode_response(_load("responses", "thoughts")[0])
    assert isinstance(resp.content[0], ir.Reasoning) and resp.content[0].text.startswith("**Weighing")
    assert resp.content[2] == ir.Reasoning(text="", signature="Cj0BVHh0ZXh0LXNpZ25hdHVyZS10aHJlZQ==")
    # input = prompt + tool-use prompt; cache reads from cachedContentTokenCount
    assert resp.usage == ir.Usage(input_tokens=1208, output_tokens=327, cache_read_tokens=1024, reasoning_tokens=310)
    assert resp.usage.total_tokens == 1535

    assert CODEC.decode_response(_load("responses", "max_tokens")[0]).stop_reason == "max_tokens"
    safety = CODEC.decode_response(_load("responses", "safety")[0])
    assert safety.stop_reason == "content_filter" and safety.content == []
    assert CODEC.decode_response(_load("responses", "recitation")[0]).stop_reason == "content_filter"

    resp = CODEC.decode_response(_load("responses", "vertex_ids")[0])
    assert resp.content[0].id == "fc-001" and resp.created == 1748779200

    resp = CODEC.decode_response(_load("responses", "code_execution")[0])
    # Code parts read as markdown for other formats.
    assert resp.content[0].text == "```python\nprint(sum(range(5)))\n```"
    assert resp.content[1].text == "```\n10\n\n```"


def test_stream_and_body_synthesise_the_same_ids() -> None:
    body = _load("responses", "function_calls_no_ids")[0]
    resp = CODEC.decode_response(body)
    chunk = json.dumps(body)
    events = CODEC.stream_decoder(ir.Request(model="m")).feed(chunk)
    starts = [e.tool_id for e in events if isinstance(e, ir.BlockStart) and e.kind == "tool_call"]
    assert starts == [c.id for c in resp.content if isinstance(c, ir.ToolCall)]


def test_response_from_foreign_ir() -> None:
    resp = ir.Response(
        id="msg_01",
        model="claude-sonnet-4-5",
        content=[
            ir.Reasoning(text="think", signature="sig"),
            ir.Text("Hi"),
            ir.Refusal("no"),
            ir.ToolCall("toolu_1", "f", '{"a":1}'),
            ir.ToolCall("call_x", "g", "not json"),
            ir.Reasoning(redacted="opaque"),
        ],
        stop_reason="tool_use",
        usage=ir.Usage(input_tokens=100, output_tokens=50, cache_read_tokens=60, cache_write_tokens=10),
    )
    body = CODEC.encode_response(resp, ir.Request(model="claude"))
    assert body == {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "think", "thought": True, "thoughtSignature": "sig"},
                        {"text": "Hi"},
                        {"text": "no"},
                        {"functionCall": {"name": "f", "args": {"a": 1}, "id": "toolu_1"}},
                        {"functionCall": {"name": "g", "args": {"_raw": "not json"}, "id": "call_x"}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 100,
            "candidatesTokenCount": 50,
            "totalTokenCount": 150,
            "cachedContentTokenCount": 60,
        },
        "modelVersion": "claude-sonnet-4-5",
        "responseId": "msg_01",
    }


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def _split(raw: bytes, mode: str) -> list[bytes]:
    if mode == "whole":
        return [raw]
    if mode == "bytewise":
        return [raw[i : i + 1] for i in range(len(raw))]
    if mode == "lf":
        lf = raw.replace(b"\r\n", b"\n")
        return [lf[i : i + 7] for i in range(0, len(lf), 7)]
    rng = random.Random(len(raw))
    pieces, i = [], 0
    while i < len(raw):
        n = rng.randint(1, 40)
        pieces.append(raw[i : i + n])
        i += n
    return pieces


def transcode(pieces: list[bytes]) -> tuple[list[ir.StreamEvent], bytes]:
    req = ir.Request(model="gemini-2.5-flash", stream=True)
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


@pytest.mark.parametrize("mode", ["whole", "bytewise", "lf", "random"])
@pytest.mark.parametrize("name", _cases("streams", "sse"))
def test_stream_golden(name: str, mode: str) -> None:
    raw = (FIXTURES / "streams" / f"{name}.in.sse").read_bytes()
    expected = (FIXTURES / "streams" / f"{name}.out.sse").read_bytes()
    _, out = transcode(_split(raw, mode))
    assert out == expected


def _events(name: str) -> list[ir.StreamEvent]:
    raw = (FIXTURES / "streams" / f"{name}.in.sse").read_bytes()
    return transcode(_split(raw, "random"))[0]


def _grammar_ok(events: list[ir.StreamEvent]) -> bool:
    """MessageStart, blocks numbered 0.. each opened and closed in order, then one MessageEnd / StreamError."""
    if not events or not isinstance(events[0], (ir.MessageStart, ir.StreamError)):
        return False
    open_idx, nxt = None, 0
    for e in events[1:-1]:
        if isinstance(e, ir.BlockStart):
            if open_idx is not None or e.index != nxt:
                return False
            open_idx, nxt = e.index, nxt + 1
        elif isinstance(e, ir.BlockStop):
            if e.index != open_idx:
                return False
            open_idx = None
        elif getattr(e, "index", None) != open_idx:
            return False
    last = events[-1]
    return isinstance(last, ir.StreamError) or (isinstance(last, ir.MessageEnd) and open_idx is None)


@pytest.mark.parametrize("name", _cases("streams", "sse"))
def test_stream_grammar(name: str) -> None:
    assert _grammar_ok(_events(name))


def test_stream_ir_text_and_usage() -> None:
    events = _events("text_chunks")
    assert isinstance(events[0], ir.MessageStart) and events[0].id == "resp-s1" and events[0].usage.input_tokens == 12
    # One text block across three chunks.
    assert [type(e).__name__ for e in events[1:-1]] == [
        "BlockStart",
        "TextDelta",
        "TextDelta",
        "TextDelta",
        "BlockStop",
    ]
    assert "".join(e.text for e in events if isinstance(e, ir.TextDelta)) == 'Hello wörld! 👋\n"quoted"'
    assert events[-1] == ir.MessageEnd("end_turn", usage=ir.Usage(input_tokens=12, output_tokens=6))


def test_stream_ir_function_calls() -> None:
    events = _events("function_call")
    starts = [e for e in events if isinstance(e, ir.BlockStart) and e.kind == "tool_call"]
    assert [(s.index, s.tool_name, s.signature is not None) for s in starts] == [
        (1, "get_weather", True),
        (2, "get_weather", False),
        (3, "get_time", False),
    ]
    assert starts[0].tool_id == synthetic_call_id("resp-fc", 0, "get_weather", '{"city":"Paris"}')
    args = [e.fragment for e in events if isinstance(e, ir.ToolArgsDelta)]
    assert args == ['{"city":"Paris"}', '{"city":"London"}', "{}"]
    end = events[-1]
    assert end.stop_reason == "tool_use"
    assert end.usage == ir.Usage(input_tokens=12, output_tokens=65, reasoning_tokens=40)

    vertex = _events("vertex_call_ids")
    assert vertex[1].tool_id == "fc-v1"


def test_stream_ir_thoughts_and_signature() -> None:
    events = _events("thoughts_signature")
    kinds = [(e.index, e.kind) for e in events if isinstance(e, ir.BlockStart)]
    assert kinds == [(0, "reasoning"), (1, "text"), (2, "reasoning")]
    assert (
        "".join(e.text for e in events if isinstance(e, ir.ReasoningDelta))
        == "**Planning**\nThe user wants a greeting."
    )
    assert [e.signature for e in events if isinstance(e, ir.SignatureDelta)] == ["Cj0BVHh0ZXh0LXNpZ25hdHVyZS10aHJlZQ=="]
    assert events[-1].usage.reasoning_tokens == 88


def test_stream_ir_endings() -> None:
    assert _events("max_tokens")[-1].stop_reason == "max_tokens"
    # usage that arrives after the finish chunk still reaches MessageEnd
    assert _events("usage_after_finish")[-1].usage == ir.Usage(input_tokens=5, output_tokens=2)

    trunc = _events("truncated")[-1]
    assert isinstance(trunc, ir.StreamError) and trunc.error.kind == "upstream_unavailable"

    err = _events("error_event")[-1]
    assert isinstance(err, ir.StreamError)
    assert (err.error.kind, err.error.status, err.error.retry_after) == ("rate_limit", 429, 7.0)

    blocked = _events("prompt_blocked")
    assert len(blocked) == 1 and isinstance(blocked[0], ir.StreamError)
    assert (blocked[0].error.kind, blocked[0].error.status) == ("invalid_request", 400)
    assert "PROHIBITED_CONTENT" in blocked[0].error.message


def test_stream_decoder_edge_cases() -> None:
    dec = CODEC.stream_decoder(ir.Request(model="m"))
    assert dec.close()[0].error.message.endswith("without any response")

    dec = CODEC.stream_decoder(ir.Request(model="m"))
    assert isinstance(dec.feed("not json")[0], ir.StreamError)
    assert dec.feed('{"candidates":[]}') == []  # finished: everything after is ignored
    assert dec.close() == []

    dec = CODEC.stream_decoder(ir.Request(model="m"))
    chunk = {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"}]}
    events = dec.feed(json.dumps(chunk))
    # content after the finish chunk is ignored; MessageEnd comes at EOF
    assert dec.feed(json.dumps({"candidates": [{"content": {"parts": [{"text": "late"}]}}]})) == []
    end = dec.close()
    assert [type(e).__name__ for e in events + end] == [
        "MessageStart",
        "BlockStart",
        "TextDelta",
        "BlockStop",
        "MessageEnd",
    ]


# --------------------------------------------------------------------------------------------
# The official SDK (google-genai) accepts what the encoders write
# --------------------------------------------------------------------------------------------


def _sdk_client(content: bytes, content_type: str):
    genai = pytest.importorskip("google.genai")
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=content)

    types = genai.types
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return genai.Client(api_key="test", http_options=types.HttpOptions(httpx_client=http))


@pytest.mark.parametrize("name", ["text_chunks", "function_call", "thoughts_signature", "max_tokens"])
def test_sdk_accepts_stream(name: str) -> None:
    body = (FIXTURES / "streams" / f"{name}.out.sse").read_bytes()
    client = _sdk_client(body, "text/event-stream")
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    parts = [p for c in chunks if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts]
    final = chunks[-1]
    assert final.candidates[0].finish_reason is not None
    assert final.usage_metadata.total_token_count > 0
    if name == "text_chunks":
        assert "".join(p.text for p in parts) == 'Hello wörld! 👋\n"quoted"'
    if name == "function_call":
        calls = [p.function_call for p in parts if p.function_call]
        assert [(c.name, c.args) for c in calls] == [
            ("get_weather", {"city": "Paris"}),
            ("get_weather", {"city": "London"}),
            ("get_time", {}),
        ]
        assert parts[1].thought_signature  # base64 decoded by the SDK
    if name == "thoughts_signature":
        assert [bool(p.thought) for p in parts] == [True, True, False, False, False]
        assert final.usage_metadata.thoughts_token_count == 88


@pytest.mark.parametrize("name", ["error_event", "truncated", "prompt_blocked"])
def test_sdk_raises_on_stream_error(name: str) -> None:
    errors = pytest.importorskip("google.genai.errors")
    body = (FIXTURES / "streams" / f"{name}.out.sse").read_bytes()
    client = _sdk_client(body, "text/event-stream")
    with pytest.raises(errors.APIError) as info:
        list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert info.value.code in (400, 429, 502)


@pytest.mark.parametrize("name", _cases("responses", "json"))
def test_sdk_accepts_response(name: str) -> None:
    expected = _load("responses", name)[1]
    client = _sdk_client(json.dumps(expected).encode(), "application/json")
    resp = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert resp.response_id == expected["responseId"]
    assert resp.usage_metadata.prompt_token_count == expected["usageMetadata"]["promptTokenCount"]
    assert resp.candidates[0].finish_reason.value == expected["candidates"][0]["finishReason"]
