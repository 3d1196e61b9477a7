"""trigate's HTTP/1.1 transport under httpx, against real loopback servers (plain and TLS) whose
responses are written byte for byte, so keep-alive, framing and failure cases are exact."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import h11
import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trigate.config import ServerSettings
from trigate.upstream.client import make_client
from trigate.upstream.h11_transport import H11Transport

Reply = Callable[[trio.abc.Stream, h11.Request, bytes], Awaitable[bool]]  # returns: keep the connection


class RawServer:
    """Accepts connections, parses each request with h11, and lets the test write the reply bytes."""

    def __init__(self, reply: Reply, ssl_context: ssl.SSLContext | None = None) -> None:
        self.reply = reply
        self.ssl_context = ssl_context
        self.connections = 0
        self.closed = trio.Event()  # set when a connection ends (the client closed or dropped it)
        self.requests: list[tuple[h11.Request, bytes]] = []
        self.port = 0

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]

    async def _handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        if self.ssl_context is not None:
            stream = trio.SSLStream(stream, self.ssl_context, server_side=True)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                head, body = None, b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        conn.receive_data(data)
                        if not data and conn.their_state is h11.IDLE:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        head = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert head is not None
                self.requests.append((head, body))
                if not await self.reply(stream, head, body):
                    return
                # the reply was written raw: let h11 take the next request on this connection
                conn = h11.Connection(h11.SERVER)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            pass
        finally:
            self.closed.set()
            await trio.aclose_forcefully(stream)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


def fixed(body: bytes = b"hello", extra: bytes = b"") -> Reply:
    async def reply(stream: trio.abc.Stream, head: h11.Request, _: bytes) -> bool:
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: "
                              + str(len(body)).encode() + b"\r\n" + extra + b"\r\n"
                              + (b"" if head.method == b"HEAD" else body))
        return True
    return reply


async def serve(nursery: trio.Nursery, reply: Reply, ssl_context: ssl.SSLContext | None = None) -> RawServer:
    server = RawServer(reply, ssl_context)
    await server.start(nursery)
    return server


def client(transport: H11Transport | None = None, **kw: float | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport or H11Transport(), timeout=httpx.Timeout(5.0, **kw))


async def test_keep_alive_reuses_one_connection(nursery: trio.Nursery) -> None:
    server = await serve(nursery, fixed(b"hello world"))
    async with client() as c:
        for i in range(3):
            r = await c.post(server.url + f"/v1/x?i={i}", content=b'{"a":1}', headers={"x-test": "yes"})
            assert (r.status_code, r.text, r.headers["content-type"]) == (200, "hello world", "text/plain")
        head = await c.head(server.url + "/h")
        assert head.status_code == 200 and head.content == b""
    assert server.connections == 1
    (first, body), *_ = server.requests
    assert (first.method, first.target, body) == (b"POST", b"/v1/x?i=0", b'{"a":1}')
    assert (b"x-test", b"yes") in first.headers
    assert (b"host", b"127.0.0.1:" + str(server.port).encode()) in first.headers


async def test_chunks_that_arrive_together_are_one_chunk(nursery: trio.Nursery) -> None:
    go_on = trio.Event()

    async def reply(stream: trio.abc.Stream, _h: h11.Request, _b: bytes) -> bool:
        await stream.send_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                              b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n")
        await go_on.wait()
        await stream.send_all(b"4\r\nfour\r\n0\r\n\r\n")
        return True

    server = await serve(nursery, reply)
    async with client() as c, c.stream("GET", server.url) as r:
        got = []
        async for chunk in r.aiter_raw():
            got.append(chunk)
            go_on.set()
    assert got == [b"onetwothree", b"four"]
    async with client() as c:
        assert (await c.get(server.url)).content == b"onetwothreefour"


async def test_close_delimited_body_and_connection_close(nursery: trio.Nursery) -> None:
    async def reply(stream: trio.abc.Stream, _h: h11.Request, _b: bytes) -> bool:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        return False

    server = await serve(nursery, reply)
    async with client() as c:
        assert (await c.get(server.url)).text == "until the end"
        assert (await c.get(server.url)).text == "until the end"
    assert server.connections == 2


async def test_a_keep_alive_connection_the_server_closed_is_not_reused(nursery: trio.Nursery) -> None:
    async def reply(stream: trio.abc.Stream, head: h11.Request, body: bytes) -> bool:
        await fixed(b"ok")(stream, head, body)
        return False  # closes without saying so

    server = await serve(nursery, reply)
    async with client() as c:
        assert (await c.get(server.url)).text == "ok"
        await server.closed.wait()
        await trio.sleep(0.05)  # the FIN reaches the client's idle socket
        assert (await c.get(server.url)).text == "ok"
    assert server.connections == 2


async def test_an_abandoned_body_closes_its_connection(nursery: trio.Nursery) -> None:
    async def reply(stream: trio.abc.Stream, _h: h11.Request, _b: bytes) -> bool:
        await stream.send_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        while await stream.receive_some(1024):  # until the client closes the connection
            pass
        return False

    server = await serve(nursery, reply)
    async with client() as c:
        async with c.stream("GET", server.url) as r:
            async for chunk in r.aiter_raw():
                assert chunk == b"first"
                break
        with trio.fail_after(2):
            await server.closed.wait()  # the upstream sees the client go away at once


async def test_streamed_upload_is_sent_chunked(nursery: trio.Nursery) -> None:
    server = await serve(nursery, fixed(b"thanks"))

    async def parts() -> AsyncIterator[bytes]:
        for p in (b"alpha ", b"", b"beta ", b"gamma"):
            yield p

    async with client() as c:
        r = await c.post(server.url + "/up", content=parts())
    assert r.text == "thanks"
    head, body = server.requests[0]
    assert body == b"alpha beta gamma"
    assert (b"transfer-encoding", b"chunked") in head.headers


async def test_informational_responses_are_skipped(nursery: trio.Nursery) -> None:
    async def reply(stream: trio.abc.Stream, head: h11.Request, body: bytes) -> bool:
        await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        return await fixed(b"final")(stream, head, body)

    server = await serve(nursery, reply)
    async with client() as c:
        r = await c.post(server.url, content=b"x")
    assert (r.status_code, r.text) == (200, "final")


async def test_failures_are_httpx_errors(nursery: trio.Nursery) -> None:
    async def hang(_s: trio.abc.Stream, _h: h11.Request, _b: bytes) -> bool:
        await trio.sleep_forever()
        return False

    async def hang_up(_s: trio.abc.Stream, _h: h11.Request, _b: bytes) -> bool:
        return False

    async def garbage(stream: trio.abc.Stream, _h: h11.Request, _b: bytes) -> bool:
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        return False

    slow, gone, junk = (await serve(nursery, hang), await serve(nursery, hang_up), await serve(nursery, garbage))
    with trio.socket.socket() as s:  # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    async with client(read=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(slow.url)
        with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
            await c.get(gone.url)
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(junk.url)
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{dead}/")


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


async def test_tls_upstream_is_verified(nursery: trio.Nursery, tmp_path: pytest.TempPathFactory) -> None:
    cert, key = _self_signed()
    (tmp_path / "cert.pem").write_bytes(cert)  # type: ignore[operator]
    (tmp_path / "key.pem").write_bytes(key)  # type: ignore[operator]
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")  # type: ignore[operator]
    server = await serve(nursery, fixed(b"secure"), server_ctx)

    trusting = ssl.create_default_context(cadata=cert.decode())
    async with client(H11Transport(ssl_context=trusting)) as c:
        for _ in range(2):
            r = await c.get(server.url + "/tls")
            assert (r.status_code, r.text) == (200, "secure")
    assert server.connections == 1
    async with client() as c:  # the system's trust store does not know this certificate
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await c.get(server.url + "/tls")


async def test_the_gateway_client_never_carries_an_upstream_cookie_to_the_next_request(nursery: trio.Nursery) -> None:
    server = await serve(nursery, fixed(b"ok", extra=b"set-cookie: __cf_bm=caller-a; Path=/\r\n"))
    async with make_client(ServerSettings()) as c:
        for _ in range(2):
            assert (await c.get(server.url + "/v1/models")).text == "ok"
        assert not c.cookies
    assert all(name != b"cookie" for head, _ in server.requests for name, _v in head.headers)
