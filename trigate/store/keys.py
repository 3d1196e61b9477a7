"""Runtime client keys, created and changed through the admin API and kept in the gateway's database.

Only a key's SHA-256 digest is stored; the key itself is shown once, when it is made (or rotated).
Every change stamps ``updated_at`` with the database's own clock, so replicas whose clocks differ
still see each other's changes in order when they poll for them (``changed_since``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

import trio
from attrs import define, evolve

from trigate.config import BudgetSpec, ClientKey
from trigate.store.sql import Cursor, Database, DatabaseError, Row

KEY_PREFIX = "sk-tg-"
TABLE = "gateway_keys"
_COLUMNS = ("id, key_sha256, previous_sha256, previous_until, models, providers, rpm, tpm, max_concurrent, "
            "metadata, team, budget_usd, budget_window, expires_at, revoked_at, created_at, updated_at")


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@define(frozen=True)
class KeyRecord:
    """One runtime key as stored: its settings (a ClientKey carrying the digest, never the key) and
    its life: expiry, revocation, and the secret it replaced while that one's grace period lasts."""

    spec: ClientKey
    created_at: float
    updated_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    previous_sha256: str | None = None  # the secret before the last rotation
    previous_until: float | None = None  # ... which works until then

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def key_sha256(self) -> str:
        return self.spec.key_sha256 or ""

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def digests(self) -> tuple[str, ...]:
        return (self.key_sha256, self.previous_sha256) if self.previous_sha256 else (self.key_sha256,)


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _record(row: Row) -> KeyRecord:
    (key_id, sha, prev_sha, prev_until, models, providers, rpm, tpm, conc, metadata, _team, budget_usd,
     budget_window, expires_at, revoked_at, created_at, updated_at) = row
    budget = BudgetSpec(usd=float(budget_usd), window=budget_window) if budget_usd is not None else None
    spec = ClientKey(id=key_id, key_sha256=sha, models=json.loads(models) if models is not None else None,
                     providers=json.loads(providers) if providers is not None else None, rpm=rpm, tpm=tpm,
                     max_concurrent=conc, metadata=json.loads(metadata or "{}"), budget=budget)
    return KeyRecord(spec=spec, created_at=float(created_at), updated_at=float(updated_at),
                     expires_at=_float(expires_at), revoked_at=_float(revoked_at), previous_sha256=prev_sha,
                     previous_until=_float(prev_until))


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _settings(spec: ClientKey) -> tuple[Any, ...]:
    b = spec.budget
    return (_json_or_null(spec.models), _json_or_null(spec.providers), spec.rpm, spec.tpm, spec.max_concurrent,
            json.dumps(spec.metadata), spec.metadata.get("team"), b.usd if b else None, b.window if b else None)


