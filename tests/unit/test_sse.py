from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trigate.wire.sse import SSEDecoder, encode_event

STREAM = (b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n: ping comment\n\n"
          b"data: line1\ndata: line2\n\nid: 7\ndata: x\r\rdata: [DONE]\n\n")


def decode_all(pieces: list[bytes]) -> list[tuple[str | None, str, str | None]]:
    d = SSEDecoder()
    out = []
    for p in pieces:
        out += d.feed(p)
    out += d.close()
    return [(e.event, e.data, e.id) for e in out]


EXPECTED = [("message_start", '{"a":1}', None), (None, "line1\nline2", None), (None, "x", "7"),
            (None, "[DONE]", "7")]  # the last event id persists (WHATWG)


def test_whole_stream() -> None:
    assert decode_all([STREAM]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    cuts = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
    assert decode_all(pieces) == EXPECTED


def test_unterminated_last_event_is_flushed_on_close() -> None:
    assert decode_all([b"data: tail"]) == [(None, "tail", None)]


def test_encode_roundtrip() -> None:
    raw = encode_event(b'{"x":1}', "ping") + encode_event('{"y":2}')
    assert decode_all([raw]) == [("ping", '{"x":1}', None), (None, '{"y":2}', None)]
