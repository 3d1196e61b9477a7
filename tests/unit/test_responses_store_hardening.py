"""Issue 13, Responses chains across targets, sans-IO parts: the history a native upstream gets in
place of a previous_response_id it does not hold, and the sniffer putting that id back in what the
client sees, however the upstream stream is split."""

from __future__ import annotations

import orjson

from trigate.formats import openai_responses as fmt
from trigate.formats.openai_responses import openai_reasoning_signature, reasoning_item
from trigate.translate import ir
from trigate.upstream.sniff import ResponsesSniffer
from trigate.wire.sse import SSEDecoder, encode_event


def test_expand_for_native_sends_history_then_the_clients_own_input() -> None:
    anthropic_thinking = reasoning_item(ir.Reasoning(text="hmm", signature="anthropic-sig"), "rs_1")
    openai_reasoning = reasoning_item(ir.Reasoning(text="", summary=["s"], signature=openai_reasoning_signature(
        "rs_oa", "gAAA-openai-blob")), "rs_2")
    history = [
        {"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        anthropic_thinking,
        openai_reasoning,
        {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
    ]
    body = {"model": "m", "previous_response_id": "resp_x", "input": "next", "store": True}
    out = fmt.expand_for_native(body, history)
    assert "previous_response_id" not in out and out["store"] is True and body["input"] == "next"
    assert out["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        # another provider's thinking is unreadable upstream; OpenAI's own encrypted reasoning travels
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}],
         "encrypted_content": "gAAA-openai-blob"},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"role": "user", "content": "next"},
    ]
    items = [{"type": "function_call_output", "call_id": "call_1", "output": "ok", "id": "fco_client"}]
    assert fmt.expand_for_native({"model": "m", "input": items}, [])["input"] == items  # the client's, untouched


def _events(prev: str | None) -> list[bytes]:
    def resp(status: str) -> dict:
        return {"id": "resp_up", "status": status, "previous_response_id": prev,
                "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5} if status == "completed" else None}

    return [encode_event(orjson.dumps({"type": "response.created", "response": resp("in_progress")}),
                         "response.created"),
            encode_event(orjson.dumps({"type": "response.in_progress", "response": resp("in_progress")}),
                         "response.in_progress"),
            encode_event(orjson.dumps({"type": "response.output_text.delta", "delta": "Hi"}),
                         "response.output_text.delta"),
            encode_event(orjson.dumps({"type": "response.completed", "response": resp("completed")}),
                         "response.completed")]


def test_sniffer_echoes_the_clients_previous_response_id_however_the_stream_is_split() -> None:
    upstream = b"".join(_events(None))
    expected = b"".join(_events("resp_client"))
    for size in (1, 7, 64, len(upstream)):
        s = ResponsesSniffer({"previous_response_id": "resp_client"})
        out = b"".join(s.feed(upstream[i:i + size]) for i in range(0, len(upstream), size)) + s.close()
        assert [orjson.loads(e.data) for e in SSEDecoder().feed(out)] == [
            orjson.loads(e.data) for e in SSEDecoder().feed(expected)]
        assert s.response is not None and s.response["previous_response_id"] == "resp_client"
        assert s.response["status"] == "completed" and s.usage is not None and s.usage.output_tokens == 2


def test_sniffer_without_echo_passes_bytes_through_and_keeps_the_response() -> None:
    upstream = b"".join(_events("resp_up_prev"))
    s = ResponsesSniffer()
    assert s.feed(upstream) == upstream and s.close() == b""
    assert s.response is not None and s.response["previous_response_id"] == "resp_up_prev"
    body = orjson.dumps({"id": "resp_up", "previous_response_id": None, "usage": None})
    assert s.client_body(body) == body
    echoing = ResponsesSniffer({"previous_response_id": "resp_client"})
    echoing.usage_from_body(body)
    assert orjson.loads(echoing.client_body(body))["previous_response_id"] == "resp_client"
