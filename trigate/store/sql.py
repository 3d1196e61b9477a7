"""One SQL database for the gateway's durable state: an embedded SQLite file by default, PostgreSQL
when several replicas share it.

Both drivers are synchronous (the stdlib's sqlite3, psycopg 3): no asyncio-only driver runs on trio,
and every statement here is short, so each runs on a worker thread behind a capacity limiter and the
event loop never waits on the database. Statements are written once with ``?`` placeholders and
portable SQL; the few type names that differ come from ``Database.blob`` / ``Database.real``.
"""

from __future__ import annotations

import queue
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import trio

T = TypeVar("T")
Row = tuple[Any, ...]


class Cursor(Protocol):
    """What a transaction body gets: the DB-API cursor subset both drivers share."""

    rowcount: int

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...

    def fetchall(self) -> list[Row]: ...

    def fetchone(self) -> Row | None: ...


class DatabaseError(Exception):
    """The database could not be reached or refused a statement (the driver's error is the cause)."""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


class Database:
    """A connection pool and the dialect facts callers need to write portable SQL."""

    dialect: str
    blob: str  # binary column type
    real: str  # double-precision column type

    def __init__(self, connect: Callable[[], Any], *, dialect: str, pool_size: int) -> None:
        self.dialect = dialect
        self.blob = "bytea" if dialect == "postgres" else "blob"
        self.real = "double precision" if dialect == "postgres" else "real"
        self._connect = connect
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._limiter = trio.CapacityLimiter(pool_size)
        self._closed = False

    @classmethod
    def open(cls, url: str, *, pool_size: int = 4) -> Database:
        """``postgresql://user:pass@host:port/db``, ``sqlite:///file.sqlite3``, a plain file path, or
        ``:memory:`` (one private in-memory SQLite database)."""
        if is_postgres_url(url):
            return cls(lambda: _connect_postgres(url), dialect="postgres", pool_size=pool_size)
        # SQLAlchemy's spelling: sqlite:///relative.sqlite3, sqlite:////absolute/path.sqlite3
        path = url.removeprefix("sqlite:///")
        # SQLite serialises writers anyway; one connection keeps :memory: a single database too.
        return cls(lambda: _connect_sqlite(path), dialect="sqlite", pool_size=1)

    def sql(self, statement: str) -> str:
        """``?`` placeholders in the driver's own style."""
        return statement.replace("?", "%s") if self.dialect == "postgres" else statement

    async def run(self, body: Callable[[Cursor], T]) -> T:
        """Run ``body(cursor)`` in one transaction on a worker thread: committed if it returns,
        rolled back if it raises. Driver errors come out as DatabaseError."""
        return await trio.to_thread.run_sync(self._run_sync, body, limiter=self._limiter)

    async def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        """One statement; its rowcount."""
        def body(cur: Cursor) -> int:
            cur.execute(self.sql(statement), params)
            return cur.rowcount

        return await self.run(body)

    async def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        def body(cur: Cursor) -> list[Row]:
            cur.execute(self.sql(statement), params)
            return list(cur.fetchall())

        return await self.run(body)

    async def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        def body(cur: Cursor) -> None:
            if rows:
                cur.executemany(self.sql(statement), rows)

        await self.run(body)

    def _run_sync(self, body: Callable[[Cursor], T]) -> T:
        conn = self._checkout()
        broken = False
        try:
            cur = conn.cursor()
            try:
                result = body(cur)
                conn.commit()
                return result
            except BaseException:
                try:
                    conn.rollback()
                except Exception:
                    broken = True
                raise
            finally:
                try:
                    cur.close()
                except Exception:
                    broken = True
        except (sqlite3.Error, *_psycopg_errors()) as exc:
            broken = broken or _connection_lost(conn)
            raise DatabaseError(f"{self.dialect}: {exc}".strip()) from exc
        finally:
            self._checkin(conn, broken)

    def _checkout(self) -> Any:
        if self._closed:
            raise DatabaseError(f"{self.dialect}: the database is closed")
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            return self._connect()
        except (sqlite3.Error, *_psycopg_errors()) as exc:
            raise DatabaseError(f"{self.dialect}: cannot connect: {exc}".strip()) from exc

    def _checkin(self, conn: Any, broken: bool) -> None:
        if broken or self._closed:
            self._discard(conn)
        else:
            self._idle.put(conn)

    @staticmethod
    def _discard(conn: Any) -> None:
        try:
            conn.close()
        except Exception:
            pass

    async def aclose(self) -> None:
        """Close the idle connections now and each busy one when its statement ends: closing a
        connection another thread is using crashes the SQLite driver."""
        self._closed = True
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(conn)


def _connect_sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    if path != ":memory:":
        conn.execute("pragma journal_mode=wal")
        # WAL with synchronous=normal survives a killed process (only an OS crash can lose the last commits)
        conn.execute("pragma synchronous=normal")
    return conn


def _connect_postgres(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, connect_timeout=5)


def _psycopg_errors() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:
        return ()
    return (psycopg.Error,)


def _connection_lost(conn: Any) -> bool:
    # psycopg marks a connection whose socket failed as broken; a sqlite3 connection is never lost
    return bool(getattr(conn, "closed", False) or getattr(conn, "broken", False))
