"""The HTTP client towards upstreams: one httpx.AsyncClient for the whole gateway (over the lean
HTTP/1.1 transport in h11_transport), and the error mapping of transport failures into GatewayErrors."""

from __future__ import annotations

import functools
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from trigate import __version__
from trigate.config import ServerSettings
from trigate.errors import GatewayError
from trigate.upstream.h11_transport import H11Transport, ProxyRefused
from trigate.upstream.proxy import ProxyRules

USER_AGENT = f"trigate/{__version__}"


def make_transport(settings: ServerSettings) -> H11Transport:
    # No cap on total connections: concurrency is bounded by the gateway's own limits, and a pool cap
    # here would queue streams behind each other invisibly.
    proxies = ProxyRules.from_settings(settings.upstream_proxy, settings.upstream_no_proxy)
    return H11Transport(max_idle_per_origin=settings.upstream_keepalive, keepalive_expiry=30.0, proxies=proxies)


def make_client(settings: ServerSettings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout, pool=settings.connect_timeout)
    transport = transport or make_transport(settings)
    # One client serves every caller: a cookie an upstream sets for one request must never ride along
    # on another caller's request, so the jar accepts none.
    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(timeout=timeout, transport=transport, cookies=jar, headers={"user-agent": USER_AGENT},
                             follow_redirects=False, trust_env=False)


async def send(transport: httpx.AsyncBaseTransport, request: httpx.Request) -> httpx.Response:
    """A model call's request, straight to the transport. AsyncClient.send adds auth and redirect
    flows, event hooks, a cookie jar and per-request URL and header merging, none of which a model
    call uses; skipping them was ~10% of the gateway's CPU per request (py-spy). The request must be
    complete (absolute URL, all headers, timeouts in its extensions)."""
    response = await transport.handle_async_request(request)
    response.request = request
    return response


@functools.lru_cache(maxsize=4096)
def parsed_url(url: str) -> httpx.URL:
    """An upstream URL parsed once: the same few endpoints are called for every request."""
    return httpx.URL(url)


def transport_error(exc: httpx.HTTPError, provider: str) -> GatewayError:
    """A failure talking to the upstream, as the client should see it (no URLs with secrets)."""
    if isinstance(exc, httpx.TimeoutException):
        return GatewayError("timeout", f"upstream provider '{provider}' timed out", status=504)
    if isinstance(exc, httpx.ProxyError):
        # The client learns it was the outbound proxy (and its status), not where the proxy is.
        status = f" (HTTP {exc.status})" if isinstance(exc, ProxyRefused) else ""
        return GatewayError("upstream_unavailable", f"cannot reach upstream provider '{provider}': the outbound "
                            f"proxy refused the connection{status}", status=502)
    if isinstance(exc, httpx.ConnectError):
        return GatewayError("upstream_unavailable", f"cannot connect to upstream provider '{provider}'",
                            status=502)
    return GatewayError("upstream_unavailable", f"upstream provider '{provider}' connection failed: "
                        f"{type(exc).__name__}", status=502)
