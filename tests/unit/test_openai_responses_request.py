"""Responses API requests: golden files, IR facts, validation errors, shell helpers, round-trip property."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseItem
from pydantic import TypeAdapter

from trigate.errors import GatewayError
from trigate.formats import openai_responses as R
from trigate.translate import ir

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_responses" / "requests"
CASES = sorted(p.name[: -len(".in.json")] for p in FIXTURES.glob("*.in.json"))


def load(case: str, suffix: str) -> Any:
    return json.loads((FIXTURES / f"{case}.{suffix}.json").read_text())


@pytest.mark.parametrize("case", CASES)
def test_golden_request(case: str) -> None:
    body = load(case, "in")
    req = R.decode_request(body)
    assert R.encode_request(req, body["model"]) == load(case, "out")


def test_golden_cases_present() -> None:
    assert {"string_input", "multi_item", "json_schema", "allowed_tools"} <= set(CASES)


def test_codec_protocol_surface() -> None:
    assert R.CODEC.name == "openai_responses"
    req = R.CODEC.decode_request({"model": "m", "input": "hi"})
    assert R.CODEC.encode_request(req, "other-model")["model"] == "other-model"


# --------------------------------------------------------------------------------------------
# IR facts
# --------------------------------------------------------------------------------------------


def test_string_input_ir() -> None:
    req = R.decode_request(load("string_input", "in"))
    assert [m.role for m in req.messages] == ["user"]
    assert req.messages[0].content == [ir.Text("Tell me a three sentence bedtime story about a unicorn.")]
    assert req.stream is True and req.include_usage is True
    assert req.store is False
    assert req.temperature == 0.7


def test_multi_item_ir() -> None:
    req = R.decode_request(load("multi_item", "in"))
    roles = [m.role for m in req.messages]
    # instructions, developer, user, assistant turn (reasoning + 2 calls), 2 tool results, assistant, user
    assert roles == ["system", "developer", "user", "assistant", "tool", "tool", "assistant", "user"]
    assert req.messages[0].content == [ir.Text("You are a careful travel assistant.")]

    user = req.messages[2].content
    assert isinstance(user[1], ir.Image) and user[1].url == "https://example.com/paris.jpg" and user[1].detail == "high"
    assert isinstance(user[2], ir.Image) and (user[2].media_type, user[2].data) == ("image/png", "iVBORw0KGgo=")
    assert isinstance(user[3], ir.Document) and user[3].media_type == "application/pdf"
    assert user[3].filename == "ticket.pdf" and user[3].data == "JVBERi0xLjQK"
    assert isinstance(user[4], ir.Document) and user[4].file_id == "file-abc123"

    turn = req.messages[3].content
    assert isinstance(turn[0], ir.Reasoning)
    assert turn[0].id == "rs_6820f383d7c08191846711c5df8233bc"
    assert turn[0].summary == ["The photo shows the Eiffel Tower, so Paris."]
    assert turn[0].encrypted_content == "gAAAAABoISQ24OyVRYbkYfukuM"
    calls = [p for p in turn if isinstance(p, ir.ToolCall)]
    assert [(c.id, c.item_id, c.name) for c in calls] == [
        ("call_Kh2aPNqN8DqE3bD4mQ2f", "fc_6820f3857c2c8191a8ee3b0a1b2ad0a0", "get_weather"),
        ("call_9xTq", "fc_6820f3857c2c8191a8ee3b0a1b2ad0a1", "get_time"),
    ]
    assert calls[0].arguments == '{"city":"Paris"}'

    r1 = req.messages[4].content[0]
    assert isinstance(r1, ir.ToolResult) and r1.call_id == "call_Kh2aPNqN8DqE3bD4mQ2f"
    assert r1.content == [ir.Text('{"temp_c":21,"sky":"clear"}')]
    r2 = req.messages[5].content[0]
    assert isinstance(r2, ir.ToolResult) and isinstance(r2.content[1], ir.Image)

    assert req.messages[6].id == "msg_6820f38a1b0c8191b2f0c5d4e3a2b1c0"
    assert [t.name for t in req.tools] == ["get_weather", "get_time", "sql"]
    assert req.tools[0].strict is True and req.tools[1].strict is False
    assert req.tools[2].kind == "custom" and req.tools[2].format is not None
    assert req.tool_choice == ir.ToolChoice("auto")
    assert req.reasoning == ir.ReasoningConfig(effort="medium", summary="auto")
    assert req.max_tokens == 2048 and req.user == "user-42" and req.metadata == {"session": "abc"}
    assert R.unsupported_tools(req) == ["tools[2]: web_search_preview"]
    assert R.unsupported_items(req) == []
    assert req.extras["openai_responses"]["fields"]["include"] == ["reasoning.encrypted_content"]


def test_json_schema_ir() -> None:
    req = R.decode_request(load("json_schema", "in"))
    rf = req.response_format
    assert rf is not None and rf.type == "json_schema" and rf.name == "calendar_event"
    assert rf.strict is True and rf.description == "A calendar event"
    assert rf.schema is not None and rf.schema["required"] == ["name", "date", "participants"]
    assert req.tool_choice == ir.ToolChoice("tool", "lookup_date")
    assert req.user == "legacy-user-7"
    assert req.previous_response_id == "resp_68af4030592c81938ec0a5fbab4a3e9f"
    # system EasyInputMessage stays an input message (only `instructions` become the marked first message)
    assert [m.role for m in req.messages] == ["system", "user"]
    assert "instructions" not in req.extras["openai_responses"]


def test_allowed_tools_ir() -> None:
    req = R.decode_request(load("allowed_tools", "in"))
    # one required tool: other providers can be forced to it exactly
    assert req.tool_choice == ir.ToolChoice("tool", "get_order")
    assert req.service_tier == "flex"
    assert R.unsupported_tools(req) == []


def test_allowed_tools_auto_maps_to_mode() -> None:
    req = R.decode_request(
        {
            "model": "m",
            "input": "x",
            "tools": [{"type": "function", "name": "a"}, {"type": "function", "name": "b"}],
            "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "a"}]},
        }
    )
    assert req.tool_choice == ir.ToolChoice("auto")


def test_builtin_items_and_tool_choice_are_reported() -> None:
    req = R.decode_request(
        {
            "model": "m",
            "input": [
                {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
                {"role": "user", "content": "more"},
            ],
            "tools": [{"type": "mcp", "server_label": "x", "server_url": "https://x"}],
            "tool_choice": {"type": "mcp", "server_label": "x"},
        }
    )
    assert req.tool_choice is None
    assert R.unsupported_tools(req) == ["tools[0]: mcp", "tool_choice: mcp"]
    assert R.unsupported_items(req) == ["input item: web_search_call"]
    assert len(R.unsupported_features(req)) == 3
    # ... and kept verbatim, in place, for an OpenAI round trip
    body = R.encode_request(req, "m")
    assert body["input"][0]["type"] == "web_search_call"
    assert body["tool_choice"] == {"type": "mcp", "server_label": "x"}
    assert body["tools"] == [{"type": "mcp", "server_label": "x", "server_url": "https://x"}]


def test_consecutive_assistant_messages_stay_separate() -> None:
    items = [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a", "annotations": []}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "b", "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    ]
    req = R.decode_request({"model": "m", "input": items})
    assert [len(m.content) for m in req.messages] == [1, 2]  # the call joins the turn of the last message
    assert R.encode_request(req, "m")["input"] == items


# --------------------------------------------------------------------------------------------
# Validation: every bad field is a 400 naming it
# --------------------------------------------------------------------------------------------

BAD = [
    ({"input": "x"}, "model"),
    ({"model": 3, "input": "x"}, "model"),
    ({"model": "m", "input": 5}, "input"),
    ({"model": "m", "input": ["hi"]}, "input[0]"),
    ({"model": "m", "input": [{"role": "user", "content": "a"}] * 3 + [{"type": "foo"}]}, "input[3].type"),
    ({"model": "m", "input": [{"content": "no role no type"}]}, "input[0].type"),
    ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"model": "m", "input": [{"role": "user", "content": 7}]}, "input[0].content"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_video"}]}]}, "input[0].content[0].type"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        "input[0].content[0].image_url",
    ),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "input[0].content[0]"),
    ({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    (
        {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
        "input[0].arguments",
    ),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": [1]}]}, "input[0].output[0]"),
    (
        {"model": "m", "input": [{"type": "reasoning", "summary": [{"type": "summary_text"}]}]},
        "input[0].summary[0].text",
    ),
    ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"model": "m", "instructions": ["x"]}, "instructions"),
    ({"model": "m", "tools": {}}, "tools"),
    ({"model": "m", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"model": "m", "tools": [{"type": "function", "name": "f", "parameters": "x"}]}, "tools[0].parameters"),
    ({"model": "m", "tools": [{"name": "f"}]}, "tools[0].type"),
    ({"model": "m", "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "m", "tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"model": "m", "tool_choice": {"type": "allowed_tools", "mode": "x", "tools": []}}, "tool_choice.mode"),
    ({"model": "m", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"model": "m", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"model": "m", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
    ({"model": "m", "text": "json"}, "text"),
    ({"model": "m", "reasoning": {"effort": 3}}, "reasoning.effort"),
    ({"model": "m", "temperature": 3}, "temperature"),
    ({"model": "m", "top_p": "1"}, "top_p"),
    ({"model": "m", "max_output_tokens": "10"}, "max_output_tokens"),
    ({"model": "m", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "stream": "yes"}, "stream"),
    ({"model": "m", "store": 1}, "store"),
    ({"model": "m", "metadata": []}, "metadata"),
    ({"model": "m", "parallel_tool_calls": "no"}, "parallel_tool_calls"),
]


@pytest.mark.parametrize(("body", "param"), BAD)
def test_invalid_request_names_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as ei:
        R.decode_request(body)
    err = ei.value
    assert err.kind == "invalid_request" and err.status == 400
    assert err.param == param
    assert err.message.startswith(param + ":")


def test_unknown_item_type_message() -> None:
    body = {"model": "m", "input": [{"role": "user", "content": "a"}] * 3 + [{"type": "foo"}]}
    with pytest.raises(GatewayError, match=r"input\[3\]\.type: unknown item type 'foo'"):
        R.decode_request(body)


def test_not_an_object_body() -> None:
    with pytest.raises(GatewayError) as ei:
        R.decode_request([])  # type: ignore[arg-type]
    assert ei.value.status == 400


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["model", "input", "tools", "tool_choice", "text", "reasoning", "instructions", "metadata", "temperature"]
)
_item_keys = st.sampled_from(["type", "role", "content", "call_id", "name", "arguments", "output", "summary", "id"])
_garbage_item = st.dictionaries(_item_keys, _json | st.sampled_from(["message", "function_call", "reasoning"]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _json | st.lists(_garbage_item, max_size=3), max_size=6))
def test_garbage_never_escapes_as_anything_but_a_400(body: dict[str, Any]) -> None:
    body.setdefault("model", "m")
    try:
        req = R.decode_request(body)
    except GatewayError as e:
        assert e.status == 400 and e.param
        return
    R.encode_request(req, "m")  # anything accepted also encodes


# --------------------------------------------------------------------------------------------
# Shell helpers
# --------------------------------------------------------------------------------------------

_ITEM_ADAPTER: TypeAdapter[Any] = TypeAdapter(ResponseItem)


def test_ids() -> None:
    rid = R.new_response_id()
    assert rid.startswith("resp_") and len(rid) >= 5 + 24
    int(rid[5:], 16)
    assert R.new_response_id() != rid
    assert R.new_message_id().startswith("msg_")
    assert R.new_function_call_id().startswith("fc_")
    assert R.new_reasoning_id().startswith("rs_")
    assert R.derived_item_id("resp_a", "msg", 0) == R.derived_item_id("resp_a", "msg", 0)
    assert R.derived_item_id("resp_a", "msg", 0) != R.derived_item_id("resp_b", "msg", 0)


def test_input_items_string() -> None:
    items = R.input_items({"model": "m", "input": "hello", "instructions": "not stored"})
    assert len(items) == 1
    (item,) = items
    assert item["type"] == "message" and item["role"] == "user"
    assert item["content"] == [{"type": "input_text", "text": "hello"}]
    assert item["id"].startswith("msg_")
    _ITEM_ADAPTER.validate_python(item)


def test_input_items_list() -> None:
    body = load("multi_item", "in")
    items = R.input_items(body)
    assert len(items) == len(body["input"])
    assert [i["type"] for i in items] == [
        "message", "message", "reasoning", "function_call", "function_call",
        "function_call_output", "function_call_output", "message", "message",
    ]  # fmt: skip
    assert items[0]["content"] == [{"type": "input_text", "text": "Answer in English."}]
    assert items[2]["id"] == "rs_6820f383d7c08191846711c5df8233bc"  # kept
    assert items[5]["id"].startswith("fco_")  # assigned
    assert items[8]["id"].startswith("msg_")
    assert len({i["id"] for i in items}) == len(items)
    for item in items:
        _ITEM_ADAPTER.validate_python(item)
    # the body itself is untouched
    assert "id" not in body["input"][0]


def test_input_items_assistant_string_content() -> None:
    (item,) = R.input_items({"model": "m", "input": [{"role": "assistant", "content": "earlier answer"}]})
    assert item["content"] == [{"type": "output_text", "text": "earlier answer", "annotations": []}]
    _ITEM_ADAPTER.validate_python(item)


def test_prepend_history_then_decode() -> None:
    first = {"model": "m", "input": "What is 2+2?", "instructions": "be terse"}
    answer = {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "4", "annotations": []}],
    }
    history = [*R.input_items(first), answer]
    second = {"model": "m", "input": "And times 3?", "previous_response_id": "resp_1", "instructions": "be kind"}
    current = R.input_items(second)
    merged = R.prepend_history(second, history, current)
    assert merged["input"][-1] is current[0]
    req = R.decode_request(merged)
    # the new instructions lead; the old ones were not carried over
    assert [(m.role, m.content[0].text) for m in req.messages] == [  # type: ignore[union-attr]
        ("system", "be kind"),
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        ("user", "And times 3?"),
    ]
    assert req.previous_response_id == "resp_1"


def test_resolve_item_references() -> None:
    stored = {"msg_1": {"type": "message", "role": "user", "content": "from store"}}
    body = {"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}, {"type": "item_reference", "id": "x"}]}
    out = R.resolve_item_references(body, stored.get)
    assert out["input"][0] == stored["msg_1"]
    assert out["input"][1] == {"type": "item_reference", "id": "x"}
    with pytest.raises(GatewayError) as ei:
        R.decode_request(out)
    assert ei.value.param == "input[1]"
    assert R.resolve_item_references({"model": "m", "input": "s"}, stored.get) == {"model": "m", "input": "s"}


# --------------------------------------------------------------------------------------------
# Foreign IR (a Chat or Anthropic client) -> Responses upstream
# --------------------------------------------------------------------------------------------


def _foreign_request() -> ir.Request:
    return ir.Request(
        model="claude-ish",
        messages=[
            ir.Message("system", [ir.Text("Be brief.")]),
            ir.Message("user", [ir.Text("Look"), ir.Image(media_type="image/jpeg", data="AAAA")]),
            ir.Message(
                "assistant",
                [
                    ir.Reasoning(text="thinking...", signature="anthropic-sig"),
                    ir.Text("Calling."),
                    ir.ToolCall("toolu_01", "lookup", '{"q":"x"}'),
                ],
            ),
            ir.Message(
                "user",
                [ir.ToolResult("toolu_01", [ir.Text("boom")], is_error=True), ir.Text("and now?")],
            ),
        ],
        max_tokens=5,
        stop=["END"],
        top_k=3,
        tools=[ir.Tool("lookup", "Look things up")],
        tool_choice=ir.ToolChoice("tool", "lookup"),
        response_format=ir.ResponseFormat("json_schema", schema={"type": "object"}),
        reasoning=ir.ReasoningConfig(budget_tokens=10000, mode="enabled"),
        metadata={"user_id": "u1", "n": 3},
        service_tier="standard_only",
        user="u1",
    )


def test_encode_foreign_request() -> None:
    body = R.encode_request(_foreign_request(), "gpt-5")
    assert body == {
        "model": "gpt-5",
        "input": [
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look"},
                    {"type": "input_image", "image_url": "data:image/jpeg;base64,AAAA"},
                ],
            },
            # the Anthropic thinking block means nothing to OpenAI and is dropped
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Calling.", "annotations": []}],
            },
            {"type": "function_call", "call_id": "toolu_01", "name": "lookup", "arguments": '{"q":"x"}'},
            {"type": "function_call_output", "call_id": "toolu_01", "output": "Error: boom"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "and now?"}]},
        ],
        "max_output_tokens": 16,
        # foreign tools are not strict: Responses would otherwise default to strict and reject loose schemas
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": "Look things up",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            }
        ],
        "tool_choice": {"type": "function", "name": "lookup"},
        "text": {"format": {"type": "json_schema", "name": "response", "schema": {"type": "object"}}},
        "reasoning": {"effort": "medium"},
        "metadata": {"user_id": "u1"},
        "safety_identifier": "u1",
    }


def test_encode_foreign_request_rejects_n() -> None:
    req = ir.Request(model="m", messages=[ir.Message("user", [ir.Text("x")])], n=2)
    with pytest.raises(GatewayError) as ei:
        R.encode_request(req, "m")
    assert ei.value.param == "n"


def test_disabled_thinking_sends_no_reasoning() -> None:
    req = ir.Request(model="m", reasoning=ir.ReasoningConfig(mode="disabled", budget_tokens=0))
    assert "reasoning" not in R.encode_request(req, "m")


def test_plain_text_document_round_trips_as_text() -> None:
    data = "data:text/plain;base64," + base64.b64encode("héllo".encode()).decode()
    body = {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_data": data}]}]}
    req = R.decode_request(body)
    doc = req.messages[0].content[0]
    assert isinstance(doc, ir.Document) and doc.data == "héllo" and doc.media_type == "text/plain"
    assert R.encode_request(req, "m")["input"][0]["content"][0]["file_data"] == data


# --------------------------------------------------------------------------------------------
# Property: encode(decode(x)) == x for canonical requests
# --------------------------------------------------------------------------------------------

_text = st.text(max_size=12)
_ident = st.from_regex(r"[a-z0-9]{3,8}", fullmatch=True)
_b64 = st.binary(min_size=1, max_size=12).map(lambda b: base64.b64encode(b).decode())


def _opt(d: dict[str, Any], **maybe: Any) -> dict[str, Any]:
    return {**d, **{k: v for k, v in maybe.items() if v is not None}}


_input_text = _text.map(lambda t: {"type": "input_text", "text": t})
_input_image = st.builds(
    lambda src, detail: _opt({"type": "input_image", **src}, detail=detail),
    st.one_of(
        _ident.map(lambda s: {"image_url": f"https://img.example/{s}.png"}),
        _b64.map(lambda d: {"image_url": f"data:image/png;base64,{d}"}),
        _ident.map(lambda s: {"file_id": f"file-{s}"}),
    ),
    st.none() | st.sampled_from(["auto", "low", "high"]),
)
_input_file = st.builds(
    lambda src, name: _opt({"type": "input_file", **src}, filename=name),
    st.one_of(
        _ident.map(lambda s: {"file_id": f"file-{s}"}),
        _b64.map(lambda d: {"file_data": f"data:application/pdf;base64,{d}"}),
        _text.map(lambda t: {"file_data": "data:text/plain;base64," + base64.b64encode(t.encode()).decode()}),
        _ident.map(lambda s: {"file_url": f"https://files.example/{s}.pdf"}),
    ),
    st.none() | _ident.map(lambda s: s + ".pdf"),
)
_input_audio = st.builds(
    lambda d, f: {"type": "input_audio", "input_audio": {"data": d, "format": f}}, _b64, st.sampled_from(["wav", "mp3"])
)
_input_part = st.one_of(_input_text, _input_image, _input_file, _input_audio)
_output_part = st.one_of(
    _text.map(lambda t: {"type": "output_text", "text": t, "annotations": []}),
    _text.map(lambda t: {"type": "refusal", "refusal": t}),
)


@st.composite
def _user_message(draw: st.DrawFn) -> dict[str, Any]:
    return _opt(
        {
            "type": "message",
            "role": draw(st.sampled_from(["user", "system", "developer"])),
            "content": draw(st.lists(_input_part, max_size=3)),
        },
        id=draw(st.none() | _ident.map(lambda s: "msg_" + s)),
    )


@st.composite
def _assistant_turn(draw: st.DrawFn) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if draw(st.booleans()):
        reasoning: dict[str, Any] = {
            "type": "reasoning",
            "id": "rs_" + draw(_ident),
            "summary": [{"type": "summary_text", "text": t} for t in draw(st.lists(_text, max_size=2))],
        }
        enc = draw(st.none() | _b64.map(lambda b: "gAAAA" + b))
        if enc is not None:
            reasoning["encrypted_content"] = enc
        rtext = draw(st.text(min_size=1, max_size=8) | st.none())
        if rtext is not None:
            reasoning["content"] = [{"type": "reasoning_text", "text": rtext}]
        items.append(reasoning)
    if draw(st.booleans()):
        msg: dict[str, Any] = {
            "type": "message",
            "role": "assistant",
            "content": draw(st.lists(_output_part, min_size=1, max_size=2)),
        }
        if draw(st.booleans()):
            msg["id"] = "msg_" + draw(_ident)
            msg["status"] = "completed"
        items.insert(draw(st.integers(0, len(items))), msg)
    for _ in range(draw(st.integers(0 if items else 1, 2))):
        cid = draw(_ident)
        if draw(st.booleans()):
            call: dict[str, Any] = {
                "type": "function_call",
                "call_id": "call_f" + cid,
                "name": draw(_ident),
                "arguments": draw(_text),
            }
            if draw(st.booleans()):
                call["id"] = "fc_" + cid
                call["status"] = "completed"
        else:
            call = _opt(
                {"type": "custom_tool_call", "call_id": "call_c" + cid, "name": draw(_ident), "input": draw(_text)},
                id=draw(st.none() | st.just("ctc_" + cid)),
            )
        items.insert(draw(st.integers(0, len(items))), call)
    return items


@st.composite
def _call_output(draw: st.DrawFn) -> dict[str, Any]:
    output = draw(
        _text | st.lists(_input_part, min_size=2, max_size=3) | st.one_of(_input_image, _input_file).map(lambda p: [p])
    )
    return _opt(
        {"type": "function_call_output", "call_id": "call_f" + draw(_ident), "output": output},
        id=draw(st.none() | _ident.map(lambda s: "fco_" + s)),
    )


_opaque_item = _ident.map(
    lambda s: {"type": "web_search_call", "id": "ws_" + s, "status": "completed", "action": {"type": "search"}}
)


@st.composite
def _input_list(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kind in draw(st.lists(st.sampled_from(["user", "turn", "output", "opaque"]), max_size=6)):
        if kind == "user":
            out.append(draw(_user_message()))
        elif kind == "turn":
            out.extend(draw(_assistant_turn()))
        elif kind == "output":
            out.append(draw(_call_output()))
        else:
            out.append(draw(_opaque_item))
    return out


_schema = st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(_ident, st.just({}))})


@st.composite
def _tools(draw: st.DrawFn) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    for name in draw(st.lists(_ident, unique=True, max_size=3)):
        if draw(st.booleans()):
            tool = _opt(
                {"type": "function", "name": name},
                description=draw(st.none() | _text),
                parameters=draw(st.none() | _schema),
                strict=draw(st.none() | st.booleans()),
                defer_loading=draw(st.none() | st.just(True)),
            )
        else:
            tool = _opt(
                {"type": "custom", "name": name},
                description=draw(st.none() | _text),
                format=draw(st.none() | st.just({"type": "text"})),
            )
        tools.append(tool)
    for _ in range(draw(st.integers(0, 1))):
        builtin = draw(
            st.sampled_from([{"type": "web_search_preview"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}])
        )
        tools.insert(draw(st.integers(0, len(tools))), builtin)
    return tools


@st.composite
def _requests(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": draw(st.sampled_from(["gpt-4.1", "o4-mini", "gpt-5"]))}
    shape = draw(st.sampled_from(["string", "list", "absent"]))
    if shape == "string":
        body["input"] = draw(_text)
    elif shape == "list":
        body["input"] = draw(_input_list())
    if draw(st.booleans()):
        body["instructions"] = draw(_text)
    tools = draw(_tools())
    if tools:
        body["tools"] = tools
    named = [t for t in tools if t["type"] in ("function", "custom")]
    choices: list[Any] = ["auto", "none", "required", {"type": "file_search"}]
    choices += [{"type": t["type"], "name": t["name"]} for t in named]
    if named:
        choices.append(
            {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": named[0]["name"]}]}
        )
    if draw(st.booleans()):
        body["tool_choice"] = draw(st.sampled_from(choices))
    fmt = draw(
        st.none()
        | st.just({"type": "text"})
        | st.just({"type": "json_object"})
        | st.builds(
            lambda n, s, strict, d: _opt({"type": "json_schema", "name": n, "schema": s}, strict=strict, description=d),
            _ident,
            _schema,
            st.none() | st.booleans(),
            st.none() | _text,
        )
    )
    verbosity = draw(st.none() | st.sampled_from(["low", "medium", "high"]))
    if fmt is not None or verbosity is not None:
        body["text"] = _opt({}, format=fmt, verbosity=verbosity)
    if draw(st.booleans()):
        body["reasoning"] = _opt(
            {},
            effort=draw(st.none() | st.sampled_from(["minimal", "low", "medium", "high"])),
            summary=draw(st.none() | st.sampled_from(["auto", "concise", "detailed"])),
            context=draw(st.none() | st.just("all_turns")),
        )
    optional: dict[str, Any] = {
        "max_output_tokens": st.integers(1, 100_000),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "parallel_tool_calls": st.booleans(),
        "store": st.booleans(),
        "previous_response_id": _ident.map(lambda s: "resp_" + s),
        "stream": st.just(True),
        "metadata": st.dictionaries(_ident, _text, max_size=2),
        "service_tier": st.sampled_from(["auto", "default", "flex", "priority"]),
        "include": st.just(["reasoning.encrypted_content"]),
        "truncation": st.sampled_from(["auto", "disabled"]),
        "prompt_cache_key": _ident,
        "background": st.booleans(),
    }
    for key, strat in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strat)
    who = draw(st.sampled_from(["none", "user", "safety", "both"]))
    if who in ("user", "both"):
        body["user"] = draw(_ident)
    if who in ("safety", "both"):
        body["safety_identifier"] = draw(_ident)
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests())
def test_request_round_trip(body: dict[str, Any]) -> None:
    snapshot = json.loads(json.dumps(body))
    req = R.decode_request(body)
    assert R.encode_request(req, body["model"]) == snapshot
    assert body == snapshot  # decoding does not mutate the caller's body
