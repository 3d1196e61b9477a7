"""An HTTP/1.1 transport for httpx, on trio sockets and the h11 state machine.

The gateway's upstream client is an httpx.AsyncClient; this is the layer under it. It exists because
httpcore's pool costs grow with its size (it rescans every connection as each request starts and ends)
and because httpcore hands a streamed body over one HTTP chunk at a time. Under load that was the
largest single cost in the gateway (py-spy, scripts/bench --profile). Here:

- idle connections are a last-in-first-out stack per origin: taking and returning one is O(1);
- one socket read becomes one body chunk however many HTTP chunks it holds, so a stream that has
  fallen behind catches up in fewer, larger writes to the client;
- the request head and a known-length body go out in a single write;
- a timeout costs a cancel scope only when one is set (the gateway runs its stream deadlines itself).

Through an outbound proxy (``proxy.ProxyRules``), https upstreams are reached with a CONNECT tunnel and
TLS inside it; plain-http upstreams with absolute-form requests to the proxy (what proxies allow most
widely: many refuse CONNECT to ports other than 443). The pool key stays the upstream origin: its proxy
is fixed per transport, so each pooled connection belongs to one (proxy, target) pair.

Errors are httpx's own exception types, so callers cannot tell the difference.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator

import h11
import httpx
import trio

from trigate.upstream.proxy import Proxy, ProxyRules

_READ_SIZE = 64 * 1024
_Origin = tuple[bytes, bytes, int]


class _Connection:
    __slots__ = ("h11", "idle_since", "proxy_headers", "socket", "stream", "target_prefix")

    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType, target_prefix: bytes = b"",
                 proxy_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.stream = stream
        self.socket = sock
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        # Forwarded through a proxy: absolute-form targets (scheme://host:port + path) and its auth.
        self.target_prefix = target_prefix
        self.proxy_headers = proxy_headers

    def reusable(self, now: float, expiry: float) -> bool:
        # Readable while idle means the server closed it (or sent junk): not safe to reuse.
        return now - self.idle_since < expiry and not self.socket.is_readable()

    def close(self) -> None:
        # Forceful, like trio.aclose_forcefully: no TLS close_notify, nothing to wait for.
        self.socket.close()


def _timeout(timeouts: dict[str, float | None], kind: str) -> float:
    value = timeouts.get(kind)
    return math.inf if value is None else value


class H11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive connections per origin, for httpx.AsyncClient(transport=...)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_idle_per_origin: int = 256,
                 keepalive_expiry: float = 30.0, proxies: ProxyRules | None = None) -> None:
        self._ssl_context = ssl_context
        self._proxies = proxies if proxies else None
        self._max_idle = max_idle_per_origin
        self._expiry = keepalive_expiry
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._closed = False

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            ctx = httpx.create_ssl_context()
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl_context = ctx
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        origin: _Origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.raw_scheme == b"https" else 80))
        timeouts = request.extensions.get("timeout", {})
        conn = self._take_idle(origin) or await self._connect(origin, _timeout(timeouts, "connect"), request)
        try:
            await self._send(conn, request, _timeout(timeouts, "write"))
            head = await self._receive_head(conn, _timeout(timeouts, "read"), request)
        except BaseException:
            conn.close()
            raise
        body = _ResponseBody(self, origin, conn, _timeout(timeouts, "read"), request)
        return httpx.Response(head.status_code, headers=head.headers, stream=body,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason})

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = trio.current_time()
        while stack:
            conn = stack.pop()
            if conn.reusable(now, self._expiry):
                return conn
            conn.close()
        return None

    def _release(self, origin: _Origin, conn: _Connection) -> bool:
        """Put a connection whose exchange is complete back for reuse; False when it must close."""
        if self._closed or conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
            return False
        stack = self._idle.setdefault(origin, [])
        if len(stack) >= self._max_idle:
            return False
        conn.h11.start_next_cycle()
        conn.idle_since = trio.current_time()
        stack.append(conn)
        return True

    async def _connect(self, origin: _Origin, seconds: float, request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        name = host.decode("ascii")
        proxy = self._proxies.for_url(scheme.decode(), name, port) if self._proxies is not None else None
        try:
            with trio.fail_after(seconds):
                dial = (name, port) if proxy is None else (proxy.host, proxy.port)
                tcp = await trio.open_tcp_stream(*dial)
                try:
                    if proxy is not None and scheme != b"https":
                        auth = ((b"proxy-authorization", proxy.authorization.encode()),) if proxy.authorization else ()
                        return _Connection(tcp, tcp.socket, b"http://%s:%d" % (host, port), auth)
                    if proxy is not None:
                        await _open_tunnel(tcp, proxy, host, port, request)
                    stream: trio.abc.Stream = tcp
                    if scheme == b"https":
                        stream = trio.SSLStream(tcp, self._ssl(), server_hostname=name, https_compatible=True)
                        await stream.do_handshake()
                except BaseException:
                    tcp.socket.close()
                    raise
        except trio.TooSlowError:
            raise httpx.ConnectTimeout("timed out connecting to the upstream", request=request) from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            via = f" (through the proxy {proxy.describe()})" if proxy is not None else ""
            raise httpx.ConnectError(f"cannot connect{via}: {_reason(exc)}", request=request) from exc
        return _Connection(stream, tcp.socket)

    async def _send(self, conn: _Connection, request: httpx.Request, seconds: float) -> None:
        h = conn.h11
        if conn.target_prefix:
            out = h.send(h11.Request(method=request.method, target=conn.target_prefix + request.url.raw_path,
                                     headers=[*request.headers.raw, *conn.proxy_headers]))
        else:
            out = h.send(h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw))
        assert out is not None
        content = request.stream
        try:
            if isinstance(content, httpx.ByteStream):
                # A known body: one write with the head (no extra round of syscalls and wakeups).
                for part in content:
                    out += h.send(h11.Data(data=part)) or b""
                out += h.send(h11.EndOfMessage()) or b""
                if math.isinf(seconds):
                    await conn.stream.send_all(out)
                else:
                    with trio.fail_after(seconds):
                        await conn.stream.send_all(out)
                return
            with trio.fail_after(seconds):
                await conn.stream.send_all(out)
                async for part in content:  # type: ignore[union-attr]
                    if part:
                        await conn.stream.send_all(h.send(h11.Data(data=part)) or b"")
                await conn.stream.send_all(h.send(h11.EndOfMessage()) or b"")
        except trio.TooSlowError:
            raise httpx.WriteTimeout("timed out sending the request", request=request) from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpx.WriteError(f"connection lost while sending: {_reason(exc)}", request=request) from exc
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc

    async def _receive_head(self, conn: _Connection, seconds: float, request: httpx.Request) -> h11.Response:
        while True:
            event = await _next_event(conn, seconds, request)
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("the server disconnected without sending a response",
                                                request=request)
            # h11.InformationalResponse (100 Continue and the like): wait for the real one.

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for stack in idle.values():
            for conn in stack:
                conn.close()


class ProxyRefused(httpx.ProxyError):
    """The outbound proxy answered CONNECT with a non-2xx status (407: it wants other credentials)."""

    def __init__(self, message: str, *, request: httpx.Request, status: int) -> None:
        super().__init__(message, request=request)
        self.status = status


async def _open_tunnel(tcp: trio.SocketStream, proxy: Proxy, host: bytes, port: int, request: httpx.Request) -> None:
    """CONNECT host:port through the proxy; httpx.ProxyError (no credentials in it) when it refuses."""
    authority = b"%s:%d" % (host, port)
    headers = [(b"host", authority)]
    if proxy.authorization:
        headers.append((b"proxy-authorization", proxy.authorization.encode()))
    h = h11.Connection(h11.CLIENT)
    await tcp.send_all(h.send(h11.Request(method=b"CONNECT", target=authority, headers=headers))
                       + (h.send(h11.EndOfMessage()) or b""))
    while True:
        try:
            event = h.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.ProxyError(f"the proxy {proxy.describe()} sent a malformed answer to CONNECT",
                                   request=request) from exc
        if event is h11.NEED_DATA:
            h.receive_data(await tcp.receive_some(_READ_SIZE))
            continue
        if isinstance(event, h11.Response):
            if 200 <= event.status_code < 300 and not h.trailing_data[0]:
                return
            raise ProxyRefused(f"the proxy {proxy.describe()} refused the tunnel to {authority.decode()}: "
                               f"HTTP {event.status_code}", request=request, status=event.status_code)
        if isinstance(event, h11.ConnectionClosed):
            raise httpx.ProxyError(f"the proxy {proxy.describe()} closed the connection on CONNECT",
                                   request=request)


def _reason(exc: BaseException) -> str:
    # trio wraps socket and TLS failures (e.g. certificate verification) in BrokenResourceError.
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
    return str(cause) or type(cause).__name__


def _parsed_event(conn: _Connection, request: httpx.Request) -> object:
    """The next event from bytes already received (h11.NEED_DATA when more must be read)."""
    try:
        return conn.h11.next_event()
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc


async def _next_event(conn: _Connection, seconds: float, request: httpx.Request) -> object:
    h = conn.h11
    while True:
        event = _parsed_event(conn, request)
        if event is not h11.NEED_DATA:
            return event
        try:
            if math.isinf(seconds):
                data = await conn.stream.receive_some(_READ_SIZE)
            else:
                with trio.fail_after(seconds):
                    data = await conn.stream.receive_some(_READ_SIZE)
        except trio.TooSlowError:
            raise httpx.ReadTimeout("timed out reading from the upstream", request=request) from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpx.ReadError(f"connection lost while reading: {_reason(exc)}", request=request) from exc
        if not data and h.their_state is h11.SEND_RESPONSE:
            raise httpx.RemoteProtocolError("the server disconnected without sending a response", request=request)
        h.receive_data(data)  # b"" marks end of stream for h11


class _ResponseBody(httpx.AsyncByteStream):
    def __init__(self, transport: H11Transport, origin: _Origin, conn: _Connection, timeout: float,
                 request: httpx.Request) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: _Connection | None = conn
        self._timeout = timeout
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        pending = b""
        while True:
            if pending:
                # Read everything this socket read brought in before handing it on, as one chunk.
                event = _parsed_event(conn, self._request)
                if isinstance(event, h11.Data):
                    pending += event.data
                    continue
                yield pending
                pending = b""
                if event is h11.NEED_DATA:
                    continue
            else:
                event = await _next_event(conn, self._timeout, self._request)
                if isinstance(event, h11.Data):
                    pending = bytes(event.data)
                    continue
            if isinstance(event, h11.EndOfMessage):
                self._finish(reuse=True)
                return
            if isinstance(event, h11.ConnectionClosed):
                self._finish(reuse=False)
                return

    def _finish(self, reuse: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not (reuse and self._transport._release(self._origin, conn)):
            conn.close()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:  # the body was not read to its end: the connection is unusable
            conn.close()
