"""Trio load generators, run as their own process (pinned apart from the servers):

  open-loop:   requests scheduled at fixed times (``rate`` per second); latency is measured from the
               *scheduled* time, so a server that falls behind is charged for the queueing it causes
               (no coordinated omission).
  closed-loop: ``concurrency`` workers send ``count`` requests back to back; throughput, TTFB,
               total time and SSE events per second.

Usage: python loadgen.py SPEC.json  ->  one JSON object on stdout.
SPEC: {"mode", "host", "port", "request_file", "expect" (bytes the body's tail must contain),
       rate/duration/warmup/max_outstanding (open-loop) or concurrency/count/warmup_count (closed)}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_lib.http1 import Pool
from bench_lib.stats import summary


class Recorder:
    def __init__(self, expect: bytes) -> None:
        self.expect = expect
        self.latency: list[float] = []  # ms
        self.ttfb: list[float] = []
        self.events: list[int] = []
        self.errors = 0
        self.bad = 0
        self.error_kinds: dict[str, int] = {}

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        k = type(exc).__name__
        self.error_kinds[k] = self.error_kinds.get(k, 0) + 1

    def result(self) -> dict[str, Any]:
        return {"latency_ms": summary(self.latency), "ttfb_ms": summary(self.ttfb),
                "events_per_request": summary([float(e) for e in self.events]),
                "ok": len(self.latency), "errors": self.errors, "bad": self.bad, "error_kinds": self.error_kinds}


async def _one(pool: Pool, data: bytes, rec: Recorder | None, t_ref: float) -> None:
    try:
        conn = await pool.get()
    except OSError as exc:
        if rec is not None:
            rec.error(exc)
        return
    try:
        res = await conn.request(data)
    except Exception as exc:
        if rec is not None:
            rec.error(exc)
        try:
            await conn.aclose()
        except Exception:
            pass
        return
    pool.put(conn)
    if rec is None:
        return
    if res.status != 200 or (rec.expect and rec.expect not in res.tail):
        rec.bad += 1
        return
    rec.latency.append((res.end - t_ref) * 1000)
    rec.ttfb.append((res.first_byte - t_ref) * 1000)
    rec.events.append(res.events)


async def open_loop(spec: dict[str, Any], data: bytes) -> dict[str, Any]:
    pool = Pool(spec["host"], spec["port"])
    rate = float(spec["rate"])
    duration = float(spec["duration"])
    warmup = float(spec.get("warmup", 1.0))
    max_out = int(spec.get("max_outstanding", 1024))
    rec = Recorder(spec.get("expect", "").encode())
    outstanding = 0
    peak = 0
    dropped = 0
    late_starts = 0  # the generator itself woke > 1 ms after the scheduled time

    async def run(t_sched: float, measured: bool) -> None:
        nonlocal outstanding
        outstanding += 1
        try:
            await _one(pool, data, rec if measured else None, t_sched)
        finally:
            outstanding -= 1

    n_warm = int(warmup * rate)
    n_total = n_warm + int(duration * rate)
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time() + 0.1
        for i in range(n_total):
            t = t0 + i / rate
            await trio.sleep_until(t)
            if trio.current_time() - t > 0.001:
                late_starts += 1
            if outstanding >= max_out:
                dropped += 1
                continue
            nursery.start_soon(run, t, i >= n_warm)
            peak = max(peak, outstanding + 1)
        t_sent = trio.current_time()
    out = rec.result()
    out.update({"mode": "open", "rate": rate, "duration": duration, "scheduled": n_total - n_warm,
                "dropped": dropped, "peak_outstanding": peak, "connections": pool.opened,
                "generator_late_starts": late_starts, "send_window_s": t_sent - t0})
    await pool.aclose()
    return out


async def closed_loop(spec: dict[str, Any], data: bytes) -> dict[str, Any]:
    pool = Pool(spec["host"], spec["port"])
    conc = int(spec["concurrency"])
    count = int(spec.get("count", 10**9))
    duration = float(spec.get("duration", 1e9))  # stop starting requests after this many seconds
    warm = int(spec.get("warmup_count", conc * 2))
    rec = Recorder(spec.get("expect", "").encode())
    # warm-up: open the connections and let both sides settle
    left = warm

    async def warm_worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await _one(pool, data, None, trio.current_time())

    async with trio.open_nursery() as n:
        for _ in range(conc):
            n.start_soon(warm_worker)
    left = count

    t0 = trio.current_time()
    t_end = t0 + duration

    async def worker() -> None:
        nonlocal left
        while left > 0 and trio.current_time() < t_end:
            left -= 1
            await _one(pool, data, rec, trio.current_time())

    async with trio.open_nursery() as n:
        for _ in range(conc):
            n.start_soon(worker)
    wall = trio.current_time() - t0
    out = rec.result()
    total_events = sum(rec.events)
    out.update({"mode": "closed", "concurrency": conc, "count": len(rec.latency), "wall_s": wall,
                "rps": len(rec.latency) / wall if wall else None,
                "events_per_s": total_events / wall if wall else None, "connections": pool.opened})
    await pool.aclose()
    return out


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    data = Path(spec["request_file"]).read_bytes()
    fn = open_loop if spec["mode"] == "open" else closed_loop
    out = trio.run(fn, spec, data)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
