"""Stored Responses (``store: true``) so ``previous_response_id`` works on any target.

A record keeps the response object, this request's input items, and the conversation that preceded
them; continuing from it prepends ``context + input_items + output`` to the new input. Natively
forwarded responses are kept whole too (a chain may continue on another provider) and name the
provider that owns them, so GET/DELETE by id can be sent to it; records of older versions hold only
that mapping.

Three backends behind one interface (``store.backend``): the gateway's SQL database (SQLite by
default; PostgreSQL lets replicas continue each other's chains), Redis (trigate/store/redis_responses.py),
and process memory. Records expire ``store.ttl_seconds`` after they were created. A backend that
cannot be reached raises StoreUnavailable (a 503 in the caller's format), logged once per outage.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Protocol

import orjson
import trio
from attrs import asdict, define, field

from trigate.config import StoreConfig
from trigate.errors import GatewayError
from trigate.store.sql import Cursor, Database, DatabaseError

log = logging.getLogger("trigate.store")


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

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> StoredResponse:
        return cls(**orjson.loads(raw))


class StoreUnavailable(GatewayError):
    """The Responses store could not be asked (its database or Redis is unreachable)."""


def store_unavailable() -> StoreUnavailable:
    return StoreUnavailable("server_error", "The gateway cannot reach its store of Responses right now; retry "
                            "shortly", status=503, code="response_store_unavailable", retry_after=1.0)


class Outage:
    """Turns backend failures into StoreUnavailable, logging an outage once when it begins and once
    when it ends (not once per request)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.since: float | None = None

    def failed(self, exc: BaseException) -> StoreUnavailable:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("Responses store (%s) unreachable: %s: %s; previous_response_id and GET/DELETE "
                        "/v1/responses answer 503, new responses are served but not stored", self.backend,
                        type(exc).__name__, " ".join(str(exc).split()))
        return store_unavailable()

    def ok(self) -> None:
        if self.since is not None:
            log.warning("Responses store (%s) reachable again after %.1fs", self.backend,
                        time.monotonic() - self.since)
            self.since = None


