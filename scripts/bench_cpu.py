#!/usr/bin/env python3
"""CPU time per non-streamed request of ``trigate serve``, for several checkouts in turn.

Each checkout's gateway runs as its own process (``PYTHONPATH`` picks the checkout) in front of one shared
fake upstream, in open mode with a bearer key (as SDK clients send one), and serves the same requests at a
fixed concurrency; the gateway process's own CPU time (user + system, from /proc) is divided by the
requests served. Checkouts alternate round by round, and the median is printed: a number that the
machine's noise moves much less than latency or throughput.

    python scripts/bench_cpu.py /path/to/old-checkout .          # before / after
    python scripts/bench_cpu.py --rounds 5 --requests 4000 A B C
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from bench_lib.procs import free_port, wait_up  # scripts/ is on the path: these run as scripts

BODY = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, n: int, concurrency: int) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer sk-bench"}) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                r = await client.post("/v1/chat/completions", json=BODY)
                r.raise_for_status()

        await asyncio.gather(*(one() for _ in range(n)))


def measure(tree: str, mock_url: str, workdir: Path, requests: int, concurrency: int) -> float:
    """ms of gateway CPU per request for the checkout at ``tree``."""
    port = free_port()
    cfg = {"listen": {"host": "127.0.0.1", "port": port}, "auth": {"open": True},
           "providers": {"mock": {"kind": "openai", "base_url": mock_url + "/v1", "api_key": "sk-upstream"}},
           "models": [{"name": "mock-*", "provider": "mock"}], "store": {"responses_path": ":memory:"}}
    path = workdir / f"gateway-{port}.json"
    path.write_text(json.dumps(cfg))  # JSON is YAML: older checkouts read it too
    env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
    proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--config", str(path)], env=env,
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url + "/health", proc)
        asyncio.run(load(url, max(requests // 10, 100), concurrency))  # warm-up: pools, caches
        before = cpu_seconds(proc.pid)
        asyncio.run(load(url, requests, concurrency))
        return 1000 * (cpu_seconds(proc.pid) - before) / requests
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="+", help="checkout roots (each with a trigate/ package)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=2000, help="requests per checkout per round")
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="trigate-bench-cpu-") as tmp:
        workdir = Path(tmp)
        mock_port = free_port()
        mock = subprocess.Popen([sys.executable, "-m", "trigate.cli", "mock", "--port", str(mock_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mock_url = f"http://127.0.0.1:{mock_port}"
        try:
            wait_up(mock_url + "/_mock/requests", mock)
            results: dict[str, list[float]] = {t: [] for t in args.trees}
            for _ in range(args.rounds):
                for tree in args.trees:
                    results[tree].append(measure(tree, mock_url, workdir, args.requests, args.concurrency))
        finally:
            mock.terminate()
            mock.wait(10)
    first = statistics.median(results[args.trees[0]])
    for tree, values in results.items():
        med = statistics.median(values)
        print(f"{tree:40s} median {med:.3f} ms CPU/request  ratio {med / first:.3f}  "
              f"rounds {' '.join(f'{v:.3f}' for v in values)}")


if __name__ == "__main__":
    main()
