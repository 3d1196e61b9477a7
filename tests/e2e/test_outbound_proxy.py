"""Outbound proxy: the gateway's transport reaches https upstreams through a CONNECT tunnel (TLS inside it)
and plain-http ones with absolute-form requests, honours NO_PROXY, sends the proxy's credentials from its
URL and never logs them, and a proxy refusing the tunnel is a 502 in the caller's own format.

The proxy is a real one written here (threads, blocking sockets, h11 for its side of HTTP)."""

from __future__ import annotations

import base64
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import h11
import httpx
import openai
import pytest
import trio

from tests.e2e.test_upstream_transport import _self_signed, fixed, serve
from tests.harness import UPSTREAM_KEY, GatewayProcess, MockProcess, Servers, openai_config
from trigate.upstream.h11_transport import H11Transport
from trigate.upstream.proxy import ProxyRules

PROXY_USER, PROXY_PASSWORD = "gw-user", "proxy-pa$$word-7781"


class Proxy:
    """An HTTP proxy on a loopback port. ``required_auth``: the Proxy-Authorization it wants (407 without);
    ``refuse``: answer every CONNECT with this status. Records each CONNECT target and forwarded URL."""

    def __init__(self, required_auth: str | None = None, refuse: int | None = None) -> None:
        self.required_auth = required_auth
        self.refuse = refuse
        self.connects: list[str] = []
        self.forwarded: list[str] = []
        self.auth_seen: list[str | None] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url_with_auth(self) -> str:
        return f"http://{PROXY_USER}:{PROXY_PASSWORD.replace('$', '%24')}@127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        h = h11.Connection(h11.SERVER)
        upstream = httpx.Client(trust_env=False, timeout=30)
        try:
            while True:
                head, body = self._read_request(conn, h)
                if head is None:
                    return
                headers = {k.decode().lower(): v.decode() for k, v in head.headers}
                auth = headers.get("proxy-authorization")
                self.auth_seen.append(auth)
                if self.required_auth is not None and auth != self.required_auth:
                    self._answer(conn, h, 407, b"proxy auth required", [(b"proxy-authenticate", b'Basic realm="p"')])
                    return
                if head.method == b"CONNECT":
                    self.connects.append(head.target.decode())
                    if self.refuse:
                        self._answer(conn, h, self.refuse, b"no")
                        return
                    host, _, port = head.target.decode().rpartition(":")
                    target = socket.create_connection((host, int(port)))
                    conn.sendall(h.send(h11.Response(status_code=200, headers=[])) or b"")
                    pending, _ = h.trailing_data
                    if pending:
                        target.sendall(pending)
                    _splice(conn, target)
                    return
                self.forwarded.append(head.target.decode())
                # What a forwarding proxy does: its own hop headers stay with it.
                out = [(k, v) for k, v in head.headers if k.lower() not in (b"proxy-authorization", b"host")]
                r = upstream.request(head.method.decode(), head.target.decode(), headers=out, content=body)
                keep = [(k.encode(), v.encode()) for k, v in r.headers.items()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection")]
                self._answer(conn, h, r.status_code, r.content, keep)
                if h.our_state is h11.MUST_CLOSE:
                    return
                h.start_next_cycle()
        except (OSError, h11.ProtocolError, httpx.HTTPError):
            return
        finally:
            upstream.close()
            conn.close()

    @staticmethod
    def _read_request(conn: socket.socket, h: h11.Connection) -> tuple[h11.Request | None, bytes]:
        head, body = None, b""
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(conn.recv(65536))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return head, body
            else:
                return None, b""

    @staticmethod
    def _answer(conn: socket.socket, h: h11.Connection, status: int, body: bytes,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
        out = h.send(h11.Response(status_code=status, headers=[*(headers or []),
                                                               (b"content-length", str(len(body)).encode())]))
        conn.sendall((out or b"") + (h.send(h11.Data(data=body)) or b"") + (h.send(h11.EndOfMessage()) or b""))


def _splice(a: socket.socket, b: socket.socket) -> None:
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 30)
            if not ready:
                return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
    finally:
        b.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy(required_auth=basic(PROXY_USER, PROXY_PASSWORD))
    yield p
    p.close()


def _trust(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = _self_signed()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server_ctx, ssl.create_default_context(cadata=cert.decode())


async def test_https_goes_through_one_pooled_connect_tunnel(nursery: trio.Nursery, tmp_path: Path,
                                                            proxy: Proxy) -> None:
    server_ctx, trusting = _trust(tmp_path)
    server = await serve(nursery, fixed(b"secure"), server_ctx)
    rules = ProxyRules.build(http=None, https=proxy.url_with_auth(), no_proxy=None, source="test")
    async with httpx.AsyncClient(transport=H11Transport(ssl_context=trusting, proxies=rules), timeout=5) as c:
        for _ in range(3):
            r = await c.get(server.url + "/tls")
            assert (r.status_code, r.text) == (200, "secure")
    assert proxy.connects == [f"127.0.0.1:{server.port}"]  # one tunnel, reused for all three
    assert proxy.auth_seen == [basic(PROXY_USER, PROXY_PASSWORD)]
    assert server.connections == 1
    # inside the tunnel the upstream sees an ordinary origin-form request, no proxy credentials
    head, _ = server.requests[0]
    assert head.target == b"/tls" and all(k != b"proxy-authorization" for k, _ in head.headers)


async def test_the_tunnel_is_still_tls_verified(nursery: trio.Nursery, tmp_path: Path, proxy: Proxy) -> None:
    server_ctx, _ = _trust(tmp_path)
    server = await serve(nursery, fixed(b"secure"), server_ctx)
    rules = ProxyRules.build(http=None, https=proxy.url_with_auth(), no_proxy=None, source="test")
    async with httpx.AsyncClient(transport=H11Transport(proxies=rules), timeout=5) as c:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await c.get(server.url + "/tls")
    assert proxy.connects == [f"127.0.0.1:{server.port}"]


async def test_plain_http_is_forwarded_in_absolute_form(nursery: trio.Nursery, proxy: Proxy) -> None:
    server = await serve(nursery, fixed(b"plain"))
    rules = ProxyRules.build(http=proxy.url_with_auth(), https=None, no_proxy=None, source="test")
    async with httpx.AsyncClient(transport=H11Transport(proxies=rules), timeout=5) as c:
        for i in range(2):
            r = await c.get(server.url + f"/v1/x?i={i}")
            assert (r.status_code, r.text) == (200, "plain")
    assert proxy.forwarded == [f"{server.url}/v1/x?i=0", f"{server.url}/v1/x?i=1"]
    assert proxy.connections == 1 and proxy.connects == []
    assert proxy.auth_seen == [basic(PROXY_USER, PROXY_PASSWORD)] * 2


async def test_no_proxy_hosts_connect_directly(nursery: trio.Nursery, proxy: Proxy) -> None:
    server = await serve(nursery, fixed(b"direct"))
    rules = ProxyRules.build(http=proxy.url, https=proxy.url, no_proxy="example.com, 127.0.0.0/8", source="test")
    async with httpx.AsyncClient(transport=H11Transport(proxies=rules), timeout=5) as c:
        assert (await c.get(server.url + "/d")).text == "direct"
    assert proxy.connections == 0 and server.connections == 1


def _mock_through_proxy(mock_url: str, proxy_url: str, no_proxy: str | None = None) -> dict[str, Any]:
    cfg = openai_config(mock_url)
    cfg["server"] = {"upstream_proxy": proxy_url, **({"upstream_no_proxy": no_proxy} if no_proxy else {})}
    # an https upstream that only the proxy's answer decides about (nothing listens there)
    cfg["providers"]["tls"] = {"kind": "openai", "base_url": "https://127.0.0.1:9/v1", "api_key": UPSTREAM_KEY}
    cfg["models"].append({"name": "tls/*", "provider": "tls"})
    cfg["retry"] = {"attempts": 1}
    return cfg


def test_gateway_calls_upstreams_through_the_configured_proxy(proxy: Proxy, access_log: Any) -> None:
    with Servers(lambda url: _mock_through_proxy(url, proxy.url_with_auth()), mock_key=UPSTREAM_KEY) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
        assert proxy.forwarded == [f"{s.mock_url}/v1/chat/completions"]
        assert s.mock.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert "proxy-authorization" not in s.mock.requests[-1].headers
    logged = "\n".join(access_log.snapshot())
    assert PROXY_PASSWORD not in logged and basic(PROXY_USER, PROXY_PASSWORD) not in logged


@pytest.mark.parametrize("status", [407, 403])
def test_a_proxy_refusing_the_tunnel_is_a_502_in_the_callers_format(status: int, access_log: Any) -> None:
    refusing = Proxy(refuse=status)
    try:
        with Servers(lambda url: _mock_through_proxy(url, refusing.url_with_auth()), mock_key=UPSTREAM_KEY) as s:
            client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
            with pytest.raises(openai.APIStatusError) as err:
                client.chat.completions.create(model="tls/gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert err.value.status_code == 502
            assert f"outbound proxy refused the connection (HTTP {status})" in err.value.message
            claude = anthropic.Anthropic(base_url=s.url, api_key="k", max_retries=0)
            with pytest.raises(anthropic.APIStatusError) as aerr:
                claude.messages.create(model="tls/gpt-4o", max_tokens=16, messages=[{"role": "user", "content": "x"}])
            assert aerr.value.status_code == 502 and aerr.value.body["type"] == "error"
            assert refusing.connects == ["127.0.0.1:9", "127.0.0.1:9"]
            for text in (err.value.message, str(aerr.value.body)):
                assert PROXY_PASSWORD not in text and f"127.0.0.1:{refusing.port}" not in text
    finally:
        refusing.close()
    assert PROXY_PASSWORD not in "\n".join(access_log.snapshot())


def test_https_proxy_and_no_proxy_from_the_environment(tmp_path: Path, proxy: Proxy) -> None:
    """A ``trigate serve`` process with HTTP_PROXY/NO_PROXY in its environment (lowercase wins)."""
    upstream = MockProcess()
    try:
        cfg = {"auth": {"open": True}, "database": {"url": ":memory:"}, "store": {"responses_path": ":memory:"},
               "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-x"}},
               "models": [{"name": "m", "provider": "up", "model": "gpt-4o-mini"}]}
        proxied = GatewayProcess(cfg, tmp_path, "proxied", env={"HTTP_PROXY": "http://127.0.0.1:1",
                                                               "http_proxy": proxy.url_with_auth(),
                                                               "NO_PROXY": "", "no_proxy": ""})
        try:
            r = httpx.post(proxied.url + "/v1/chat/completions", timeout=30,
                           json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            assert proxy.forwarded == [f"{upstream.url}/v1/chat/completions"]
        finally:
            proxied.stop()
        assert PROXY_PASSWORD not in proxied.log()
        bypassing = GatewayProcess(cfg, tmp_path, "bypassing", env={"http_proxy": proxy.url_with_auth(),
                                                                   "no_proxy": "localhost,127.0.0.1"})
        try:
            r = httpx.post(bypassing.url + "/v1/chat/completions", timeout=30,
                           json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            assert len(proxy.forwarded) == 1  # straight to the upstream this time
        finally:
            bypassing.stop()
    finally:
        upstream.stop()
