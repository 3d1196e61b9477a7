#!/usr/bin/env python3
"""Runtime keys, measured: keys created per second through the admin API, and what authenticating with a
runtime key adds to a request compared with a config key (medians of ``GET /v1/models``, which does
nothing but authenticate and answer from the config).

    python scripts/bench_keys.py [-n 500] [--concurrency 8] [--database-url postgresql://...]

Runs two ``trigate serve`` processes sharing one database (SQLite in a temporary directory unless
--database-url) on loopback ports: the second times a key's first use on a replica that did not make it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio
import yaml
from bench_lib.procs import free_port, wait_up  # scripts/ is on the path: these run as scripts

ADMIN = "sk-bench-admin"
CONFIG_KEY = "sk-bench-config-key"


def start_gateway(workdir: Path, database_url: str, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = {"listen": {"host": "127.0.0.1", "port": port}, "database": {"url": database_url},
           "store": {"responses_path": ":memory:"}, "server": {"access_log": False},
           "auth": {"keys": [{"id": "config", "key": CONFIG_KEY}], "admin_keys": [{"id": "ops", "key": ADMIN}]},
           "providers": {"mock": {"kind": "mock"}}, "models": [{"name": "mock-gpt", "provider": "mock"}]}
    path = workdir / f"bench-keys-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    log = workdir / f"bench-keys-{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--config", str(path)], cwd=workdir,
                                env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/health", proc, log=log)
    return proc, url


async def create_keys(client: httpx.AsyncClient, n: int, concurrency: int) -> tuple[list[str], float]:
    secrets: list[str] = []
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            r = await client.post("/admin/keys", json={"id": f"bench-{i}", "rpm": 1000, "metadata": {"team": "b"}},
                                  headers={"authorization": f"Bearer {ADMIN}"})
            r.raise_for_status()
            secrets.append(r.json()["key"])

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return secrets, time.perf_counter() - start


async def latencies(client: httpx.AsyncClient, keys: list[str]) -> list[float]:
    out = []
    for key in keys:
        start = time.perf_counter()
        r = await client.get("/v1/models", headers={"authorization": f"Bearer {key}"})
        out.append(time.perf_counter() - start)
        r.raise_for_status()
    return out


async def bench(url: str, n: int, concurrency: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await latencies(client, [CONFIG_KEY] * 50)  # warm the connection and the handlers
        secrets, took = await create_keys(client, n, concurrency)
        print(f"created {n} keys in {took:.2f} s: {n / took:.0f} keys/s (concurrency {concurrency})")
        # Keys made on this replica are cached as they are made; a restart-cold key is asked from the
        # database once. Interleaving config and runtime keys keeps drift (GC, warm-up) out of the difference.
        config, runtime = [], []
        for _ in range(3):
            for secret in secrets:
                config += await latencies(client, [CONFIG_KEY])
                runtime += await latencies(client, [secret])
        med_c, med_r = statistics.median(config), statistics.median(runtime)
        print(f"GET /v1/models median: config key {med_c * 1e3:.3f} ms, runtime key (cached) {med_r * 1e3:.3f} ms, "
              f"added {(med_r - med_c) * 1e6:+.0f} us over {len(runtime)} requests each")


async def other_replica(url_a: str, url_b: str, n: int) -> None:
    """First use on a replica that did not make the key: a cache miss asked from the database (unless
    that replica's poller read the new row first)."""
    async with httpx.AsyncClient(base_url=url_a, timeout=30) as a, httpx.AsyncClient(base_url=url_b, timeout=30) as b:
        await latencies(b, [CONFIG_KEY] * 50)
        first, config = [], []
        for i in range(n):
            r = await a.post("/admin/keys", json={"id": f"other-{i}"}, headers={"authorization": f"Bearer {ADMIN}"})
            r.raise_for_status()
            config += await latencies(b, [CONFIG_KEY])
            first += await latencies(b, [r.json()["key"]])
        print(f"first use on the other replica: median {statistics.median(first) * 1e3:.3f} ms "
              f"(config key meanwhile {statistics.median(config) * 1e3:.3f} ms) over {n} keys")


async def in_process(workdir: Path, rounds: int = 100_000) -> None:
    """KeyRing.authenticate alone, no HTTP around it: the number the HTTP medians are too noisy to show."""
    from trigate.config import ClientKey, parse_config
    from trigate.policies.auth import KeyRing, RuntimeKeys, digest
    from trigate.store.keys import KeyStore, new_secret
    from trigate.store.sql import Database

    db = Database.open(str(workdir / "micro.sqlite3"))
    runtime = RuntimeKeys(KeyStore(db))
    ring = KeyRing(parse_config({"auth": {"keys": [{"id": "config", "key": CONFIG_KEY}]}}, env={}).auth, runtime)
    secret = new_secret()
    runtime.put(await runtime.store.create(ClientKey(id="rt", key_sha256=digest(secret)), expires_at=None))
    took = {}
    for name, credential in (("config key", CONFIG_KEY), ("runtime key (cached)", secret)):
        start = time.perf_counter()
        for _ in range(rounds):
            await ring.authenticate(credential)
        took[name] = (time.perf_counter() - start) / rounds * 1e6
    await db.aclose()
    print("authenticate() in process: " + ", ".join(f"{k} {v:.2f} us" for k, v in took.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=500, help="keys to create (default 500)")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent admin API callers (default 8)")
    ap.add_argument("--database-url", help="PostgreSQL URL (default: an SQLite file in a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="trigate-bench-keys-") as tmp:
        workdir = Path(tmp)
        db = args.database_url or str(workdir / "keys.sqlite3")
        procs = []
        try:
            proc, url = start_gateway(workdir, db, "a")
            procs.append(proc)
            trio.run(bench, url, args.n, args.concurrency)
            proc_b, url_b = start_gateway(workdir, db, "b")
            procs.append(proc_b)
            trio.run(other_replica, url, url_b, min(args.n, 200))
            trio.run(in_process, workdir)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(20)


if __name__ == "__main__":
    main()
