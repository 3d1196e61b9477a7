"""Stored Responses (``store: true``) so ``previous_response_id`` works on any target.

The interface is small on purpose so a Redis backend can stand beside these two. A record keeps the
response object, this request's input items, and the conversation that preceded them; continuing
from it prepends ``context + input_items + output`` to the new input. Natively forwarded responses
are kept whole too (a chain may continue on another provider) and name the provider that owns them,
so GET/DELETE by id can be sent to it; records of older versions hold only that mapping.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any, Protocol

import orjson
import trio
from attrs import define, field


@define
class StoredResponse:
    id: str
    provider: str
    native: bool  # True: the provider stores it itself and answers GET/DELETE; ``response`` is a copy
    response: dict[str, Any] | None = None
    input_items: list[dict[str, Any]] = field(factory=list)
    context: list[dict[str, Any]] = field(factory=list)
    created: float = field(factory=time.time)

    def conversation(self) -> list[dict[str, Any]]:
        """Every item a continuation of this response must see, in order."""
        output = (self.response or {}).get("output") or []
        return [*self.context, *self.input_items, *output]


class ResponseStore(Protocol):
    async def put(self, rec: StoredResponse) -> None: ...

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def delete(self, response_id: str) -> bool: ...

    async def aclose(self) -> None: ...


class MemoryResponseStore:
    def __init__(self, max_items: int = 100_000) -> None:
        self._items: dict[str, StoredResponse] = {}
        self._max = max_items

    async def put(self, rec: StoredResponse) -> None:
        self._items[rec.id] = rec
        if len(self._items) > self._max:  # bounded: drop the oldest
            del self._items[next(iter(self._items))]

    async def get(self, response_id: str) -> StoredResponse | None:
        return self._items.get(response_id)

    async def delete(self, response_id: str) -> bool:
        return self._items.pop(response_id, None) is not None

    async def aclose(self) -> None:
        pass


_SCHEMA = """
create table if not exists responses (
    id text primary key,
    provider text not null,
    native integer not null,
    response blob,
    input_items blob not null,
    context blob not null,
    created real not null
)
"""


class SQLiteResponseStore:
    """SQLite file store. Queries are short and run on a worker thread (one at a time), so the event
    loop never blocks on disk."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def work() -> list[tuple[Any, ...]]:
            with self._lock:
                cur = self._db.execute(sql, args)
                rows = cur.fetchall()
                return rows if rows else ([(cur.rowcount,)] if sql.startswith("delete") else [])

        return await trio.to_thread.run_sync(work, limiter=self._limiter)

    async def put(self, rec: StoredResponse) -> None:
        await self._run(
            "insert or replace into responses values (?, ?, ?, ?, ?, ?, ?)",
            (
                rec.id,
                rec.provider,
                int(rec.native),
                orjson.dumps(rec.response) if rec.response else None,
                orjson.dumps(rec.input_items),
                orjson.dumps(rec.context),
                rec.created,
            ),
        )

    async def get(self, response_id: str) -> StoredResponse | None:
        rows = await self._run(
            "select id, provider, native, response, input_items, context, created from responses where id = ?",
            (response_id,),
        )
        if not rows:
            return None
        rid, provider, native, resp, items, ctx, created = rows[0]
        return StoredResponse(
            rid,
            provider,
            bool(native),
            orjson.loads(resp) if resp else None,
            orjson.loads(items),
            orjson.loads(ctx),
            created,
        )

    async def delete(self, response_id: str) -> bool:
        rows = await self._run("delete from responses where id = ?", (response_id,))
        return bool(rows and rows[0][0])

    async def aclose(self) -> None:
        with self._lock:
            self._db.close()


def open_response_store(path: str) -> ResponseStore:
    if path == ":memory:":
        return MemoryResponseStore()
    return SQLiteResponseStore(path)
