"""The shared SQL layer on both of its databases: a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from trigate.store.sql import Database, DatabaseError


async def exercise(db: Database) -> None:
    await db.execute(f"create table if not exists t (k text primary key, n integer, v {db.real}, b {db.blob})")
    await db.executemany("insert into t values (?, ?, ?, ?)", [("a", 1, 0.5, b"x"), ("b", 2, 1.5, b"\x00y")])
    rows = await db.fetchall("select k, n, v, b from t order by k")
    assert [(k, n, v, bytes(b)) for k, n, v, b in rows] == [("a", 1, 0.5, b"x"), ("b", 2, 1.5, b"\x00y")]
    assert await db.execute("update t set n = n + 1 where k = ?", ("a",)) == 1

    def fails_halfway(cur) -> None:
        cur.execute(db.sql("insert into t values (?, ?, ?, ?)"), ("c", 3, 0.0, b""))
        cur.execute(db.sql("insert into t values (?, ?, ?, ?)"), ("a", 9, 0.0, b""))  # duplicate key

    with pytest.raises(DatabaseError):
        await db.run(fails_halfway)
    # the transaction was rolled back whole, and the pool still works
    assert await db.fetchall("select k, n from t order by k") == [("a", 2), ("b", 2)]

    async def bump() -> None:
        await db.execute("update t set n = n + 1 where k = ?", ("b",))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(bump)
    assert await db.fetchall("select n from t where k = ?", ("b",)) == [(22,)]


async def test_sqlite_file(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path}/state.sqlite3")
    try:
        await exercise(db)
    finally:
        await db.aclose()
    # durable: a new connection sees it
    again = Database.open(str(tmp_path / "state.sqlite3"))
    assert await again.fetchall("select count(*) from t") == [(2,)]
    await again.aclose()


async def test_postgres(postgres_url: str) -> None:
    db = Database.open(postgres_url)
    try:
        assert db.dialect == "postgres"
        await exercise(db)
    finally:
        await db.aclose()


async def test_unreachable_postgres_is_a_database_error() -> None:
    db = Database.open("postgresql://trigate@127.0.0.1:1/trigate")
    with pytest.raises(DatabaseError, match="cannot connect"):
        await db.fetchall("select 1")
    await db.aclose()


async def test_closing_while_a_statement_runs_waits_for_it(tmp_path: Path) -> None:
    """A service task may still be mid-query when shutdown closes the database: the busy connection is
    closed when its statement ends (closing it under the running thread crashed the SQLite driver)."""
    db = Database.open(str(tmp_path / "busy.sqlite3"))
    await db.execute("create table t (n integer)")
    started = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def slow(cur) -> int:
        trio.from_thread.run_sync(started.set, trio_token=token)
        # a statement that takes a while: a recursive count to two million
        cur.execute("with recursive c(x) as (select 1 union all select x + 1 from c where x < 2000000) "
                    "select count(*) from c")
        return cur.fetchone()[0]

    results: list[int] = []

    async def query() -> None:
        results.append(await db.run(slow))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(query)
        await started.wait()
        await db.aclose()
    assert results == [2000000]
    with pytest.raises(DatabaseError, match="closed"):
        await db.fetchall("select 1")
