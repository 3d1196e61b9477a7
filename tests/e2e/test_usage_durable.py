"""Durable usage through real gateways: /admin/usage and its export read the ``usage_events`` table, agree
with the access log and the fake upstream's usage, survive kill -9, and add up across two replicas that
share PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_observability import lines_by_id, upstream_usage, wait_for
from tests.harness import UPSTREAM_KEY, GatewayProcess, LogCapture, MockProcess, Servers, openai_config
from trigate.mock.state import Fault

KEY_A, KEY_B, KEY_C = "sk-usage-a-1111", "sk-usage-b-2222", "sk-usage-c-3333"
ADMIN = "sk-usage-admin-9999"
AUTH = {"keys": [{"id": "team-a", "key": KEY_A, "metadata": {"team": "red"}},
                 {"id": "team-b", "key": KEY_B, "metadata": {"team": "red"}},
                 {"id": "solo", "key": KEY_C}],
        "admin_keys": [{"id": "ops", "key": ADMIN}]}
AS_ADMIN = {"authorization": f"Bearer {ADMIN}"}


def usage(url: str, **params: str) -> dict[str, Any]:
    r = httpx.get(url + "/admin/usage", params=params, headers=AS_ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def chat(url: str, key: str, text: str = "hello there") -> httpx.Response:
    r = httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r


def test_admin_usage_and_export_match_the_access_log(tmp_path: Path, access_log: LogCapture) -> None:
    def config(mock_url: str) -> dict[str, Any]:
        return {**openai_config(mock_url), "auth": AUTH, "retry": {"attempts": 1},
                "database": {"url": str(tmp_path / "usage.sqlite3")}}

    with Servers(config, mock_key=UPSTREAM_KEY) as s:
        a = openai.OpenAI(base_url=s.url + "/v1", api_key=KEY_A, max_retries=0)
        seen: list[tuple[int, int, int]] = []
        a.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}],
                                  extra_headers={"x-request-id": "use-1"})
        seen.append(upstream_usage(s.mock.requests[-1]))
        list(a.chat.completions.create(model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
                                       messages=[{"role": "user", "content": "a stream of words"}],
                                       extra_headers={"x-request-id": "use-2"}))
        seen.append(upstream_usage(s.mock.requests[-1]))
        anthropic.Anthropic(base_url=s.url, api_key=KEY_B, max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "translated, or not"}],
            extra_headers={"x-request-id": "use-3"})
        seen.append(upstream_usage(s.mock.requests[-1]))
        openai.OpenAI(base_url=s.url + "/v1", api_key=KEY_C, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "no team"}], extra_headers={"x-request-id":
                                                                                                 "use-4"})
        seen.append(upstream_usage(s.mock.requests[-1]))
        s.mock.add_fault(Fault(status=503, message="down", times=1))
        with pytest.raises(openai.APIStatusError):
            a.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "fails"}],
                                      extra_headers={"x-request-id": "use-5"})
        lines = wait_for(lambda: (found := lines_by_id(access_log, "use-")) and len(found) == 5 and found)
        report = usage(s.url)
        by_team = usage(s.url, team="red")
        just_b = usage(s.url, key_id="team-b")
        before = usage(s.url, until=str(time.time() - 3600))
        export_csv = httpx.get(s.url + "/admin/usage/export", params={"format": "csv"}, headers=AS_ADMIN)
        export_json = httpx.get(s.url + "/admin/usage/export", params={"format": "json", "team": "red"},
                                headers=AS_ADMIN)
        export_nd = httpx.get(s.url + "/admin/usage/export", params={"format": "ndjson", "key_id": "solo"},
                              headers=AS_ADMIN)
        bad = httpx.get(s.url + "/admin/usage/export", params={"format": "xml"}, headers=AS_ADMIN)
        bad_until = httpx.get(s.url + "/admin/usage", params={"until": "soon"}, headers=AS_ADMIN)
        not_admin = httpx.get(s.url + "/admin/usage/export", headers={"authorization": f"Bearer {KEY_A}"})
        metrics = {x.name: x.value for fam in text_string_to_metric_families(httpx.get(s.url + "/metrics").text)
                   for x in fam.samples}

    # the log and the fake upstream agree with the report, per key and in total
    assert [(lines[f"use-{i}"]["input_tokens"], lines[f"use-{i}"]["output_tokens"]) for i in range(1, 5)] == \
        [u[:2] for u in seen]
    per_key: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in lines.values():
        k = per_key[line["key_id"]]
        k["requests"] += 1
        k["errors"] += line["status"] >= 400
        k["input_tokens"] += line.get("input_tokens", 0)
        k["output_tokens"] += line.get("output_tokens", 0)
        k["cost_usd"] += line.get("cost_usd", 0.0)
    assert report["source"] == "database" and set(report["keys"]) == {"team-a", "team-b", "solo"}
    for key, want in per_key.items():
        got = report["keys"][key]
        assert {f: got[f] for f in ("requests", "errors", "input_tokens", "output_tokens")} == \
            {f: want[f] for f in ("requests", "errors", "input_tokens", "output_tokens")}, key
        assert got["cost_usd"] == pytest.approx(want["cost_usd"], rel=1e-9)
    assert report["keys"]["team-a"]["errors"] == 1 and report["keys"]["team-a"]["requests"] == 3
    assert report["totals"]["input_tokens"] == sum(u[0] for u in seen) > 0
    assert set(report["keys"]["team-b"]["models"]) == {"claude-haiku-4-5"}
    assert set(by_team["keys"]) == {"team-a", "team-b"} and set(just_b["keys"]) == {"team-b"}
    assert before["keys"] == {} and before["until"] is not None

    assert export_csv.status_code == 200 and export_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export_csv.text)))
    assert sorted(r["request_id"] for r in rows) == [f"use-{i}" for i in range(1, 6)]
    for r in rows:
        line = lines[r["request_id"]]
        assert (r["key_id"], r["model"], int(r["status"]), int(r["input_tokens"]), int(r["output_tokens"])) == \
            (line["key_id"], line["model"], line["status"], line.get("input_tokens", 0), line.get("output_tokens", 0))
        assert r["team"] == ("red" if line["key_id"] != "solo" else "")
    assert {r["request_id"]: r["stream"] for r in rows}["use-2"] == "1"
    assert export_json.status_code == 200
    objs = export_json.json()  # one JSON array
    assert sorted(o["request_id"] for o in objs) == ["use-1", "use-2", "use-3", "use-5"]
    assert all(o["team"] == "red" for o in objs)
    assert {o["request_id"]: o["error"] for o in objs}["use-5"] is not None
    nd = [json.loads(x) for x in export_nd.text.splitlines()]
    assert [o["request_id"] for o in nd] == ["use-4"] and nd[0]["team"] is None
    assert nd[0]["cost_usd"] == pytest.approx(lines["use-4"]["cost_usd"])
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "format"
    assert bad_until.status_code == 400 and bad_until.json()["error"]["param"] == "until"
    assert not_admin.status_code == 403
    assert metrics["trigate_usage_rows_written_total"] == 5 and metrics["trigate_usage_rows_dropped_total"] == 0


def gateway_config(upstream: MockProcess, database_url: str) -> dict[str, Any]:
    return {"auth": AUTH, "database": {"url": database_url}, "store": {"responses_path": ":memory:"},
            "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-up"}},
            "models": [{"name": "gpt-4o-mini", "provider": "up"}]}


def committed_rows(path: Path) -> int:
    """Rows another process committed to the SQLite file (what a kill -9 cannot take back)."""
    conn = sqlite3.connect(path, timeout=5)
    try:
        return conn.execute("select count(*) from usage_events").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not made yet
        return 0
    finally:
        conn.close()


def test_kill_9_loses_no_committed_usage(tmp_path: Path) -> None:
    upstream = MockProcess()
    db_path = tmp_path / "usage.sqlite3"
    gw = GatewayProcess(gateway_config(upstream, str(db_path)), tmp_path)
    n = 20
    windows = []
    try:
        for i in range(n):
            chat(gw.url, KEY_A, f"request {i}")
            done = time.monotonic()
            # how long after the answer the row is committed: the durability window
            while committed_rows(db_path) < i + 1:
                assert time.monotonic() - done < 5, "a usage row was not written within 5 s"
                time.sleep(0.002)
            windows.append(time.monotonic() - done)
        gw.kill()  # kill -9 right after the last row was committed
        assert committed_rows(db_path) == n
        gw.start()
        after = usage(gw.url)
        assert after["keys"]["team-a"]["requests"] == n and after["totals"]["requests"] == n
        chat(gw.url, KEY_A)
        assert usage(gw.url)["totals"]["requests"] == n + 1  # and the restarted gateway keeps counting
    finally:
        gw.stop()
        upstream.stop()
    # the writer flushes every 100 ms: a row is durable well within a few hundred ms of the answer
    print(f"durability window over {n} requests: median {statistics.median(windows) * 1000:.0f} ms, "
          f"max {max(windows) * 1000:.0f} ms")
    assert max(windows) < 1.0


def test_sigterm_writes_the_rows_it_holds(tmp_path: Path) -> None:
    upstream = MockProcess()
    db_path = tmp_path / "usage.sqlite3"
    gw = GatewayProcess(gateway_config(upstream, str(db_path)), tmp_path)
    try:
        for i in range(10):
            chat(gw.url, KEY_B, f"request {i}")
        gw.stop()  # SIGTERM straight after the last answer: the rows in the buffer are written on the way out
        assert gw.proc is not None and gw.proc.returncode == 0
        assert committed_rows(db_path) == 10
    finally:
        gw.stop()
        upstream.stop()


def test_two_replicas_sharing_postgres_report_the_sum(tmp_path: Path, postgres_url: str) -> None:
    upstream = MockProcess()
    one = GatewayProcess(gateway_config(upstream, postgres_url), tmp_path, "one")
    two = GatewayProcess(gateway_config(upstream, postgres_url), tmp_path, "two")
    try:
        for _ in range(3):
            chat(one.url, KEY_A)
        for _ in range(4):
            chat(two.url, KEY_B)
        chat(two.url, KEY_A)
        for replica in (one, two):
            # each replica flushes its own rows before reading; the other's arrive within its flush interval
            report = wait_for(lambda r=replica: (u := usage(r.url))["totals"]["requests"] == 8 and u)
            assert report["keys"]["team-a"]["requests"] == 4 and report["keys"]["team-b"]["requests"] == 4
            assert usage(replica.url, team="red")["totals"]["requests"] == 8
            assert usage(replica.url, key_id="solo")["keys"] == {}
    finally:
        one.stop()
        two.stop()
        upstream.stop()
