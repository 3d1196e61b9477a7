"""Bedrock stream decoder and encoder: edge cases, IR from other formats' decoders, acceptance of the encoder's
output by botocore's own ConverseStream parser, and throughput."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import botocore.session
import orjson
import pytest
from botocore.eventstream import EventStream
from botocore.exceptions import EventStreamError as BotoEventStreamError
from botocore.model import ServiceModel
from botocore.parsers import EventStreamJSONParser

from trigate.errors import GatewayError
from trigate.formats import anthropic, openai_chat
from trigate.formats.bedrock import CODEC
from trigate.translate import ir
from trigate.wire.eventstream import EventStreamDecoder, Message, encode_message
from trigate.wire.sse import SSEDecoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REQ = ir.Request(model="anthropic.claude")

_service = ServiceModel(
    botocore.session.get_session().get_component("data_loader").load_service_model("bedrock-runtime", "service-2")
)
_STREAM_SHAPE = _service.operation_model("ConverseStream").output_shape.members["stream"]


class _Raw:
    def __init__(self, data: bytes, piece: int = 17) -> None:
        self._data, self._piece = data, piece

    def stream(self):
        for i in range(0, len(self._data), self._piece):
            yield self._data[i : i + self._piece]

    def close(self) -> None:
        pass


def boto_events(data: bytes) -> list[dict[str, Any]]:
    """Parse bytes the way boto3's ``converse_stream()['stream']`` does."""
    return list(EventStream(_Raw(data), _STREAM_SHAPE, EventStreamJSONParser(), "ConverseStream"))


def ev(event_type: str, payload: dict[str, Any]) -> Message:
    return Message(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps(payload),
    )


def decode(messages: list[Message]) -> list[ir.StreamEvent]:
    dec = CODEC.stream_decoder(REQ)
    out: list[ir.StreamEvent] = []
    for m in messages:
        out += dec.feed(m)
    return out + dec.close()


def encode(events: list[ir.StreamEvent]) -> bytes:
    enc = CODEC.stream_encoder(REQ)
    return b"".join(enc.encode(e) for e in events)


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------


def test_decoder_tolerates_missing_message_start_and_unknown_events() -> None:
    events = decode(
        [
            ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}),
            ev("someFutureEvent", {"x": 1}),
            ev("messageStop", {"stopReason": "end_turn"}),
            ev("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}, "metrics": {}}),
        ]
    )
    assert [type(e) for e in events] == [ir.MessageStart, ir.BlockStart, ir.TextDelta, ir.BlockStop, ir.MessageEnd]
    assert events[-1].usage == ir.Usage(input_tokens=1, output_tokens=2)


def test_decoder_skips_server_tool_blocks_and_citations() -> None:
    events = decode(
        [
            ev("messageStart", {"role": "assistant"}),
            ev("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolResult": {"toolUseId": "t"}}}),
            ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolResult": [{"text": "r"}]}}),
            ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "not text of a text block"}}),
            ev("contentBlockStop", {"contentBlockIndex": 0}),
            ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "answer"}}),
            ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"citation": {"title": "x"}}}),
            ev("contentBlockStop", {"contentBlockIndex": 1}),
            ev("messageStop", {"stopReason": "guardrail_intervened"}),
        ]
    )
    assert [e for e in events if type(e) is ir.BlockStart] == [ir.BlockStart(0, "text")]
    assert [e.text for e in events if type(e) is ir.TextDelta] == ["answer"]
    assert events[-1] == ir.MessageEnd("content_filter", None, None)


def test_decoder_closes_a_block_left_open_when_the_next_begins() -> None:
    events = decode(
        [
            ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}}),
            ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "x"}}),
            ev("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
            ev("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}),
            ev("messageStop", {"stopReason": "tool_use"}),
            ev("metadata", {"usage": {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}}),
        ]
    )
    shape = [(type(e).__name__, getattr(e, "index", None)) for e in events]
    assert shape == [
        ("MessageStart", None),
        ("BlockStart", 0),
        ("ReasoningDelta", 0),
        ("BlockStop", 0),
        ("BlockStart", 1),
        ("TextDelta", 1),
        ("BlockStop", 1),
        ("BlockStart", 2),
        ("ToolArgsDelta", 2),
        ("BlockStop", 2),
        ("MessageEnd", None),
    ]


