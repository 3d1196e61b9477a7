"""Responses ``namespace`` tools through the IR: their tools reach other providers flat
(``namespace__name``, the namespace's description leading each tool's), and the answer's calls come
back to the client as name + namespace, in response objects and streams alike."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from trigate.errors import GatewayError
from trigate.formats import get_codec
from trigate.formats import openai_responses as R
from trigate.formats.openai_responses_stream import ResponsesStreamDecoder, ResponsesStreamEncoder
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder, SSEEvent

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)

LOOKUP = {
    "type": "function",
    "name": "lookup",
    "description": "Find a customer by email.",
    "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
    "strict": False,
    "defer_loading": False,
}
CRM = {"type": "namespace", "name": "crm", "description": "Customer records.", "tools": [LOOKUP]}
WEATHER = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}


def body(tools: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "input": "Who is ann@example.com?", "tools": tools, **extra}


def refused(b: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        R.decode_request(b)
    assert info.value.status == 400 and info.value.kind == "invalid_request"
    return info.value


# -- requests ---------------------------------------------------------------------------------


def test_namespace_tools_are_flattened_in_the_ir() -> None:
    req = R.decode_request(body([WEATHER, CRM]))
    assert [t.name for t in req.tools] == ["weather", "crm__lookup"]
    lookup = req.tools[1]
    assert lookup.description == "Customer records.\n\nFind a customer by email."
    assert lookup.parameters == LOOKUP["parameters"] and lookup.strict is False and lookup.kind == "function"
    assert R.unsupported_features(req) == []  # no longer an OpenAI-only feature


def test_other_providers_get_the_flat_names() -> None:
    req = R.decode_request(body([CRM]))
    anthropic = get_codec("anthropic").encode_request(req, "claude-sonnet-4-5")
    assert [(t["name"], t["description"]) for t in anthropic["tools"]] == [
        ("crm__lookup", "Customer records.\n\nFind a customer by email.")
    ]
    gemini = get_codec("gemini").encode_request(req, "gemini-2.5-flash")
    assert [d["name"] for d in gemini["tools"][0]["functionDeclarations"]] == ["crm__lookup"]


def test_a_responses_upstream_gets_the_namespace_tool_back_verbatim() -> None:
    b = body([WEATHER, CRM, {"type": "web_search"}])
    out = R.encode_request(R.decode_request(b), "gpt-5")
    assert out["tools"] == [WEATHER, CRM, {"type": "web_search"}]


def test_custom_tools_in_a_namespace_are_custom_ir_tools() -> None:
    patch = {"type": "custom", "name": "apply", "description": "Apply a patch.", "format": {"type": "text"}}
    req = R.decode_request(body([{"type": "namespace", "name": "fs", "description": "Files.", "tools": [patch]}]))
    assert [(t.name, t.kind, t.format) for t in req.tools] == [("fs__apply", "custom", {"type": "text"})]
    with pytest.raises(GatewayError) as info:  # as for a top-level custom tool: Anthropic has none
        get_codec("anthropic").encode_request(req, "claude-sonnet-4-5")
    assert info.value.status == 400


def test_an_input_call_with_a_namespace_gets_the_flat_name() -> None:
    b = body(
        [CRM],
        input=[
            {"role": "user", "content": "Who is ann@example.com?"},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "namespace": "crm",
             "arguments": '{"email":"ann@example.com"}'},
            {"type": "function_call_output", "call_id": "call_1", "name": "lookup", "namespace": "crm",
             "output": "Ann Lee"},
        ],
    )
    req = R.decode_request(b)
    call = req.messages[1].content[0]
    assert isinstance(call, ir.ToolCall) and call.name == "crm__lookup"
    anthropic = get_codec("anthropic").encode_request(req, "claude-sonnet-4-5")
    uses = [c for m in anthropic["messages"] for c in m["content"] if isinstance(c, dict) and c["type"] == "tool_use"]
    assert [u["name"] for u in uses] == ["crm__lookup"]
    # and a Responses upstream gets the call as the client sent it
    again = R.encode_request(req, "gpt-5")["input"][1]
    assert (again["name"], again["namespace"]) == ("lookup", "crm")


def test_a_flat_name_longer_than_64_characters_is_refused() -> None:
    long_ns = {**CRM, "name": "n" * 60}
    err = refused(body([long_ns]))
    assert err.param == "tools[0].tools[0].name" and "64" in err.message and "n" * 60 + "__lookup" in err.message
    call = {"type": "function_call", "call_id": "c", "name": "lookup", "namespace": "n" * 60, "arguments": "{}"}
    err = refused(body([], input=[{"role": "user", "content": "hi"}, call]))
    assert err.param == "input[1].namespace"


def test_a_flat_name_that_is_also_a_tool_name_is_refused() -> None:
    clash = {**WEATHER, "name": "crm__lookup"}
    err = refused(body([clash, CRM]))
    assert err.param == "tools[1].tools[0].name" and "tools[0].name" in err.message
    # two namespaces whose names join to the same flat name
    a = {"type": "namespace", "name": "a_", "description": "", "tools": [{**LOOKUP, "name": "_b"}]}
    b = {"type": "namespace", "name": "a", "description": "", "tools": [{**LOOKUP, "name": "__b"}]}
    err = refused(body([a, b]))
    assert err.param == "tools[1].tools[0].name" and "'a____b'" in err.message
    # the same tool twice in one namespace
    err = refused(body([{**CRM, "tools": [LOOKUP, LOOKUP]}]))
    assert err.param == "tools[0].tools[1].name"


def test_a_namespace_member_of_another_type_is_refused() -> None:
    err = refused(body([{**CRM, "tools": [{"type": "web_search"}]}]))
    assert err.param == "tools[0].tools[0].type"


# -- answers ----------------------------------------------------------------------------------


def test_the_answers_calls_get_their_namespace_back() -> None:
    req = R.decode_request(body([WEATHER, CRM]))
    resp = ir.Response(
        id="msg_1",
        model="claude-sonnet-4-5",
        content=[
            ir.ToolCall("toolu_1", "crm__lookup", '{"email":"ann@example.com"}'),
            ir.ToolCall("toolu_2", "weather", "{}"),
        ],
        stop_reason="tool_use",
        usage=ir.Usage(10, 5),
    )
    out = R.encode_response(resp, req)
    calls = [(it["name"], it.get("namespace")) for it in out["output"]]
    assert calls == [("lookup", "crm"), ("weather", None)]
    assert out["tools"][1] == CRM  # the request's tools are echoed as the client sent them
    parsed = SDKResponse.model_validate(out)
    assert parsed.output[0].namespace == "crm"  # type: ignore[union-attr]


def frames(raw: bytes) -> list[dict[str, Any]]:
    sse = SSEDecoder()
    events = [orjson.loads(e.data) for e in sse.feed(raw) + sse.close()]
    for data in events:
        EVENT_ADAPTER.validate_python(data)
    return events


def test_the_stream_encoder_restores_the_namespace() -> None:
    req = R.decode_request(body([CRM], stream=True))
    enc = ResponsesStreamEncoder(req)
    raw = b"".join(
        enc.encode(ev)
        for ev in [
            ir.MessageStart("msg_1", "claude-sonnet-4-5"),
            ir.BlockStart(0, "tool_call", tool_id="toolu_1", tool_name="crm__lookup"),
            ir.ToolArgsDelta(0, '{"email":"ann@example.com"}'),
            ir.BlockStop(0),
            ir.MessageEnd("tool_use", usage=ir.Usage(10, 5)),
        ]
    )
    events = frames(raw)
    added = next(e for e in events if e["type"] == "response.output_item.added")["item"]
    done = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    args = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    final = events[-1]["response"]["output"][0]
    for item in (added, done, final):
        assert (item["name"], item["namespace"]) == ("lookup", "crm")
    assert args["name"] == "lookup"
    assert enc.final_response()["output"][0]["namespace"] == "crm"  # type: ignore[index]


def test_the_stream_decoder_flattens_an_upstream_namespaced_call() -> None:
    item = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "lookup", "namespace": "crm",
            "arguments": "{}", "status": "completed"}
    dec = ResponsesStreamDecoder(R.decode_request(body([CRM])))
    data = {"type": "response.output_item.done", "output_index": 0, "item": item}
    events = dec.feed(SSEEvent(data=orjson.dumps(data).decode(), event="response.output_item.done"))
    starts = [e for e in events if isinstance(e, ir.BlockStart)]
    assert [s.tool_name for s in starts] == ["crm__lookup"]
    resp = R.decode_response({"id": "resp_1", "status": "completed", "output": [item]})
    assert [c.name for c in resp.content if isinstance(c, ir.ToolCall)] == ["crm__lookup"]
