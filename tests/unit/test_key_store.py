"""Runtime keys (issue 14, item 1): the key table on SQLite and on a real PostgreSQL server, and the
KeyRing's cache in front of it (config keys first, runtime keys cached, misses asked, outages)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import trio

from trigate.config import BudgetSpec, ClientKey, parse_config
from trigate.errors import GatewayError
from trigate.policies.auth import KeyRing, RuntimeKeys, digest
from trigate.store.keys import KeyExists, KeyStore, new_secret
from trigate.store.sql import Database


def spec(key_id: str, secret: str, **kw: object) -> ClientKey:
    return ClientKey(id=key_id, key_sha256=digest(secret), **kw)  # type: ignore[arg-type]


async def exercise(db: Database) -> None:
    store = KeyStore(db)
    a, b = new_secret(), new_secret()
    assert a.startswith("sk-tg-") and len(a) > 40 and a != b
    made = await store.create(spec("a", a, models=["gpt-*"], rpm=5, metadata={"team": "red"},
                                    budget=BudgetSpec(usd=2.5, window="daily")), expires_at=None)
    assert made.spec.models == ["gpt-*"] and made.spec.budget == BudgetSpec(2.5, "daily") and made.status(0) == "active"
    await store.create(spec("b", b, metadata={"team": "blue"}), expires_at=time.time() + 3600)
    with pytest.raises(KeyExists):
        await store.create(spec("a", new_secret()), expires_at=None)
    # only the digest is stored
    rows = await db.fetchall("select * from gateway_keys")
    assert a not in repr(rows) and digest(a) in repr(rows)

    assert (await store.find(digest(a))) == made
    assert await store.find(digest("nope")) is None
    assert [r.id for r in await store.list()] == ["a", "b"]
    assert [r.id for r in await store.list(team="blue")] == ["b"]

    since = await store.now()
    updated = await store.update(made, spec("a", a, models=None, tpm=100), expires_at=None)
    assert updated is not None and updated.spec.models is None and updated.spec.tpm == 100
    assert updated.spec.metadata == {} and updated.updated_at >= made.updated_at
    _, changed = await store.changed_since(since - 0.001)
    assert [r.id for r in changed] == ["a"]

    # rotation with grace: both digests find the key; without grace, only the new one
    a2 = new_secret()
    rotated = await store.rotate("a", digest(a2), 30)
    assert rotated is not None and rotated.previous_sha256 == digest(a)
    assert rotated.previous_until is not None and rotated.previous_until > time.time() + 20
    assert (await store.find(digest(a))) == rotated == (await store.find(digest(a2)))
    a3 = new_secret()
    await store.rotate("a", digest(a3), 0)
    assert await store.find(digest(a)) is None and await store.find(digest(a2)) is None
    revoked = await store.revoke("a")
    assert revoked is not None and revoked.revoked_at is not None and revoked.status(time.time()) == "revoked"
    again = await store.revoke("a")
    assert again is not None and again.revoked_at == revoked.revoked_at  # the first revocation's time stays
    assert await store.revoke("missing") is None


async def test_key_store_on_sqlite(tmp_path: Path) -> None:
    db = Database.open(str(tmp_path / "keys.sqlite3"))
    try:
        await exercise(db)
    finally:
        await db.aclose()


async def test_key_store_on_postgres(postgres_url: str) -> None:
    db = Database.open(postgres_url)
    try:
        await exercise(db)
    finally:
        await db.aclose()


def ring(runtime: RuntimeKeys, *, open_mode: bool = False) -> KeyRing:
    auth = {"open": True} if open_mode else {"keys": [{"id": "cfg", "key": "sk-config"}]}
    return KeyRing(parse_config({"auth": auth}, env={}).auth, runtime)


async def test_runtime_keys_behind_config_keys(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    db = Database.open(str(tmp_path / "d" / "keys.sqlite3"))
    store = KeyStore(db)
    runtime = RuntimeKeys(store, negative_seconds=60)
    keys = ring(runtime)
    secret = new_secret()
    await store.create(spec("rt", secret, models=["gpt-*"], rpm=7, metadata={"team": "t"},
                            budget=BudgetSpec(usd=1.0)), expires_at=None)
    # a miss goes to the database; the principal is built as a config key's would be
    p = await keys.authenticate(secret)
    assert (p.key_id, p.allowed_models, p.allowed_providers, p.rpm, p.team, p.budget) == \
        ("rt", ("gpt-*",), (), 7, "t", BudgetSpec(usd=1.0))
    assert (await keys.authenticate("sk-config")).key_id == "cfg"

    # an unknown key is remembered: a key made meanwhile by another replica (straight into the table,
    # bypassing this cache) is seen once the poller reads it
    late = new_secret()
    with pytest.raises(GatewayError) as err:
        await keys.authenticate(late)
    assert err.value.code == "invalid_api_key"
    await store.create(spec("late", late), expires_at=None)
    with pytest.raises(GatewayError):
        await keys.authenticate(late)  # still negatively cached
    async with trio.open_nursery() as nursery:
        runtime.poll_seconds = 0.05
        await nursery.start(runtime.run)
        await trio.sleep(0.3)
        assert (await keys.authenticate(late)).key_id == "late"
        # a revocation written by someone else reaches the cache through the poller
        await store.revoke("rt")
        await trio.sleep(0.3)
        with pytest.raises(GatewayError) as err:
            await keys.authenticate(secret)
        assert (err.value.kind, err.value.code) == ("authentication", "key_revoked")
        runtime.close()

    # the database goes away: config keys and cached runtime keys keep working, a miss is a 503
    await db.aclose()
    shutil.rmtree(tmp_path / "d")  # its next connection cannot open the file
    assert (await keys.authenticate("sk-config")).key_id == "cfg"
    assert (await keys.authenticate(late)).key_id == "late"
    with pytest.raises(GatewayError) as err:
        await keys.authenticate(new_secret())
    assert (err.value.status, err.value.code) == (503, "key_store_unavailable")
    # in open mode the same outage lets the caller in as anonymous (open mode serves everyone)
    assert (await ring(runtime, open_mode=True).authenticate(new_secret())).key_id == "anonymous"


async def test_expiry_and_rotation_grace_in_the_cache(tmp_path: Path) -> None:
    db = Database.open(str(tmp_path / "keys.sqlite3"))
    store = KeyStore(db)
    runtime = RuntimeKeys(store)
    keys = ring(runtime)
    short = new_secret()
    await store.create(spec("short", short), expires_at=time.time() + 0.3)
    assert (await keys.authenticate(short)).key_id == "short"
    await trio.sleep(0.4)
    with pytest.raises(GatewayError) as err:
        await keys.authenticate(short)
    assert (err.value.code, err.value.message) == ("key_expired", "key expired")

    old, new = new_secret(), new_secret()
    await store.create(spec("rot", old), expires_at=None)
    rotated = await store.rotate("rot", digest(new), 0.3)
    assert rotated is not None
    runtime.put(rotated)
    assert (await keys.authenticate(old)).key_id == (await keys.authenticate(new)).key_id == "rot"
    await trio.sleep(0.4)
    with pytest.raises(GatewayError) as err:
        await keys.authenticate(old)
    assert err.value.code == "invalid_api_key"  # no longer this key's secret: not "expired"
    assert (await keys.authenticate(new)).key_id == "rot"
    await db.aclose()


async def test_an_older_read_never_replaces_a_newer_change(tmp_path: Path) -> None:
    db = Database.open(str(tmp_path / "keys.sqlite3"))
    store = KeyStore(db)
    runtime = RuntimeKeys(store)
    secret = new_secret()
    before = await store.create(spec("k", secret), expires_at=None)
    await trio.sleep(0.01)
    revoked = await store.revoke("k")
    assert revoked is not None
    runtime.put(revoked)
    runtime.put(before)  # a lookup that read the row before the revocation, finishing late
    with pytest.raises(GatewayError) as err:
        await ring(runtime).authenticate(secret)
    assert err.value.code == "key_revoked"
    await db.aclose()


async def test_cache_is_bounded_and_evicts_all_of_a_keys_secrets(tmp_path: Path) -> None:
    db = Database.open(str(tmp_path / "keys.sqlite3"))
    store = KeyStore(db)
    runtime = RuntimeKeys(store, max_cached=3)
    old, new = new_secret(), new_secret()
    await store.create(spec("r", old), expires_at=None)
    rotated = await store.rotate("r", digest(new), 60)
    assert rotated is not None
    runtime.put(rotated)
    for i in range(2):
        made = await store.create(spec(f"k{i}", new_secret()), expires_at=None)
        runtime.put(made)
    assert len(runtime._by_digest) <= 3
    assert digest(old) not in runtime._by_digest and digest(new) not in runtime._by_digest
    await db.aclose()
