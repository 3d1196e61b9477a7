"""Responses API response objects and errors: golden files, SDK validation, IR facts, round-trip property."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseErrorEvent

from trigate.errors import GatewayError
from trigate.formats import openai_responses as R
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_responses" / "responses"
CASES = sorted(p.name[: -len(".in.json")] for p in FIXTURES.glob("*.in.json"))


def load(case: str, suffix: str) -> Any:
    return json.loads((FIXTURES / f"{case}.{suffix}.json").read_text())


def decode_case(case: str) -> tuple[ir.Request, ir.Response]:
    c = load(case, "in")
    return R.decode_request(c["request"]), R.decode_response(c["response"])


@pytest.mark.parametrize("case", CASES)
def test_golden_response(case: str) -> None:
    req, resp = decode_case(case)
    out = R.encode_response(resp, req)
    assert out == load(case, "out")
    SDKResponse.model_validate(out)


def test_golden_cases_present() -> None:
    assert {"text", "function_call", "reasoning", "incomplete", "refusal"} <= set(CASES)


def test_text_ir() -> None:
    _, resp = decode_case("text")
    assert resp.id == "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41"
    assert resp.model == "gpt-4.1-2025-04-14" and resp.created == 1741476777
    assert resp.stop_reason == "end_turn"
    (text,) = resp.content
    assert isinstance(text, ir.Text) and text.text == "A rescued sea turtle was released today."
    assert text.citations and text.citations[0]["type"] == "url_citation"
    assert resp.usage == ir.Usage(input_tokens=328, output_tokens=52, cache_read_tokens=128, reasoning_tokens=0)
    # the web_search_call output item is not IR content but survives an OpenAI round trip, in place
    assert R.encode_response(resp, ir.Request(model="m"))["output"][0]["type"] == "web_search_call"


def test_function_call_ir() -> None:
    _, resp = decode_case("function_call")
    assert resp.stop_reason == "tool_use"
    reasoning, c1, c2 = resp.content
    assert isinstance(reasoning, ir.Reasoning) and reasoning.encrypted_content == "gAAAAABoqENCRYPTEDxyz=="
    assert reasoning.id == "rs_68a1b2c3d4e5f60718293a4b5c6d7e80" and reasoning.summary == []
    assert isinstance(c1, ir.ToolCall) and isinstance(c2, ir.ToolCall)
    assert (c1.id, c1.item_id, c1.arguments) == (
        "call_Paris1",
        "fc_68a1b2c3d4e5f60718293a4b5c6d7e81",
        '{"city":"Paris"}',
    )
    assert c2.arguments == '{"city":"Bogotá"}'
    assert resp.usage is not None and resp.usage.reasoning_tokens == 128 and resp.usage.total_tokens == 274


def test_reasoning_ir() -> None:
    _, resp = decode_case("reasoning")
    reasoning, text = resp.content
    assert isinstance(reasoning, ir.Reasoning) and reasoning.summary is not None and len(reasoning.summary) == 2
    assert reasoning.encrypted_content is None and reasoning.text == ""
    assert isinstance(text, ir.Text)
    assert resp.stop_reason == "end_turn"


def test_incomplete_and_refusal_ir() -> None:
    _, inc = decode_case("incomplete")
    assert inc.stop_reason == "max_tokens"
    _, ref = decode_case("refusal")
    assert ref.stop_reason == "content_filter"
    assert ref.content == [ir.Refusal("I'm sorry, I can't help with that.")]
    out = R.encode_response(inc, R.decode_request(load("incomplete", "in")["request"]))
    assert out["status"] == "incomplete" and out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["output"][0]["status"] == "incomplete"


def test_response_id_rules() -> None:
    req = ir.Request(model="m")
    kept = R.encode_response(ir.Response(id="resp_abc", model="m"), req)
    assert kept["id"] == "resp_abc"
    fresh = R.encode_response(ir.Response(id="msg_01XFDUDYJgAACzvnptvVoYEL", model="m"), req)
    assert fresh["id"].startswith("resp_") and len(fresh["id"]) >= 29
    assert R.output_items(kept) == [] and R.output_items({"output": [{"type": "x"}, 3]}) == [{"type": "x"}]


@pytest.mark.parametrize(
    ("stop", "status", "details"),
    [
        ("end_turn", "completed", None),
        ("stop_sequence", "completed", None),
        ("tool_use", "completed", None),
        (None, "completed", None),
        ("max_tokens", "incomplete", {"reason": "max_output_tokens"}),
        ("context_window_exceeded", "incomplete", {"reason": "max_output_tokens"}),
        ("content_filter", "incomplete", {"reason": "content_filter"}),
        ("pause_turn", "incomplete", {"reason": None}),
    ],
)
def test_stop_reason_map(stop: Any, status: str, details: Any) -> None:
    assert R.status_for(stop) == (status, details)
    obj = R.encode_response(ir.Response(id="resp_x", model="m", stop_reason=stop), ir.Request(model="m"))
    assert (obj["status"], obj["incomplete_details"]) == (status, details)
    SDKResponse.model_validate(obj)


def test_status_to_stop_reason() -> None:
    assert R.stop_reason_for("completed", None, False) == "end_turn"
    assert R.stop_reason_for("completed", None, True) == "tool_use"
    assert R.stop_reason_for("incomplete", {"reason": "max_output_tokens"}, True) == "max_tokens"
    assert R.stop_reason_for("incomplete", {"reason": "content_filter"}, False) == "content_filter"
    assert R.stop_reason_for("incomplete", {"reason": "steered"}, False) == "pause_turn"
    assert R.stop_reason_for("failed", None, False) is None


def test_garbage_upstream_response_is_a_gateway_error() -> None:
    for body in ([], {"output": "x"}, {"output": [3]}, {"output": [{"type": "message", "content": [{"type": "x"}]}]}):
        with pytest.raises(GatewayError) as ei:
            R.decode_response(body)  # type: ignore[arg-type]
        assert ei.value.kind == "upstream_unavailable"


# --------------------------------------------------------------------------------------------
# Another provider's answer (Anthropic-like IR) served to a Responses client, and the next turn
# --------------------------------------------------------------------------------------------


def _anthropic_like() -> ir.Response:
    return ir.Response(
        id="msg_01XFDUDYJgAACzvnptvVoYEL",
        model="claude-sonnet-4-5",
        created=1750000000,
        content=[
            ir.Reasoning(text="The user wants weather.", signature="EqQBCkYIBxgCKkDsig=="),
            ir.Reasoning(redacted="EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"),
            ir.Text("Let me check."),
            ir.ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", '{"city":"Paris"}'),
        ],
        stop_reason="tool_use",
        usage=ir.Usage(input_tokens=120, output_tokens=80, cache_read_tokens=100, cache_write_tokens=10),
    )


def test_foreign_response_is_a_valid_responses_object() -> None:
    req = R.decode_request({"model": "claude-sonnet-4-5", "input": "weather?", "instructions": "hi"})
    out = R.encode_response(_anthropic_like(), req)
    SDKResponse.model_validate(out)
    assert out["id"].startswith("resp_") and out["status"] == "completed" and out["instructions"] == "hi"
    r1, r2, msg, call = out["output"]
    assert r1["type"] == r2["type"] == "reasoning" and r1["id"].startswith("rs_")
    assert r1["summary"] == [{"type": "summary_text", "text": "The user wants weather."}]
    assert r1["encrypted_content"].startswith("trigate:v1:") and r2["summary"] == []
    assert msg["content"] == [{"type": "output_text", "text": "Let me check.", "annotations": [], "logprobs": []}]
    assert call["type"] == "function_call" and call["call_id"] == "toolu_01A09q90qw90lq917835lq9"
    assert call["id"].startswith("fc_") and call["status"] == "completed"
    assert out["usage"] == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 10},
        "output_tokens": 80,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 200,
    }


def test_thinking_signature_comes_back_on_the_next_turn() -> None:
    req = R.decode_request({"model": "claude", "input": "weather?"})
    out = R.encode_response(_anthropic_like(), req)
    follow = {
        "model": "claude",
        "input": [
            {"role": "user", "content": "weather?"},
            *R.output_items(out),
            {"type": "function_call_output", "call_id": "toolu_01A09q90qw90lq917835lq9", "output": "21C"},
        ],
    }
    turn = R.decode_request(follow).messages[1].content
    assert turn[0] == ir.Reasoning(
        text="The user wants weather.", signature="EqQBCkYIBxgCKkDsig==", id=out["output"][0]["id"]
    )
    assert isinstance(turn[1], ir.Reasoning) and turn[1].redacted == _anthropic_like().content[1].redacted  # type: ignore[union-attr]
    assert isinstance(turn[3], ir.ToolCall) and turn[3].id == "toolu_01A09q90qw90lq917835lq9"
    # ... and never sent to OpenAI, which could not read it
    assert [i["type"] for i in R.encode_request(R.decode_request(follow), "gpt-5")["input"]] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
    ]


def test_adjacent_messages_and_phase_survive() -> None:
    body = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "gpt-5.3-codex",
        "output": [
            {"id": "msg_a", "type": "message", "status": "completed", "role": "assistant", "phase": "commentary",
             "content": [{"type": "output_text", "text": "Looking.", "annotations": [], "logprobs": []}]},
            {"id": "msg_b", "type": "message", "status": "completed", "role": "assistant", "phase": "final_answer",
             "content": [{"type": "output_text", "text": "Done.", "annotations": [], "logprobs": []}]},
        ],
    }  # fmt: skip
    out = R.encode_response(R.decode_response(body), ir.Request(model="m"))
    assert out["output"] == body["output"]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "status", "etype", "code"),
    [
        (GatewayError("invalid_request", "bad", param="input[0]"), 400, "invalid_request_error", None),
        (GatewayError("rate_limit", "slow down"), 429, "rate_limit_error", "rate_limit_exceeded"),
        (GatewayError("overloaded", "busy", status=529), 503, None, None),
        (GatewayError("authentication", "who?"), 401, None, None),
    ],
)
def test_render_error(err: GatewayError, status: int, etype: str | None, code: str | None) -> None:
    got_status, body = R.render_error(err)
    assert got_status == status
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] == err.message and body["error"]["param"] == err.param
    if etype is not None:
        assert body["error"]["type"] == etype
    if code is not None:
        assert body["error"]["code"] == code


def test_render_stream_error_is_a_valid_error_event() -> None:
    raw = R.render_stream_error(GatewayError("rate_limit", "Too many requests", param="model"))
    events = SSEDecoder().feed(raw)
    assert len(events) == 1 and events[0].event == "error"
    data = orjson.loads(events[0].data)
    assert data == {
        "type": "error",
        "code": "rate_limit_exceeded",
        "message": "Too many requests",
        "param": "model",
        "sequence_number": 0,
    }
    ResponseErrorEvent.model_validate(data)


def test_parse_error() -> None:
    body = b'{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}'
    e = R.parse_error(429, body)
    assert (e.kind, e.status, e.code, e.message) == ("rate_limit", 429, "rate_limit_exceeded", "Rate limit reached")
    assert e.from_gateway is False
    quota = R.parse_error(429, b'{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}')
    assert quota.kind == "billing"
    bad = R.parse_error(400, b'{"error":{"message":"Invalid input","type":"invalid_request_error","param":"input"}}')
    assert (bad.kind, bad.param) == ("invalid_request", "input")
    junk = R.parse_error(502, b"<html>Bad gateway</html>")
    assert junk.kind == "server_error" and junk.status == 502 and "502" in junk.message


def test_error_from_response_error() -> None:
    e = R.error_from_response_error({"code": "rate_limit_exceeded", "message": "slow"})
    assert (e.kind, e.status, e.code) == ("rate_limit", 429, "rate_limit_exceeded")
    assert R.error_from_response_error({"code": "invalid_image_url", "message": "x"}).kind == "invalid_request"
    assert R.error_from_response_error(None).kind == "server_error"
    assert R.response_error(GatewayError("timeout", "slow"))["code"] == "server_error"
    assert R.response_error(GatewayError("rate_limit", "slow"))["code"] == "rate_limit_exceeded"


# --------------------------------------------------------------------------------------------
# Property: encode_response(decode_response(x), req) == x for canonical response objects
# --------------------------------------------------------------------------------------------

_REQ_BODY = {"model": "gpt-4.1", "input": "hi"}
# What a response to _REQ_BODY echoes back.
_ECHO: dict[str, Any] = {
    "object": "response",
    "error": None,
    "instructions": None,
    "max_output_tokens": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
    "metadata": {},
    "service_tier": "default",
}

_text = st.text(max_size=12)
_ident = st.from_regex(r"[a-z0-9]{3,8}", fullmatch=True)
_annotation = st.builds(
    lambda u, a, b: {"type": "url_citation", "url": f"https://x/{u}", "title": u, "start_index": a, "end_index": b},
    _ident,
    st.integers(0, 5),
    st.integers(5, 9),
)
_part = st.one_of(
    st.builds(
        lambda t, ann: {"type": "output_text", "text": t, "annotations": ann, "logprobs": []},
        _text,
        st.lists(_annotation, max_size=1),
    ),
    _text.map(lambda t: {"type": "refusal", "refusal": t}),
)


@st.composite
def _output_item(draw: st.DrawFn, n: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["message", "function_call", "custom_tool_call", "reasoning", "web_search_call"]))
    if kind == "message":
        item = {
            "id": f"msg_{n}",
            "type": "message",
            "status": "completed",
            "content": draw(st.lists(_part, min_size=1, max_size=3)),
            "role": "assistant",
        }
        if draw(st.booleans()):
            item["phase"] = "commentary"
        return item
    if kind == "function_call":
        return {
            "type": "function_call",
            "call_id": f"call_{n}",
            "name": draw(_ident),
            "arguments": draw(_text),
            "id": f"fc_{n}",
            "status": "completed",
        }
    if kind == "custom_tool_call":
        return {
            "type": "custom_tool_call",
            "call_id": f"call_{n}",
            "name": draw(_ident),
            "input": draw(_text),
            "id": f"ctc_{n}",
        }
    if kind == "reasoning":
        item = {
            "id": f"rs_{n}",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": t} for t in draw(st.lists(_text, max_size=2))],
        }
        if draw(st.booleans()):
            item["encrypted_content"] = "gAAAA" + draw(_ident)
        text = draw(st.text(min_size=1, max_size=8) | st.none())
        if text is not None:
            item["content"] = [{"type": "reasoning_text", "text": text}]
        return item
    return {
        "type": "web_search_call",
        "id": f"ws_{n}",
        "status": "completed",
        "action": {"type": "search", "query": "q"},
    }


@st.composite
def _responses(draw: st.DrawFn) -> dict[str, Any]:
    output = [draw(_output_item(n)) for n in range(draw(st.integers(0, 5)))]
    status = draw(st.sampled_from(["completed", "incomplete"]))
    details = None
    if status == "incomplete":
        details = {"reason": draw(st.sampled_from(["max_output_tokens", "content_filter", None]))}
        # the item cut short is the last one the model produced (built-in tool items are not the model's)
        last = max((k for k, i in enumerate(output) if i["type"] != "web_search_call"), default=None)
        if last is not None and output[last]["type"] == "message":
            output[last]["status"] = "incomplete"
    usage = None
    if draw(st.booleans()):
        inp, out_t = draw(st.integers(0, 10_000)), draw(st.integers(0, 10_000))
        usage = {
            "input_tokens": inp,
            "input_tokens_details": {
                "cached_tokens": draw(st.integers(0, inp)),
                "cache_write_tokens": draw(st.integers(0, 9)),
            },
            "output_tokens": out_t,
            "output_tokens_details": {"reasoning_tokens": draw(st.integers(0, out_t))},
            "total_tokens": inp + out_t,
        }
    body = {
        **_ECHO,
        "id": "resp_" + draw(_ident),
        "created_at": draw(st.integers(1, 2_000_000_000)),
        "status": status,
        "incomplete_details": details,
        "model": draw(st.sampled_from(["gpt-4.1-2025-04-14", "o3"])),
        "output": output,
        "usage": usage,
    }
    if draw(st.booleans()):
        body["service_tier"] = "flex"
    if draw(st.booleans()):
        body["completed_at"] = body["created_at"] + 3
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_responses())
def test_response_round_trip(body: dict[str, Any]) -> None:
    snapshot = json.loads(json.dumps(body))
    out = R.encode_response(R.decode_response(body), R.decode_request(_REQ_BODY))
    assert out == snapshot
    SDKResponse.model_validate(out)
