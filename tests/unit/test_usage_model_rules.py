"""Issue 13, the pure parts: an upstream's own usage total survives decoding into the IR and every
format's encoding; decoders report only the model the upstream named; the served-model rule."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from trigate.api.attempt import served_model
from trigate.formats import anthropic, bedrock, gemini, openai_chat, openai_responses
from trigate.formats.anthropic_stream import usage_to_anthropic
from trigate.formats.bedrock_stream import usage_to_bedrock
from trigate.formats.gemini import usage_from_gemini, usage_to_gemini
from trigate.translate import ir
from trigate.upstream.sniff import usage_from_openai, usage_from_responses
from trigate.wire.eventstream import Message
from trigate.wire.sse import SSEEvent

REQ = ir.Request(model="client-alias", messages=[ir.Message("user", [ir.Text("hi")])], max_tokens=64)
# Gemini's OpenAI-compatible endpoint on a thinking model (77 thinking tokens only in the total).
GEMINI_OPENAI_USAGE = {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 97}


def sse(data: dict[str, Any], event: str | None = None) -> SSEEvent:
    return SSEEvent(orjson.dumps(data).decode(), event)


def test_hidden_tokens_become_output_and_reasoning() -> None:
    u = ir.Usage(input_tokens=11, output_tokens=9).fold_reported_total(97)
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.total_tokens) == (11, 86, 77, 97)


def test_a_reported_reasoning_count_is_kept() -> None:
    # completion_tokens 0 while reasoning_tokens says 60: the 60 are output, and still the reasoning.
    u = ir.Usage(input_tokens=21, output_tokens=0, reasoning_tokens=60).fold_reported_total(81)
    assert (u.output_tokens, u.reasoning_tokens, u.total_tokens) == (60, 60, 81)


@pytest.mark.parametrize("total", [20, 5, None, "97", True])
def test_a_total_that_adds_nothing_changes_nothing(total: Any) -> None:
    u = ir.Usage(input_tokens=11, output_tokens=9).fold_reported_total(total)
    assert u == ir.Usage(input_tokens=11, output_tokens=9)


@pytest.mark.parametrize("decode", [openai_chat.usage_from_dict, usage_from_openai])
def test_chat_usage_decoders_keep_the_total(decode: Any) -> None:
    u = decode(GEMINI_OPENAI_USAGE)
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (11, 86, 77)


@pytest.mark.parametrize("decode", [openai_responses.usage_from_dict, usage_from_responses])
def test_responses_usage_decoders_keep_the_total(decode: Any) -> None:
    u = decode({"input_tokens": 11, "output_tokens": 9, "total_tokens": 97})
    assert (u.output_tokens, u.total_tokens) == (86, 97)


def test_gemini_usage_keeps_thoughts_and_the_total() -> None:
    u = usage_from_gemini({"promptTokenCount": 20, "candidatesTokenCount": 8, "thoughtsTokenCount": 30,
                           "totalTokenCount": 58})
    assert (u.output_tokens, u.reasoning_tokens, u.total_tokens) == (38, 30, 58)
    # a total above its parts (a count Gemini adds later) is output too
    later = usage_from_gemini({"promptTokenCount": 20, "candidatesTokenCount": 8, "totalTokenCount": 40})
    assert later.total_tokens == 40


def test_every_encoding_carries_the_true_total() -> None:
    u = openai_chat.usage_from_dict(GEMINI_OPENAI_USAGE)
    chat = openai_chat.usage_to_dict(u)
    assert (chat["prompt_tokens"], chat["completion_tokens"], chat["total_tokens"]) == (11, 86, 97)
    assert chat["completion_tokens_details"]["reasoning_tokens"] == 77
    resp = openai_responses.usage_to_dict(u)
    assert (resp["output_tokens"], resp["total_tokens"], resp["output_tokens_details"]["reasoning_tokens"]) == (
        86, 97, 77)
    ant = usage_to_anthropic(u)  # no total in Anthropic's usage: output_tokens includes thinking, as Claude's do
    assert (ant["input_tokens"], ant["output_tokens"]) == (11, 86)
    assert usage_to_gemini(u)["totalTokenCount"] == 97 and usage_to_bedrock(u)["totalTokens"] == 97


def test_translated_chat_body_and_stream_keep_the_total() -> None:
    body = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gemini-2.5-flash",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": GEMINI_OPENAI_USAGE}
    resp = openai_chat.CODEC.decode_response(body)
    assert resp.usage is not None and resp.usage.total_tokens == 97
    assert anthropic.CODEC.encode_response(resp, REQ)["usage"]["output_tokens"] == 86
    dec = openai_chat.CODEC.stream_decoder(REQ)
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gemini-2.5-flash"}
    events = dec.feed(sse({**head, "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}))
    events += dec.feed(sse({**head, "choices": [], "usage": GEMINI_OPENAI_USAGE}))
    events += dec.feed(SSEEvent("[DONE]")) + dec.close()
    end = [e for e in events if isinstance(e, ir.MessageEnd)]
    assert end and end[0].usage is not None and end[0].usage.total_tokens == 97


# ------------------------------------------------------------------------------------------ model


def test_served_model_rule() -> None:
    assert served_model("gpt-4o-mini-2024-07-18", "gpt-4o-mini") == "gpt-4o-mini-2024-07-18"
    assert served_model("", "anthropic.claude-sonnet-4-5-20250929-v1:0") == "anthropic.claude-sonnet-4-5-20250929-v1:0"


def test_bedrock_decoders_name_no_model_rather_than_the_clients_alias() -> None:
    body = {"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}}
    assert bedrock.CODEC.decode_response(body).model == ""
    events = bedrock.CODEC.stream_decoder(REQ).feed(Message(
        {":event-type": "messageStart", ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps({"role": "assistant"})))
    starts = [e for e in events if isinstance(e, ir.MessageStart)]
    assert starts and starts[0].model == ""


def test_responses_stream_decoder_names_no_model_rather_than_the_clients_alias() -> None:
    dec = openai_responses.CODEC.stream_decoder(REQ)
    events = dec.feed(sse({"type": "response.created", "response": {
        "id": "resp_1", "object": "response", "status": "in_progress", "output": []}}, "response.created"))
    starts = [e for e in events if isinstance(e, ir.MessageStart)]
    assert starts and starts[0].model == ""


def test_gemini_reported_model_version_is_kept() -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP"}],
            "modelVersion": "gemini-2.5-flash-001", "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1,
                                                                     "totalTokenCount": 2}}
    assert gemini.CODEC.decode_response(body).model == "gemini-2.5-flash-001"