class KeyStore:
    """The ``gateway_keys`` table. Every method may raise DatabaseError."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # the database's clock, in Unix seconds, as a SQL expression
        self.now_sql = ("extract(epoch from clock_timestamp())::double precision" if db.dialect == "postgres"
                        else "((julianday('now') - 2440587.5) * 86400.0)")
        self._schema_lock = trio.Lock()
        self._schema_ready = False

    async def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            real = self.db.real
            statements = [
                f"create table if not exists {TABLE} (id text primary key, key_sha256 text not null unique, "
                f"previous_sha256 text, previous_until {real}, models text, providers text, rpm integer, "
                f"tpm integer, max_concurrent integer, metadata text not null, team text, budget_usd {real}, "
                f"budget_window text, expires_at {real}, revoked_at {real}, created_at {real} not null, "
                f"updated_at {real} not null)",
                f"create index if not exists {TABLE}_updated on {TABLE} (updated_at)",
                f"create index if not exists {TABLE}_previous on {TABLE} (previous_sha256)",
                f"create index if not exists {TABLE}_team on {TABLE} (team)",
            ]

            def body(cur: Cursor) -> None:
                for s in statements:
                    cur.execute(s)

            try:
                await self.db.run(body)
            except DatabaseError:
                # two replicas creating the tables at once: PostgreSQL lets one of them fail; the second try
                # finds them made
                await trio.sleep(0.1)
                await self.db.run(body)
            self._schema_ready = True

    async def now(self) -> float:
        await self.ensure_schema()
        rows = await self.db.fetchall(f"select {self.now_sql}")
        return float(rows[0][0])

    async def create(self, spec: ClientKey, *, expires_at: float | None) -> KeyRecord:
        """Insert ``spec`` (its key_sha256 set). Raises KeyExists when the id is taken."""
        await self.ensure_schema()
        now = self.now_sql

        def body(cur: Cursor) -> list[Row]:
            cur.execute(self.db.sql(f"select 1 from {TABLE} where id = ?"), (spec.id,))
            if cur.fetchone() is not None:
                raise KeyExists(spec.id)
            cur.execute(self.db.sql(f"insert into {TABLE} ({_COLUMNS}) values (?, ?, null, null, ?, ?, ?, ?, ?, ?, "
                                    f"?, ?, ?, ?, null, {now}, {now})"),
                        (spec.id, spec.key_sha256, *_settings(spec), expires_at))
            return _select(self.db, cur, "id = ?", (spec.id,))

        try:
            rows = await self.db.run(body)
        except DatabaseError:
            # the other replica's insert of the same id won the race
            if await self.get(spec.id) is not None:
                raise KeyExists(spec.id) from None
            raise
        return _record(rows[0])

    async def get(self, key_id: str) -> KeyRecord | None:
        await self.ensure_schema()
        rows = await self.db.fetchall(f"select {_COLUMNS} from {TABLE} where id = ?", (key_id,))
        return _record(rows[0]) if rows else None

    async def find(self, sha256: str) -> KeyRecord | None:
        """The key whose current secret, or whose previous one (after a rotation), has this digest."""
        await self.ensure_schema()
        rows = await self.db.fetchall(f"select {_COLUMNS} from {TABLE} where key_sha256 = ? or previous_sha256 = ?",
                                      (sha256, sha256))
        return _record(rows[0]) if rows else None

    async def list(self, *, team: str | None = None) -> list[KeyRecord]:
        await self.ensure_schema()
        where, params = ("where team = ?", (team,)) if team is not None else ("", ())
        rows = await self.db.fetchall(f"select {_COLUMNS} from {TABLE} {where} order by created_at, id", params)
        return [_record(r) for r in rows]

    async def changed_since(self, since: float) -> tuple[float, list[KeyRecord]]:
        """The database's time now, and the keys changed after ``since`` (a time of the database's)."""
        await self.ensure_schema()

        def body(cur: Cursor) -> tuple[float, list[Row]]:
            cur.execute(f"select {self.now_sql}")
            (now,) = cur.fetchone() or (0.0,)
            return float(now), _select(self.db, cur, "updated_at > ?", (since,))

        now, rows = await self.db.run(body)
        return now, [_record(r) for r in rows]

    async def update(self, record: KeyRecord, spec: ClientKey, *, expires_at: float | None) -> KeyRecord | None:
        """Replace the settings of ``record`` (not its secret); None if it was removed meanwhile."""
        await self.ensure_schema()
        return await self._change(record.id, "models = ?, providers = ?, rpm = ?, tpm = ?, max_concurrent = ?, "
                                  "metadata = ?, team = ?, budget_usd = ?, budget_window = ?, expires_at = ?",
                                  (*_settings(spec), expires_at))

    async def rotate(self, key_id: str, new_sha256: str, grace_seconds: float) -> KeyRecord | None:
        """A new secret; the current one keeps working for ``grace_seconds`` (0: stops at once)."""
        await self.ensure_schema()
        if grace_seconds > 0:
            return await self._change(key_id, f"previous_sha256 = key_sha256, previous_until = {self.now_sql} + ?, "
                                      "key_sha256 = ?", (grace_seconds, new_sha256))
        return await self._change(key_id, "previous_sha256 = null, previous_until = null, key_sha256 = ?",
                                  (new_sha256,))

    async def revoke(self, key_id: str) -> KeyRecord | None:
        await self.ensure_schema()
        return await self._change(key_id, f"revoked_at = coalesce(revoked_at, {self.now_sql})", ())

    async def _change(self, key_id: str, assignments: str, params: Sequence[Any]) -> KeyRecord | None:
        def body(cur: Cursor) -> list[Row]:
            cur.execute(self.db.sql(f"update {TABLE} set {assignments}, updated_at = {self.now_sql} where id = ?"),
                        (*params, key_id))
            return _select(self.db, cur, "id = ?", (key_id,))

        rows = await self.db.run(body)
        return _record(rows[0]) if rows else None


def _select(db: Database, cur: Cursor, where: str, params: Sequence[Any]) -> list[Row]:
    cur.execute(db.sql(f"select {_COLUMNS} from {TABLE} where {where}"), params)
    return list(cur.fetchall())


class KeyExists(Exception):
    """A runtime key with this id exists already."""


def with_digest(spec: ClientKey, sha256: str) -> ClientKey:
    return evolve(spec, key=None, key_sha256=sha256)
