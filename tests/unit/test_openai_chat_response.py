"""Chat responses: IR facts after decoding, encoding IR from other formats, the SDK accepting the output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from trigate.errors import GatewayError
from trigate.formats.openai_chat import CODEC, usage_from_body, usage_from_chunk
from trigate.translate import ir

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_chat" / "responses"
REQ = ir.Request(model="gpt-4o", messages=[ir.Message("user", [ir.Text("hi")])])


def _fixture(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / f"{name}.in.json").read_bytes())


def test_text_response_ir() -> None:
    resp = CODEC.decode_response(_fixture("text"))
    assert resp.id == "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
    assert resp.model == "gpt-4o-2024-08-06" and resp.created == 1741570283
    assert resp.stop_reason == "end_turn"
    text = resp.content[0]
    assert isinstance(text, ir.Text) and text.text == "See https://example.com for details."
    assert text.citations is not None and text.citations[0]["url_citation"]["end_index"] == 23
    assert resp.usage == ir.Usage(
        input_tokens=1117, output_tokens=46, reasoning_tokens=0, input_audio_tokens=0, output_audio_tokens=0
    )


@pytest.mark.parametrize(
    ("case", "stop"),
    [
        ("tool_calls", "tool_use"),
        ("length", "max_tokens"),
        ("content_filter", "content_filter"),
        ("legacy_function_call", "tool_use"),
    ],
)
def test_stop_reasons(case: str, stop: str) -> None:
    assert CODEC.decode_response(_fixture(case)).stop_reason == stop


def test_tool_calls_ir() -> None:
    resp = CODEC.decode_response(_fixture("tool_calls"))
    calls = [p for p in resp.content if isinstance(p, ir.ToolCall)]
    assert [(c.id, c.name) for c in calls] == [("call_qOfTGgDrItLORNfC6VwUbyLL", "get_weather"), ("call_2", "get_time")]
    assert calls[0].arguments == '{"location":"Shanghai"}'
    assert calls[1].signature == "dGhvdWdodA=="
    assert not any(isinstance(p, ir.Text) for p in resp.content)  # content: null


def test_refusal_ir() -> None:
    resp = CODEC.decode_response(_fixture("content_filter"))
    assert resp.content == [ir.Refusal("I'm sorry, I can't help with that.")]


def test_cached_and_reasoning_usage() -> None:
    resp = CODEC.decode_response(_fixture("cached_reasoning_usage"))
    u = resp.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (2006, 300, 1920, 64)
    assert u.reasoning_tokens == 192 and u.total_tokens == 2306
    assert resp.content[0] == ir.Reasoning(text="17*23 = 391", signature="sig-abc")
    body = CODEC.encode_response(resp, REQ)
    assert body["usage"]["total_tokens"] == 2306


def test_legacy_response_ids_are_deterministic() -> None:
    a = CODEC.decode_response(_fixture("legacy_function_call"))
    b = CODEC.decode_response(_fixture("legacy_function_call"))
    assert isinstance(a.content[0], ir.ToolCall) and a.content[0].id == b.content[0].id == "call_chatcmpl-fn"
    # a modern client gets tool_calls, not function_call
    msg = CODEC.encode_response(a, REQ)["choices"][0]
    assert msg["finish_reason"] == "tool_calls" and msg["message"]["tool_calls"][0]["id"] == "call_chatcmpl-fn"


def test_compat_server_variants() -> None:
    body = {
        "id": "x",
        "model": "m",
        "created": 5,
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "stop"},
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "reasoning": "thought",
                    "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "abort",
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "prompt_cache_hit_tokens": 1},
    }
    resp = CODEC.decode_response(body)
    assert resp.content[0] == ir.Reasoning(text="thought")
    assert resp.content[1] == ir.Text("ab")
    tc = resp.content[2]
    assert isinstance(tc, ir.ToolCall) and tc.id == "call_x_0"  # id synthesised when missing
    assert resp.stop_reason == "end_turn"  # unknown finish reasons still mean "stopped"
    assert resp.usage is not None and resp.usage.cache_read_tokens == 1


@pytest.mark.parametrize("body", [[], {"id": "x"}, {"choices": "no"}, {"choices": [{"index": 0, "message": "hi"}]}])
def test_unusable_upstream_body(body: Any) -> None:
    with pytest.raises(GatewayError) as info:
        CODEC.decode_response(body)
    assert info.value.kind == "upstream_unavailable" and info.value.status == 502


def test_empty_choices_is_tolerated() -> None:
    resp = CODEC.decode_response({"id": "x", "model": "m", "choices": []})
    assert resp.content == [] and resp.stop_reason is None


# -- encoding IR from other formats -----------------------------------------------------------


def _anthropic_like_response() -> ir.Response:
    return ir.Response(
        id="msg_01XYZ",
        model="claude-sonnet-4-5",
        content=[
            ir.Reasoning(text="step one", signature="sigA"),
            ir.Reasoning(redacted="REDACTED"),
            ir.Text("Hello ", citations=[{"type": "char_location", "cited_text": "x"}]),
            ir.Text("world"),
            ir.ToolCall("toolu_9", "lookup", '{"q":1}'),
        ],
        stop_reason="tool_use",
        usage=ir.Usage(input_tokens=100, output_tokens=50, cache_read_tokens=30, cache_write_tokens=20),
    )


def test_encode_anthropic_like_response() -> None:
    body = CODEC.encode_response(_anthropic_like_response(), REQ)
    assert body["id"] == "msg_01XYZ" and body["object"] == "chat.completion"
    assert body["created"] > 1_600_000_000  # formats without a timestamp get the current time
    choice = body["choices"][0]
    msg = choice["message"]
    assert msg["content"] == "Hello world"
    assert msg["annotations"] == []  # Anthropic citation shapes mean nothing to Chat clients
    assert msg["tool_calls"] == [
        {"id": "toolu_9", "type": "function", "function": {"name": "lookup", "arguments": '{"q":1}'}}
    ]
    assert msg["reasoning_content"] == "step one"
    assert msg["reasoning_details"] == [
        {"type": "reasoning.text", "text": "step one", "signature": "sigA"},
        {"type": "reasoning.encrypted", "data": "REDACTED"},
    ]
    assert choice["finish_reason"] == "tool_calls"
    assert body["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 20},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    ChatCompletion.model_validate(body)


def test_multi_block_reasoning_round_trips_through_a_client() -> None:
    """A Chat client echoing the assistant message back gives every thinking block back, signatures intact."""
    resp = _anthropic_like_response()
    msg = CODEC.encode_response(resp, REQ)["choices"][0]["message"]
    echoed = {k: v for k, v in msg.items() if v is not None}
    req = CODEC.decode_request({"model": "m", "messages": [{"role": "user", "content": "q"}, echoed]})
    assert req.messages[1].content[:2] == resp.content[:2]
    assert isinstance(req.messages[1].content[-1], ir.ToolCall)


def test_responses_style_reasoning_round_trips() -> None:
    r = ir.Reasoning(summary=["did a thing"], encrypted_content="gAAAA", id="rs_1")
    msg = CODEC.encode_response(ir.Response(id="resp_1", model="o3", content=[r, ir.Text("ok")]), REQ)["choices"][0][
        "message"
    ]
    assert msg["reasoning_content"] == "did a thing"  # the summary is what a Chat client can show
    back = CODEC.decode_request({"model": "m", "messages": [{"role": "user", "content": "q"}, msg]})
    assert back.messages[1].content[0] == r


def test_stop_reason_mapping_from_ir() -> None:
    cases = {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "pause_turn": "stop",
        "max_tokens": "length",
        "context_window_exceeded": "length",
        "content_filter": "content_filter",
        "tool_use": "tool_calls",
        None: "stop",
    }
    for stop, finish in cases.items():
        resp = ir.Response(id="x", model="m", content=[ir.Text("t")], stop_reason=stop, created=1)  # type: ignore[arg-type]
        assert CODEC.encode_response(resp, REQ)["choices"][0]["finish_reason"] == finish
    # unknown stop reason but tool calls present (e.g. Gemini STOP) -> tool_calls
    resp = ir.Response(id="x", model="m", content=[ir.ToolCall("c", "f", "{}")], created=1)
    assert CODEC.encode_response(resp, REQ)["choices"][0]["finish_reason"] == "tool_calls"


def test_legacy_client_gets_function_call() -> None:
    legacy_req = CODEC.decode_request(
        {"model": "m", "messages": [{"role": "user", "content": "q"}], "functions": [{"name": "f"}]}
    )
    resp = ir.Response(
        id="x",
        model="m",
        content=[ir.ToolCall("c1", "f", '{"a":1}'), ir.ToolCall("c2", "f", "{}")],
        stop_reason="tool_use",
    )
    choice = CODEC.encode_response(resp, legacy_req)["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {"name": "f", "arguments": '{"a":1}'}
    assert "tool_calls" not in choice["message"]


def test_no_usage_means_no_usage_field() -> None:
    body = CODEC.encode_response(ir.Response(id="x", model="m", content=[ir.Text("t")], created=1), REQ)
    assert "usage" not in body
    ChatCompletion.model_validate(body)


@pytest.mark.parametrize("case", ["text", "tool_calls", "length", "content_filter", "cached_reasoning_usage"])
def test_sdk_accepts_encoded_fixtures(case: str) -> None:
    body = CODEC.encode_response(CODEC.decode_response(_fixture(case)), REQ)
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].finish_reason == body["choices"][0]["finish_reason"]


def test_usage_helpers_for_the_fast_path() -> None:
    chunk = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}
    assert usage_from_chunk(chunk) == ir.Usage(input_tokens=9, output_tokens=3)
    assert usage_from_chunk({"choices": [{"delta": {}}], "usage": None}) is None
    assert usage_from_chunk({"choices": []}) is None
    assert usage_from_body(_fixture("cached_reasoning_usage")) == ir.Usage(
        2006,
        300,
        cache_read_tokens=1920,
        cache_write_tokens=64,
        reasoning_tokens=192,
        input_audio_tokens=0,
        output_audio_tokens=0,
    )
    assert usage_from_body({"usage": "garbage"}) is None
    # garbage counts degrade to 0 rather than raising on the billing path
    assert usage_from_body({"usage": {"prompt_tokens": "x", "completion_tokens": None}}) == ir.Usage()


def test_function_call_without_arguments_reads_empty_object() -> None:
    resp = ir.Response(
        id="x", model="m", content=[ir.ToolCall("c", "now", ""), ir.ToolCall("d", "sql", "", kind="custom")]
    )
    calls = CODEC.encode_response(resp, REQ)["choices"][0]["message"]["tool_calls"]
    assert calls[0]["function"]["arguments"] == "{}" and calls[1]["custom"]["input"] == ""
    # requests going upstream keep history verbatim
    req = ir.Request(model="m", messages=[ir.Message("assistant", [ir.ToolCall("c", "now", "")])])
    assert CODEC.encode_request(req, "m")["messages"][0]["tool_calls"][0]["function"]["arguments"] == ""
