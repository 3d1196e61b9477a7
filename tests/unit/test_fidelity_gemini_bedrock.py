"""Issue 13, translation fidelity towards Gemini and Bedrock (pure core):

- 8: an Anthropic output effort without thinking is not a request for thinking;
- 9: ``image/jpg`` is written ``image/jpeg`` for Gemini/Vertex, as for Anthropic and Bedrock;
- 12: Gemini 3's signature on a text part is no empty thinking block for a caller that did not ask for thinking;
- 14: parallel tool calls turned off reach Claude on Bedrock (the one target of the two with a control).
"""

from __future__ import annotations

from typing import Any

import orjson

from trigate.formats import anthropic, bedrock, gemini, openai_chat
from trigate.mock import bedrock as mock_bedrock
from trigate.mock import gemini as mock_gemini
from trigate.mock.replies import PlannedCall, Reply
from trigate.translate import ir
from trigate.translate.media import image_type
from trigate.translate.reasoning import thinking_requested

CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-pro-v1:0"
GEMINI_3 = "gemini-3-pro-preview"
JPEG = "/9j/4AAQSkZJRgABAQ"
TOOLS = [
    {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
]


def messages(**fields: Any) -> ir.Request:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "Hi"}]}
    return anthropic.CODEC.decode_request({**body, **fields})


def chat(**fields: Any) -> ir.Request:
    return openai_chat.CODEC.decode_request({"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields})


# --------------------------------------------------------------------------------------------
# 8. Output effort is not thinking
# --------------------------------------------------------------------------------------------


def test_anthropic_effort_alone_keeps_thinking_off_for_claude_on_bedrock() -> None:
    req = messages(output_config={"effort": "high"}, temperature=0.3, top_k=5)
    out = bedrock.CODEC.encode_request(req, CLAUDE)
    # Claude's own output_config rides in the model fields; Converse's outputConfig has no effort member.
    assert out["additionalModelRequestFields"] == {"output_config": {"effort": "high"}, "top_k": 5}
    assert out["inferenceConfig"] == {"maxTokens": 1000, "temperature": 0.3}
    assert "outputConfig" not in out


def test_anthropic_effort_with_thinking_goes_to_claudes_output_config_on_bedrock() -> None:
    req = messages(thinking={"type": "adaptive"}, output_config={"effort": "max"})
    out = bedrock.CODEC.encode_request(req, CLAUDE)
    assert out["additionalModelRequestFields"] == {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}
    assert "outputConfig" not in out


def test_openai_reasoning_effort_still_turns_thinking_on_for_claude_on_bedrock() -> None:
    out = bedrock.CODEC.encode_request(chat(reasoning_effort="high", max_completion_tokens=1000), CLAUDE)
    assert out["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 16384}}


def test_bedrock_output_effort_stays_an_effort_towards_anthropic() -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}], "inferenceConfig": {"maxTokens": 500},
            "outputConfig": {"effort": "low"}}
    out = anthropic.CODEC.encode_request(bedrock.CODEC.decode_request(body), "claude-sonnet-4-5")
    assert "thinking" not in out
    assert out["output_config"] == {"effort": "low"} and out["max_tokens"] == 500


def test_bedrock_model_fields_effort_is_read_and_restored() -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "additionalModelRequestFields": {"output_config": {"effort": "medium"}}}
    req = bedrock.CODEC.decode_request(body)
    assert (req.reasoning.effort, req.reasoning.effort_is_hint) == ("medium", True)
    assert bedrock.CODEC.encode_request(req, CLAUDE)["additionalModelRequestFields"] == {
        "output_config": {"effort": "medium"}
    }


def test_anthropic_effort_alone_sets_no_gemini_thinking() -> None:
    out = gemini.CODEC.encode_request(messages(output_config={"effort": "high"}), "gemini-2.5-flash")
    assert "thinkingConfig" not in out.get("generationConfig", {})


