#!/usr/bin/env python3
"""What spend-budget checks add to a request: one gateway process, one fake-upstream process, two keys
that differ only in having a budget (large enough never to refuse), non-streamed chat completions at a
fixed concurrency, the keys interleaved round by round; median and p99 latency per key, and the ratio.

    python scripts/bench_budget.py                      # memory backend
    python scripts/bench_budget.py --redis              # budgets in Redis (needs redis-server on PATH)
    python scripts/bench_budget.py --rounds 5 --requests 400 --concurrency 8
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
import yaml
from bench_lib.procs import free_port, wait_up  # scripts/ is on the path: these run as scripts

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def config(gw_port: int, mock_url: str, workdir: Path, redis_url: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": gw_port},
        "server": {"access_log": False},
        # "limited": a rate limit instead of a budget, for comparison (in Redis, one script per request)
        "auth": {"keys": [{"id": "plain", "key": "sk-plain"},
                          {"id": "budgeted", "key": "sk-budgeted", "budget": {"usd": 1e9, "window": "monthly"}},
                          {"id": "limited", "key": "sk-limited", "rpm": 10**9}]},
        "providers": {"up": {"kind": "openai", "base_url": f"{mock_url}/v1", "api_key": "unused"}},
        "models": [{"name": "gpt-4o-mini", "provider": "up"}],
        "observability": {"prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}},
        "database": {"url": str(workdir / "bench.sqlite3")},
        "store": {"responses_path": ":memory:"},
    }
    if redis_url:
        cfg["limits"] = {"backend": "redis", "redis_url": redis_url}
    return cfg


async def run_round(url: str, key: str, requests: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    todo = iter(range(requests))
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_keepalive_connections=concurrency), timeout=30) as client:

        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                r = await client.post("/v1/chat/completions", json=BODY)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise SystemExit(f"{key}: HTTP {r.status_code}: {r.text[:200]}")

        async with trio.open_nursery() as n:
            for _ in range(concurrency):
                n.start_soon(worker)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=300, help="requests per key per round")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--redis", action="store_true", help="limits.backend redis (budget counters in Redis)")
    args = p.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="trigate-bench-budget-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_url = None
        if args.redis:
            binary = shutil.which("redis-server")
            if binary is None:
                raise SystemExit("--redis needs redis-server on the PATH")
            rport = free_port()
            procs.append(subprocess.Popen([binary, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no"], stdout=subprocess.DEVNULL))
            redis_url = f"redis://127.0.0.1:{rport}/0"
            time.sleep(0.3)
        mport, gport = free_port(), free_port()
        mock = subprocess.Popen([sys.executable, "-m", "trigate.cli", "mock", "--port", str(mport)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(mock)
        wait_up(f"http://127.0.0.1:{mport}/_mock/requests", mock)
        cfg_path = workdir / "gw.yaml"
        cfg_path.write_text(yaml.safe_dump(config(gport, f"http://127.0.0.1:{mport}", workdir, redis_url)))
        with (workdir / "gw.log").open("wb") as logf:
            gw = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--config", str(cfg_path)],
                                  stdout=logf, stderr=logf)
        procs.append(gw)
        url = f"http://127.0.0.1:{gport}"
        wait_up(url + "/health", gw)
        results: dict[str, list[float]] = {"sk-plain": [], "sk-budgeted": [], "sk-limited": []}
        medians: dict[str, list[float]] = {k: [] for k in results}
        for key in results:  # warm-up: connections, price lookups, the budget counter's first read
            trio.run(run_round, url, key, 50, args.concurrency)
        for r in range(args.rounds):
            order = list(results)[r % 3:] + list(results)[:r % 3]  # each key first in turn
            for key in order:
                lat = trio.run(run_round, url, key, args.requests, args.concurrency)
                results[key] += lat
                medians[key].append(statistics.median(lat))
        backend = "redis" if args.redis else "memory"
        print(f"backend={backend} rounds={args.rounds} requests/key/round={args.requests} "
              f"concurrency={args.concurrency}")
        for key, lat in results.items():
            print(f"  {key:12s} median {statistics.median(lat) * 1000:.3f} ms  p99 {pct(lat, 0.99) * 1000:.3f} ms  "
                  f"(median of round medians {statistics.median(medians[key]) * 1000:.3f} ms)")
        plain, budgeted = statistics.median(results["sk-plain"]), statistics.median(results["sk-budgeted"])
        limited = statistics.median(results["sk-limited"])
        print(f"  budgeted/plain median ratio {budgeted / plain:.3f}  added {(budgeted - plain) * 1000:+.3f} ms")
        print(f"  (rpm-limited/plain {limited / plain:.3f}  added {(limited - plain) * 1000:+.3f} ms)")
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
