"""Gemini codec error paths: bad client requests (400 naming the field), what Gemini cannot take, upstream
error bodies in and out, blocked prompts."""

from __future__ import annotations

import json

import orjson
import pytest

from trigate.errors import GatewayError
from trigate.formats.gemini import CODEC, PLACEHOLDER_USER_TEXT, SKIP_SIGNATURE
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder

USER = {"role": "user", "parts": [{"text": "hi"}]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": {"role": "user"}}, "contents"),
        ({"contents": ["x"]}, "contents[0]"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"role": "user", "parts": {"text": "x"}}]}, "contents[0].parts"),
        ({"contents": [{"role": "user", "parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
        (
            {"contents": [{"role": "user", "parts": [{"inlineData": {"data": "AAAA"}}]}]},
            "contents[0].parts[0].inlineData.mimeType",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "text/plain", "data": "***"}}]}]},
            "contents[0].parts[0].inlineData.data",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"fileData": {"mimeType": "image/png"}}]}]},
            "contents[0].parts[0].fileData.fileUri",
        ),
        ({"contents": [{"role": "user", "parts": [{"video": 1}]}]}, "contents[0].parts[0]"),
        (
            {"contents": [{"role": "user", "parts": [{"functionCall": {"name": "f"}}]}]},
            "contents[0].parts[0].functionCall",
        ),
        (
            {"contents": [{"role": "model", "parts": [{"functionCall": {"args": {}}}]}]},
            "contents[0].parts[0].functionCall.name",
        ),
        (
            {"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": "{}"}}]}]},
            "contents[0].parts[0].functionCall.args",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"functionResponse": {"response": {}}}]}]},
            "contents[0].parts[0].functionResponse.name",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "ok"}}]}]},
            "contents[0].parts[0].functionResponse.response",
        ),
        ({"contents": [{"role": "model", "parts": [{"text": "t", "thought": "yes"}]}]}, "contents[0].parts[0].thought"),
        ({"contents": [USER], "systemInstruction": {"parts": [{"inlineData": {}}]}}, "systemInstruction.parts[0].text"),
        ({"contents": [USER], "tools": {"functionDeclarations": []}}, "tools"),
        (
            {"contents": [USER], "tools": [{"functionDeclarations": [{"description": "x"}]}]},
            "tools[0].functionDeclarations[0].name",
        ),
        (
            {"contents": [USER], "tools": [{"functionDeclarations": [{"name": "f", "parameters": []}]}]},
            "tools[0].functionDeclarations[0].parameters",
        ),
        (
            {"contents": [USER], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
            "toolConfig.functionCallingConfig.mode",
        ),
        (
            {"contents": [USER], "toolConfig": {"functionCallingConfig": {"allowedFunctionNames": "f"}}},
            "toolConfig.functionCallingConfig.allowedFunctionNames",
        ),
        ({"contents": [USER], "generationConfig": []}, "generationConfig"),
        ({"contents": [USER], "generationConfig": {"maxOutputTokens": 1.5}}, "generationConfig.maxOutputTokens"),
        ({"contents": [USER], "generationConfig": {"temperature": "hot"}}, "generationConfig.temperature"),
        ({"contents": [USER], "generationConfig": {"stopSequences": "END"}}, "generationConfig.stopSequences"),
        ({"contents": [USER], "generationConfig": {"responseJsonSchema": "{}"}}, "generationConfig.responseJsonSchema"),
        (
            {"contents": [USER], "generationConfig": {"thinkingConfig": {"thinkingBudget": "lots"}}},
            "generationConfig.thinkingConfig.thinkingBudget",
        ),
    ],
)
def test_bad_requests_name_the_field(body: dict, param: str) -> None:
    with pytest.raises(GatewayError) as info:
        CODEC.decode_request(body)
    err = info.value
    assert (err.kind, err.status, err.param) == ("invalid_request", 400, param)


def test_non_object_body() -> None:
    with pytest.raises(GatewayError) as info:
        CODEC.decode_request([])  # type: ignore[arg-type]
    assert info.value.status == 400


def test_int64_as_string_is_accepted() -> None:
    # proto3 JSON writes int64 as strings; Google clients may send them so.
    req = CODEC.decode_request({"contents": [USER], "generationConfig": {"seed": "12", "maxOutputTokens": "40"}})
    assert (req.seed, req.max_tokens) == (12, 40)


# --------------------------------------------------------------------------------------------
# What Gemini cannot take
# --------------------------------------------------------------------------------------------


def _req(*messages: ir.Message, **kw: object) -> ir.Request:
    return ir.Request(model="m", messages=list(messages), **kw)  # type: ignore[arg-type]


