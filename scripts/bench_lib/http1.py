"""A minimal HTTP/1.1 client on trio sockets, for load generation.

Requests are pre-encoded bytes; responses are parsed just enough to find their end (Content-Length
or chunked framing) and timestamp the first body byte. SSE events are counted as blank-line
separators in the body. Keep-alive connections are reused. Nothing here is meant for general use.
"""

from __future__ import annotations

import trio

_now = trio.current_time


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class HTTPError(Exception):
    pass


class Result:
    __slots__ = ("end", "events", "first_byte", "status", "tail")

    def __init__(self) -> None:
        self.status = 0
        self.first_byte = 0.0  # trio time of the first body byte
        self.end = 0.0
        self.events = 0  # SSE events ("\n\n" separators) in the body
        self.tail = b""  # last bytes of the body, to check a stream ended properly


class Conn:
    """One keep-alive connection. ``await conn.request(data)`` -> Result."""

    __slots__ = ("_buf", "_stream", "closed")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buf = b""
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        return cls(await trio.open_tcp_stream(host, port))

    async def aclose(self) -> None:
        self.closed = True
        await self._stream.aclose()

    async def _recv(self) -> bytes:
        data = await self._stream.receive_some(262144)
        if not data:
            self.closed = True
            raise HTTPError("connection closed by peer")
        return data

    async def request(self, data: bytes) -> Result:
        await self._stream.send_all(data)
        res = Result()
        buf = self._buf
        while True:
            i = buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            buf += await self._recv()
        head = buf[:i].decode("latin-1")
        buf = buf[i + 4:]
        lines = head.split("\r\n")
        res.status = int(lines[0].split(" ", 2)[1])
        length = -1
        chunked = False
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                close = "close" in value.lower()
        last = b""  # the body's last byte so far, to count "\n\n" split across pieces
        if not chunked:
            if length < 0:
                raise HTTPError("response without content-length or chunked framing")
            if buf:
                res.first_byte = _now()
            while len(buf) < length:
                buf += await self._recv()
                if not res.first_byte:
                    res.first_byte = _now()
            body, buf = buf[:length], buf[length:]
            res.events = body.count(b"\n\n")
            res.tail = body[-64:]
        else:
            tail = b""
            while True:
                j = buf.find(b"\r\n")
                while j < 0:
                    buf += await self._recv()
                    j = buf.find(b"\r\n")
                size = int(buf[:j].split(b";", 1)[0], 16)
                if size == 0:
                    # last chunk: skip (empty) trailers up to the final CRLF
                    rest = buf[j + 2:]
                    while not rest.startswith(b"\r\n") and b"\r\n\r\n" not in rest:
                        rest += await self._recv()
                    k = 0 if rest.startswith(b"\r\n") else rest.find(b"\r\n\r\n") + 2
                    buf = rest[k + 2:]
                    break
                need = j + 2 + size + 2
                while len(buf) < need:
                    buf += await self._recv()
                if not res.first_byte:
                    res.first_byte = _now()
                piece = buf[j + 2: j + 2 + size]
                res.events += piece.count(b"\n\n") + (last == b"\n" and piece[:1] == b"\n")
                last = piece[-1:]
                tail = (tail + piece)[-64:]
                buf = buf[need:]
            res.tail = tail
        res.end = _now()
        self._buf = buf
        if close:
            await self.aclose()
        return res


class Pool:
    """Idle keep-alive connections to one address."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Conn] = []
        self.opened = 0

    async def get(self) -> Conn:
        while self.idle:
            c = self.idle.pop()
            if not c.closed:
                return c
        self.opened += 1
        return await Conn.open(self.host, self.port)

    def put(self, c: Conn) -> None:
        if not c.closed:
            self.idle.append(c)

    async def aclose(self) -> None:
        for c in self.idle:
            try:
                await c.aclose()
            except Exception:
                pass
        self.idle.clear()