class ResponseStore(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Started in the gateway's service nursery before serving (backends that need a task)."""

    async def put(self, rec: StoredResponse) -> None: ...

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def delete(self, response_id: str) -> bool: ...

    async def aclose(self) -> None: ...


DEFAULT_TTL = 30 * 86400.0


class MemoryResponseStore:
    def __init__(self, max_items: int = 100_000, ttl_seconds: float = DEFAULT_TTL) -> None:
        self._items: dict[str, StoredResponse] = {}
        self._max = max_items
        self._ttl = ttl_seconds

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def put(self, rec: StoredResponse) -> None:
        self._items.pop(rec.id, None)  # a rewritten record counts as the newest
        self._items[rec.id] = rec
        if len(self._items) > self._max:  # bounded: drop the oldest
            del self._items[next(iter(self._items))]

    async def get(self, response_id: str) -> StoredResponse | None:
        rec = self._items.get(response_id)
        if rec is not None and rec.created + self._ttl < time.time():
            del self._items[response_id]
            return None
        return rec

    async def delete(self, response_id: str) -> bool:
        return await self.get(response_id) is not None and self._items.pop(response_id, None) is not None

    async def aclose(self) -> None:
        pass


_COLUMNS = "id, provider, native, response, input_items, context, created"


class DatabaseResponseStore:
    """One row per response in the gateway's SQL database (trigate/store/sql.py), the same SQL on
    SQLite and PostgreSQL. Expired rows are never answered, and are deleted in bulk at most every
    PURGE_SECONDS, from a write, so no background task is needed."""

    PURGE_SECONDS = 600.0

    def __init__(self, db: Database, ttl_seconds: float = DEFAULT_TTL, *, owns_db: bool = False) -> None:
        self._db = db
        self._ttl = ttl_seconds
        self._owns_db = owns_db  # an SQLite file of the store's own (store.responses_path)
        self._schema_ready = False
        self._schema_lock = trio.Lock()
        self._purged = -math.inf  # the first write purges
        self._outage = Outage(db.dialect)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    def _schema(self, cur: Cursor) -> None:
        # The columns of the SQLite files older versions wrote, so those keep working as responses_path.
        cur.execute(f"""create table if not exists responses (
            id text primary key,
            provider text not null,
            native integer not null,
            response {self._db.blob},
            input_items {self._db.blob} not null,
            context {self._db.blob} not null,
            created {self._db.real} not null)""")
        cur.execute("create index if not exists responses_created on responses (created)")

    async def _run(self, body: Any) -> Any:
        """``body(cursor)`` in one transaction, the tables created first (lazily: the database may be
        down when the gateway starts)."""
        try:
            if not self._schema_ready:
                async with self._schema_lock:
                    if not self._schema_ready:
                        await self._create_schema()
            result = await self._db.run(body)
        except DatabaseError as exc:
            raise self._outage.failed(exc) from None
        self._outage.ok()
        return result

    async def _create_schema(self) -> None:
        try:
            await self._db.run(self._schema)
        except DatabaseError:
            # two replicas creating the same table at once: PostgreSQL lets one of them fail
            await trio.sleep(0.05)
            await self._db.run(self._schema)
        self._schema_ready = True

    async def put(self, rec: StoredResponse) -> None:
        sql, now = self._db.sql, time.time()
        purge = now - self._purged >= self.PURGE_SECONDS
        row = (rec.id, rec.provider, int(rec.native), orjson.dumps(rec.response) if rec.response else None,
               orjson.dumps(rec.input_items), orjson.dumps(rec.context), rec.created)

        def body(cur: Cursor) -> None:
            cur.execute(sql(f"insert into responses ({_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?) "
                            "on conflict (id) do update set provider = excluded.provider, "
                            "native = excluded.native, response = excluded.response, "
                            "input_items = excluded.input_items, context = excluded.context, "
                            "created = excluded.created"), row)
            if purge:
                cur.execute(sql("delete from responses where created < ?"), (now - self._ttl,))

        await self._run(body)
        if purge:
            self._purged = now

    async def get(self, response_id: str) -> StoredResponse | None:
        sql, cutoff = self._db.sql, time.time() - self._ttl

        def body(cur: Cursor) -> Any:
            cur.execute(sql(f"select {_COLUMNS} from responses where id = ? and created >= ?"),
                        (response_id, cutoff))
            return cur.fetchone()

        row = await self._run(body)
        if row is None:
            return None
        rid, provider, native, resp, items, ctx, created = row
        return StoredResponse(rid, provider, bool(native), orjson.loads(resp) if resp else None,
                              orjson.loads(items), orjson.loads(ctx), created)

    async def delete(self, response_id: str) -> bool:
        sql, cutoff = self._db.sql, time.time() - self._ttl

        def body(cur: Cursor) -> bool:
            cur.execute(sql("delete from responses where id = ? and created >= ?"), (response_id, cutoff))
            found = cur.rowcount > 0
            if not found:  # an expired row is gone for the caller already; drop it too
                cur.execute(sql("delete from responses where id = ?"), (response_id,))
            return found

        return bool(await self._run(body))

    async def aclose(self) -> None:
        if self._owns_db:
            await self._db.aclose()



def open_response_store(cfg: StoreConfig, database: Database, limits_redis_url: str | None = None) -> ResponseStore:
    """The configured backend; ``database`` is the gateway's shared one (``database.url``)."""
    if cfg.responses_path == ":memory:" or cfg.backend == "memory":
        return MemoryResponseStore(ttl_seconds=cfg.ttl_seconds)
    if cfg.backend == "redis":
        from trigate.store.redis_responses import RedisResponseStore

        url = cfg.redis_url or limits_redis_url
        assert url, "config validation requires store.redis_url or limits.redis_url"
        return RedisResponseStore(url, ttl_seconds=cfg.ttl_seconds)
    if cfg.responses_path:
        return DatabaseResponseStore(Database.open(cfg.responses_path), cfg.ttl_seconds, owns_db=True)
    return DatabaseResponseStore(database, cfg.ttl_seconds)