def test_http_image_url_is_refused_not_fetched() -> None:
    req = _req(ir.Message("user", [ir.Text("look"), ir.Image(url="https://example.com/cat.png")]))
    with pytest.raises(GatewayError) as info:
        CODEC.encode_request(req, "gemini-2.5-flash")
    err = info.value
    assert (err.kind, err.status, err.param) == ("invalid_request", 400, "messages[0].content[1]")
    assert "inline data" in err.message and "base64" in err.message


def test_http_document_url_and_file_ids_are_refused() -> None:
    for part in (
        ir.Document(url="http://example.com/a.pdf"),
        ir.Document(file_id="file-abc"),
        ir.Image(file_id="file-1"),
    ):
        with pytest.raises(GatewayError) as info:
            CODEC.encode_request(_req(ir.Message("user", [part])), "gemini-2.5-flash")
        assert info.value.status == 400


def test_gs_and_files_api_urls_pass_by_reference() -> None:
    req = _req(
        ir.Message(
            "user",
            [
                ir.Image(url="gs://b/cat.png", media_type="image/png"),
                ir.Document(
                    url="https://generativelanguage.googleapis.com/v1beta/files/x1", media_type="application/pdf"
                ),
            ],
        )
    )
    parts = CODEC.encode_request(req, "gemini-2.5-flash")["contents"][0]["parts"]
    assert parts == [
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/cat.png"}},
        {
            "fileData": {
                "mimeType": "application/pdf",
                "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/x1",
            }
        },
    ]


def test_tool_result_without_name_or_call_is_refused() -> None:
    req = _req(ir.Message("user", [ir.Text("hi")]), ir.Message("tool", [ir.ToolResult("call_unknown", [ir.Text("x")])]))
    with pytest.raises(GatewayError) as info:
        CODEC.encode_request(req, "gemini-2.5-flash")
    assert info.value.param == "messages[1].content[0]" and "call_unknown" in info.value.message


def test_custom_tools_are_refused() -> None:
    req = _req(ir.Message("user", [ir.Text("hi")]), tools=[ir.Tool("grammar", kind="custom")])
    with pytest.raises(GatewayError) as info:
        CODEC.encode_request(req, "gemini-2.5-flash")
    assert info.value.param == "tools[0]"


def test_results_are_wrapped_as_objects() -> None:
    calls = [ir.ToolCall(f"c{i}", "f", "{}") for i in range(5)]
    results = [
        ir.ToolResult("c0", [ir.Text("plain text")]),
        ir.ToolResult("c1", [ir.Text("[1, 2]")]),
        ir.ToolResult("c2", [ir.Text('{"ok": true}')]),
        ir.ToolResult("c3", [ir.Text("boom")], is_error=True),
        ir.ToolResult("c4", []),
    ]
    req = _req(ir.Message("user", [ir.Text("go")]), ir.Message("assistant", calls), ir.Message("tool", results))
    body = CODEC.encode_request(req, "gemini-2.5-flash")
    responses = [p["functionResponse"]["response"] for p in body["contents"][2]["parts"]]
    assert responses == [{"result": "plain text"}, {"result": [1, 2]}, {"ok": True}, {"error": "boom"}, {"result": ""}]


def test_empty_history_gets_a_placeholder_user_turn() -> None:
    body = CODEC.encode_request(_req(ir.Message("system", [ir.Text("Only rules")])), "gemini-2.5-flash")
    assert body["contents"] == [{"role": "user", "parts": [{"text": PLACEHOLDER_USER_TEXT}]}]
    assert body["systemInstruction"] == {"parts": [{"text": "Only rules"}]}


def test_gemini3_gets_placeholder_signatures_only_where_missing() -> None:
    turn = [ir.ToolCall("a", "f", "{}"), ir.ToolCall("b", "f", "{}")]
    signed = [ir.ToolCall("c", "f", "{}", signature="real"), ir.ToolCall("d", "f", "{}")]
    req = _req(
        ir.Message("user", [ir.Text("hi")]),
        ir.Message("assistant", turn),
        ir.Message("tool", [ir.ToolResult("a", [ir.Text("1")]), ir.ToolResult("b", [ir.Text("2")])]),
        ir.Message("assistant", signed),
    )
    body = CODEC.encode_request(req, "gemini-3-pro-preview")
    sigs = [[p.get("thoughtSignature") for p in c["parts"]] for c in body["contents"] if c["role"] == "model"]
    assert sigs == [[SKIP_SIGNATURE, None], ["real", None]]
    body = CODEC.encode_request(req, "gemini-2.5-flash")
    sigs = [[p.get("thoughtSignature") for p in c["parts"]] for c in body["contents"] if c["role"] == "model"]
    assert sigs == [[None, None], ["real", None]]


