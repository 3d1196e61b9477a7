"""Chat request decoding (IR facts, validation) and encoding of IR coming from other formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from trigate.errors import GatewayError
from trigate.formats.openai_chat import CODEC, META, effort_for_budget, parse_data_url
from trigate.translate import ir

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_chat" / "requests"


def _fixture(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / f"{name}.in.json").read_bytes())


def _user(content: Any = "hi") -> dict[str, Any]:
    return {"role": "user", "content": content}


def _bad(body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        CODEC.decode_request(body)
    err = info.value
    assert err.kind == "invalid_request" and err.status == 400
    return err


# -- decoding: IR facts -------------------------------------------------------------------------


def test_tool_history_ir() -> None:
    req = CODEC.decode_request(_fixture("tools_parallel"))
    assistant = req.messages[1]
    calls = [p for p in assistant.content if isinstance(p, ir.ToolCall)]
    assert [c.id for c in calls] == ["call_w1", "call_t1", "call_q1"]
    assert calls[0].arguments == '{"city":"Paris"}'
    assert calls[1].signature == "c2lnbmF0dXJl"
    assert calls[2].kind == "custom" and calls[2].arguments == "SELECT 1"
    tool_msgs = req.messages[2:5]
    assert all(m.role == "tool" for m in tool_msgs)
    results = [m.content[0] for m in tool_msgs]
    assert all(isinstance(r, ir.ToolResult) for r in results)
    assert [r.call_id for r in results] == ["call_w1", "call_t1", "call_q1"]
    assert results[1].content == [ir.Text("14:05")]
    assert req.tool_choice == ir.ToolChoice("tool", name="get_weather")
    assert req.parallel_tool_calls is True
    assert req.tools[0].strict is True and req.tools[2].kind == "custom"
    assert req.tools[2].format == {"type": "grammar", "grammar": {"syntax": "lark", "definition": "start: /.+/"}}
    assert req.stream is True and req.include_usage is False


def test_sampling_fields_and_extras() -> None:
    req = CODEC.decode_request(_fixture("system_developer_multiturn"))
    assert [m.role for m in req.messages] == ["system", "developer", "user", "assistant", "system", "user"]
    assert req.messages[1].content == [ir.Text("Answer in French."), ir.Text("No emoji.")]
    assert req.messages[2].name == "alice"
    assert req.max_tokens == 256 and req.temperature == 0.2 and req.top_p == 0.9
    assert req.stop == ["\n\n"] and req.seed == 42 and req.n == 1
    assert req.frequency_penalty == 0.1 and req.presence_penalty == -0.5
    assert req.user == "user-123" and req.metadata == {"session": "s1"}
    assert req.service_tier == "flex" and req.store is False
    extras = req.extras["openai_chat"]
    assert extras["logit_bias"] == {"1234": -100} and extras["verbosity"] == "low"
    assert extras[META] == {"max_tokens_field": "max_tokens", "user_field": "user"}


def test_images_audio_files() -> None:
    parts = CODEC.decode_request(_fixture("images")).messages[0].content
    assert parts[1] == ir.Image(url="https://example.com/cat.jpg")
    img = parts[2]
    assert isinstance(img, ir.Image) and img.media_type == "image/png" and img.detail == "high"
    assert img.data is not None and img.data.startswith("iVBORw0KGgo") and img.url is None
    assert parts[3] == ir.Audio(data="UklGRiQAAABXQVZF", format="wav")
    assert parts[4] == ir.Document(file_id="file-abc123")
    assert parts[5] == ir.Document(media_type="application/pdf", data="JVBERi0xLjQK", filename="a.pdf")


def test_reasoning_history_and_effort() -> None:
    req = CODEC.decode_request(_fixture("reasoning"))
    assistant = req.messages[2]
    assert assistant.content[0] == ir.Reasoning(
        text="17*23 = 17*20 + 17*3 = 340 + 51 = 391", signature="EqQBCkgIARABGAIiQ"
    )
    assert assistant.content[1] == ir.Text("391")
    assert req.reasoning == ir.ReasoningConfig(effort="high")
    assert req.max_tokens == 4000 and req.user == "hashed-user" and req.include_usage is True


def test_reasoning_before_tool_calls_and_redacted() -> None:
    req = CODEC.decode_request(
        {
            "model": "m",
            "messages": [
                _user(),
                {
                    "role": "assistant",
                    "content": "calling",
                    "reasoning": "hmm",  # OpenRouter / new vLLM spelling
                    "reasoning_redacted": "ENCRYPTED",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}],
                },
            ],
        }
    )
    kinds = [type(p).__name__ for p in req.messages[1].content]
    assert kinds == ["Reasoning", "Reasoning", "Text", "ToolCall"]
    assert req.messages[1].content[1] == ir.Reasoning(redacted="ENCRYPTED")


def test_reasoning_details_list() -> None:
    details = [
        {"type": "reasoning.text", "text": "a", "signature": "s1"},
        {"type": "reasoning.encrypted", "data": "R"},
        {"type": "reasoning.summary", "summary": "sum", "id": "rs_1"},
        {"type": "something.else"},
    ]
    req = CODEC.decode_request(
        {"model": "m", "messages": [_user(), {"role": "assistant", "content": "x", "reasoning_details": details}]}
    )
    assert req.messages[1].content[:3] == [
        ir.Reasoning(text="a", signature="s1"),
        ir.Reasoning(redacted="R"),
        ir.Reasoning(summary=["sum"], id="rs_1"),
    ]


def test_legacy_functions_pairing() -> None:
    req = CODEC.decode_request(_fixture("legacy_functions"))
    call = req.messages[1].content[0]
    result = req.messages[2].content[0]
    assert isinstance(call, ir.ToolCall) and isinstance(result, ir.ToolResult)
    assert call.id == result.call_id and result.name == "get_current_weather"
    assert req.tool_choice == ir.ToolChoice("tool", name="get_current_weather")
    assert req.parallel_tool_calls is False  # one function_call per turn for legacy clients
    assert req.extras["openai_chat"][META]["legacy_functions"] is True


def test_legacy_function_call_string_choice() -> None:
    req = CODEC.decode_request(
        {"model": "m", "messages": [_user()], "functions": [{"name": "f"}], "function_call": "none"}
    )
    assert req.tool_choice == ir.ToolChoice("none") and req.tools[0].name == "f"


def test_stop_list_and_null_fields() -> None:
    req = CODEC.decode_request(
        {"model": "m", "messages": [_user()], "stop": ["a", "b"], "temperature": None, "tools": None}
    )
    assert req.stop == ["a", "b"] and req.temperature is None and req.tools == []


def test_safety_identifier_and_user_both_kept() -> None:
    req = CODEC.decode_request({"model": "m", "messages": [_user()], "safety_identifier": "s", "user": "u"})
    assert req.user == "s"
    body = CODEC.encode_request(req, "m")
    assert body["safety_identifier"] == "s" and body["user"] == "u"


def test_data_url_parser_is_strict() -> None:
    assert parse_data_url("data:image/jpeg;base64,/9j/4AAQ") == ("image/jpeg", "/9j/4AAQ")
    assert parse_data_url("data:IMAGE/PNG;name=a.png;base64,AAAA") == ("image/png", "AAAA")
    assert parse_data_url("data:image/png,AAAA") is None  # not base64
    assert parse_data_url("data:;base64,AAAA") is None  # no media type
    assert parse_data_url("data:image/png;base64,AA AA") is None
    assert parse_data_url("data:image/png;base64,AAAA\n") is None


# -- decoding: validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model": "m"}, "messages", "messages: field required"),
        ({"messages": [_user()]}, "model", "model: field required"),
        ({"model": 3, "messages": [_user()]}, "model", "expected a string, got number"),
        ({"model": "m", "messages": []}, "messages", "at least one"),
        ({"model": "m", "messages": "hi"}, "messages", "expected an array, got string"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]", "expected an object"),
        (
            {"model": "m", "messages": [_user(), {"role": "bot", "content": "x"}]},
            "messages[1].role",
            "unknown role 'bot'",
        ),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role", "field required"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content", "field required"),
        ({"model": "m", "messages": [_user(5)]}, "messages[0].content", "expected an array, got number"),
        ({"model": "m", "messages": [_user([{"type": "video"}])]}, "messages[0].content[0].type", "'video'"),
        ({"model": "m", "messages": [_user([{"text": "x"}])]}, "messages[0].content[0].type", "field required"),
        (
            {"model": "m", "messages": [_user([{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}])]},
            "messages[0].content[0].image_url.url",
            "invalid data URL",
        ),
        (
            {"model": "m", "messages": [_user([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}])]},
            "messages[0].content[0].image_url.url",
            "http(s)",
        ),
        (
            {"model": "m", "messages": [_user([{"type": "image_url", "image_url": {}}])]},
            "messages[0].content[0].image_url.url",
            "field required",
        ),
        (
            {"model": "m", "messages": [_user([{"type": "file", "file": {"filename": "a.pdf"}}])]},
            "messages[0].content[0].file",
            "file_id or file_data",
        ),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "required"),
        (
            {"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
            "expected 'text'",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]},
            "messages[0].tool_calls[0].function",
            "field required",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"type": "function"}]}]},
            "messages[0].tool_calls[0].id",
            "field required",
        ),
        ({"model": "m", "messages": [_user()], "temperature": "hot"}, "temperature", "expected a number"),
        ({"model": "m", "messages": [_user()], "temperature": True}, "temperature", "expected a number"),
        ({"model": "m", "messages": [_user()], "max_completion_tokens": 1.5}, "max_completion_tokens", "integer"),
        ({"model": "m", "messages": [_user()], "stream": "yes"}, "stream", "expected a boolean"),
        ({"model": "m", "messages": [_user()], "stop": [1]}, "stop[0]", "expected a string"),
        ({"model": "m", "messages": [_user()], "tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported"),
        ({"model": "m", "messages": [_user()], "tools": [{"type": "function"}]}, "tools[0].function", "required"),
        ({"model": "m", "messages": [_user()], "tool_choice": "always"}, "tool_choice", "unknown value"),
        (
            {"model": "m", "messages": [_user()], "tool_choice": {"type": "function", "function": {}}},
            "tool_choice.function.name",
            "field required",
        ),
        ({"model": "m", "messages": [_user()], "response_format": {"type": "yaml"}}, "response_format.type", "yaml"),
        (
            {"model": "m", "messages": [_user()], "response_format": {"type": "json_schema", "json_schema": {}}},
            "response_format.json_schema.name",
            "field required",
        ),
        ({"model": "m", "messages": [_user()], "stream_options": []}, "stream_options", "expected an object"),
        ({"model": "m", "messages": [_user()], "metadata": "x"}, "metadata", "expected an object"),
    ],
)
def test_validation_names_the_field(body: dict[str, Any], param: str, fragment: str) -> None:
    err = _bad(body)
    assert err.param == param
    assert err.message.startswith(f"{param}: ")
    assert fragment in err.message


def test_non_object_body() -> None:
    assert "JSON object" in _bad([1, 2]).message


def test_garbage_never_escapes_as_other_exceptions() -> None:
    junk: list[Any] = [None, 1, "x", [], {}, [None], {"a": 1}, {"role": None}, {"content": {}}]
    for msg in junk:
        for extra in ({}, {"tools": msg}, {"tool_choice": msg}, {"response_format": msg}, {"functions": msg}):
            body = {"model": "m", "messages": [msg], **extra}
            try:
                CODEC.decode_request(body)
            except GatewayError as e:
                assert e.kind == "invalid_request"


# -- encoding IR from other formats -----------------------------------------------------------


def _anthropic_like_request() -> ir.Request:
    return ir.Request(
        model="claude-x",
        messages=[
            ir.Message("system", [ir.Text("sys one"), ir.Text("sys two", cache_control={"type": "ephemeral"})]),
            ir.Message("user", [ir.Text("look"), ir.Image(media_type="image/jpeg", data="AAAA")]),
            ir.Message(
                "assistant",
                [
                    ir.Reasoning(text="thinking", signature="sig"),
                    ir.Reasoning(redacted="opaque"),
                    ir.Text("let me check"),
                    ir.ToolCall("toolu_1", "search", '{"q":"x"}'),
                    ir.ToolCall("toolu_2", "fetch", "{}"),
                ],
            ),
            ir.Message(
                "user",
                [
                    ir.ToolResult("toolu_1", [ir.Text("found"), ir.Image(url="https://x/y.png")]),
                    ir.ToolResult("toolu_2", [ir.Text("404")], is_error=True),
                    ir.Text("what now?"),
                ],
            ),
        ],
        max_tokens=2048,
        stop=["END"],
        top_k=40,
        tools=[ir.Tool("search", parameters={"type": "object"}), ir.Tool("fetch")],
        tool_choice=ir.ToolChoice("required"),
        parallel_tool_calls=False,
        reasoning=ir.ReasoningConfig(budget_tokens=10000, mode="enabled"),
        stream=True,
        include_usage=False,
        user="u1",
        extras={"anthropic": {"container": "x"}},
    )


def test_encode_cross_format_request() -> None:
    body = CODEC.encode_request(_anthropic_like_request(), "gpt-4.1")
    assert body["model"] == "gpt-4.1"
    msgs = body["messages"]
    assert msgs[0] == {
        "role": "system",
        "content": [{"type": "text", "text": "sys one"}, {"type": "text", "text": "sys two"}],
    }
    assert msgs[1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}
    assistant = msgs[2]
    assert "reasoning_content" not in assistant and set(assistant) == {"role", "content", "tool_calls"}
    assert assistant["content"] == "let me check"
    assert [c["id"] for c in assistant["tool_calls"]] == ["toolu_1", "toolu_2"]
    # tool results come first, one message each, then the remaining user text
    assert msgs[3] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": [
            {"type": "text", "text": "found"},
            {"type": "text", "text": "[image omitted: Chat Completions tool results are text-only]"},
        ],
    }
    assert msgs[4] == {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: 404"}
    assert msgs[5] == {"role": "user", "content": "what now?"}
    assert len(msgs) == 6
    assert body["max_completion_tokens"] == 2048 and body["stop"] == ["END"]
    assert "top_k" not in body and "container" not in body
    assert body["tools"][1] == {"type": "function", "function": {"name": "fetch"}}
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["reasoning_effort"] == "high"
    # usage is always requested upstream, whatever the client asked
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["safety_identifier"] == "u1"


@pytest.mark.parametrize(
    ("budget", "effort"), [(0, "low"), (1024, "low"), (1025, "medium"), (8192, "medium"), (8193, "high")]
)
def test_budget_to_effort(budget: int, effort: str) -> None:
    assert effort_for_budget(budget) == effort
    req = ir.Request(model="m", messages=[ir.Message("user", [ir.Text("x")])])
    req.reasoning = ir.ReasoningConfig(budget_tokens=budget)
    assert CODEC.encode_request(req, "m")["reasoning_effort"] == effort


def test_effort_wins_and_disabled_thinking_sends_nothing() -> None:
    req = ir.Request(model="m", messages=[ir.Message("user", [ir.Text("x")])])
    req.reasoning = ir.ReasoningConfig(effort="minimal", budget_tokens=50000)
    assert CODEC.encode_request(req, "m")["reasoning_effort"] == "minimal"
    req.reasoning = ir.ReasoningConfig(mode="disabled", budget_tokens=2000)
    assert "reasoning_effort" not in CODEC.encode_request(req, "m")


def test_tool_fields_dropped_without_tools() -> None:
    req = ir.Request(model="m", messages=[ir.Message("user", [ir.Text("x")])])
    req.tool_choice = ir.ToolChoice("none")
    req.parallel_tool_calls = False
    body = CODEC.encode_request(req, "m")
    assert "tool_choice" not in body and "parallel_tool_calls" not in body


def test_documents_and_unsendable_parts() -> None:
    req = ir.Request(
        model="m",
        messages=[
            ir.Message(
                "user",
                [
                    ir.Document(media_type="text/plain", data="plain words", title="Notes"),
                    ir.Document(media_type="application/pdf", data="JVBE", title="report.pdf"),
                ],
            )
        ],
    )
    content = CODEC.encode_request(req, "m")["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "Notes\n\nplain words"}
    assert content[1] == {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "report.pdf"},
    }

    for part in (ir.Document(url="https://x/a.pdf"), ir.Image(file_id="file-1")):
        req.messages = [ir.Message("user", [ir.Text("x"), part])]
        with pytest.raises(GatewayError) as info:
            CODEC.encode_request(req, "m")
        assert info.value.kind == "invalid_request" and info.value.param == "messages[0]"


def test_assistant_refusal_and_empty_turns() -> None:
    req = ir.Request(
        model="m",
        messages=[
            ir.Message("user", [ir.Text("x")]),
            ir.Message("assistant", [ir.Refusal("no")]),
            ir.Message("assistant", []),
            ir.Message("assistant", [ir.Text("a"), ir.Text("b")]),
        ],
    )
    msgs = CODEC.encode_request(req, "m")["messages"]
    assert msgs[1] == {"role": "assistant", "content": None, "refusal": "no"}
    assert msgs[2] == {"role": "assistant", "content": ""}
    assert msgs[3]["content"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]


def test_named_custom_tool_choice_and_response_format() -> None:
    req = ir.Request(
        model="m",
        messages=[ir.Message("user", [ir.Text("x")])],
        tools=[ir.Tool("grammar_tool", kind="custom", format={"type": "text"})],
        tool_choice=ir.ToolChoice("tool", name="grammar_tool"),
        response_format=ir.ResponseFormat("json_schema", schema={"type": "object"}),
    )
    body = CODEC.encode_request(req, "m")
    assert body["tool_choice"] == {"type": "custom", "custom": {"name": "grammar_tool"}}
    assert body["tools"] == [{"type": "custom", "custom": {"name": "grammar_tool", "format": {"type": "text"}}}]
    # Chat requires a schema name; formats without one get a neutral default
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": {"type": "object"}},
    }


def test_message_level_unknown_fields_round_trip() -> None:
    body = {
        "model": "m",
        "messages": [
            _user(),
            {"role": "assistant", "content": None, "audio": {"id": "audio_1"}},
            _user("again"),
        ],
    }
    out = CODEC.encode_request(CODEC.decode_request(body), "m")
    assert out["messages"][1] == {"role": "assistant", "content": "", "audio": {"id": "audio_1"}}
    assert out["messages"][2] == _user("again")


def test_tool_message_name_is_kept_in_the_ir_only() -> None:
    body = {
        "model": "m",
        "messages": [_user(), {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "sun"}],
    }
    req = CODEC.decode_request(body)
    result = req.messages[1].content[0]
    assert isinstance(result, ir.ToolResult) and result.name == "get_weather"
    assert CODEC.encode_request(req, "m")["messages"][1] == {"role": "tool", "tool_call_id": "c1", "content": "sun"}


def test_client_field_named_like_the_reserved_key_is_harmless() -> None:
    req = CODEC.decode_request({"model": "m", "messages": [_user()], "_meta": "surprise", "max_tokens": 5})
    body = CODEC.encode_request(req, "m")
    assert body == {"model": "m", "messages": [_user()], "max_tokens": 5}
