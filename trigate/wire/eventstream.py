"""AWS event-stream framing (``application/vnd.amazon.eventstream``), sans-IO.

Bedrock ConverseStream answers with binary messages (protocols.md §9.4)::

    total_len u32 | headers_len u32 | prelude_crc u32 | headers | payload | message_crc u32

``EventStreamDecoder`` is fed raw bytes in whatever pieces the network delivers and returns complete
``Message``\\ s, checking both CRC32s; ``encode_message`` frames one message (the mock and the tests use it).
Only the framing lives here: what the headers and payloads mean is the Bedrock codec's business.
"""

from __future__ import annotations

import datetime
import struct
import uuid
import zlib
from collections.abc import Mapping

from attrs import define

# Same caps as botocore: anything bigger is a broken or hostile upstream, not a real event.
MAX_HEADERS_BYTES = 128 * 1024
MAX_PAYLOAD_BYTES = 24 * 1024 * 1024
_PRELUDE_LEN = 12
_MIN_MESSAGE_LEN = 16  # prelude + message CRC

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")

HeaderValue = bool | int | bytes | str | datetime.datetime | uuid.UUID

# Header value type tags.
_TRUE, _FALSE, _BYTE, _SHORT, _INT, _LONG, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)


class EventStreamError(ValueError):
    """The byte stream is not valid event-stream framing (bad CRC, absurd lengths, bad header)."""


@define(slots=True)
class Message:
    headers: dict[str, HeaderValue]
    payload: bytes

    @property
    def message_type(self) -> HeaderValue | None:
        return self.headers.get(":message-type")

    @property
    def event_type(self) -> HeaderValue | None:
        return self.headers.get(":event-type")