@pytest.mark.parametrize(
    ("reasoning", "model", "expected"),
    [
        (ir.ReasoningConfig(effort="minimal"), "gemini-2.5-flash", {"thinkingBudget": 1024, "includeThoughts": True}),
        (ir.ReasoningConfig(effort="low"), "gemini-2.5-flash", {"thinkingBudget": 1024, "includeThoughts": True}),
        (ir.ReasoningConfig(effort="medium"), "gemini-2.5-flash", {"thinkingBudget": 8192, "includeThoughts": True}),
        (ir.ReasoningConfig(effort="high"), "gemini-2.5-flash", {"thinkingBudget": 24576, "includeThoughts": True}),
        (ir.ReasoningConfig(effort="none"), "gemini-2.5-flash", {"thinkingBudget": 0}),
        (ir.ReasoningConfig(effort="none"), "gemini-2.5-pro", {"thinkingBudget": 128}),
        (
            ir.ReasoningConfig(budget_tokens=50000, mode="enabled"),
            "gemini-2.5-flash",
            {"thinkingBudget": 24576, "includeThoughts": True},
        ),
        (
            ir.ReasoningConfig(budget_tokens=50000, mode="enabled"),
            "gemini-2.5-pro",
            {"thinkingBudget": 32768, "includeThoughts": True},
        ),
        (ir.ReasoningConfig(mode="adaptive"), "gemini-3-pro-preview", {"thinkingBudget": -1, "includeThoughts": True}),
        (ir.ReasoningConfig(mode="disabled"), "gemini-2.5-flash", {"thinkingBudget": 0}),
        (ir.ReasoningConfig(summary="auto"), "gemini-2.5-flash", {"includeThoughts": True}),
    ],
)
def test_thinking_budgets(reasoning: ir.ReasoningConfig, model: str, expected: dict) -> None:
    body = CODEC.encode_request(_req(ir.Message("user", [ir.Text("hi")]), reasoning=reasoning), model)
    assert body["generationConfig"]["thinkingConfig"] == expected


def test_dropped_fields() -> None:
    req = _req(
        ir.Message("user", [ir.Text("hi")]),
        user="u1",
        metadata={"a": 1},
        parallel_tool_calls=False,
        service_tier="flex",
        store=True,
        tools=[ir.Tool("f")],
    )
    body = CODEC.encode_request(req, "gemini-2.5-flash")
    assert set(body) == {"contents", "tools"}
    assert body["tools"] == [{"functionDeclarations": [{"name": "f"}]}]


def test_foreign_extras_are_ignored() -> None:
    req = _req(ir.Message("user", [ir.Text("hi")]))
    req.extras["openai_chat"] = {"logit_bias": {"1": 2}}
    assert "logit_bias" not in CODEC.encode_request(req, "gemini-2.5-flash")


# --------------------------------------------------------------------------------------------
# Upstream errors
# --------------------------------------------------------------------------------------------


def _google_error(code: int, status: str, message: str = "boom", details: list | None = None) -> bytes:
    e: dict = {"code": code, "message": message, "status": status}
    if details is not None:
        e["details"] = details
    return orjson.dumps({"error": e})


@pytest.mark.parametrize(
    ("http", "rpc", "kind", "status"),
    [
        (400, "INVALID_ARGUMENT", "invalid_request", 400),
        (400, "FAILED_PRECONDITION", "invalid_request", 400),
        (403, "PERMISSION_DENIED", "permission", 403),
        (404, "NOT_FOUND", "not_found", 404),
        (429, "RESOURCE_EXHAUSTED", "rate_limit", 429),
        (500, "INTERNAL", "server_error", 500),
        (503, "UNAVAILABLE", "overloaded", 503),
        (504, "DEADLINE_EXCEEDED", "timeout", 504),
        (401, "UNAUTHENTICATED", "authentication", 401),
    ],
)
def test_parse_error_statuses(http: int, rpc: str, kind: str, status: int) -> None:
    err = CODEC.parse_error(http, _google_error(http, rpc))
    assert (err.kind, err.status, err.message, err.from_gateway) == (kind, status, "boom", False)


def test_parse_error_details() -> None:
    retry = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34s"}]
    assert CODEC.parse_error(429, _google_error(429, "RESOURCE_EXHAUSTED", details=retry)).retry_after == 34.0
    bad_key = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    err = CODEC.parse_error(400, _google_error(400, "INVALID_ARGUMENT", "API key not valid.", bad_key))
    assert (err.kind, err.status) == ("authentication", 401)
    # the non-SSE stream form wraps errors in an array
    wrapped = b"[" + _google_error(503, "UNAVAILABLE") + b"]"
    assert CODEC.parse_error(503, wrapped).kind == "overloaded"


