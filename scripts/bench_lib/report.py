"""The results table (with trigate/direct and trigate/LiteLLM ratios) and the PASS/MISS targets."""

from __future__ import annotations

from typing import Any

COLS = ("direct", "trigate", "litellm", "candidate")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _row(metric: str, unit: str, direct: float | None = None, trigate: float | None = None,
         litellm: float | None = None, candidate: float | None = None, note: str = "") -> dict[str, Any]:
    row = {"metric": metric, "unit": unit, "direct": direct, "trigate": trigate, "litellm": litellm,
           "trigate/direct": _ratio(trigate, direct), "trigate/litellm": _ratio(trigate, litellm), "note": note}
    if candidate is not None:
        row["candidate"] = candidate
        row["candidate/trigate"] = _ratio(candidate, trigate)
    return row


def _get(d: dict[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def build(res: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    w1, w2, w3, w4, w5 = (res.get(k) for k in ("w1", "w2", "w3", "w4", "w5"))
    conc = _get(res, "meta", "args", "concurrency")

    if w1:
        s = w1["saturation"]
        rows.append(_row(f"W1 throughput, non-streaming (c={conc})", "req/s",
                         *(_get(s, c, "rps") for c in COLS)))
        rows.append(_row(f"W1 throughput per CPU-second of the server (c={conc})", "req/s",
                         *(_get(s, c, "per_cpu_s") for c in COLS),
                         note="requests / CPU time the gateway (direct: the upstream) used"))
        rows.append(_row(f"W1 latency p50 at saturation (c={conc})", "ms", *(_get(s, c, "p50_ms") for c in COLS)))
        f, rate = w1["fixed_rate"], w1["rate"]
        for p in ("p50", "p99"):
            rows.append(_row(f"W1 latency {p} at {rate:g} req/s (open loop)", "ms",
                             *(_get(f, c, f"{p}_ms") for c in COLS)))
        ok = {c: f"{_get(f, c, 'ok')}/{_get(f, c, 'scheduled')}" for c in COLS if c in f}
        rows[-1]["note"] = "completed/scheduled: " + ", ".join(f"{k} {v}" for k, v in ok.items())
        rows.append(_row(f"W1 server CPU per request at {rate:g} req/s", "ms",
                         *(_get(f, c, "cpu_ms_per_request") for c in COLS)))
        t_rps, l_rps = _get(s, "trigate", "rps"), _get(s, "litellm", "rps")
        wall = _ratio(t_rps, l_rps)
        ratio = _ratio(_get(s, "trigate", "per_cpu_s"), _get(s, "litellm", "per_cpu_s"))
        targets.append(_target("throughput >= 10x LiteLLM's (per core)", ratio, ">=", 10, "x",
                               (f"requests per CPU-second; wall-clock ratio, each pinned to one core: "
                                f"{wall:.2f}x" if wall is not None else "") if ratio is not None
                               else "LiteLLM not measured"))
        for p, limit in (("p50", 1.0), ("p99", 3.0)):
            t, d = _get(f, "trigate", f"{p}_ms"), _get(f, "direct", f"{p}_ms")
            added = None if t is None or d is None else t - d
            cv = _get(f, "candidate", f"{p}_ms")
            rows.append(_row(f"W1 added latency {p} (gateway - direct) at {rate:g} req/s", "ms", None, added,
                             None, None if cv is None or d is None else cv - d))
            note = "" if rate == 200 else f"measured at {rate:g} req/s (200 not sustainable here)"
            if added is not None and added < 0:
                note = (note + "; " if note else "") + "negative: run-to-run noise is larger than the difference"
            dp50, dp99 = _get(f, "direct", "p50_ms"), _get(f, "direct", "p99_ms")
            if p == "p99" and dp50 and dp99 and dp99 > 5 * dp50:
                note = (note + "; " if note else "") + (f"direct's own p99 is {dp99 / dp50:.0f}x its p50: machine "
                                                        "noise, not the servers, sets the p99s here")
            targets.append(_target(f"added {p} <= {limit:g} ms at 200 req/s", added, "<=", limit, "ms", note))

    if w2:
        r = w2["results"]
        sr = w2["stream_rate"]
        rows.append(_row(f"W2 stream TTFB p50 at {sr:g} streams/s", "ms", *(_get(r, c, "ttfb_p50_ms") for c in COLS)))
        rows.append(_row(f"W2 stream TTFB p99 at {sr:g} streams/s", "ms", *(_get(r, c, "ttfb_p99_ms") for c in COLS)))
        rows.append(_row(f"W2 stream total p50 at {sr:g} streams/s", "ms",
                         *(_get(r, c, "total_p50_ms") for c in COLS),
                         note=f"{_get(r, 'direct', 'chunks_per_stream')} chunks per stream"))
        rows.append(_row("W2 streamed chunks/s (c=32)", "chunks/s", *(_get(r, c, "chunks_per_s") for c in COLS)))
        rows.append(_row("W2 streamed chunks per CPU-second of the server (c=32)", "chunks/s",
                         *(_get(r, c, "chunks_per_cpu_s") for c in COLS)))
        t, d = _get(r, "trigate", "ttfb_p50_ms"), _get(r, "direct", "ttfb_p50_ms")
        added = None if t is None or d is None else t - d
        cv = _get(r, "candidate", "ttfb_p50_ms")
        rows.append(_row("W2 stream TTFB overhead p50 (gateway - direct)", "ms", None, added, None,
                         None if cv is None or d is None else cv - d))
        targets.append(_target("stream TTFB overhead <= 2 ms (p50)", added, "<=", 2.0, "ms"))

    if w3:
        m = w3["micro"]
        for key, label in (("openai_from_anthropic", "Anthropic SSE -> OpenAI SSE"),
                           ("anthropic_from_openai", "OpenAI SSE -> Anthropic SSE"),
                           ("openai_sniff", "same format OpenAI (usage sniff)"),
                           ("anthropic_sniff", "same format Anthropic (usage sniff)")):
            rows.append(_row(f"W3 pure core: {label}", "chunks/s", None, _get(m, key, "chunks_per_s"),
                             note=f"{_get(m, key, 'us_per_chunk'):.1f} us/chunk, one core"
                             if _get(m, key, "us_per_chunk") else ""))
        worst = min((_get(m, k, "chunks_per_s") or 0) for k in ("openai_from_anthropic", "anthropic_from_openai"))
        targets.append(_target("pure translation >= 50k chunks/s", worst, ">=", 50_000, "chunks/s"))
        for key, label, dname in (("openai_client_anthropic_upstream", "OpenAI client -> Anthropic upstream",
                                   "direct:/v1/messages"),
                                  ("anthropic_client_openai_upstream", "Anthropic client -> OpenAI upstream",
                                   "direct:/v1/chat/completions")):
            r = w3.get(key) or {}
            native = "direct = the upstream's own native stream"
            for metric, field, note in (("chunks/s (c=32)", "chunks_per_s", native),
                                        ("chunks per CPU-second (c=32)", "chunks_per_cpu_s", ""),
                                        ("TTFB p50", "ttfb_p50_ms", "")):
                rows.append(_row(f"W3 e2e {label}: {metric}", "ms" if field.endswith("_ms") else "chunks/s",
                                 _get(r, dname, field), *(_get(r, c, field) for c in COLS[1:]), note=note))

    if w4:
        largest = None
        for row in w4["runs"].values():
            n = row["n"]
            lab = f"W4 {n} slow streams"
            rows.append(_row(f"{lab}: chunk delay p99", "ms", *(_get(row, c, "delay_ms", "p99") for c in COLS),
                             note="beyond the nominal interval, whole run"))
            rows.append(_row(f"{lab}: chunk delay p99, full-concurrency window", "ms",
                             *(_get(row, c, "delay_window_ms", "p99") for c in COLS),
                             note=f"window {(_get(row, 'trigate', 'delay_window_ms', 'window_s') or 0):.1f} s"))
            rows.append(_row(f"{lab}: streams completed", "streams", *(_get(row, c, "completed") for c in COLS)))
            rows.append(_row(f"{lab}: most streams receiving at once", "streams",
                             *(_get(row, c, "peak_streaming") for c in COLS)))
            rows.append(_row(f"{lab}: gateway peak RSS", "MiB", None,
                             *(_mib(_get(row, c, "rss_peak_kb")) for c in COLS[1:]),
                             note="direct column: n/a (the upstream's own RSS is in the JSON)"))
            rows.append(_row(f"{lab}: streams held by the gateway at once (sockets / 2)", "streams", None,
                             *(_get(row, c, "held_streams_peak") for c in COLS[1:])))
            rows.append(_row(f"{lab}: gateway RSS per stream held (peak - idle) / held", "KiB", None,
                             *(_get(row, c, "rss_per_stream_kb") for c in COLS[1:])))
            rows.append(_row(f"{lab}: gateway CPU time during the run", "s", None,
                             *(_get(row, c, "cpu_s") for c in COLS[1:])))
            if largest is None or n >= largest["n"]:
                largest = row
        if largest is not None:
            targets += _slow_stream_targets(largest, [r for r in w4["runs"].values() if _held_fully(r)])

    if w5:
        one, two = _get(w5, "1 worker", "rps"), _get(w5, "2 workers", "rps")
        rows.append(_row("W5 throughput, 1 trigate worker (unpinned)", "req/s", _get(w5, "direct", "rps"), one))
        rows.append(_row("W5 throughput, 2 trigate workers (unpinned)", "req/s", _get(w5, "direct", "rps"), two))
        rows.append(_row("W5 scaling, 2 workers / 1 worker", "x", None, _ratio(two, one)))
        rows.append(_row("W5 req per CPU-second, 1 worker", "req/s", _get(w5, "direct", "per_cpu_s"),
                         _get(w5, "1 worker", "per_cpu_s")))
        rows.append(_row("W5 req per CPU-second, 2 workers", "req/s", _get(w5, "direct", "per_cpu_s"),
                         _get(w5, "2 workers", "per_cpu_s")))
    return rows, targets


def _mib(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024


def _held_fully(row: dict[str, Any]) -> bool:
    """The gateway really held (nearly) all N streams at once and completed them; a run where it fell
    behind says nothing about memory per stream at that N."""
    n = row["n"]
    return (_get(row, "trigate", "held_streams_peak") or 0) >= 0.9 * n and \
        (_get(row, "trigate", "completed") or 0) >= 0.9 * n


def _slow_stream_targets(largest: dict[str, Any], held: list[dict[str, Any]]) -> list[dict[str, Any]]:
    n = largest["n"]
    limit = " (open-files limit)" if largest.get("requested_n", n) > n else ""
    behind = "" if _held_fully(largest) else (
        f"the gateway held at most {_get(largest, 'trigate', 'held_streams_peak')} streams at once "
        f"and completed {_get(largest, 'trigate', 'completed')}: CPU-bound, it falls behind")
    delay_note = "; ".join(x for x in ("" if n >= 10_000 else f"at N={n}, not 10,000{limit}", behind) if x)
    delay = _target("slow streams: chunk delay p99 <= 20 ms (10,000 streams)",
                    _get(largest, "trigate", "delay_ms", "p99"), "<=", 20, "ms", delay_note)
    if behind:
        delay["status"] = "MISS"
    best = max(held, key=lambda r: r["n"]) if held else None
    if best is None:
        rss = _target("slow streams: <= 100 KiB RSS per stream (10,000 streams)", None, "<=", 100, "KiB",
                      "no run where the gateway held (nearly) all its streams at once")
    else:
        rss_note = "" if best["n"] >= 10_000 else f"at N={best['n']}, the largest N held at once, not 10,000"
        rss = _target("slow streams: <= 100 KiB RSS per stream (10,000 streams)",
                      _get(best, "trigate", "rss_per_stream_kb"), "<=", 100, "KiB", rss_note)
    if delay["status"] == "PASS" and n < 10_000:
        delay["status"] = "PASS*"
    if rss["status"] == "PASS" and best is not None and best["n"] < 10_000:
        rss["status"] = "PASS*"
    return [rss, delay]


def _target(name: str, value: float | None, op: str, limit: float, unit: str, note: str = "") -> dict[str, Any]:
    if value is None:
        status = "n/a"
    elif op == "<=":
        status = "PASS" if value <= limit else "MISS"
    else:
        status = "PASS" if value >= limit else "MISS"
    return {"target": name, "value": value, "op": op, "limit": limit, "unit": unit, "status": status, "note": note}


def _num(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if unit in ("x",) or (a < 10 and unit not in ("req/s", "chunks/s", "streams")):
        return f"{v:.2f}"
    if a < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def render(res: dict[str, Any]) -> str:
    rows, targets = res["table"], res["targets"]
    meta = res["meta"]
    out = []
    out.append("trigate benchmark: direct (fake upstream, the limit) vs trigate vs LiteLLM proxy, side by side")
    m = meta.get("machine", {})
    out.append(f"machine: {m.get('cpus')} CPUs ({m.get('cpu_model', '?')}), Python {m.get('python')}; "
               f"load average at start {' '.join(m.get('loadavg_start', []))}, end "
               f"{' '.join(meta.get('loadavg_end', []))}; {meta.get('seconds')} s")
    out.append(f"pinning: {meta.get('pinning')}")
    out.append(f"load: {meta.get('load_generator')}")
    if meta.get("litellm_version"):
        out.append(f"LiteLLM {meta['litellm_version']} (own virtualenv, one uvicorn worker, master key, "
                   "disable_cooldowns, local cost map, telemetry off)")
    rounds = _get(meta, "args", "rounds")
    out.append(f"values: median of {rounds} interleaved round(s)")
    out.append("")
    w = max(len(r["metric"]) + len(r["unit"]) + 3 for r in rows) if rows else 40
    cand = any("candidate" in r for r in rows)
    head = f"{'metric':<{w}} {'direct':>10} {'trigate':>10} {'litellm':>10} {'trig/dir':>9} {'trig/lite':>9}"
    if cand:
        head += f" {'candidate':>10} {'cand/trig':>9}"
    out.append(head)
    out.append("-" * len(head))
    for r in rows:
        label = f"{r['metric']} ({r['unit']})"
        line = (f"{label:<{w}} {_num(r['direct'], r['unit']):>10} {_num(r['trigate'], r['unit']):>10} "
                f"{_num(r['litellm'], r['unit']):>10} {_num(r['trigate/direct'], 'x'):>9} "
                f"{_num(r['trigate/litellm'], 'x'):>9}")
        if cand:
            line += f" {_num(r.get('candidate'), r['unit']):>10} {_num(r.get('candidate/trigate'), 'x'):>9}"
        if r.get("note"):
            line += f"   {r['note']}"
        out.append(line)
    out.append("")
    out.append("targets (per core, this machine):")
    for t in targets:
        val = _num(t["value"], t["unit"])
        line = f"  {t['status']:<6} {t['target']:<58} measured {val} {t['unit']}"
        if t.get("note"):
            line += f"  [{t['note']}]"
        out.append(line)
    if any(t["status"] == "PASS*" for t in targets):
        out.append("  PASS* = passes at the N that was run, which is below the target's N")
    notes = meta.get("notes") or []
    if notes:
        out.append("")
        out.append("notes:")
        out += [f"  - {n}" for n in notes]
    return "\n".join(out)