def test_gemini_thinking_from_a_request_for_it() -> None:
    # An OpenAI reasoning_effort asks for thinking; so does Anthropic thinking, effort or not.
    effort = gemini.CODEC.encode_request(chat(reasoning_effort="high"), "gemini-2.5-flash")
    assert effort["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}
    both = gemini.CODEC.encode_request(
        messages(thinking={"type": "enabled", "budget_tokens": 2048}, output_config={"effort": "low"}),
        "gemini-2.5-flash",
    )
    assert both["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 2048, "includeThoughts": True}


def test_thinking_requested() -> None:
    assert not thinking_requested(None)
    assert not thinking_requested(messages(output_config={"effort": "high"}).reasoning)
    assert not thinking_requested(messages(thinking={"type": "disabled"}).reasoning)
    assert thinking_requested(messages(thinking={"type": "adaptive"}).reasoning)
    assert thinking_requested(chat(reasoning_effort="low").reasoning)
    assert not thinking_requested(chat(reasoning_effort="none").reasoning)


# --------------------------------------------------------------------------------------------
# 9. image/jpg
# --------------------------------------------------------------------------------------------


def test_image_type() -> None:
    assert image_type("image/jpg") == "image/jpeg"
    assert image_type("IMAGE/PNG") == "image/png"
    assert image_type(None, JPEG) == "image/jpeg"
    assert image_type("application/octet-stream", JPEG) == "image/jpeg"
    assert image_type("application/octet-stream", "AAAA") == "application/octet-stream"
    assert image_type(None, "AAAA") is None


def test_jpg_data_url_goes_to_gemini_as_jpeg() -> None:
    req = chat(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{JPEG}"}},
    ]}])
    parts = gemini.CODEC.encode_request(req, "gemini-2.5-flash")["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/jpeg", "data": JPEG}}


def test_gemini_image_types_by_reference_and_sniffed() -> None:
    req = ir.Request(model="m", messages=[ir.Message("user", [
        ir.Image(url="gs://bucket/cat.jpg", media_type="image/jpg"),
        ir.Image(data=JPEG),  # no type: the bytes say JPEG
    ])])
    parts = gemini.CODEC.encode_request(req, "gemini-2.5-flash")["contents"][0]["parts"]
    assert parts == [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/cat.jpg"}},
        {"inlineData": {"mimeType": "image/jpeg", "data": JPEG}},
    ]


def test_jpg_still_jpeg_for_anthropic_and_bedrock() -> None:
    img = ir.Image(media_type="image/jpg", data=JPEG)
    req = ir.Request(model="m", max_tokens=10, messages=[ir.Message("user", [ir.Text("x"), img])])
    block = anthropic.CODEC.encode_request(req, "claude-sonnet-4-5")["messages"][0]["content"][1]
    assert block["source"]["media_type"] == "image/jpeg"
    assert bedrock.CODEC.encode_request(req, CLAUDE)["messages"][0]["content"][1]["image"]["format"] == "jpeg"


def test_mock_gemini_refuses_image_jpg() -> None:
    part = {"inlineData": {"mimeType": "image/jpg", "data": JPEG}}
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}, part]}]}
    assert mock_gemini.validate(body, "gemini-2.5-flash") == "Unsupported MIME type: image/jpg"
    part["inlineData"]["mimeType"] = "image/jpeg"
    assert mock_gemini.validate(body, "gemini-2.5-flash") is None


# --------------------------------------------------------------------------------------------
# 12. Gemini 3 text signatures
# --------------------------------------------------------------------------------------------


def _text_reply() -> Reply:
    return Reply(["Hello", " there"], [], "stop", 5, 2)


def test_gemini3_text_signature_is_no_thinking_block_unasked() -> None:
    upstream = mock_gemini.generate(GEMINI_3, _text_reply())
    assert "thoughtSignature" in upstream["candidates"][0]["content"]["parts"][0]  # what Gemini 3 sends
    out = anthropic.CODEC.encode_response(gemini.CODEC.decode_response(upstream), messages())
    assert out["content"] == [{"type": "text", "text": "Hello there"}]