def test_parse_error_tolerates_non_json() -> None:
    err = CODEC.parse_error(502, b"<html>Bad Gateway</html>")
    assert err.kind == "server_error" and err.status == 502 and "Bad Gateway" in err.message
    err = CODEC.parse_error(429, b"")
    assert err.kind == "rate_limit"
    err = CODEC.parse_error(500, b'{"error": "just a string"}')
    assert err.kind == "server_error" and "just a string" in err.message


def test_render_error_round_trips() -> None:
    for kind in (
        "invalid_request",
        "authentication",
        "permission",
        "not_found",
        "rate_limit",
        "overloaded",
        "timeout",
        "server_error",
    ):
        src = GatewayError(kind, f"{kind} happened", retry_after=3 if kind == "rate_limit" else None)  # type: ignore[arg-type]
        status, body = CODEC.render_error(src)
        assert body["error"]["code"] == status == src.status
        back = CODEC.parse_error(status, orjson.dumps(body))
        assert (back.kind, back.message, back.retry_after) == (kind, src.message, src.retry_after)


def test_render_error_maps_529() -> None:
    status, body = CODEC.render_error(GatewayError("overloaded", "busy", status=529))
    assert status == 503 and body == {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}


def test_render_stream_error_is_one_data_event() -> None:
    raw = CODEC.render_stream_error(GatewayError("timeout", "slow"))
    events = SSEDecoder().feed(raw)
    assert len(events) == 1 and events[0].event is None
    assert json.loads(events[0].data) == {"error": {"code": 504, "message": "slow", "status": "DEADLINE_EXCEEDED"}}
    assert raw.startswith(b'data: {"error":')  # google-genai spots errors by this prefix


# --------------------------------------------------------------------------------------------
# Responses Gemini could not answer
# --------------------------------------------------------------------------------------------


def test_blocked_prompt_is_a_400() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": {"promptTokenCount": 5}}
    with pytest.raises(GatewayError) as info:
        CODEC.decode_response(body)
    err = info.value
    assert (err.kind, err.status, err.code) == ("invalid_request", 400, "content_filter")
    assert "SAFETY" in err.message


@pytest.mark.parametrize("body", [{}, {"candidates": []}, {"candidates": "x"}, {"candidates": [{"index": 3}]}, []])
def test_unusable_responses(body: object) -> None:
    with pytest.raises(GatewayError) as info:
        CODEC.decode_response(body)  # type: ignore[arg-type]
    assert info.value.kind == "upstream_unavailable"


@pytest.mark.parametrize(
    ("finish", "calls", "stop"),
    [
        ("STOP", False, "end_turn"),
        ("STOP", True, "tool_use"),
        ("MAX_TOKENS", False, "max_tokens"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("IMAGE_SAFETY", False, "content_filter"),
        ("LANGUAGE", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "end_turn"),
        ("OTHER", False, "end_turn"),
        ("SOMETHING_NEW", True, "tool_use"),
    ],
)
def test_finish_reasons(finish: str, calls: bool, stop: str) -> None:
    parts = [{"functionCall": {"name": "f", "args": {}}}] if calls else [{"text": "x"}]
    body = {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish}]}
    resp = CODEC.decode_response(body)
    assert resp.stop_reason == stop
    # and the original reason survives a Gemini round trip
    assert CODEC.encode_response(resp, ir.Request(model="m"))["candidates"][0]["finishReason"] == finish


def test_text_signature_before_text_is_attached() -> None:
    # A Chat client returns a Gemini 3 text signature as reasoning_signature, which decodes before the text.
    chat = {"role": "assistant", "content": "It is noon.", "reasoning_signature": "U0lH"}
    from trigate.formats import get_codec

    req = get_codec("openai_chat").decode_request(
        {"model": "m", "messages": [{"role": "user", "content": "time?"}, chat, {"role": "user", "content": "thanks"}]}
    )
    body = CODEC.encode_request(req, "gemini-3-pro-preview")
    assert body["contents"][1] == {"role": "model", "parts": [{"text": "It is noon.", "thoughtSignature": "U0lH"}]}
    # after text (Anthropic / Gemini order) it attaches backwards; with no text at all it stays a thought part
    after = _req(ir.Message("assistant", [ir.Text("a"), ir.Reasoning(signature="X")]))
    assert CODEC.encode_request(after, "m")["contents"][0]["parts"] == [{"text": "a", "thoughtSignature": "X"}]
    alone = _req(ir.Message("assistant", [ir.Reasoning(signature="X"), ir.ToolCall("c", "f", "{}")]))
    assert CODEC.encode_request(alone, "m")["contents"][0]["parts"][0] == {
        "text": "",
        "thought": True,
        "thoughtSignature": "X",
    }