def test_decoder_generic_error_message_and_malformed_payload() -> None:
    dec = CODEC.stream_decoder(REQ)
    out = dec.feed(
        Message({":message-type": "error", ":error-code": "ThrottlingException", ":error-message": "slow"}, b"")
    )
    assert out[0].error.kind == "rate_limit" and out[0].error.message == "slow"
    assert dec.feed(ev("messageStart", {"role": "assistant"})) == [] and dec.close() == []

    events = decode(
        [
            ev("messageStart", {"role": "assistant"}),
            Message({":message-type": "event", ":event-type": "contentBlockDelta"}, b"{not json"),
        ]
    )
    assert type(events[-1]) is ir.StreamError and "not JSON" in events[-1].error.message
    events = decode([ev("contentBlockDelta", {"delta": {"text": "no index"}})])
    assert type(events[-1]) is ir.StreamError and events[-1].error.kind == "upstream_unavailable"


@pytest.mark.parametrize(
    ("etype", "kind", "status"),
    [
        ("throttlingException", "rate_limit", 429),
        ("validationException", "invalid_request", 400),
        ("internalServerException", "server_error", 500),
        ("serviceUnavailableException", "overloaded", 503),
        ("modelStreamErrorException", "server_error", 424),
    ],
)
def test_decoder_exception_kinds(etype: str, kind: str, status: int) -> None:
    events = decode(
        [
            ev("messageStart", {"role": "assistant"}),
            Message({":message-type": "exception", ":exception-type": etype}, b'{"message":"m"}'),
        ]
    )
    err = events[-1].error
    assert (err.kind, err.status, err.message, err.code) == (kind, status, "m", etype)


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


