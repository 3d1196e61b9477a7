"""Server-sent events framing, sans-IO.

``SSEDecoder`` is fed raw bytes in whatever pieces the network delivers and returns complete events;
``encode_event`` frames one event. Handles ``\\n``, ``\\r\\n`` and ``\\r`` line ends, multi-line data,
and comment lines (keep-alives), per the WHATWG event-stream rules.
"""

from __future__ import annotations

from attrs import define

MAX_EVENT_BYTES = 16 * 1024 * 1024  # a single event larger than this is a broken upstream


@define(slots=True)
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None


class SSEError(ValueError):
    pass


class SSEDecoder:
    """Incremental decoder. ``feed(bytes)`` -> complete events; ``close()`` -> a final unterminated one."""

    __slots__ = ("_buf", "_data", "_event", "_id", "_pending_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._pending_cr = False

    @property
    def at_boundary(self) -> bool:
        """Between events: nothing of a next event has been seen yet."""
        return not self._buf and not self._data and self._event is None and not self._pending_cr

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            # the \r ending the previous piece and this \n are one line end
            chunk = chunk[1:]
        self._pending_cr = False
        buf = self._buf + chunk if self._buf else chunk
        events: list[SSEEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, nl if nl >= 0 else n)
            if cr >= 0:
                end = cr
                if cr + 1 < n:
                    nxt = cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
                else:
                    nxt = cr + 1
                    self._pending_cr = True
            elif nl >= 0:
                end, nxt = nl, nl + 1
            else:
                break
            ev = self._line(buf[start:end])
            if ev is not None:
                events.append(ev)
            start = nxt
        self._buf = buf[start:]
        if len(self._buf) > MAX_EVENT_BYTES:
            raise SSEError("server-sent event line too long")
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: a final event without its blank line still counts."""
        if self._buf:
            self._line(self._buf)
            self._buf = b""
        ev = self._dispatch()
        return [ev] if ev is not None else []

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line[:1] == b":":
            return None
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            self._id = value.decode("utf-8", "replace")
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data and self._event is None:
            return None
        ev = SSEEvent("\n".join(self._data), self._event, self._id)
        self._data = []
        self._event = None
        return ev


def encode_event(data: bytes | str, event: str | None = None) -> bytes:
    """One SSE event. ``data`` must not contain line breaks (JSON from orjson never does)."""
    if isinstance(data, str):
        data = data.encode()
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"
