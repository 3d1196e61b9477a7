"""encode_request for IR that did not come from Anthropic: built by hand the way the Chat, Responses and
Gemini decoders build it, compared with golden Anthropic bodies, plus the inputs Anthropic cannot take."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trigate.errors import GatewayError
from trigate.formats.anthropic import CODEC, JSON_OBJECT_INSTRUCTION, PLACEHOLDER_USER_TEXT, tool_id
from trigate.translate import ir

CROSS = Path(__file__).resolve().parents[1] / "fixtures" / "anthropic" / "cross"

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
JPEG_B64 = "/9j/4AAQSkZJRgABAQAAAQABAAD"


def chat_tools_history() -> ir.Request:
    """What a Chat Completions decoder makes of a tool loop with a late developer message."""
    weather = ir.Tool(
        "get_weather",
        "Weather for a city",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        strict=True,
    )
    return ir.Request(
        model="gpt-4o",
        messages=[
            ir.Message("system", [ir.Text("You are helpful.")]),
            ir.Message("user", [ir.Text("Weather in Paris and Rome?")]),
            ir.Message(
                "assistant",
                [
                    ir.Text(""),
                    ir.ToolCall("call_abc123", "get_weather", '{"city":"Paris"}'),
                    ir.ToolCall("call.rome:2", "get_weather", '{"city": "Rome"}'),
                ],
            ),
            ir.Message("tool", [ir.ToolResult("call_abc123", [ir.Text("21C")])]),
            ir.Message("tool", [ir.ToolResult("call.rome:2", [ir.Text("no data")], is_error=True)]),
            ir.Message("user", [ir.Text("Answer in French.")]),
            ir.Message("developer", [ir.Text("Always be concise.")]),
            ir.Message(
                "assistant",
                [ir.Reasoning(text="unsigned reasoning_content"), ir.Text("Paris 21C, Rome inconnu.")],
            ),
            ir.Message("user", [ir.Text("Merci"), ir.Text("")]),
        ],
        temperature=1.4,
        top_p=0.5,
        seed=7,
        frequency_penalty=0.5,
        presence_penalty=0.1,
        tools=[weather, ir.Tool("ping")],
        tool_choice=ir.ToolChoice("required"),
        parallel_tool_calls=False,
        response_format=ir.ResponseFormat("json_object"),
        stop=["###"],
        user="u-42",
        service_tier="default",
        stream=True,
        include_usage=True,
        metadata={"chat_only": "dropped"},
        extras={"openai_chat": {"logprobs": True}},
    )


def assistant_first_effort() -> ir.Request:
    """An assistant-first history with media, a refusal and an OpenAI reasoning effort."""
    return ir.Request(
        model="o3",
        messages=[
            ir.Message("assistant", [ir.Text("Hi, I'm the support bot.")]),
            ir.Message(
                "user",
                [
                    ir.Text("Here are my files."),
                    ir.Image(url=f"data:image/png;base64,{PNG_B64}", detail="high"),
                    ir.Image(url="https://example.com/x.webp", detail="low"),
                    ir.Image(data=JPEG_B64),
                    ir.Document(media_type="application/pdf", data="JVBERi0xLjQK", filename="invoice.pdf"),
                    ir.Document(media_type="text/plain", data="plain notes", title="Notes"),
                ],
            ),
            ir.Message("assistant", [ir.Refusal("I can't open that one.")]),
            ir.Message("user", [ir.Text("Try again.")]),
        ],
        max_tokens=1000,
        temperature=0.7,
        top_k=5,
        reasoning=ir.ReasoningConfig(effort="high", summary="auto"),
        response_format=ir.ResponseFormat(
            "json_schema",
            name="answer",
            schema={"type": "object", "properties": {"ok": {"type": "boolean"}}},
            strict=True,
        ),
        tool_choice=ir.ToolChoice("auto"),
    )


def system_only_minimal() -> ir.Request:
    """A Responses-style request: instructions only, minimal effort, unknown compatible model."""
    return ir.Request(
        model="whatever",
        messages=[ir.Message("system", [ir.Text("Write a haiku about rain.")])],
        reasoning=ir.ReasoningConfig(effort="minimal"),
        tools=[ir.Tool("f", parameters={"properties": {"a": {"type": "string"}}})],
        tool_choice=ir.ToolChoice("tool", name="f"),
    )


def gemini_style() -> ir.Request:
    """Gemini decoders: thinking budget 0 (off), function responses in a user turn, id-less calls."""
    return ir.Request(
        model="gemini-2.5-flash",
        messages=[
            ir.Message("user", [ir.Text("Look it up")]),
            ir.Message("assistant", [ir.ToolCall("", "search", '{"q":"rain"}', signature="sig")]),
            ir.Message(
                "user",
                [ir.Text("and hurry"), ir.ToolResult("", [ir.Text('{"result":"wet"}')], name="search")],
            ),
        ],
        max_tokens=256,
        reasoning=ir.ReasoningConfig(budget_tokens=0),
        tools=[ir.Tool("search", parameters={"type": "object", "properties": {"q": {"type": "string"}}})],
        tool_choice=ir.ToolChoice("none"),
        parallel_tool_calls=False,
    )


CASES = {
    "chat_tools_history": (chat_tools_history, "claude-sonnet-4-5-20250929"),
    "assistant_first_effort": (assistant_first_effort, "claude-opus-4-1"),
    "system_only_minimal": (system_only_minimal, "my-compatible-model"),
    "gemini_style": (gemini_style, "claude-3-7-sonnet-latest"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cross_golden(name: str) -> None:
    build, model = CASES[name]
    expected = json.loads((CROSS / f"{name}.out.json").read_text())
    assert CODEC.encode_request(build(), model) == expected


def test_chat_history_facts() -> None:
    body = CODEC.encode_request(chat_tools_history(), "claude-sonnet-4-5")
    # Both system messages are hoisted, in order, with the json_object instruction last.
    assert body["system"] == f"You are helpful.\n\nAlways be concise.\n\n{JSON_OBJECT_INSTRUCTION}"
    turns = body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    results = turns[2]["content"]
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "text"]
    # The illegal id is transformed the same way on the call and on its result.
    call_ids = [b["id"] for b in turns[1]["content"] if b["type"] == "tool_use"]
    assert call_ids == ["call_abc123", tool_id("call.rome:2")]
    assert [b["tool_use_id"] for b in results[:2]] == call_ids
    assert body["temperature"] == 1
    assert body["max_tokens"] == 64000
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    for dropped in ("seed", "frequency_penalty", "presence_penalty", "logprobs", "n"):
        assert dropped not in body


def test_tool_id_transform() -> None:
    assert tool_id("toolu_01A-b_C") == "toolu_01A-b_C"
    t = tool_id("call.rome:2")
    assert t == tool_id("call.rome:2") and t != tool_id("call.rome:3")
    assert t.startswith("toolu_gw_") and len(t) == len("toolu_gw_") + 24


def test_effort_becomes_budget_and_drops_sampling() -> None:
    body = CODEC.encode_request(assistant_first_effort(), "claude-opus-4-1")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    # The caller's 1000 tokens stay available for the answer on top of the budget.
    assert body["max_tokens"] == 16384 + 1000
    assert "temperature" not in body and "top_k" not in body
    assert body["messages"][0] == {"role": "user", "content": PLACEHOLDER_USER_TEXT}


@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 24576)]
)
def test_effort_ladder(effort: str, budget: int) -> None:
    req = ir.Request(
        model="x", messages=[ir.Message("user", [ir.Text("q")])], reasoning=ir.ReasoningConfig(effort=effort)
    )
    body = CODEC.encode_request(req, "claude-sonnet-4-5")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == 64000
    assert "output_config" not in body


def test_effort_none_sends_no_thinking() -> None:
    req = ir.Request(
        model="x", messages=[ir.Message("user", [ir.Text("q")])], reasoning=ir.ReasoningConfig(effort="none")
    )
    assert "thinking" not in CODEC.encode_request(req, "claude-sonnet-4-5")


def test_budget_is_raised_to_the_minimum() -> None:
    req = ir.Request(
        model="x",
        messages=[ir.Message("user", [ir.Text("q")])],
        max_tokens=500,
        reasoning=ir.ReasoningConfig(budget_tokens=100),
    )
    body = CODEC.encode_request(req, "claude-sonnet-4-5")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["max_tokens"] == 1524


def test_adaptive_keeps_top_p_in_range_only() -> None:
    base = dict(model="x", messages=[ir.Message("user", [ir.Text("q")])], reasoning=ir.ReasoningConfig(mode="adaptive"))
    assert CODEC.encode_request(ir.Request(**base, top_p=0.97), "m")["top_p"] == 0.97
    assert "top_p" not in CODEC.encode_request(ir.Request(**base, top_p=0.5), "m")


def _encode(*messages: ir.Message, **kw: object) -> dict:
    return CODEC.encode_request(ir.Request(model="x", messages=list(messages), **kw), "claude-sonnet-4-5")


def _param_of(exc: pytest.ExceptionInfo[GatewayError]) -> str | None:
    assert exc.value.kind == "invalid_request" and exc.value.status == 400
    return exc.value.param


def test_rejects_audio() -> None:
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Text("listen"), ir.Audio("UklGRg==", "wav")]))
    assert _param_of(e) == "messages[0].content[1]"
    assert "audio" in e.value.message


def test_rejects_invalid_tool_arguments_naming_the_message() -> None:
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Text("q")]), ir.Message("assistant", [ir.ToolCall("c1", "f", '{"a": ')]))
    assert _param_of(e) == "messages[1].content[0]"
    assert "c1" in e.value.message
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Text("q")]), ir.Message("assistant", [ir.ToolCall("c1", "f", "[1, 2]")]))
    assert _param_of(e) == "messages[1].content[0]"


def test_empty_arguments_become_empty_input() -> None:
    body = _encode(ir.Message("user", [ir.Text("q")]), ir.Message("assistant", [ir.ToolCall("c1", "f", "")]))
    assert body["messages"][1]["content"][0]["input"] == {}


def test_rejects_n_and_custom_tools() -> None:
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Text("q")]), n=2)
    assert _param_of(e) == "n"
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Text("q")]), tools=[ir.Tool("grammar", kind="custom")])
    assert _param_of(e) == "tools[0]"


def test_rejects_unsupported_media() -> None:
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Image(data="PHN2Zz4=", media_type="image/svg+xml")]))
    assert _param_of(e) == "messages[0].content[0]"
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Document(data="YSxi", media_type="text/csv")]))
    assert _param_of(e) == "messages[0].content[0]"
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Image(url="ftp://example.com/a.png")]))
    assert _param_of(e) == "messages[0].content[0]"
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Text("see"), ir.Document(file_id="file-abc123")]))
    assert _param_of(e) == "messages[0].content[1]"
    assert "file-abc123" in e.value.message


def test_rejects_non_text_system_and_text_in_tool_message() -> None:
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("system", [ir.Image(url="https://x/y.png")]), ir.Message("user", [ir.Text("q")]))
    assert _param_of(e) == "messages[0].content[0]"
    with pytest.raises(GatewayError) as e:
        _encode(ir.Message("user", [ir.Text("q")]), ir.Message("tool", [ir.Text("orphan")]))
    assert _param_of(e) == "messages[1].content[0]"


def test_foreign_annotations_are_not_sent_as_citations() -> None:
    url_citation = {"type": "url_citation", "url": "https://x", "start_index": 0, "end_index": 3}
    body = _encode(
        ir.Message("user", [ir.Text("q")]), ir.Message("assistant", [ir.Text("abc", citations=[url_citation])])
    )
    assert body["messages"][1]["content"] == "abc"
