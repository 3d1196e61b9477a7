"""The HTTP client towards upstreams: one httpx.AsyncClient for the whole gateway (over the lean
HTTP/1.1 transport in h11_transport), and the error mapping of transport failures into GatewayErrors."""

from __future__ import annotations

import functools
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from trigate.config import ServerSettings
from trigate.errors import GatewayError
from trigate.upstream.h11_transport import H11Transport


def make_client(settings: ServerSettings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout, pool=settings.connect_timeout)
    # No cap on total connections: concurrency is bounded by the gateway's own limits, and a pool cap
    # here would queue streams behind each other invisibly.
    transport = H11Transport(max_idle_per_origin=settings.upstream_keepalive, keepalive_expiry=30.0)
    # One client serves every caller: a cookie an upstream sets for one request must never ride along
    # on another caller's request, so the jar accepts none.
    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(timeout=timeout, transport=transport, cookies=jar, follow_redirects=False,
                             trust_env=False)


@functools.lru_cache(maxsize=4096)
def parsed_url(url: str) -> httpx.URL:
    """An upstream URL parsed once: the same few endpoints are called for every request."""
    return httpx.URL(url)


def transport_error(exc: httpx.HTTPError, provider: str) -> GatewayError:
    """A failure talking to the upstream, as the client should see it (no URLs with secrets)."""
    if isinstance(exc, httpx.TimeoutException):
        return GatewayError("timeout", f"upstream provider '{provider}' timed out", status=504)
    if isinstance(exc, httpx.ConnectError):
        return GatewayError("upstream_unavailable", f"cannot connect to upstream provider '{provider}'",
                            status=502)
    return GatewayError("upstream_unavailable", f"upstream provider '{provider}' connection failed: "
                        f"{type(exc).__name__}", status=502)
