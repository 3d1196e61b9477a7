"""Per-key usage accounting behind ``GET /admin/usage``.

Totals per (key id, model) since start, plus per-minute buckets for the last day so a report can
start at ``?since=``. Fed from the same finished Exchange as the metrics and the access log, so the
three cannot disagree.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from attrs import define

from trigate.translate.ir import Usage

BUCKET_SECONDS = 60
RETENTION_SECONDS = 24 * 3600


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


def entry(usage: Usage | None, cost: float | None, error: bool) -> Totals:
    t = Totals(requests=1, errors=1 if error else 0, cost_usd=cost or 0.0)
    if usage is not None:
        t.input_tokens, t.output_tokens = usage.input_tokens, usage.output_tokens
        t.cached_tokens, t.cache_write_tokens = usage.cache_read_tokens, usage.cache_write_tokens
        t.reasoning_tokens = usage.reasoning_tokens or 0
    return t


Table = dict[str, dict[str, Totals]]  # key id -> model -> totals


def _merge(into: Table, key_id: str, model: str, t: Totals) -> None:
    per_key = into.setdefault(key_id, {})
    found = per_key.get(model)
    if found is None:
        per_key[model] = found = Totals()
    found.add(t)


class Ledger:
    def __init__(self, retention: float = RETENTION_SECONDS) -> None:
        self.started = time.time()
        self.retention = retention
        self.totals: Table = {}
        self._buckets: OrderedDict[int, Table] = OrderedDict()

    def record(self, key_id: str, model: str, t: Totals, at: float | None = None) -> None:
        at = time.time() if at is None else at
        _merge(self.totals, key_id, model, t)
        minute = int(at // BUCKET_SECONDS)
        bucket = self._buckets.get(minute)
        if bucket is None:
            bucket = self._buckets[minute] = {}
            self._expire(minute)
        _merge(bucket, key_id, model, t)

    def _expire(self, now_minute: int) -> None:
        oldest = now_minute - int(self.retention // BUCKET_SECONDS)
        while self._buckets:
            first = next(iter(self._buckets))
            if first >= oldest:
                break
            del self._buckets[first]

    def oldest(self) -> float:
        """The earliest time a ``since`` report is complete from."""
        if not self._buckets or self.started >= time.time() - self.retention:
            return self.started
        return next(iter(self._buckets)) * BUCKET_SECONDS

    def table(self, since: float | None = None) -> Table:
        if since is None or since <= self.started:
            return self.totals
        first = int(since // BUCKET_SECONDS)
        out: Table = {}
        for minute, bucket in self._buckets.items():
            if minute < first:
                continue
            for key_id, models in bucket.items():
                for model, t in models.items():
                    _merge(out, key_id, model, t)
        return out


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
