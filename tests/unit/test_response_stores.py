"""Issue 14 item 4: one contract for every stored-Responses backend (memory, the SQL store on a SQLite
file and on a real PostgreSQL server, a real Redis), plus what each backend adds: sharing between two
store instances (two replicas), TTL expiry, large records, old SQLite files, and outages."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio

from tests.harness import free_loopback_port
from trigate.config import ConfigError, StoreConfig, parse_config
from trigate.store.redis import open_redis
from trigate.store.redis_responses import RedisResponseStore
from trigate.store.responses import (
    DatabaseResponseStore,
    MemoryResponseStore,
    ResponseStore,
    StoredResponse,
    StoreUnavailable,
    open_response_store,
)
from trigate.store.sql import Database

BACKENDS = ["memory", "sqlite", "postgres", "redis"]
SHARED = ["sqlite", "postgres", "redis"]

Factory = Callable[..., ResponseStore]


async def flush_redis(url: str) -> None:
    client = open_redis(url)
    async with client:
        keys = await client.keys("trigate:resp:*")
        if keys:
            await client.delete(list(keys))


@pytest.fixture
async def open_store(request: pytest.FixtureRequest, nursery: trio.Nursery,
                     tmp_path: Path) -> AsyncIterator[Factory]:
    """``open_store(ttl_seconds=...)`` opens one more store on the backend named by the test's param;
    several opened in one test share the same database or Redis, as replicas do."""
    backend = request.param
    opened: list[ResponseStore] = []
    databases: list[Database] = []
    if backend == "redis":
        redis_url = request.getfixturevalue("redis_url")
        await flush_redis(redis_url)
    elif backend == "postgres":
        url = request.getfixturevalue("postgres_url")
    memory = MemoryResponseStore  # memory is per process: one instance is the whole backend

    async def start(store: ResponseStore) -> ResponseStore:
        await nursery.start(store.run)
        opened.append(store)
        return store

    def make(ttl_seconds: float = 3600.0) -> ResponseStore:
        if backend == "memory":
            return memory(ttl_seconds=ttl_seconds)
        if backend == "redis":
            return RedisResponseStore(redis_url, ttl_seconds=ttl_seconds)
        db = Database.open(str(tmp_path / "state.sqlite3") if backend == "sqlite" else url)
        databases.append(db)
        return DatabaseResponseStore(db, ttl_seconds)

    async def factory(ttl_seconds: float = 3600.0) -> ResponseStore:
        return await start(make(ttl_seconds))

    yield factory
    for store in opened:
        await store.aclose()
    for db in databases:
        await db.aclose()
    if backend == "redis":
        await flush_redis(redis_url)


def record(rid: str = "resp_1", *, native: bool = False, text: str = "Hello") -> StoredResponse:
    return StoredResponse(
        rid, "anthropic", native,
        {"id": rid, "object": "response", "status": "completed",
         "output": [{"id": "msg_o", "type": "message", "role": "assistant",
                     "content": [{"type": "output_text", "text": text, "annotations": []}]}]},
        [{"id": "msg_i", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi ✓"}]}],
        [{"type": "message", "role": "user", "content": "earlier"}],
    )


@pytest.mark.parametrize("open_store", BACKENDS, indirect=True)
async def test_put_get_replace_delete(open_store: Factory) -> None:
    store = await open_store()
    assert await store.get("resp_1") is None
    rec = record()
    await store.put(rec)
    got = await store.get("resp_1")
    assert got == rec and got is not None and got.conversation()[-1]["content"][0]["text"] == "Hello"
    await store.put(record(text="Rewritten"))
    got = await store.get("resp_1")
    assert got is not None and got.conversation()[-1]["content"][0]["text"] == "Rewritten"
    mapping_only = StoredResponse("resp_native", "openai", True)  # what older versions stored for native turns
    await store.put(mapping_only)
    assert await store.get("resp_native") == mapping_only
    assert await store.delete("resp_1") is True
    assert await store.get("resp_1") is None
    assert await store.delete("resp_1") is False
    assert await store.get("resp_native") == mapping_only


@pytest.mark.parametrize("open_store", BACKENDS, indirect=True)
async def test_records_expire_after_the_ttl(open_store: Factory) -> None:
    store = await open_store(ttl_seconds=0.4)
    await store.put(record("resp_old"))
    assert await store.get("resp_old") is not None
    await trio.sleep(0.7)
    await store.put(record("resp_new"))
    assert await store.get("resp_old") is None
    assert await store.delete("resp_old") is False
    assert await store.get("resp_new") is not None


@pytest.mark.parametrize("open_store", BACKENDS, indirect=True)
async def test_large_records_round_trip(open_store: Factory) -> None:
    store = await open_store()
    items = [{"id": f"msg_{i}", "type": "message", "role": "user",
              "content": [{"type": "input_text", "text": f"{i} " + "päivää 🌍 " * 400}]} for i in range(1000)]
    rec = StoredResponse("resp_big", "anthropic", False, record().response, items, items[:10])
    assert len(rec.to_json()) > 4_000_000
    await store.put(rec)
    assert await store.get("resp_big") == rec


@pytest.mark.parametrize("open_store", SHARED, indirect=True)
async def test_two_replicas_share_records(open_store: Factory) -> None:
    a, b = await open_store(), await open_store()
    rec = record("resp_shared")
    await a.put(rec)
    assert await b.get("resp_shared") == rec
    assert await b.delete("resp_shared") is True
    assert await a.get("resp_shared") is None


@pytest.mark.parametrize("open_store", ["sqlite", "postgres"], indirect=True)
async def test_sql_store_purges_expired_rows_on_write(open_store: Factory) -> None:
    store = await open_store(ttl_seconds=0.3)
    assert isinstance(store, DatabaseResponseStore)
    await store.put(record("resp_a"))
    await trio.sleep(0.5)
    store._purged = -float("inf")  # as if PURGE_SECONDS had passed since the last purge
    await store.put(record("resp_b"))
    rows = await store._db.fetchall("select id from responses order by id")
    assert rows == [("resp_b",)]


async def test_an_sqlite_file_of_an_older_version_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "trigate-responses.sqlite3"
    created = time.time()
    old = sqlite3.connect(path)
    old.execute("create table responses (id text primary key, provider text not null, native integer not null, "
                "response blob, input_items blob not null, context blob not null, created real not null)")
    old.execute("insert into responses values (?, ?, ?, ?, ?, ?, ?)",
                ("resp_old", "openai", 1, None, b"[]", b"[]", created))
    old.commit()
    old.close()
    store = open_response_store(StoreConfig(responses_path=str(path)), Database.open(":memory:"))
    try:
        assert await store.get("resp_old") == StoredResponse("resp_old", "openai", True, created=created)
        await store.put(record("resp_new"))
        assert await store.get("resp_new") is not None
    finally:
        await store.aclose()


async def test_unreachable_redis_is_store_unavailable_quickly(nursery: trio.Nursery) -> None:
    store = RedisResponseStore(f"redis://127.0.0.1:{free_loopback_port()}/0")
    await nursery.start(store.run)
    try:
        for op in (store.get("resp_x"), store.put(record()), store.delete("resp_x")):
            started = trio.current_time()
            with pytest.raises(StoreUnavailable) as err:
                await op
            assert trio.current_time() - started < 2.0
            assert err.value.status == 503 and err.value.code == "response_store_unavailable"
    finally:
        await store.aclose()


async def test_unreachable_postgres_is_store_unavailable() -> None:
    db = Database.open(f"postgresql://trigate@127.0.0.1:{free_loopback_port()}/trigate")
    store = DatabaseResponseStore(db)
    try:
        with pytest.raises(StoreUnavailable) as err:
            await store.get("resp_x")
        assert err.value.status == 503
        with pytest.raises(StoreUnavailable):
            await store.put(record())
    finally:
        await db.aclose()


def test_backend_choice_and_config_checks(tmp_path: Path) -> None:
    shared = Database.open(":memory:")
    assert isinstance(open_response_store(StoreConfig(), shared), DatabaseResponseStore)
    assert isinstance(open_response_store(StoreConfig(backend="memory"), shared), MemoryResponseStore)
    assert isinstance(open_response_store(StoreConfig(responses_path=":memory:"), shared), MemoryResponseStore)
    assert isinstance(open_response_store(StoreConfig(backend="redis"), shared, "redis://127.0.0.1:1/0"),
                      RedisResponseStore)
    base = {"auth": {"open": True}}
    assert parse_config(base, env={}).store == StoreConfig(backend="database", ttl_seconds=30 * 86400.0)
    # store.redis_url defaults to the limits' Redis
    parse_config({**base, "store": {"backend": "redis"}, "limits": {"redis_url": "redis://r:6379/0"}}, env={})
    for store, problem in [
        ({"backend": "redis"}, "store.redis_url: required"),
        ({"backend": "sqlite"}, "store.backend: must be database, redis or memory"),
        ({"ttl_seconds": 0}, "store.ttl_seconds: must be positive"),
        ({"backend": "redis", "redis_url": "redis://r/0", "responses_path": "x.sqlite3"}, "store.responses_path"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_config({**base, "store": store}, env={})
        assert any(problem in p for p in err.value.problems), err.value.problems
