"""Several worker processes, one view: with PROMETHEUS_MULTIPROC_DIR set, any worker's /metrics reports the
sum of all workers, and gauges count only the live ones; /admin/usage does too, from the database they share.

Two real gateway processes (each with its fake upstream) share the directory, as Hypercorn workers
would; the test drives them over stdin/stdout.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]

WORKER = r'''
import json, os, sys
import httpx
from tests.harness import Servers, UPSTREAM_KEY
from tests.e2e.test_observability import ADMIN, KEY_A, KEY_B, obs_config, upstream_usage

servers = None
held = None
for line in sys.stdin:
    cmd, *args = line.split()
    out = {"ok": True}
    if cmd == "start":
        shared_db = {"database": {"url": os.environ["TRIGATE_TEST_DB"]}}
        servers = Servers(lambda url: {**obs_config(url), **shared_db}, mock_key=UPSTREAM_KEY).__enter__()
        out = {"url": servers.url}
    elif cmd == "chat":
        key, count, stream = {"a": KEY_A, "b": KEY_B}[args[0]], int(args[1]), args[2] == "stream"
        inp = outp = 0
        for i in range(count):
            r = httpx.post(servers.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                           json={"model": "gpt-4o-mini", "stream": stream,
                                 "messages": [{"role": "user", "content": "word " * (i + 2)}]})
            assert r.status_code == 200, r.text
            u = upstream_usage(servers.mock.requests[-1])
            inp, outp = inp + u[0], outp + u[1]
        out = {"input": inp, "output": outp}
    elif cmd == "hold":
        servers.mock.token_delay_ms = 200
        client = httpx.Client(timeout=30)
        cm = client.stream("POST", servers.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY_A}"},
                           json={"model": "gpt-4o-mini", "stream": True,
                                 "messages": [{"role": "user", "content": "slow " * 50}]})
        resp = cm.__enter__()
        lines = resp.iter_lines()
        next(lines)
        held = (client, cm, lines)
    elif cmd == "release":
        client, cm, lines = held
        cm.__exit__(None, None, None)
        client.close()
        servers.mock.token_delay_ms = 0
    elif cmd == "scrape":
        metrics = httpx.get(servers.url + "/metrics").text
        usage = httpx.get(servers.url + "/admin/usage", headers={"authorization": f"Bearer {ADMIN}"}).json()
        out = {"metrics": metrics, "usage": usage}
    elif cmd == "quit":
        servers.__exit__(None, None, None)
    print(json.dumps(out), flush=True)
    if cmd == "quit":
        break
'''


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], cwd=REPO, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)

    def call(self, command: str, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"worker did not answer {command!r}"
        line = self.proc.stdout.readline()
        assert line, f"worker died on {command!r}: see {self._log.name}"
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()


def values(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def total(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and all((k, x) in ls for k, x in labels.items()))


def test_two_worker_processes_report_one_sum(tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared), "TRIGATE_TEST_DB": str(tmp_path / "usage.sqlite3")}
    a, b = Worker(env, tmp_path / "a.log"), Worker(env, tmp_path / "b.log")
    try:
        a.call("start")
        b.call("start")
        used_a = a.call("chat a 2 plain")
        used_b = b.call("chat b 3 stream")
        a.call("hold")  # worker A now has a stream open

        for worker in (b, a):  # either worker answers with both workers' numbers
            view = worker.call("scrape")
            m = values(view["metrics"])
            assert total(m, "trigate_key_requests_total", key_id="team-a") == 2
            assert total(m, "trigate_key_requests_total", key_id="team-b") == 3
            assert total(m, "trigate_key_tokens_total", key_id="team-a", gen_ai_token_type="input") == used_a["input"]
            assert total(m, "trigate_key_tokens_total", key_id="team-b", gen_ai_token_type="output") == \
                used_b["output"]
            assert total(m, "trigate_requests_total", api="chat", status="200") == 5
            assert total(m, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == \
                used_a["input"] + used_b["input"]
            # gauges add the live workers up: A's open stream, and the scrape being answered
            assert total(m, "trigate_streams_open") == 1
            assert total(m, "trigate_requests_in_flight") == 2
            usage = view["usage"]
            assert usage["source"] == "database"
            assert usage["keys"]["team-a"]["input_tokens"] == used_a["input"]
            assert usage["keys"]["team-b"]["models"]["gpt-4o-mini"]["requests"] == 3
            assert usage["totals"]["output_tokens"] == used_a["output"] + used_b["output"]

        a.call("release")  # the held stream ends (the client went away): one more request for team-a
        deadline = time.monotonic() + 10
        while total(values(b.call("scrape")["metrics"]), "trigate_key_requests_total", key_id="team-a") != 3:
            assert time.monotonic() < deadline, "the held stream was never accounted for"
            time.sleep(0.05)
        a.call("quit")  # a worker that stops takes its live gauges with it; its counters stay

        m = values(b.call("scrape")["metrics"])
        assert total(m, "trigate_streams_open") == 0
        assert total(m, "trigate_requests_in_flight") == 1
        assert total(m, "trigate_key_errors_total", key_id="team-a") == 1
        assert total(m, "trigate_key_tokens_total", key_id="team-a", gen_ai_token_type="input") == used_a["input"]
        assert total(m, "trigate_key_requests_total") == 6
        b.call("quit")
    finally:
        a.close()
        b.close()