def test_gemini3_text_signature_kept_for_a_thinking_caller() -> None:
    upstream = mock_gemini.generate(GEMINI_3, _text_reply())
    sig = upstream["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    req = messages(thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2000)
    out = anthropic.CODEC.encode_response(gemini.CODEC.decode_response(upstream), req)
    assert out["content"][-1] == {"type": "thinking", "thinking": "", "signature": sig}


def test_gemini3_call_signature_stays_on_the_call() -> None:
    upstream = mock_gemini.generate(GEMINI_3, Reply([], [PlannedCall("get_weather", '{"city":"Paris"}')],
                                                    "tool_calls", 5, 5))
    sig = upstream["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    resp = gemini.CODEC.decode_response(upstream)
    assert [type(p) for p in resp.content] == [ir.ToolCall] and resp.content[0].signature == sig
    out = anthropic.CODEC.encode_response(resp, messages())
    assert [b["type"] for b in out["content"]] == ["tool_use"]


def _anthropic_events(req: ir.Request, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    decoder = gemini.CODEC.stream_decoder(req)
    encoder = anthropic.CODEC.stream_encoder(req)
    raw = b""
    for chunk in chunks:
        for ev in decoder.feed(orjson.dumps(chunk)):
            raw += encoder.encode(ev)
    for ev in decoder.close():
        raw += encoder.encode(ev)
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_gemini3_stream_signature_is_no_thinking_block_unasked() -> None:
    events = _anthropic_events(messages(stream=True), mock_gemini.stream_chunks(GEMINI_3, _text_reply()))
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["text"]
    assert [e["index"] for e in events if e["type"] == "content_block_stop"] == [0]
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == "Hello there"


def test_gemini3_stream_signature_kept_for_a_thinking_caller() -> None:
    req = messages(stream=True, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2000)
    events = _anthropic_events(req, mock_gemini.stream_chunks(GEMINI_3, _text_reply()))
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["text", "thinking"]
    assert any(e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta" for e in events)


def test_held_reasoning_with_text_still_reaches_an_unasking_caller() -> None:
    # A provider that thinks unasked and shows it: the block opens with its first text, signature after.
    enc = anthropic.CODEC.stream_encoder(messages(stream=True))
    raw = b"".join(enc.encode(e) for e in [
        ir.MessageStart(id="msg_1", model="m"),
        ir.BlockStart(0, "reasoning"), ir.SignatureDelta(0, "sig"), ir.ReasoningDelta(0, "hmm"), ir.BlockStop(0),
        ir.BlockStart(1, "text"), ir.TextDelta(1, "hi"), ir.BlockStop(1),
        ir.MessageEnd("end_turn"),
    ])
    events = [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]
    blocks = [(e["type"], e.get("index"), (e.get("delta") or {}).get("type")) for e in events
              if e["type"].startswith("content_block")]
    assert blocks == [
        ("content_block_start", 0, None), ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"), ("content_block_stop", 0, None),
        ("content_block_start", 1, None), ("content_block_delta", 1, "text_delta"), ("content_block_stop", 1, None),
    ]


# --------------------------------------------------------------------------------------------
# 14. Parallel tool calls off
# --------------------------------------------------------------------------------------------

CHAT_TOOLS = [{"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}} for t in TOOLS]


def test_parallel_off_reaches_claude_on_bedrock() -> None:
    out = bedrock.CODEC.encode_request(chat(tools=CHAT_TOOLS, parallel_tool_calls=False), CLAUDE)
    assert out["toolConfig"]["toolChoice"] == {"auto": {}}
    assert out["additionalModelRequestFields"] == {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}


def test_parallel_off_names_the_same_choice_as_tool_config() -> None:
    forced = messages(tools=TOOLS, tool_choice={"type": "tool", "name": "get_time", "disable_parallel_tool_use": True})
    out = bedrock.CODEC.encode_request(forced, CLAUDE)
    assert out["toolConfig"]["toolChoice"] == {"tool": {"name": "get_time"}}
    assert out["additionalModelRequestFields"]["tool_choice"] == {
        "type": "tool", "name": "get_time", "disable_parallel_tool_use": True
    }
    required = bedrock.CODEC.encode_request(
        chat(tools=CHAT_TOOLS, tool_choice="required", parallel_tool_calls=False), CLAUDE
    )
    assert required["additionalModelRequestFields"]["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_parallel_off_left_out_where_it_cannot_apply() -> None:
    # Other Bedrock models reject unknown model fields; no tools or tool choice none: nothing to restrain.
    assert "additionalModelRequestFields" not in bedrock.CODEC.encode_request(
        chat(tools=CHAT_TOOLS, parallel_tool_calls=False), NOVA
    )
    assert "additionalModelRequestFields" not in bedrock.CODEC.encode_request(chat(parallel_tool_calls=False), CLAUDE)
    none = chat(tools=CHAT_TOOLS, tool_choice="none", parallel_tool_calls=False)
    assert "additionalModelRequestFields" not in bedrock.CODEC.encode_request(none, CLAUDE)
    assert "additionalModelRequestFields" not in bedrock.CODEC.encode_request(chat(tools=CHAT_TOOLS), CLAUDE)


def test_bedrock_callers_claude_tool_choice_is_read_and_restored() -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}], "inferenceConfig": {"maxTokens": 100},
            "toolConfig": {"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object"}}}}],
                           "toolChoice": {"auto": {}}},
            "additionalModelRequestFields": {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}}
    req = bedrock.CODEC.decode_request(body)
    assert req.parallel_tool_calls is False
    assert bedrock.CODEC.encode_request(req, CLAUDE) == body
    assert anthropic.CODEC.encode_request(req, "claude-sonnet-4-5")["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True
    }


def test_mock_bedrock_honours_claudes_tool_choice_and_converse_shape() -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object"}}}}]},
            "additionalModelRequestFields": {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}}
    assert mock_bedrock.validate(body) is None
    assert mock_bedrock.conversation(body).parallel is False
    body["additionalModelRequestFields"] = {"tool_choice": {"disable_parallel_tool_use": True}}
    assert "tool_choice.type" in mock_bedrock.validate(body)
    del body["additionalModelRequestFields"]
    body["outputConfig"] = {"effort": "high"}
    assert "extraneous key [effort]" in mock_bedrock.validate(body)
