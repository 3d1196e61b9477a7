"""Runtime keys through the admin API (issue 14, items 1 and the keys part of 5): made, used from the
openai SDK, changed, rotated, revoked and expired on a real gateway; two real gateway processes sharing
one PostgreSQL; keys surviving a kill -9 on SQLite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.harness import UPSTREAM_KEY, GatewayProcess, MockProcess, Servers, openai_config

ADMIN = "sk-admin-keys-test-0001"
CLIENT = "sk-config-client-0002"
USER = [{"role": "user", "content": "hello runtime keys"}]


def auth() -> dict[str, Any]:
    return {"keys": [{"id": "config-client", "key": CLIENT}], "admin_keys": [{"id": "ops", "key": ADMIN}]}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Servers]:
    db = tmp_path / "state.sqlite3"
    with Servers(lambda url: openai_config(url, auth=auth(), database={"url": str(db)})) as s:
        yield s


def admin(base: str, method: str, path: str, key: str | None = ADMIN, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, base + path, headers=headers, timeout=10, **kw)


def chat(base: str, key: str, model: str = "gpt-4o-mini") -> str:
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
    return reply.choices[0].message.content or ""


def refused(base: str, key: str, model: str = "gpt-4o-mini") -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as err:
        chat(base, key, model)
    return err.value


def test_create_use_list_get_update(gateway: Servers) -> None:
    base = gateway.url
    r = admin(base, "POST", "/admin/keys", json={"id": "alice", "models": ["gpt-*"], "rpm": 100,
                                                  "metadata": {"team": "red", "user": "alice"},
                                                  "budget": {"usd": 5, "window": "daily"}})
    assert r.status_code == 201, r.text
    made = r.json()
    secret = made.pop("key")
    assert secret.startswith("sk-tg-") and len(secret) >= 45
    assert made["id"] == "alice" and made["status"] == "active" and made["models"] == ["gpt-*"]
    assert made["budget"] == {"usd": 5, "window": "daily"} and made["metadata"]["team"] == "red"
    assert chat(base, secret)

    admin(base, "POST", "/admin/keys", json={"id": "bob", "metadata": {"team": "blue"}})
    listed = admin(base, "GET", "/admin/keys")
    assert listed.status_code == 200 and [k["id"] for k in listed.json()["data"]] == ["alice", "bob"]
    assert [k["id"] for k in admin(base, "GET", "/admin/keys", params={"team": "red"}).json()["data"]] == ["alice"]
    got = admin(base, "GET", "/admin/keys/alice")
    assert got.status_code == 200 and got.json()["rpm"] == 100
    digest = __import__("hashlib").sha256(secret.encode()).hexdigest()
    for text in (listed.text, got.text):
        assert secret not in text and digest not in text and "key_sha256" not in text and '"key"' not in text

    # models narrowed: a now-disallowed model is a 403 at once (this replica applies its own changes)
    r = admin(base, "PATCH", "/admin/keys/alice", json={"models": ["gpt-4o-mini"], "rpm": None})
    assert r.status_code == 200 and r.json()["models"] == ["gpt-4o-mini"] and r.json()["rpm"] is None
    assert r.json()["budget"] == {"usd": 5, "window": "daily"}  # untouched fields stay
    assert chat(base, secret, "gpt-4o-mini")
    err = refused(base, secret, "openai/gpt-4.1")
    assert err.status_code == 403 and "may not use model" in err.message
    # a models-restricted key gets no passthrough, as a config key
    raw = httpx.post(base + "/openai/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                     json={"model": "gpt-4o-mini", "messages": USER}, timeout=10)
    assert raw.status_code == 403
    assert admin(base, "GET", "/admin/keys/nobody").status_code == 404
    assert UPSTREAM_KEY not in listed.text


def test_rotate_revoke_and_expire(gateway: Servers) -> None:
    base = gateway.url
    made = admin(base, "POST", "/admin/keys", json={"id": "rot"}).json()
    old = made["key"]
    assert chat(base, old)
    r = admin(base, "POST", "/admin/keys/rot/rotate")
    assert r.status_code == 200, r.text
    new = r.json()["key"]
    assert new != old and chat(base, new)
    err = refused(base, old)
    assert err.status_code == 401 and "invalid API key" in err.message

    # with a grace period both secrets work until it ends
    newer = admin(base, "POST", "/admin/keys/rot/rotate", json={"grace_seconds": 0.6}).json()["key"]
    assert chat(base, new) and chat(base, newer)
    time.sleep(0.8)
    assert refused(base, new).status_code == 401 and chat(base, newer)

    r = admin(base, "POST", "/admin/keys/rot/revoke")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    err = refused(base, newer)
    assert err.status_code == 401 and "revoked" in err.message
    assert admin(base, "POST", "/admin/keys/rot/rotate").status_code == 409
    other = admin(base, "POST", "/admin/keys", json={"id": "gone"}).json()["key"]
    assert admin(base, "DELETE", "/admin/keys/gone").json()["status"] == "revoked"
    assert refused(base, other).status_code == 401

    brief = admin(base, "POST", "/admin/keys", json={"ttl_seconds": 0.7})
    assert brief.status_code == 201 and brief.json()["id"].startswith("key-") and brief.json()["expires_at"]
    assert chat(base, brief.json()["key"])
    time.sleep(0.9)
    err = refused(base, brief.json()["key"])
    assert err.status_code == 401 and "key expired" in err.message
    assert admin(base, "GET", f"/admin/keys/{brief.json()['id']}").json()["status"] == "expired"
    iso = admin(base, "POST", "/admin/keys", json={"expires_at": "2999-01-01T00:00:00Z"})
    assert iso.status_code == 201 and iso.json()["expires_at"] == 32472144000


def test_admin_only_and_validation(gateway: Servers) -> None:
    base = gateway.url
    runtime = admin(base, "POST", "/admin/keys", json={"id": "plain"}).json()["key"]
    assert admin(base, "GET", "/admin/keys", key=None).status_code == 401
    assert admin(base, "GET", "/admin/keys", key="sk-wrong").status_code == 401
    for key in (CLIENT, runtime):
        r = admin(base, "POST", "/admin/keys", key=key, json={})
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_admin"

    def bad(body: dict[str, Any], status: int = 400) -> dict[str, Any]:
        r = admin(base, "POST", "/admin/keys", json=body)
        assert r.status_code == status, r.text
        return r.json()["error"]

    assert bad({"rpm": 0})["param"] == "rpm"
    assert "must be a positive integer" in bad({"tpm": -3})["message"]
    assert bad({"rpm": 2.5})["param"] == "rpm"
    assert bad({"models": "gpt-*"})["param"] == "models"
    assert bad({"providers": ["opneai"]})["message"] == "providers[0]: unknown provider 'opneai'"
    assert bad({"budget": {"usd": 0}})["param"] == "budget"
    assert bad({"budget": {"usd": 3, "window": "weekly"}})["param"] == "budget"
    assert bad({"expires_at": time.time() - 10})["param"] == "expires_at"
    assert bad({"id": "has space"})["param"] == "id"
    assert bad({"key": "sk-chosen"})["param"] == "key"  # the secret is always made here
    assert bad({"id": "config-client"}, 409)["code"] == "key_exists"
    assert bad({"id": "plain"}, 409)["code"] == "key_exists"
    assert admin(base, "PATCH", "/admin/keys/plain", json={"max_concurrent": 0}).json()["error"]["param"] == \
        "max_concurrent"
    assert admin(base, "PATCH", "/admin/keys/config-client", json={"rpm": 1}).status_code == 409


def pg_config(upstream: str, postgres_url: str) -> dict[str, Any]:
    return {"auth": auth(), "database": {"url": postgres_url}, "store": {"responses_path": ":memory:"},
            "providers": {"up": {"kind": "openai", "base_url": f"{upstream}/v1", "api_key": UPSTREAM_KEY}},
            "models": [{"name": "gpt-4o-mini", "provider": "up"}]}


def test_two_replicas_share_keys_through_postgres(tmp_path: Path, postgres_url: str) -> None:
    upstream = MockProcess()
    a = b = None
    try:
        a = GatewayProcess(pg_config(upstream.url, postgres_url), tmp_path, "a")
        b = GatewayProcess(pg_config(upstream.url, postgres_url), tmp_path, "b")
        made = admin(a.url, "POST", "/admin/keys", json={"id": "shared"})
        assert made.status_code == 201, made.text + a.log()
        secret = made.json()["key"]
        assert chat(b.url, secret)  # the very next request, on the other replica
        revoked_at = time.monotonic()
        assert admin(a.url, "POST", "/admin/keys/shared/revoke").status_code == 200
        while True:
            r = httpx.post(b.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                           json={"model": "gpt-4o-mini", "messages": USER}, timeout=10)
            if r.status_code == 401:
                break
            assert r.status_code == 200 and time.monotonic() - revoked_at < 3, r.text
            time.sleep(0.02)
        took = time.monotonic() - revoked_at
        print(f"revocation on A refused by B after {took * 1000:.0f} ms")
        assert took < 1.0
        assert "revoked" in r.json()["error"]["message"]
    finally:
        for gw in (a, b):
            if gw is not None:
                gw.stop()
        upstream.stop()


def test_keys_survive_a_kill_on_sqlite(tmp_path: Path) -> None:
    upstream = MockProcess()
    gw = None
    try:
        cfg = pg_config(upstream.url, str(tmp_path / "keys.sqlite3"))
        gw = GatewayProcess(cfg, tmp_path, "solo")
        secret = admin(gw.url, "POST", "/admin/keys", json={"id": "durable", "rpm": 50}).json()["key"]
        assert chat(gw.url, secret)
        gw.kill()
        gw.start()
        assert chat(gw.url, secret)
        assert admin(gw.url, "GET", "/admin/keys/durable").json()["rpm"] == 50
    finally:
        if gw is not None:
            gw.stop()
        upstream.stop()