def test_encoder_output_parsed_by_botocore() -> None:
    events = [
        ir.MessageStart("m1", "x"),
        ir.BlockStart(0, "reasoning"),
        ir.ReasoningDelta(0, "think"),
        ir.SignatureDelta(0, "sig"),
        ir.BlockStop(0),
        ir.BlockStart(1, "redacted_reasoning", data="UkVE"),
        ir.BlockStop(1),
        ir.BlockStart(2, "text"),
        ir.TextDelta(2, 'He said "hi"\n'),
        ir.BlockStop(2),
        ir.BlockStart(3, "tool_call", tool_id="tooluse_1", tool_name="f"),
        ir.ToolArgsDelta(3, '{"a":'),
        ir.ToolArgsDelta(3, "1}"),
        ir.BlockStop(3),
        ir.MessageEnd("tool_use", None, ir.Usage(input_tokens=110, output_tokens=20, cache_read_tokens=100)),
    ]
    parsed = boto_events(encode(events))
    assert parsed[0] == {"messageStart": {"role": "assistant"}}
    deltas = [p["contentBlockDelta"] for p in parsed if "contentBlockDelta" in p]
    assert deltas[0] == {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think"}}}
    assert deltas[1]["delta"] == {"reasoningContent": {"signature": "sig"}}
    assert deltas[2]["delta"] == {"reasoningContent": {"redactedContent": b"RED"}}  # botocore base64-decodes blobs
    assert deltas[3] == {"contentBlockIndex": 2, "delta": {"text": 'He said "hi"\n'}}
    assert [p["contentBlockStart"] for p in parsed if "contentBlockStart" in p] == [
        {"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "f"}}}
    ]
    assert parsed[-2] == {"messageStop": {"stopReason": "tool_use"}}
    assert parsed[-1] == {
        "metadata": {
            "usage": {
                "inputTokens": 10,
                "outputTokens": 20,
                "totalTokens": 130,
                "cacheReadInputTokens": 100,
                "cacheWriteInputTokens": 0,
            },
            "metrics": {"latencyMs": 0},
        }
    }


def test_encoder_stream_error_is_a_botocore_exception() -> None:
    data = encode(
        [
            ir.MessageStart("m", "x"),
            ir.BlockStart(0, "text"),
            ir.TextDelta(0, "par"),
            ir.StreamError(GatewayError("rate_limit", "slow down")),
        ]
    )
    with pytest.raises(BotoEventStreamError) as exc:
        boto_events(data)
    assert exc.value.response["Error"] == {"Code": "throttlingException", "Message": "slow down"}
    # The error ends the stream: nothing after it.
    enc = CODEC.stream_encoder(REQ)
    assert enc.encode(ir.StreamError(GatewayError("server_error", "x"))) != b""
    assert enc.encode(ir.MessageEnd("end_turn")) == b""


def test_encoder_is_robust_to_any_decoder() -> None:
    # MessageEnd with no start, no usage and a block left open must still make a well-formed stream.
    parsed = boto_events(encode([ir.BlockStart(0, "text"), ir.TextDelta(0, "x"), ir.MessageEnd(None)]))
    assert [next(iter(p)) for p in parsed] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert parsed[-2]["messageStop"]["stopReason"] == "end_turn"
    # A tool block opening while text is open closes the text block first; refusals become text.
    parsed = boto_events(
        encode(
            [
                ir.MessageStart("m", "x"),
                ir.BlockStart(0, "refusal"),
                ir.RefusalDelta(0, "no"),
                ir.BlockStart(1, "tool_call", tool_id="t", tool_name="f"),
                ir.BlockStop(1),
                ir.MessageEnd("content_filter"),
            ]
        )
    )
    assert [next(iter(p)) for p in parsed] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockStop",
        "contentBlockStart",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert parsed[1]["contentBlockDelta"]["delta"] == {"text": "no"}
    assert parsed[-2]["messageStop"]["stopReason"] == "content_filtered"


def _anthropic_ir(name: str) -> list[ir.StreamEvent]:
    raw = (FIXTURES / "anthropic" / "streams" / f"{name}.in.sse").read_bytes()
    sse, dec = SSEDecoder(), anthropic.CODEC.stream_decoder(REQ)
    events: list[ir.StreamEvent] = []
    for e in sse.feed(raw) + sse.close():
        events += dec.feed(e)
    return events + dec.close()


@pytest.mark.parametrize("name", ["thinking_signature", "parallel_tool_use", "text_ping", "server_tool_blocks"])
def test_anthropic_stream_to_bedrock_client(name: str) -> None:
    parsed = boto_events(encode(_anthropic_ir(name)))
    assert "messageStart" in parsed[0] and "metadata" in parsed[-1]


def test_anthropic_stream_error_to_bedrock_client() -> None:
    with pytest.raises(BotoEventStreamError):
        boto_events(encode(_anthropic_ir("midstream_error")))


def test_bedrock_stream_to_chat_and_anthropic_clients() -> None:
    frames = orjson.loads((FIXTURES / "bedrock" / "streams" / "tool_use.in.json").read_bytes())
    raw = b"".join(encode_message(f["headers"], orjson.dumps(f["payload"])) for f in frames)
    events = decode(EventStreamDecoder().feed(raw))
    chat = b"".join(openai_chat.CODEC.stream_encoder(REQ).encode(e) for e in events)
    assert b'"finish_reason":"tool_calls"' in chat and b'"id":"tooluse_B2"' in chat
    anth = b"".join(anthropic.CODEC.stream_encoder(REQ).encode(e) for e in events)
    assert b'"stop_reason":"tool_use"' in anth and b'"cache_read_input_tokens":30000' in anth


# --------------------------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------------------------


def test_decode_encode_throughput() -> None:
    n = 30000
    frames = [
        encode_message(
            {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"},
            b'{"contentBlockIndex":0,"delta":{"text":"tok "},"p":"abcdefgh"}',
        )
    ] * n
    raw = encode_message(
        {":event-type": "messageStart", ":content-type": "application/json", ":message-type": "event"},
        b'{"role":"assistant"}',
    ) + b"".join(frames)
    start = time.perf_counter()
    framer = EventStreamDecoder()
    dec = CODEC.stream_decoder(REQ)
    enc = CODEC.stream_encoder(REQ)
    out = 0
    for i in range(0, len(raw), 1400):
        for msg in framer.feed(raw[i : i + 1400]):
            for e in dec.feed(msg):
                out += len(enc.encode(e))
    rate = n / (time.perf_counter() - start)
    assert out > 0
    assert rate > 50_000, f"{rate:.0f} chunks/s"
