"""Durable usage: one row per finished request in ``usage_events``, written off the request path.

``Telemetry.finish`` turns a finished Exchange into a row and ``UsageWriter.offer`` puts it in a bounded
buffer without waiting; one service task takes up to ``batch_rows`` rows (or what came within
``flush_interval``) and writes them in one transaction. A slow or unreachable database only makes that
task retry the same batch with backoff while new rows queue up; once the buffer is full further rows are
dropped and counted, so requests never wait on the database and memory stays bounded. A row is durable
once its batch committed: within about ``flush_interval`` (plus the write) of the request's end.

``UsageStore`` holds the SQL: the table, the /admin/usage report, the export pages, and
``spend_since`` for budgets.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import trio
from attrs import define

from trigate.store.sql import Cursor, Database, DatabaseError, Row

if TYPE_CHECKING:
    from trigate.observability.metrics import Metrics
    from trigate.telemetry import Exchange

log = logging.getLogger("trigate.usage")

BUFFER_ROWS = 10_000
BATCH_ROWS = 500
FLUSH_INTERVAL = 0.1
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
FLUSH_WAIT = 2.0  # how long /admin/usage waits for this process's rows before reading
SHUTDOWN_WAIT = 10.0  # how long shutdown waits for the last rows (the database may be down)
EXPORT_PAGE_ROWS = 1000

# In row order. ``model_label`` is the served model as the metrics label it (bounded, canonical price-table
# name), which is what the report groups by; ``error`` is set for a request that failed (also mid-stream).
COLUMNS = ("ts", "request_id", "key_id", "team", "api", "client_format", "provider", "model", "upstream_model",
           "model_label", "status", "error", "stream", "input_tokens", "output_tokens", "cached_tokens",
           "cache_write_tokens", "reasoning_tokens", "cost_usd", "duration_ms")

_INSERT = f"insert into usage_events ({', '.join(COLUMNS)}) values ({', '.join('?' * len(COLUMNS))})"


def row_from_exchange(ex: Exchange, model_label: str, failed: bool, ts: float) -> Row:
    """The usage row of a finished request (``ts``: when it ended, Unix seconds)."""
    u = ex.usage
    end = ex.ended if ex.ended is not None else ex.started
    error = ex.error or (str(ex.status) if failed else None)
    tokens = (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
              u.reasoning_tokens or 0) if u is not None else (0, 0, 0, 0, 0)
    return (ts, ex.request_id, ex.key_id, ex.team, ex.api, ex.client_format, ex.provider, ex.model,
            ex.upstream_model, model_label, ex.status, error, 1 if ex.stream else 0, *tokens,
            ex.cost_usd or 0.0, round((end - ex.started) * 1000, 2))


# -- the report's shape (/admin/usage) -------------------------------------------------------------


@define
class Totals:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Totals) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cost_usd += other.cost_usd

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens, "reasoning_tokens": self.reasoning_tokens,
                "cost_usd": round(self.cost_usd, 10)}


Table = dict[str, dict[str, Totals]]  # key id -> model -> totals


def report(table: Table) -> dict[str, Any]:
    """The /admin/usage body: per key, its totals and the same per model; plus grand totals."""
    keys: dict[str, Any] = {}
    grand = Totals()
    for key_id in sorted(table):
        key_total = Totals()
        models = {}
        for model in sorted(table[key_id]):
            t = table[key_id][model]
            key_total.add(t)
            models[model] = t.as_dict()
        grand.add(key_total)
        keys[key_id] = {**key_total.as_dict(), "models": models}
    return {"keys": keys, "totals": grand.as_dict()}


@define(frozen=True)
class UsageFilter:
    since: float | None = None
    until: float | None = None  # exclusive
    key_id: str | None = None
    team: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for clause, value in (("ts >= ?", self.since), ("ts < ?", self.until), ("key_id = ?", self.key_id),
                              ("team = ?", self.team)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return (" and ".join(clauses) or "1 = 1"), params


# -- SQL --------------------------------------------------------------------------------------------


class UsageStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._ready = False

    async def ensure(self) -> None:
        """Create the table and its indexes once (each statement is idempotent)."""
        if self._ready:
            return
        db = self.db
        ident = "bigint generated by default as identity primary key" if db.dialect == "postgres" \
            else "integer primary key"
        table = (f"create table if not exists usage_events (id {ident}, ts {db.real} not null, request_id text, "
                 "key_id text not null, team text, api text not null, client_format text, provider text, "
                 "model text, upstream_model text, model_label text not null, status integer not null, "
                 "error text, stream integer not null, input_tokens bigint not null, output_tokens bigint not null, "
                 "cached_tokens bigint not null, cache_write_tokens bigint not null, "
                 f"reasoning_tokens bigint not null, cost_usd {db.real} not null, duration_ms {db.real})")
        statements = [table,
                      "create index if not exists usage_events_ts on usage_events (ts)",
                      "create index if not exists usage_events_key_ts on usage_events (key_id, ts)",
                      "create index if not exists usage_events_team_ts on usage_events (team, ts)"]

        def body(cur: Cursor) -> None:
            for s in statements:
                cur.execute(s)

        try:
            await db.run(body)
        except DatabaseError:
            # two replicas creating the same table at once: PostgreSQL lets one of them fail; the other's
            # table is there now, so a second try passes (a database that is down fails again)
            await db.run(body)
        self._ready = True

    async def insert(self, rows: Sequence[Row]) -> None:
        """One transaction for all of ``rows``."""
        await self.ensure()
        await self.db.executemany(_INSERT, rows)

    async def table(self, f: UsageFilter) -> Table:
        await self.ensure()
        where, params = f.where()
        found = await self.db.fetchall(
            "select key_id, model_label, count(*), "
            "sum(case when status >= 400 or error is not null then 1 else 0 end), "
            "sum(input_tokens), sum(output_tokens), sum(cached_tokens), sum(cache_write_tokens), "
            f"sum(reasoning_tokens), sum(cost_usd) from usage_events where {where} "
            "group by key_id, model_label", params)
        out: Table = {}
        for key_id, label, *n in found:
            # PostgreSQL sums integers as numeric (Decimal): back to int/float here
            out.setdefault(key_id, {})[label] = Totals(*(int(v) for v in n[:7]), cost_usd=float(n[7]))
        return out

    async def spend_since(self, scope: str, name: str, since: float) -> float:
        """USD spent by a key (``scope="key"``) or a team (``"team"``) from ``since`` on, as written so far."""
        column = {"key": "key_id", "team": "team"}[scope]
        await self.ensure()
        found = await self.db.fetchall(
            f"select coalesce(sum(cost_usd), 0) from usage_events where {column} = ? and ts >= ?", (name, since))
        return float(found[0][0])

    async def pages(self, f: UsageFilter, page_rows: int = EXPORT_PAGE_ROWS) -> AsyncIterator[list[Row]]:
        """The matching rows in write order (``id``, then COLUMNS), a page at a time: memory stays bounded
        however many there are."""
        await self.ensure()
        where, params = f.where()
        after = 0
        while True:
            page = await self.db.fetchall(
                f"select id, {', '.join(COLUMNS)} from usage_events where id > ? and {where} "
                f"order by id limit {int(page_rows)}", [after, *params])
            if not page:
                return
            yield page
            if len(page) < page_rows:
                return
            after = page[-1][0]


# -- the writer ---------------------------------------------------------------------------------------


class UsageWriter:
    """The bounded buffer and the one task that empties it into the database."""

    def __init__(self, store: UsageStore, *, metrics: Metrics | None = None, buffer_rows: int = BUFFER_ROWS,
                 batch_rows: int = BATCH_ROWS, flush_interval: float = FLUSH_INTERVAL,
                 flush_wait: float = FLUSH_WAIT, shutdown_wait: float = SHUTDOWN_WAIT) -> None:
        self.store = store
        self.flush_wait, self.shutdown_wait = flush_wait, shutdown_wait
        self.batch_rows = batch_rows
        self.flush_interval = flush_interval
        self._metrics = metrics
        self._send, self._receive = trio.open_memory_channel[Row](buffer_rows)
        self.offered = 0
        self.written = 0
        self.dropped = 0
        self.batches = 0  # transactions committed
        self._overflowing = False  # a drop was logged; the next one of this outage is not
        self._failing = False  # a write failure was logged
        self._progress = trio.Event()
        self._done = trio.Event()
        self._running = False
        self._closing = trio.Event()  # aclose() began: write what is queued without waiting out intervals
        self._scope = trio.CancelScope()

    def offer(self, row: Row) -> bool:
        """Queue ``row`` without waiting; False (and counted) when the buffer is full or closed."""
        try:
            self._send.send_nowait(row)
        except (trio.WouldBlock, trio.ClosedResourceError) as exc:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.usage_dropped.inc()
            if isinstance(exc, trio.WouldBlock) and not self._overflowing:
                self._overflowing = True
                log.warning("usage buffer full (%d rows waiting for the database): dropping usage rows until "
                            "it drains (counted in trigate_usage_rows_dropped_total)",
                            self._send.statistics().max_buffer_size)
            return False
        self.offered += 1
        return True

    @property
    def pending(self) -> int:
        """Rows queued and not yet written (the batch in hand included)."""
        return self.offered - self.written

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until ``aclose``; then what is left, and return."""
        self._running = True
        task_status.started()
        try:
            with self._scope:
                async with self._receive:
                    while True:
                        batch = await self._collect()
                        if not batch:
                            return
                        await self._write(batch)
        finally:
            self._done.set()

    async def _collect(self) -> list[Row]:
        """Up to ``batch_rows`` rows: waits for the first, then ``flush_interval`` for more unless a whole
        batch is already waiting. Empty only once the buffer is closed and drained.

        It sleeps the interval out rather than waiting on each row, so the writer wakes once per batch,
        not once per request."""
        batch: list[Row] = []
        try:
            batch.append(await self._receive.receive())
        except trio.EndOfChannel:
            return batch
        if self._receive.statistics().current_buffer_used < self.batch_rows - 1:
            with trio.move_on_after(self.flush_interval):
                await self._closing.wait()
        while len(batch) < self.batch_rows:
            try:
                batch.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return batch

    async def _write(self, batch: list[Row]) -> None:
        """Commit ``batch``, retrying with backoff for as long as the database fails."""
        delay = RETRY_FIRST
        while True:
            try:
                await self.store.insert(batch)
                break
            except DatabaseError as exc:
                if not self._failing:
                    self._failing = True
                    log.warning("usage rows cannot be written (%s); retrying, rows queue up to the buffer's "
                                "bound meanwhile", exc)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        if self._failing:
            self._failing = False
            log.warning("usage rows are written again (%d queued)", self.pending - len(batch))
        self.written += len(batch)
        self.batches += 1
        if self._metrics is not None:
            self._metrics.usage_written.inc(len(batch))
        stats = self._send.statistics()
        # the outage that made rows drop is over once the buffer is half empty again
        self._overflowing = self._overflowing and stats.current_buffer_used > stats.max_buffer_size // 2
        self._progress.set()
        self._progress = trio.Event()

    async def flush(self) -> bool:
        """Wait until every row offered so far is written; False if ``flush_wait`` ran out first."""
        target = self.offered
        with trio.move_on_after(self.flush_wait):
            while self._running and not self._done.is_set() and self.written < target:
                await self._progress.wait()
            return self.written >= target
        return False

    async def aclose(self) -> None:
        """No more rows; wait (up to ``shutdown_wait``: the database may be down) for the queued ones to be
        written."""
        self._closing.set()
        self._send.close()
        if not self._running:
            return
        with trio.move_on_after(self.shutdown_wait) as scope:
            await self._done.wait()
        if scope.cancelled_caught:
            self._scope.cancel()  # it would retry forever, and the server's nursery would wait for it
            log.warning("usage: %d rows not written at shutdown (the database did not answer)", self.pending)

