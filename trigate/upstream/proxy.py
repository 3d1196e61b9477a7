"""Which outbound proxy, if any, an upstream URL goes through: ``HTTPS_PROXY`` / ``HTTP_PROXY`` /
``ALL_PROXY`` and ``NO_PROXY`` (lowercase variants win, as in urllib and httpx), or the config's
``server.upstream_proxy`` / ``server.upstream_no_proxy``. Pure: no sockets here, the transport does the I/O.

``NO_PROXY`` follows httpx (itself after curl): ``*`` bypasses every proxy; ``example.com`` matches it and
its subdomains; ``.example.com`` only its subdomains; ``localhost`` and IP literals match exactly, IP
networks (``10.0.0.0/8``) match the addresses inside; a ``host:port`` entry only that port; an entry with a
scheme (``http://host``) only that scheme. Loopback is not exempt by default (httpx and curl proxy it too).
"""

from __future__ import annotations

import base64
import ipaddress
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies_environment

from attrs import define, field


@define(frozen=True)
class Proxy:
    """An HTTP proxy: where to connect, and the ``Proxy-Authorization`` value from its URL's userinfo."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """For logs and errors: never the credentials."""
        return f"http://{self.host}:{self.port}"


def parse_proxy_url(url: str, source: str) -> Proxy:
    """``http://[user:password@]host[:port]`` (a bare ``host:port`` means http). ValueError naming ``source``
    (the variable or config field) otherwise; the message never repeats the URL, which may hold a password."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ValueError(f"{source}: only http:// proxies are supported (TLS to the proxy itself is not)")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"{source}: the proxy port is not a number") from None
    if not parts.hostname:
        raise ValueError(f"{source}: the proxy URL has no host")
    auth = None
    if parts.username is not None:
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(userinfo.encode()).decode()
    return Proxy(parts.hostname, port, auth)


@define(frozen=True)
class _Bypass:
    scheme: str | None  # None: any
    host: str  # lowercase; "" with network set
    port: int | None
    subdomains_only: bool = False
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if (self.scheme is not None and self.scheme != scheme) or (self.port is not None and self.port != port):
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        if self.subdomains_only:
            return host.endswith("." + self.host)
        return host == self.host or host.endswith("." + self.host)


def _bypass_entry(entry: str) -> _Bypass:
    scheme = None
    if "://" in entry:
        scheme, _, entry = entry.partition("://")
        scheme = None if scheme == "all" else scheme.lower()
        entry = entry.rstrip("/")
    try:
        network = ipaddress.ip_network(entry.strip("[]"), strict=False)
        return _Bypass(scheme, "", None, network=network)
    except ValueError:
        pass
    host, port = entry, None
    if entry.startswith("[") and "]:" in entry:  # [::1]:8080
        host, _, p = entry[1:].partition("]:")
        port = int(p) if p.isdigit() else None
        return _Bypass(scheme, "", port, network=ipaddress.ip_network(host, strict=False))
    if entry.count(":") == 1:
        host, _, p = entry.partition(":")
        port = int(p) if p.isdigit() else None
    host = host.lower()
    if host.startswith("*."):
        return _Bypass(scheme, host[2:], port, subdomains_only=True)
    if host.startswith("."):
        return _Bypass(scheme, host[1:], port, subdomains_only=True)
    return _Bypass(scheme, host.removeprefix("*"), port)


@define(frozen=True)
class ProxyRules:
    """The proxy for each upstream scheme and the hosts that bypass it."""

    http: Proxy | None = None
    https: Proxy | None = None
    bypass_all: bool = False
    bypass: tuple[_Bypass, ...] = ()

    @classmethod
    def build(cls, *, http: str | None, https: str | None, no_proxy: str | None, source: str) -> ProxyRules:
        entries = [e.strip() for e in (no_proxy or "").split(",") if e.strip()]
        return cls(
            http=parse_proxy_url(http, source) if http else None,
            https=parse_proxy_url(https, source) if https else None,
            bypass_all="*" in entries,
            bypass=tuple(_bypass_entry(e) for e in entries if e != "*"),
        )

    @classmethod
    def from_settings(cls, upstream_proxy: str | None, upstream_no_proxy: str | None) -> ProxyRules:
        """``server.upstream_proxy`` set: that proxy for every upstream, ``NO_PROXY`` from
        ``server.upstream_no_proxy`` only (the environment is not consulted at all); ``"none"``: no proxy.
        Unset: the environment's variables, as httpx and curl read them."""
        if upstream_proxy == "none":
            return cls()
        if upstream_proxy:
            return cls.build(http=upstream_proxy, https=upstream_proxy, no_proxy=upstream_no_proxy,
                             source="server.upstream_proxy")
        env = getproxies_environment()  # lowercase variables win, as in urllib and httpx
        return cls.build(http=env.get("http") or env.get("all"), https=env.get("https") or env.get("all"),
                         no_proxy=env.get("no"), source="HTTPS_PROXY/HTTP_PROXY/ALL_PROXY")

    def __bool__(self) -> bool:
        return bool(self.http or self.https)

    def for_url(self, scheme: str, host: str, port: int) -> Proxy | None:
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.bypass_all:
            return None
        host = host.lower().strip("[]")
        if any(b.matches(scheme, host, port) for b in self.bypass):
            return None
        return proxy


__all__ = ["Proxy", "ProxyRules", "parse_proxy_url"]
