"""Golden files for the Bedrock codec: Bedrock -> IR -> Bedrock for requests, responses and streams.

Requests: ``<case>.in.json`` (with the ``modelId`` the shell would take from the URL) is decoded and encoded
back for that model; the result must equal ``<case>.out.json``, which is the input minus ``modelId`` except for
the canonical forms documented in trigate/formats/bedrock.py. Responses likewise.

Streams: ``<case>.in.json`` lists event-stream messages (headers + JSON payload). The test frames them into
real event-stream bytes, feeds them split at awkward boundaries through ``EventStreamDecoder`` and the codec's
stream decoder, re-encodes the IR with the stream encoder and parses the bytes back; the frames must equal
``<case>.out.json``. Stream canonical forms: unknown payload keys (the padding ``p``) are not kept, metrics
report ``latencyMs: 0``, empty tool-input fragments are dropped, a stream without metadata ends with zero
usage, and upstream failures become one exception frame.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from trigate.formats.bedrock import CODEC
from trigate.translate import ir
from trigate.wire.eventstream import EventStreamDecoder, EventStreamError, encode_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bedrock"


def _cases(kind: str) -> list[str]:
    return sorted(p.name[: -len(".in.json")] for p in (FIXTURES / kind).glob("*.in.json"))


def _load(kind: str, name: str) -> tuple[Any, Any]:
    d = FIXTURES / kind
    return json.loads((d / f"{name}.in.json").read_text()), json.loads((d / f"{name}.out.json").read_text())


def test_cases_present() -> None:
    # Guards against the glob silently finding nothing (a moved fixture directory would pass vacuously).
    assert len(_cases("requests")) >= 10
    assert len(_cases("responses")) >= 6
    assert len(_cases("streams")) >= 7


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _cases("requests"))
def test_request_golden(name: str) -> None:
    body, expected = _load("requests", name)
    req = CODEC.decode_request(body)
    assert req.model == body["modelId"]
    assert CODEC.encode_request(req, body["modelId"]) == expected


def test_request_ir_system_multiturn() -> None:
    body, _ = _load("requests", "system_multiturn")
    req = CODEC.decode_request(body)
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "user"]
    assert [p.text for p in req.messages[0].content] == ["You are a terse assistant.", "Answer in English."]
    assert (req.max_tokens, req.temperature, req.top_p, req.stop) == (512, 0.2, 0.9, ["END", "\n\nHuman:"])
    assert req.metadata == {"tenant": "acme", "trace": "run-42"}
    assert req.service_tier == "priority"
    extras = req.extras["bedrock"]
    assert extras["guardrailConfig"]["guardrailIdentifier"] == "gr-123"
    assert extras["performanceConfig"] == {"latency": "optimized"}


def test_request_ir_images_and_cache_points() -> None:
    body, _ = _load("requests", "images_cache")
    req = CODEC.decode_request(body)
    assert req.messages[0].content[0].cache_control == {"type": "ephemeral"}
    imgs = req.messages[1].content[1:]
    assert [i.media_type for i in imgs] == ["image/png", "image/jpeg", "image/webp"]
    assert imgs[1].cache_control == {"type": "ephemeral", "ttl": "1h"}
    assert imgs[2].url == "s3://my-bucket/photos/cat.webp" and imgs[2].data is None


def test_request_ir_documents() -> None:
    body, _ = _load("requests", "documents")
    req = CODEC.decode_request(body)
    pdf, txt, docx, _text = req.messages[0].content
    assert (pdf.media_type, pdf.filename) == ("application/pdf", "Quarterly Report (Q3)")
    # txt documents follow the IR's text/plain convention: the data is the text itself.
    assert (txt.media_type, txt.data) == ("text/plain", "Hello, world!\nSecond line.")
    assert txt.context == "Meeting notes" and txt.citations == {"enabled": True}
    assert docx.media_type.endswith("wordprocessingml.document")


def test_request_ir_tool_turns() -> None:
    body, _ = _load("requests", "tools_parallel")
    req = CODEC.decode_request(body)
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "user"]
    calls = [p for p in req.messages[1].content if isinstance(p, ir.ToolCall)]
    assert [c.id for c in calls] == ["tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "tooluse_2", "tooluse_3"]
    assert json.loads(calls[1].arguments) == {"city": "London", "units": {"temp": "C"}}
    assert calls[2].arguments == "{}"
    results = req.messages[2].content
    assert [r.is_error for r in results] == [False, True, False]
    assert json.loads(results[0].content[0].text) == {"temp": 21, "sky": "clear"}
    assert isinstance(results[2].content[1], ir.Image)
    assert req.tool_choice == ir.ToolChoice("auto")
    assert req.tools[1].strict is True and req.tools[1].cache_control == {"type": "ephemeral"}


def test_request_ir_tool_choices() -> None:
    req = CODEC.decode_request(_load("requests", "tools_choice_any")[0])
    assert req.tool_choice == ir.ToolChoice("required")
    req = CODEC.decode_request(_load("requests", "tools_choice_tool")[0])
    assert req.tool_choice == ir.ToolChoice("tool", name="record_person")
    assert req.top_k == 40


def test_request_ir_reasoning() -> None:
    req = CODEC.decode_request(_load("requests", "reasoning_history")[0])
    assert req.reasoning == ir.ReasoningConfig(mode="enabled", budget_tokens=10000)
    thinking, redacted = req.messages[1].content[:2]
    assert thinking.text == "I should use the calculator." and thinking.signature.startswith("EqQB")
    assert redacted.redacted.startswith("EmwK")


def test_request_ir_json_schema() -> None:
    req = CODEC.decode_request(_load("requests", "json_schema")[0])
    rf = req.response_format
    assert (rf.type, rf.name, rf.description) == ("json_schema", "person", "A person")
    assert rf.schema["required"] == ["name", "age"]
    assert req.reasoning.effort == "high"


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _cases("responses"))
def test_response_golden(name: str) -> None:
    body, expected = _load("responses", name)
    resp = CODEC.decode_response(body)
    assert CODEC.encode_response(resp, ir.Request(model="ignored")) == expected


def test_response_ir_facts() -> None:
    resp = CODEC.decode_response(_load("responses", "cache_usage_stop_sequence")[0])
    # IR input is the whole prompt: uncached + cache reads + cache writes.
    assert resp.usage == ir.Usage(
        input_tokens=25 + 30000 + 1200, output_tokens=7, cache_read_tokens=30000, cache_write_tokens=1200
    )
    assert resp.stop_reason == "stop_sequence" and resp.stop_sequence == "END"
    assert resp.id.startswith("msg_bdrk_")

    resp = CODEC.decode_response(_load("responses", "tool_use")[0])
    assert resp.stop_reason == "tool_use"
    calls = [p for p in resp.content if isinstance(p, ir.ToolCall)]
    assert [c.id for c in calls] == ["tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "tooluse_B2"]
    assert json.loads(calls[1].arguments) == {"city": "London", "opts": {"hourly": [1, 2, 3], "raw": None}}

    resp = CODEC.decode_response(_load("responses", "reasoning")[0])
    r1, r2, text = resp.content
    assert (r1.text, r1.signature) == ("The user wants a haiku. Five, seven, five.", "ErUBCkgIBRABGAIiQLsig")
    assert r2.redacted == "EmwKAhgBEgy3va3pzix/LafPsn4a"
    assert text.text.startswith("Autumn")

    assert CODEC.decode_response(_load("responses", "max_tokens")[0]).stop_reason == "max_tokens"
    assert CODEC.decode_response(_load("responses", "guardrail")[0]).stop_reason == "content_filter"


def test_response_ids_are_unique() -> None:
    body, _ = _load("responses", "text_end_turn")
    assert CODEC.decode_response(body).id != CODEC.decode_response(body).id


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def _frame_bytes(frames: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_message(f["headers"], orjson.dumps(f["payload"])) for f in frames)


def _awkward_pieces(raw: bytes, seed: int) -> list[bytes]:
    """Pieces cut inside preludes, headers, payloads and CRCs: sizes 1..23 bytes."""
    rng = random.Random(seed)
    out, pos = [], 0
    while pos < len(raw):
        step = rng.choice((1, 2, 3, 5, 7, 11, 12, 13, 16, 23))
        out.append(raw[pos : pos + step])
        pos += step
    return out


def _decode_stream(pieces: list[bytes], model: str = "anthropic.claude") -> list[ir.StreamEvent]:
    framer = EventStreamDecoder()
    decoder = CODEC.stream_decoder(ir.Request(model=model))
    events: list[ir.StreamEvent] = []
    for piece in pieces:
        for msg in framer.feed(piece):
            events += decoder.feed(msg)
    for msg in framer.close():
        events += decoder.feed(msg)
    return events + decoder.close()


def _encode_stream(events: list[ir.StreamEvent]) -> list[dict[str, Any]]:
    encoder = CODEC.stream_encoder(ir.Request(model="x"))
    raw = b"".join(encoder.encode(e) for e in events)
    return [{"headers": m.headers, "payload": json.loads(m.payload)} for m in EventStreamDecoder().feed(raw)]


@pytest.mark.parametrize("name", _cases("streams"))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stream_golden(name: str, seed: int) -> None:
    frames, expected = _load("streams", name)
    events = _decode_stream(_awkward_pieces(_frame_bytes(frames), seed))
    assert _encode_stream(events) == expected


def _grammar_ok(events: list[ir.StreamEvent]) -> None:
    assert type(events[0]) is ir.MessageStart
    assert type(events[-1]) in (ir.MessageEnd, ir.StreamError)
    assert sum(type(e) in (ir.MessageEnd, ir.StreamError) for e in events) == 1
    open_index, next_index = None, 0
    for e in events[1:-1]:
        if type(e) is ir.BlockStart:
            assert open_index is None and e.index == next_index
            open_index, next_index = e.index, next_index + 1
        elif type(e) is ir.BlockStop:
            assert e.index == open_index
            open_index = None
        else:
            assert e.index == open_index
    if type(events[-1]) is ir.MessageEnd:
        assert open_index is None


@pytest.mark.parametrize("name", _cases("streams"))
def test_stream_ir_grammar(name: str) -> None:
    frames, _ = _load("streams", name)
    _grammar_ok(_decode_stream([_frame_bytes(frames)]))


def test_stream_ir_facts() -> None:
    events = _decode_stream([_frame_bytes(_load("streams", "tool_use")[0])], model="my-alias")
    start = events[0]
    # Bedrock names no model; the pipeline fills in the one it called, never the client's alias.
    assert start.model == "" and start.id.startswith("msg_bdrk_")
    tool_starts = [e for e in events if type(e) is ir.BlockStart and e.kind == "tool_call"]
    assert [(e.index, e.tool_id, e.tool_name) for e in tool_starts] == [
        (1, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "get_weather"),
        (2, "tooluse_B2", "get_time"),
    ]
    args = "".join(e.fragment for e in events if type(e) is ir.ToolArgsDelta and e.index == 1)
    assert json.loads(args) == {"city": "Paris"}
    end = events[-1]
    # Usage comes from the metadata event that follows messageStop.
    assert end == ir.MessageEnd(
        "tool_use",
        None,
        ir.Usage(input_tokens=31600, output_tokens=60, cache_read_tokens=30000, cache_write_tokens=1200),
    )

    events = _decode_stream([_frame_bytes(_load("streams", "reasoning_signature")[0])])
    kinds = [(e.index, e.kind) for e in events if type(e) is ir.BlockStart]
    assert kinds == [(0, "reasoning"), (1, "redacted_reasoning"), (2, "text")]
    assert [e.signature for e in events if type(e) is ir.SignatureDelta] == ["ErUBCkgIBRABGAIiQLsig"]
    assert events[-1].stop_reason == "max_tokens"


def test_stream_errors() -> None:
    events = _decode_stream([_frame_bytes(_load("streams", "throttled_midstream")[0])])
    err = events[-1].error
    assert (err.kind, err.status, err.from_gateway) == ("rate_limit", 429, False)
    assert err.message == "Too many tokens, please wait before trying again."

    events = _decode_stream([_frame_bytes(_load("streams", "model_stream_error")[0])])
    assert events[-1].error.kind == "overloaded"  # originalStatusCode 529

    events = _decode_stream([_frame_bytes(_load("streams", "truncated")[0])])
    assert events[-1].error.kind == "upstream_unavailable"
    assert "before messageStop" in events[-1].error.message

    events = _decode_stream([_frame_bytes(_load("streams", "no_metadata")[0])])
    assert events[-1] == ir.MessageEnd("stop_sequence", "END", None)


def test_stream_truncated_inside_a_frame() -> None:
    frames = _load("streams", "text")[0]
    whole = _frame_bytes(frames[:3])
    cut = whole + _frame_bytes(frames[3:4])[:-5]  # the third text delta loses its tail
    events = _decode_stream([cut])
    assert type(events[-1]) is ir.StreamError and events[-1].error.kind == "upstream_unavailable"
    # Everything before the cut was still delivered.
    assert "".join(e.text for e in events if type(e) is ir.TextDelta) == "Hello, wörld"

    # Cut inside the metadata frame: the answer is whole, only the usage is lost.
    events = _decode_stream([_frame_bytes(frames)[:-7]])
    assert events[-1] == ir.MessageEnd("end_turn", None, None)


def test_stream_crc_corruption_detected() -> None:
    raw = bytearray(_frame_bytes(_load("streams", "text")[0]))
    raw[60] ^= 0x04
    with pytest.raises(EventStreamError):
        _decode_stream(_awkward_pieces(bytes(raw), 4))
