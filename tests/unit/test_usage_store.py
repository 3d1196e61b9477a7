"""Durable usage rows (trigate/store/usage.py) on a SQLite file and a real PostgreSQL server: batches,
the bounded buffer in front of a database that is down or slow, retries once it is back, the flush at
shutdown, the report, the export pages and ``spend_since``."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import trio

from trigate.observability.metrics import Metrics
from trigate.store.sql import Database
from trigate.store.usage import COLUMNS, Row, UsageFilter, UsageStore, UsageWriter

NOW = 1_800_000_000.0


def usage_row(i: int, *, key: str = "k1", team: str | None = "red", ts: float = NOW, label: str = "m",
              status: int = 200, error: str | None = None, cost: float = 0.001) -> Row:
    values = {"ts": ts, "request_id": f"req-{i}", "key_id": key, "team": team, "api": "chat",
              "client_format": "openai_chat", "provider": "openai", "model": "alias", "upstream_model": label,
              "model_label": label, "status": status, "error": error, "stream": i % 2, "input_tokens": 10,
              "output_tokens": 3, "cached_tokens": 2, "cache_write_tokens": 1, "reasoning_tokens": 0,
              "cost_usd": cost, "duration_ms": 12.5}
    return tuple(values[c] for c in COLUMNS)


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else str(tmp_path / "u.sqlite3")
    database = Database.open(url)
    yield database
    await database.aclose()


async def count(db: Database) -> int:
    return (await db.fetchall("select count(*) from usage_events"))[0][0]


async def test_rows_go_in_batches_of_at_most_batch_rows(db: Database) -> None:
    writer = UsageWriter(UsageStore(db), batch_rows=50, flush_interval=0.05)
    for i in range(120):
        assert writer.offer(usage_row(i))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        assert await writer.flush()
        assert (writer.written, writer.batches, writer.pending) == (120, 3, 0)  # 50 + 50 + 20
        # rows that trickle in are gathered for up to flush_interval into one transaction
        for i in range(120, 130):
            writer.offer(usage_row(i))
            await trio.sleep(0.001)
        assert await writer.flush()
        assert writer.batches == 4
        await writer.aclose()
    assert await count(db) == 130
    ids = [r[0] for r in await db.fetchall("select request_id from usage_events order by id")]
    assert ids == [f"req-{i}" for i in range(130)]


async def test_report_filters_and_spend_since(db: Database) -> None:
    store = UsageStore(db)
    await store.insert([
        usage_row(1, key="k1", team="red", ts=NOW - 3600, cost=0.5),
        usage_row(2, key="k1", team="red", ts=NOW - 10, cost=0.25, label="m2"),
        usage_row(3, key="k2", team="red", ts=NOW - 5, cost=0.125, status=502, error="upstream_unavailable"),
        usage_row(4, key="k3", team=None, ts=NOW, cost=1.0, status=200, error="server_error"),  # failed mid-stream
    ])
    everything = await store.table(UsageFilter())
    assert set(everything) == {"k1", "k2", "k3"} and set(everything["k1"]) == {"m", "m2"}
    t = everything["k1"]["m"]
    assert (t.requests, t.errors, t.input_tokens, t.output_tokens, t.cached_tokens, t.cache_write_tokens) == \
        (1, 0, 10, 3, 2, 1)
    assert type(t.input_tokens) is int and t.cost_usd == 0.5
    assert everything["k2"]["m"].errors == 1 and everything["k3"]["m"].errors == 1
    recent = await store.table(UsageFilter(since=NOW - 60, until=NOW))  # until is exclusive
    assert {k: set(v) for k, v in recent.items()} == {"k1": {"m2"}, "k2": {"m"}}
    assert set(await store.table(UsageFilter(team="red"))) == {"k1", "k2"}
    assert set(await store.table(UsageFilter(key_id="k2", since=NOW - 60))) == {"k2"}
    assert await store.spend_since("key", "k1", NOW - 7200) == 0.75
    assert await store.spend_since("key", "k1", NOW - 60) == 0.25
    assert await store.spend_since("team", "red", NOW - 7200) == 0.875
    assert await store.spend_since("team", "blue", 0) == 0.0
    assert isinstance(await store.spend_since("key", "nobody", 0), float)


async def test_export_pages_keep_memory_bounded(db: Database) -> None:
    store = UsageStore(db)
    await store.insert([usage_row(i, key="k1" if i % 3 else "k2", ts=NOW + i) for i in range(25)])
    pages = [page async for page in store.pages(UsageFilter(key_id="k1"), page_rows=4)]
    assert [len(p) for p in pages] == [4, 4, 4, 4]  # 16 rows of k1
    rows = [r for p in pages for r in p]
    assert [r[2] for r in rows] == [f"req-{i}" for i in range(25) if i % 3]  # id, ts, request_id, ...
    assert [len(p) async for p in store.pages(UsageFilter(since=NOW + 20), page_rows=4)] == [4, 1]
    assert [p async for p in store.pages(UsageFilter(since=NOW + 100))] == []


async def test_a_dead_database_never_blocks_the_caller_and_the_buffer_stays_bounded(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "trigate.usage")
    metrics = Metrics()
    # nothing listens on port 1: every connection attempt fails at once
    db = Database.open("postgresql://trigate@127.0.0.1:1/x")
    writer = UsageWriter(UsageStore(db), metrics=metrics, buffer_rows=100, batch_rows=20, flush_interval=0.01,
                         flush_wait=0.2, shutdown_wait=0.3)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await trio.sleep(0.05)
        started = time.perf_counter()
        accepted = sum(writer.offer(usage_row(i)) for i in range(5000))
        took = time.perf_counter() - started
        assert took < 0.5  # 5000 offers, not one of them waited on the database
        await trio.sleep(0.3)  # the writer retries meanwhile
        assert writer.written == 0 and not await writer.flush()
        # the buffer's bound plus the one batch in hand, and not a row more
        assert accepted <= 100 + 20 and writer.pending <= 120
        assert writer.dropped == 5000 - accepted >= 4880
        assert metrics.usage_dropped._value.get() == writer.dropped
        full = [r for r in caplog.records if "usage buffer full" in r.getMessage()]
        assert len(full) == 1  # one line per outage, not one per dropped row
        assert sum("cannot be written" in r.getMessage() for r in caplog.records) == 1
        with trio.fail_after(2):
            await writer.aclose()  # gives up after shutdown_wait instead of hanging the shutdown
    assert any("not written at shutdown" in r.getMessage() for r in caplog.records)
    await db.aclose()


async def test_writes_resume_when_postgres_comes_back(postgres_url: str) -> None:
    # a database that does not exist yet: PostgreSQL refuses every connection until it is created
    later = postgres_url.rsplit("/", 1)[0] + "/usage_later"
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("drop database if exists usage_later")
    db = Database.open(later)
    metrics = Metrics()
    writer = UsageWriter(UsageStore(db), metrics=metrics, batch_rows=50, flush_interval=0.01, flush_wait=0.1)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for i in range(70):
                writer.offer(usage_row(i))
            await trio.sleep(0.3)
            assert writer.written == 0 and writer.pending == 70
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("create database usage_later")
            writer.flush_wait = 10
            assert await writer.flush()  # the same batch, retried, then the rest
            assert (writer.written, writer.dropped) == (70, 0)
            assert metrics.usage_written._value.get() == 70
            await writer.aclose()
        assert await count(db) == 70
    finally:
        await db.aclose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("drop database if exists usage_later with (force)")


async def test_writes_resume_when_the_sqlite_file_can_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "usage.sqlite3"  # its directory does not exist: no file can be opened
    db = Database.open(str(path))
    writer = UsageWriter(UsageStore(db), flush_interval=0.01, flush_wait=0.1)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for i in range(30):
            writer.offer(usage_row(i))
        await trio.sleep(0.3)
        assert writer.written == 0 and writer.pending == 30
        path.parent.mkdir()
        writer.flush_wait = 10
        assert await writer.flush() and writer.written == 30
        await writer.aclose()
    assert await count(db) == 30
    await db.aclose()


async def test_a_slow_database_holds_the_writer_not_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    db = Database.open(str(path))
    writer = UsageWriter(UsageStore(db), buffer_rows=50, batch_rows=10, flush_interval=0.01, flush_wait=0.1)
    await writer.store.ensure()
    # another connection holds the write lock: the writer's insert waits in its worker thread
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("begin exclusive")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            started = time.perf_counter()
            accepted = sum(writer.offer(usage_row(i)) for i in range(200))
            assert time.perf_counter() - started < 0.2
            await trio.sleep(0.2)
            assert writer.written == 0 and accepted <= 60 and writer.dropped == 200 - accepted
            other.execute("commit")
            writer.flush_wait = 10
            assert await writer.flush() and writer.written == accepted
            await writer.aclose()
    finally:
        other.close()
    assert await count(db) == accepted
    await db.aclose()


async def test_shutdown_writes_what_is_queued(db: Database) -> None:
    # a long flush interval: without the flush at close these rows would still be waiting
    writer = UsageWriter(UsageStore(db), flush_interval=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for i in range(42):
            writer.offer(usage_row(i))
        await trio.sleep(0.05)
        assert writer.written == 0
        with trio.fail_after(5):
            await writer.aclose()
    assert writer.written == 42 and await count(db) == 42
    assert not writer.offer(usage_row(99)) and writer.dropped == 1  # closed: counted, not raised