def _decode_headers(buf: bytes, pos: int, end: int) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    try:
        while pos < end:
            nlen = buf[pos]
            pos += 1
            name = buf[pos : pos + nlen].decode("utf-8")
            pos += nlen
            tag = buf[pos]
            pos += 1
            value: HeaderValue
            if tag == _STRING or tag == _BYTES:
                (vlen,) = _U16.unpack_from(buf, pos)
                pos += 2
                raw = buf[pos : pos + vlen]
                if len(raw) != vlen:
                    raise EventStreamError("event-stream header value runs past the header block")
                value = raw.decode("utf-8") if tag == _STRING else bytes(raw)
                pos += vlen
            elif tag == _TRUE:
                value = True
            elif tag == _FALSE:
                value = False
            elif tag == _BYTE:
                (value,) = _I8.unpack_from(buf, pos)
                pos += 1
            elif tag == _SHORT:
                (value,) = _I16.unpack_from(buf, pos)
                pos += 2
            elif tag == _INT:
                (value,) = _I32.unpack_from(buf, pos)
                pos += 4
            elif tag == _LONG:
                (value,) = _I64.unpack_from(buf, pos)
                pos += 8
            elif tag == _TIMESTAMP:
                (ms,) = _I64.unpack_from(buf, pos)
                pos += 8
                value = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
            elif tag == _UUID:
                raw = buf[pos : pos + 16]
                if len(raw) != 16:
                    raise EventStreamError("event-stream UUID header is truncated")
                value = uuid.UUID(bytes=bytes(raw))
                pos += 16
            else:
                raise EventStreamError(f"unknown event-stream header value type {tag}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, OverflowError, ValueError) as exc:
        if isinstance(exc, EventStreamError):
            raise
        raise EventStreamError(f"malformed event-stream headers: {exc}") from None
    if pos != end:
        raise EventStreamError("event-stream headers overrun their declared length")
    return headers


class EventStreamDecoder:
    """Incremental decoder: ``feed(bytes)`` -> the complete messages those bytes finish."""

    __slots__ = ("_buf", "_need")

    def __init__(self) -> None:
        self._buf = bytearray()
        # Bytes the buffer must hold before parsing can make progress: a big message arriving in many
        # small pieces is then copied once, not once per piece.
        self._need = _PRELUDE_LEN

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held back (non-zero at EOF means a truncated stream)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Message]:
        buf = self._buf
        buf += chunk
        n = len(buf)
        if n < self._need:
            return []
        out: list[Message] = []
        pos = 0
        # bytes() of the buffer once per feed: slicing and CRCs on it are cheap and it cannot pin the
        # bytearray against the resize below the way a memoryview would.
        data = bytes(buf)
        need = _PRELUDE_LEN
        while n - pos >= _PRELUDE_LEN:
            total, hlen, prelude_crc = _PRELUDE.unpack_from(data, pos)
            # Checked before waiting for the rest: a corrupt length must fail now, not after buffering
            # up to 4 GiB.
            if zlib.crc32(data[pos : pos + 8]) != prelude_crc:
                raise EventStreamError("event-stream prelude CRC mismatch")
            if hlen > MAX_HEADERS_BYTES:
                raise EventStreamError(f"event-stream headers too long ({hlen} bytes)")
            if total < _MIN_MESSAGE_LEN + hlen:
                raise EventStreamError(f"event-stream message length {total} is shorter than its headers")
            if total - hlen - _MIN_MESSAGE_LEN > MAX_PAYLOAD_BYTES:
                raise EventStreamError(f"event-stream payload too long ({total - hlen - _MIN_MESSAGE_LEN} bytes)")
            if n - pos < total:
                need = total
                break
            end = pos + total
            (message_crc,) = _U32.unpack_from(data, end - 4)
            if zlib.crc32(data[pos : end - 4]) != message_crc:
                raise EventStreamError("event-stream message CRC mismatch")
            hstart = pos + _PRELUDE_LEN
            headers = _decode_headers(data, hstart, hstart + hlen) if hlen else {}
            out.append(Message(headers, data[hstart + hlen : end - 4]))
            pos = end
        if pos:
            del buf[:pos]
        self._need = need
        return out

    def close(self) -> list[Message]:
        """End of stream. A partial message cannot be completed and is dropped: the codec's own
        ``close`` reports the stream as truncated when its terminal events never came."""
        self._buf.clear()
        self._need = _PRELUDE_LEN
        return []


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def encode_headers(headers: Mapping[str, HeaderValue]) -> bytes:
    """The header block of a message. Encoders reuse it for every message of one event type."""
    parts: list[bytes] = []
    for name, value in headers.items():
        nb = name.encode("utf-8")
        if len(nb) > 255:
            raise ValueError(f"event-stream header name too long: {name!r}")
        head = bytes((len(nb),)) + nb
        if isinstance(value, bool):
            parts.append(head + bytes((_TRUE if value else _FALSE,)))
        elif isinstance(value, str):
            vb = value.encode("utf-8")
            parts.append(head + bytes((_STRING,)) + _U16.pack(len(vb)) + vb)
        elif isinstance(value, bytes):
            parts.append(head + bytes((_BYTES,)) + _U16.pack(len(value)) + value)
        elif isinstance(value, int):
            if -(2**31) <= value < 2**31:
                parts.append(head + bytes((_INT,)) + _I32.pack(value))
            else:
                parts.append(head + bytes((_LONG,)) + _I64.pack(value))
        elif isinstance(value, datetime.datetime):
            parts.append(head + bytes((_TIMESTAMP,)) + _I64.pack(round(value.timestamp() * 1000)))
        elif isinstance(value, uuid.UUID):
            parts.append(head + bytes((_UUID,)) + value.bytes)
        else:
            raise TypeError(f"unsupported event-stream header value for {name!r}: {type(value).__name__}")
    return b"".join(parts)


def encode_frame(header_block: bytes, payload: bytes) -> bytes:
    """One message from a pre-encoded header block (see ``encode_headers``) and a payload."""
    total = _MIN_MESSAGE_LEN + len(header_block) + len(payload)
    prelude = _U32.pack(total) + _U32.pack(len(header_block))
    body = prelude + _U32.pack(zlib.crc32(prelude)) + header_block + payload
    return body + _U32.pack(zlib.crc32(body))


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes) -> bytes:
    return encode_frame(encode_headers(headers), payload)


__all__ = [
    "MAX_HEADERS_BYTES",
    "MAX_PAYLOAD_BYTES",
    "EventStreamDecoder",
    "EventStreamError",
    "HeaderValue",
    "Message",
    "encode_frame",
    "encode_headers",
    "encode_message",
]
