"""AWS event-stream framing: incremental decoding, CRC checks, header types, and agreement with botocore's own
parser (an independent implementation of the same format)."""

from __future__ import annotations

import datetime
import random
import struct
import time
import uuid
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from trigate.wire.eventstream import (
    MAX_HEADERS_BYTES,
    EventStreamDecoder,
    EventStreamError,
    Message,
    encode_frame,
    encode_headers,
    encode_message,
)

EVENT_HEADERS = {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"}


def _frames(n: int) -> list[bytes]:
    return [
        encode_message(EVENT_HEADERS, b'{"contentBlockIndex":0,"delta":{"text":"tok%d \xc3\xa9"}}' % i)
        for i in range(n)
    ]


def test_round_trip_single_message() -> None:
    raw = encode_message(EVENT_HEADERS, b'{"role":"assistant"}')
    [msg] = EventStreamDecoder().feed(raw)
    assert msg == Message(EVENT_HEADERS, b'{"role":"assistant"}')
    assert msg.event_type == "contentBlockDelta" and msg.message_type == "event"


def test_known_bytes_layout() -> None:
    # total = 16 + headers + payload; prelude CRC over the first 8 bytes; message CRC over all but the last 4.
    raw = encode_message({"a": "b"}, b"xy")
    header_block = b"\x01a\x07\x00\x01b"
    assert raw[:8] == struct.pack(">II", 16 + len(header_block) + 2, len(header_block))
    assert raw[8:12] == struct.pack(">I", zlib.crc32(raw[:8]))
    assert raw[12:-4] == header_block + b"xy"
    assert raw[-4:] == struct.pack(">I", zlib.crc32(raw[:-4]))


def test_every_split_point() -> None:
    raw = b"".join(_frames(3))
    expected = EventStreamDecoder().feed(raw)
    assert len(expected) == 3
    for cut in range(1, len(raw)):
        dec = EventStreamDecoder()
        got = dec.feed(raw[:cut]) + dec.feed(raw[cut:])
        assert got == expected, cut
        assert dec.buffered == 0


def test_byte_by_byte_and_random_chunks() -> None:
    raw = b"".join(_frames(20))
    expected = EventStreamDecoder().feed(raw)
    dec = EventStreamDecoder()
    got = []
    for i in range(len(raw)):
        got += dec.feed(raw[i : i + 1])
    assert got == expected
    rng = random.Random(7)
    for _ in range(20):
        dec = EventStreamDecoder()
        got, pos = [], 0
        while pos < len(raw):
            step = rng.randint(1, 90)
            got += dec.feed(raw[pos : pos + step])
            pos += step
        assert got == expected


def test_all_header_value_types_decode() -> None:
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    block = encode_headers(
        {"t": True, "f": False, "i32": -7, "i64": 2**40, "b": b"\x00\xff", "s": "é", "ts": when, "u": uid}
    )
    # int8 and int16 are never produced by the encoder; build them by hand.
    block += b"\x02i8\x02\xfe" + b"\x03i16\x03\x80\x00"
    [msg] = EventStreamDecoder().feed(encode_frame(block, b""))
    assert msg.headers == {
        "t": True,
        "f": False,
        "i32": -7,
        "i64": 2**40,
        "b": b"\x00\xff",
        "s": "é",
        "ts": when,
        "u": uid,
        "i8": -2,
        "i16": -32768,
    }
    assert msg.payload == b""


def test_agrees_with_botocore_parser() -> None:
    raw = b"".join(_frames(5)) + encode_message(
        {":message-type": "exception", ":exception-type": "throttlingException", "n": 5, "flag": True},
        b'{"message":"slow down"}',
    )
    buf = EventStreamBuffer()
    buf.add_data(raw)
    theirs = [(m.headers, m.payload) for m in buf]
    ours = [(m.headers, m.payload) for m in EventStreamDecoder().feed(raw)]
    assert ours == theirs and len(ours) == 6


def test_prelude_crc_mismatch_detected_before_the_rest_arrives() -> None:
    raw = bytearray(encode_message(EVENT_HEADERS, b"{}" * 100))
    raw[2] ^= 0x01  # total length now wrong, and the prelude CRC no longer matches
    dec = EventStreamDecoder()
    with pytest.raises(EventStreamError, match="prelude CRC"):
        dec.feed(bytes(raw[:12]))


def test_message_crc_mismatch() -> None:
    good = encode_message(EVENT_HEADERS, b'{"contentBlockIndex":0,"delta":{"text":"hi"}}')
    bad = bytearray(good)
    bad[-10] ^= 0x20  # a payload byte
    dec = EventStreamDecoder()
    assert dec.feed(good) != []
    with pytest.raises(EventStreamError, match="message CRC"):
        dec.feed(bytes(bad))


def _prelude(total: int, hlen: int) -> bytes:
    head = struct.pack(">II", total, hlen)
    return head + struct.pack(">I", zlib.crc32(head))


def test_absurd_lengths_rejected() -> None:
    with pytest.raises(EventStreamError, match="headers too long"):
        EventStreamDecoder().feed(_prelude(MAX_HEADERS_BYTES + 100, MAX_HEADERS_BYTES + 1))
    with pytest.raises(EventStreamError, match="shorter than its headers"):
        EventStreamDecoder().feed(_prelude(20, 10))
    with pytest.raises(EventStreamError, match="payload too long"):
        EventStreamDecoder().feed(_prelude(2**32 - 1, 0))


def test_bad_header_type_and_overrun() -> None:
    with pytest.raises(EventStreamError, match="header value type"):
        EventStreamDecoder().feed(encode_frame(b"\x01a\x0c", b""))
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(encode_frame(b"\x01a\x07\x00\x09abc", b""))  # string longer than the block


def test_partial_message_at_eof_is_held_then_dropped() -> None:
    raw = _frames(2)
    dec = EventStreamDecoder()
    assert len(dec.feed(raw[0] + raw[1][:-3])) == 1
    assert dec.buffered == len(raw[1]) - 3
    assert dec.close() == []
    assert dec.buffered == 0


def test_big_message_in_small_chunks_is_linear() -> None:
    payload = b"x" * (8 * 1024 * 1024)
    raw = encode_message(EVENT_HEADERS, payload)
    dec = EventStreamDecoder()
    start = time.perf_counter()
    got = []
    for i in range(0, len(raw), 4096):
        got += dec.feed(raw[i : i + 4096])
    # Re-copying the buffer on every piece would take minutes here (2048 pieces x up to 8 MiB).
    assert time.perf_counter() - start < 2.0
    assert len(got) == 1 and got[0].payload == payload


def test_decoder_throughput() -> None:
    raw = b"".join(_frames(20000))
    start = time.perf_counter()
    dec = EventStreamDecoder()
    n = 0
    for i in range(0, len(raw), 1400):  # network-sized pieces
        n += len(dec.feed(raw[i : i + 1400]))
    elapsed = time.perf_counter() - start
    assert n == 20000
    assert n / elapsed > 50_000, f"{n / elapsed:.0f} messages/s"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(
                st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) < 256),
                st.one_of(
                    st.text(max_size=50), st.binary(max_size=50), st.booleans(), st.integers(-(2**63), 2**63 - 1)
                ),
                max_size=5,
            ),
            st.binary(max_size=300),
        ),
        min_size=1,
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_property_encode_decode(messages, rng) -> None:
    raw = b"".join(encode_message(h, p) for h, p in messages)
    dec = EventStreamDecoder()
    got, pos = [], 0
    while pos < len(raw):
        step = rng.randint(1, 64)
        got += dec.feed(raw[pos : pos + step])
        pos += step
    assert [(m.headers, m.payload) for m in got] == messages
