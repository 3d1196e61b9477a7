"""Pure parts of area C: outbound proxy selection (NO_PROXY as httpx reads it) and proxy URL parsing."""

from __future__ import annotations

import base64

import pytest

from trigate.config import ConfigError, parse_config
from trigate.upstream.proxy import ProxyRules, parse_proxy_url

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
              "no_proxy", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def rules(no_proxy: str) -> ProxyRules:
    return ProxyRules.build(http="http://p:3128", https="http://p:3128", no_proxy=no_proxy, source="t")


@pytest.mark.parametrize(("no_proxy", "url", "proxied"), [
    ("", ("https", "api.openai.com", 443), True),
    ("*", ("https", "api.openai.com", 443), False),
    ("example.com,*", ("https", "api.openai.com", 443), False),
    ("openai.com", ("https", "api.openai.com", 443), False),  # the domain and its subdomains
    ("openai.com", ("https", "openai.com", 443), False),
    ("openai.com", ("https", "notopenai.com", 443), True),
    (".openai.com", ("https", "openai.com", 443), True),  # leading dot: subdomains only (httpx)
    (".openai.com", ("https", "api.openai.com", 443), False),
    ("*.openai.com", ("https", "api.openai.com", 443), False),
    ("API.OpenAI.com", ("https", "api.openai.com", 443), False),
    ("localhost", ("http", "localhost", 8000), False),
    ("localhost", ("http", "127.0.0.1", 8000), True),  # loopback is proxied unless listed
    ("127.0.0.1", ("http", "127.0.0.1", 8000), False),
    ("10.0.0.0/8", ("http", "10.1.2.3", 80), False),
    ("10.0.0.0/8", ("http", "11.1.2.3", 80), True),
    ("::1", ("http", "::1", 80), False),
    ("[::1]:8080", ("http", "::1", 8080), False),
    ("[::1]:8080", ("http", "::1", 80), True),
    ("internal:8080", ("http", "internal", 8080), False),
    ("internal:8080", ("http", "internal", 80), True),
    ("http://internal", ("http", "internal", 80), False),  # a scheme restricts the entry to it
    ("http://internal", ("https", "internal", 443), True),
    (" a.com , b.com ", ("https", "b.com", 443), False),
])
def test_no_proxy_matching(no_proxy: str, url: tuple[str, str, int], proxied: bool) -> None:
    assert (rules(no_proxy).for_url(*url) is not None) is proxied


def test_proxy_url_userinfo_becomes_basic_auth_and_is_never_shown() -> None:
    p = parse_proxy_url("http://us%40er:p%3Ass@proxy.corp:3128", "HTTPS_PROXY")
    assert (p.host, p.port) == ("proxy.corp", 3128)
    assert p.authorization == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert "p:ss" not in repr(p) and "Basic" not in repr(p) and p.describe() == "http://proxy.corp:3128"
    assert parse_proxy_url("proxy.corp:8080", "x").port == 8080  # bare host:port means http
    assert parse_proxy_url("http://proxy.corp", "x").port == 80


@pytest.mark.parametrize(("url", "reason"), [
    ("https://user:secret@proxy:443", "only http:// proxies"),
    ("socks5://proxy:1080", "only http:// proxies"),
    ("http://user:secret@proxy:port", "port is not a number"),
])
def test_unusable_proxy_urls_are_named_without_their_secret(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as err:
        parse_proxy_url(url, "server.upstream_proxy")
    assert "secret" not in str(err.value) and str(err.value).startswith("server.upstream_proxy:")


def test_environment_variables_lowercase_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("https_proxy", "http://lower:2")
    monkeypatch.setenv("HTTP_PROXY", "http://plain:3")
    monkeypatch.setenv("no_proxy", "internal")
    r = ProxyRules.from_settings(None, None)
    assert r.for_url("https", "api.openai.com", 443).host == "lower"  # type: ignore[union-attr]
    assert r.for_url("http", "10.0.0.5", 8000).host == "plain"  # type: ignore[union-attr]
    assert r.for_url("https", "x.internal", 443) is None


def test_all_proxy_covers_both_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://all:9")
    r = ProxyRules.from_settings(None, None)
    assert r.for_url("https", "a", 443).host == r.for_url("http", "a", 80).host == "all"  # type: ignore[union-attr]


def test_config_proxy_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env:1")
    monkeypatch.setenv("NO_PROXY", "*")
    r = ProxyRules.from_settings("http://cfg:2", "internal")
    assert r.for_url("https", "api.openai.com", 443).host == "cfg"  # type: ignore[union-attr]
    assert r.for_url("https", "internal", 443) is None
    assert not ProxyRules.from_settings("none", None)  # "none": no proxy at all, whatever the environment


def test_config_check_names_a_bad_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"server": {"upstream_proxy": "https://u:topsecret@p:443"}, "providers": {}, "models": []},
                     env={})
    assert any(p.startswith("server.upstream_proxy: only http://") for p in err.value.problems)
    assert "topsecret" not in str(err.value.problems)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://p:1080")
    with pytest.raises(ConfigError, match="HTTPS_PROXY"):
        parse_config({"providers": {}, "models": []}, env={})


async def test_aws_refreshes_run_on_a_worker_thread_one_at_a_time() -> None:
    """Real botocore RefreshableCredentials whose refresh blocks (as IMDS/STS would): many concurrent signers
    cause one refresh, off the event loop, and keep the still-valid copy meanwhile."""
    import datetime
    import threading
    import time

    import trio
    from botocore.credentials import RefreshableCredentials

    from trigate.upstream.aws_credentials import BotocoreCredentials

    calls: list[str] = []
    loop_thread = threading.get_ident()

    def fetch() -> dict[str, str]:
        if calls:  # every refresh after the initial metadata: never on the event loop
            assert threading.get_ident() != loop_thread
        calls.append(f"k{len(calls) + 1}")
        time.sleep(0.2)  # blocking, like botocore's HTTP
        # the first copy is already inside the 15-minute window (due), later ones are fresh
        left = 12 * 60 if len(calls) == 1 else 3600
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=left)
        return {"access_key": calls[-1], "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}

    chain = BotocoreCredentials(provider="br", region="us-east-1")
    chain._credentials = RefreshableCredentials.create_from_metadata(fetch(), fetch, "test")
    assert calls == ["k1"]
    got: list[str] = []

    async def sign() -> None:
        got.append((await chain.get()).access_key)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sign)  # takes the first copy, then starts nothing more: it is one refresh
        await trio.sleep(0.05)
        for _ in range(20):
            nursery.start_soon(sign)
    assert calls == ["k1", "k2"]  # one refresh for all 21 (the first copy was due)
    assert set(got) == {"k2"}
    assert (await chain.get()).access_key == "k2" and calls == ["k1", "k2"]  # fresh now: cached
