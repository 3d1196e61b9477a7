#!/usr/bin/env python3
"""Usage rows/s through the UsageWriter: ``rows`` rows offered (the cost a request pays), then written in
batches by the writer task (the database's side), into an SQLite file always and into PostgreSQL when a
URL is given. Prints the median of ``--runs`` runs.

    python scripts/bench_usage.py [--rows 100000] [--runs 3] [--postgres postgresql://user@host:port/db]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trio

from trigate.store.sql import Database
from trigate.store.usage import BATCH_ROWS, COLUMNS, Row, UsageStore, UsageWriter


def make_rows(n: int) -> list[Row]:
    now = time.time()
    sample = {"ts": now, "request_id": "", "key_id": "bench", "team": "t", "api": "chat",
              "client_format": "openai_chat", "provider": "openai", "model": "gpt-4o-mini",
              "upstream_model": "gpt-4o-mini-2024-07-18", "model_label": "gpt-4o-mini", "status": 200, "error": None,
              "stream": 1, "input_tokens": 812, "output_tokens": 97, "cached_tokens": 0, "cache_write_tokens": 0,
              "reasoning_tokens": 0, "cost_usd": 0.0001801, "duration_ms": 423.1}
    rows = []
    for i in range(n):
        sample["request_id"], sample["key_id"] = f"req-{i:08d}", f"key-{i % 50}"
        rows.append(tuple(sample[c] for c in COLUMNS))
    return rows


async def one_run(url: str, rows: list[Row], batch_rows: int) -> tuple[float, float]:
    """(offers per second, rows written per second)."""
    db = Database.open(url)
    try:
        store = UsageStore(db)
        await store.ensure()
        await db.execute("delete from usage_events")
        writer = UsageWriter(store, buffer_rows=len(rows), batch_rows=batch_rows, flush_wait=600)
        started = time.perf_counter()
        for r in rows:
            writer.offer(r)
        offered = time.perf_counter() - started
        async with trio.open_nursery() as nursery:
            started = time.perf_counter()
            await nursery.start(writer.run)
            await writer.flush()
            written = time.perf_counter() - started
            await writer.aclose()
        assert writer.written == len(rows) and writer.dropped == 0
        found = (await db.fetchall("select count(*) from usage_events"))[0][0]
        assert found == len(rows), found
        return len(rows) / offered, len(rows) / written
    finally:
        await db.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=BATCH_ROWS)
    ap.add_argument("--postgres", help="a PostgreSQL URL to measure too (its usage_events table is emptied)")
    args = ap.parse_args()
    rows = make_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", str(Path(tmp) / "bench.sqlite3"))]
        if args.postgres:
            targets.append(("postgres", args.postgres))
        for name, url in targets:
            results = [await one_run(url, rows, args.batch_rows) for _ in range(args.runs)]
            offers = statistics.median(r[0] for r in results)
            writes = statistics.median(r[1] for r in results)
            print(f"{name:<9} {args.rows} rows, batches of {args.batch_rows}, median of {args.runs}: "
                  f"written {writes:,.0f} rows/s; offer() {offers:,.0f} rows/s ({1e9 / offers:,.0f} ns/row)")


if __name__ == "__main__":
    trio.run(main)
