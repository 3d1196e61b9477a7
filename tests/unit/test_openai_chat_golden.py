"""Golden files: Chat input -> IR -> Chat output, compared with the expected file.

Layout under tests/fixtures/openai_chat/: ``requests/<case>.in.json`` -> ``<case>.out.json``;
``responses/<case>.in.json`` (+ optional ``<case>.req.json``, the client request) -> ``<case>.out.json``;
``streams/<case>.in.sse`` + ``<case>.req.json`` -> ``<case>.out.sse`` (the client stream). Set
TRIGATE_UPDATE_GOLDEN=1 to rewrite the expected files (then review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from trigate.formats.openai_chat import CODEC
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai_chat"
UPDATE = os.environ.get("TRIGATE_UPDATE_GOLDEN") == "1"
DEFAULT_REQ = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _cases(kind: str, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in (FIXTURES / kind).glob(f"*{suffix}"))


def _load(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def _check_json(path: Path, actual: dict) -> None:
    if UPDATE:
        path.write_bytes(orjson.dumps(actual, option=orjson.OPT_INDENT_2) + b"\n")
    assert actual == _load(path)


def _req(path: Path) -> ir.Request:
    return CODEC.decode_request(_load(path) if path.exists() else DEFAULT_REQ)


@pytest.mark.parametrize("case", _cases("requests", ".in.json"))
def test_request_golden(case: str) -> None:
    body = _load(FIXTURES / "requests" / f"{case}.in.json")
    req = CODEC.decode_request(body)
    _check_json(FIXTURES / "requests" / f"{case}.out.json", CODEC.encode_request(req, body["model"]))


@pytest.mark.parametrize("case", _cases("responses", ".in.json"))
def test_response_golden(case: str) -> None:
    d = FIXTURES / "responses"
    resp = CODEC.decode_response(_load(d / f"{case}.in.json"))
    _check_json(d / f"{case}.out.json", CODEC.encode_response(resp, _req(d / f"{case}.req.json")))


def _split_awkwardly(data: bytes) -> list[bytes]:
    """Pieces of 1, 2, 3 ... 7 bytes, cycling: cuts inside 'data:', inside UTF-8 sequences, between \\n\\n."""
    out, i, n = [], 0, 1
    while i < len(data):
        out.append(data[i : i + n])
        i += n
        n = n % 7 + 1
    return out


def translate_stream(raw: bytes, req: ir.Request, pieces: list[bytes] | None = None) -> tuple[list, bytes]:
    sse = SSEDecoder()
    dec = CODEC.stream_decoder(req)
    enc = CODEC.stream_encoder(req)
    events: list = []
    for piece in pieces if pieces is not None else _split_awkwardly(raw):
        for ev in sse.feed(piece):
            events.extend(dec.feed(ev))
    for ev in sse.close():
        events.extend(dec.feed(ev))
    events.extend(dec.close())
    return events, b"".join(enc.encode(e) for e in events)


@pytest.mark.parametrize("case", _cases("streams", ".in.sse"))
def test_stream_golden(case: str) -> None:
    d = FIXTURES / "streams"
    raw = (d / f"{case}.in.sse").read_bytes()
    req = _req(d / f"{case}.req.json")
    events, out = translate_stream(raw, req)
    whole_events, whole_out = translate_stream(raw, req, [raw])
    assert whole_out == out and repr(whole_events) == repr(events)  # the byte split changes nothing
    expected = d / f"{case}.out.sse"
    if UPDATE:
        expected.write_bytes(out)
    assert out == expected.read_bytes()
