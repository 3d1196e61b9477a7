"""Usage sniffing on the same-format stream path: whatever way the network splits the stream, the
usage read and the bytes passed on are the same; whole events that cannot carry usage pass through
byte for byte."""

from __future__ import annotations

import orjson
import pytest

from trigate.translate.ir import Usage
from trigate.upstream.sniff import AnthropicSniffer, OpenAIChatSniffer, ResponsesSniffer, UsageSniffer
from trigate.wire.sse import SSEDecoder


def sse(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(delta: dict[str, object], usage: object = None, choices: bool = True) -> bytes:
    return sse({"id": "c1", "object": "chat.completion.chunk", "model": "m", "usage": usage,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}] if choices else []})


OPENAI = [chunk({"role": "assistant", "content": ""}), b": keep-alive\n\n", chunk({"content": "Hel"}),
          chunk({"content": "lo"}), chunk({}, choices=True),
          chunk({}, usage={"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9,
                           "prompt_tokens_details": {"cached_tokens": 3}}, choices=False),
          b"data: [DONE]\n\n"]


def run(sniffer: UsageSniffer, pieces: list[bytes]) -> bytes:
    return b"".join(sniffer.feed(p) for p in pieces) + sniffer.close()


def splits(stream: bytes) -> list[list[bytes]]:
    """The stream in one piece, at every single split point, and byte by byte."""
    out = [[stream], [bytes([b]) for b in stream]]
    out += [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    return out


@pytest.mark.parametrize("client_wants_usage", [False, True])
def test_openai_usage_is_read_and_the_extra_chunk_dropped_however_the_stream_is_split(client_wants_usage: bool) -> None:
    body = {"stream": True, "stream_options": {"include_usage": True}} if client_wants_usage else {"stream": True}
    stream = b"".join(OPENAI)
    expected = None
    for pieces in [OPENAI, *splits(stream)]:
        s = OpenAIChatSniffer(body)
        out = run(s, pieces)
        assert s.usage == Usage(input_tokens=7, output_tokens=2, cache_read_tokens=3)
        events = [e.data for e in SSEDecoder().feed(out)]
        assert events[-1] == "[DONE]" and ('"usage":{' in "".join(events)) is client_wants_usage
        expected = expected or events
        assert events == expected  # same events whatever the split


def test_openai_whole_events_without_usage_pass_through_untouched() -> None:
    s = OpenAIChatSniffer({"stream": True})
    for piece in OPENAI[:5]:
        assert s.feed(piece) is piece  # not decoded, not re-encoded: the very same bytes object
    assert s.feed(OPENAI[5]) == b""  # the usage chunk the client did not ask for
    assert s.usage is not None and s.usage.output_tokens == 2


def test_openai_a_split_event_is_decoded_not_passed_half() -> None:
    s = OpenAIChatSniffer({"stream": True})
    first, second = OPENAI[2][:20], OPENAI[2][20:] + OPENAI[3]
    assert s.feed(first) == b""
    assert [e.data for e in SSEDecoder().feed(s.feed(second))] == [OPENAI[2][6:-2].decode(), OPENAI[3][6:-2].decode()]


ANTHROPIC = [sse({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 11,
                                                                              "cache_read_input_tokens": 4,
                                                                              "output_tokens": 1}}},
                 "message_start"),
             sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                 "content_block_start"),
             sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
                 "content_block_delta"),
             b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
             sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}},
                 "message_delta"),
             sse({"type": "message_stop"}, "message_stop")]


def test_anthropic_usage_however_the_stream_is_split_and_bytes_untouched() -> None:
    stream = b"".join(ANTHROPIC)
    for pieces in [ANTHROPIC, *splits(stream)]:
        s = AnthropicSniffer()
        assert run(s, pieces) == stream
        assert s.usage == Usage(input_tokens=15, output_tokens=5, cache_read_tokens=4)


RESPONSES = [sse({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "usage": None}},
                 "response.created"),
             sse({"type": "response.output_text.delta", "delta": "Hi"}, "response.output_text.delta"),
             sse({"type": "response.completed", "response": {"id": "resp_1", "status": "completed",
                                                             "usage": {"input_tokens": 3, "output_tokens": 2,
                                                                       "total_tokens": 5}}},
                 "response.completed")]


def test_responses_id_and_usage_however_the_stream_is_split() -> None:
    stream = b"".join(RESPONSES)
    for pieces in [RESPONSES, *splits(stream)]:
        s = ResponsesSniffer()
        assert run(s, pieces) == stream
        assert (s.response_id, s.usage) == ("resp_1", Usage(input_tokens=3, output_tokens=2))


def test_decoder_boundary() -> None:
    d = SSEDecoder()
    assert d.at_boundary
    d.feed(b"data: x\n")
    assert not d.at_boundary  # a data line waits for its blank line
    d.feed(b"\n")
    assert d.at_boundary
    d.feed(b"data: y\r")
    assert not d.at_boundary
