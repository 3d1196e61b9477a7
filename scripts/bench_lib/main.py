"""scripts/bench: the same workloads, side by side in one run, against the fake upstream directly (the
limit), trigate, and LiteLLM's proxy. See ``scripts/bench --help`` and README.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from bench_lib import report, setup  # noqa: E402
from bench_lib.procs import Proc, free_port, pinned, status_kb  # noqa: E402
from bench_lib.stats import median  # noqa: E402

PY = sys.executable
MASTER_KEY = "sk-bench-master-key"
UPSTREAM_KEY = "sk-bench-upstream"
PROMPT = "Hello! Please tell me, briefly, what a benchmark of an API gateway should measure and why."
# the fake upstream echoes up to 200 characters of the prompt: ~40 streamed tokens
STREAM_PROMPT = ("Stream this back to me word by word so that the benchmark sees a realistic number of small "
                 "chunks: one two three four five six seven eight nine ten eleven twelve thirteen fourteen.")


_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"bench [{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- setup


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark trigate against direct calls to the fake upstream and against LiteLLM's proxy, "
                    "side by side in one run; prints a table with ratios and PASS/MISS per target, and writes "
                    "it as JSON.")
    p.add_argument("--quick", action="store_true", help="short run (under 3 min): shorter runs, one round, "
                   "3 s slow streams at N=200 and 1000")
    p.add_argument("--out", default="bench-results.json", help="JSON results path (default: %(default)s)")
    p.add_argument("--only", default="1,2,3,4,5", help="workloads to run, e.g. 1,2 (default: all)")
    p.add_argument("--rounds", type=int, help="interleaved rounds for workloads 1 and 5 (median reported; "
                   "default 3, --quick 1)")
    p.add_argument("--stream-rounds", type=int, help="interleaved rounds for workloads 2 and 3 (default 2, "
                   "--quick 1)")
    p.add_argument("--concurrency", type=int, default=64, help="saturation concurrency (default 64)")
    p.add_argument("--seconds", type=float, help="seconds per saturation run, after 1 s of warm-up "
                   "(default 8, --quick 4)")
    p.add_argument("--stream-seconds", type=float, help="seconds per streaming run, fixed-rate and saturated "
                   "(default 6, --quick 3)")
    p.add_argument("--rate", type=float, default=200.0, help="fixed request rate for latency, per second "
                   "(default 200; lowered when the machine cannot sustain it, said in the output)")
    p.add_argument("--stream-rate", type=float, default=10.0, help="fixed stream rate for stream TTFB, "
                   "per second (default 10)")
    p.add_argument("--rate-seconds", type=float, help="seconds per fixed-rate run (default 10, --quick 5)")
    p.add_argument("--slow-n", help="concurrent slow streams, comma-separated (default 1000,10000; "
                   "--quick 200,1000); capped by the open-files limit")
    p.add_argument("--slow-seconds", type=float, help="length of each slow stream, s (default 30, --quick 5)")
    p.add_argument("--slow-token-ms", type=float, default=50.0, help="upstream token interval (default 50)")
    p.add_argument("--slow-ramp-rate", type=float, default=500.0,
                   help="new slow streams opened per second (default 500); a gateway that sets streams up slower "
                   "than this falls behind before the streams even run: lower it to measure memory at full N")
    p.add_argument("--slow-upstream", choices=("lean", "mock"), default="lean",
                   help="fake upstream for the slow streams: lean (scripts/bench_lib/sseupstream.py, default) or "
                   "mock (trigate mock --token-delay-ms; saturates at a few thousand chunks/s on a shared core)")
    p.add_argument("--slow-litellm", action="store_true", help="also run LiteLLM at the smallest slow-stream N")
    p.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (no install, empty columns)")
    p.add_argument("--litellm-venv", default=str(ROOT / ".bench" / "litellm-venv"),
                   help="LiteLLM's own virtualenv (default: %(default)s)")
    p.add_argument("--candidate", metavar="DIR", help="also run the trigate package found in DIR (DIR/trigate, via "
                   "PYTHONPATH) as a 'candidate' column, side by side with this checkout's: before/after for a change")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    p.add_argument("--profile", metavar="DIR", help="instead of the comparison: profile trigate with py-spy "
                   "under workloads 1 and 2, write flame graphs, raw stacks and a top-functions summary to DIR")
    p.add_argument("--workdir", default=str(ROOT / ".bench" / "run"), help="configs and server logs")
    a = p.parse_args(argv)
    q = a.quick
    a.rounds = a.rounds or (1 if q else 3)
    a.seconds = a.seconds or (2.0 if q else 6.0)
    a.stream_seconds = a.stream_seconds or (2.5 if q else 6.0)
    a.stream_rounds = a.stream_rounds or (1 if q else 2)
    a.rate_seconds = a.rate_seconds or (2.5 if q else 8.0)
    a.slow_seconds = a.slow_seconds or (3.0 if q else 30.0)
    a.slow_n = [int(x) for x in (a.slow_n or ("200,1000" if q else "300,1000,10000")).split(",") if x.strip()]
    a.only = {int(x) for x in a.only.split(",") if x.strip()}
    return a


class CPUs:
    """Which core runs what. Two cores: the gateway alone on one, upstream + load generator on the other."""

    def __init__(self, no_pin: bool) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.all = cpus
        if no_pin or len(cpus) < 2:
            self.gateway = self.upstream = self.client = None
            self.note = "processes not pinned" + (" (--no-pin)" if no_pin else " (one core available)")
        else:
            self.gateway = str(cpus[0])
            self.upstream = str(cpus[1])
            self.client = str(cpus[2]) if len(cpus) > 2 else str(cpus[1])
            self.note = (f"taskset: gateway (trigate or LiteLLM, one worker) alone on CPU {self.gateway}; "
                         f"fake upstream on CPU {self.upstream}; load generator on CPU {self.client}"
                         + (" (shared with the upstream: 2 cores)" if self.client == self.upstream else ""))


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def slow_body(model: str, seconds: float, token_ms: float) -> dict[str, Any]:
    """A request whose streamed answer lasts ``seconds`` at ``token_ms`` per chunk.

    The fake upstream echoes at most 200 characters of the prompt (~40 tokens), so a long answer comes
    from a tool call instead: it streams a tool's arguments in 8-character fragments, one chunk per
    token interval, and the arguments are sampled from the tool's schema (an enum's first value)."""
    chunks = max(10, int(seconds * 1000 / token_ms))
    text = ("lorem ip" * chunks)[: max(8, chunks * 8 - 11)]  # arguments '{"text":"..."}' = len + 11
    tool = {"type": "function", "function": {"name": "emit", "description": "benchmark filler",
                                             "parameters": {"type": "object", "properties": {
                                                 "text": {"type": "string", "enum": [text]}}}}}
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": "Call the tool."}],
            "tools": [tool]}


# ------------------------------------------------------------------------------------------- servers


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.notes: list[str] = []
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        gi = self.work.parent / ".gitignore"
        if self.work.parent.name == ".bench" and not gi.exists():
            write(gi, "*\n")
        self.cpus = CPUs(args.no_pin)
        self.procs: list[Proc] = []
        self.mock_port = self.slow_port = 0
        self.targets: dict[str, dict[str, Any]] = {}
        self.stopped: set[str] = set()
        self.results: dict[str, Any] = {}
        self.wrk: str | None = None
        self.litellm_exe: Path | None = None
        self._req_files: dict[str, Path] = {}

    # ---- processes

    def start(self, name: str, cmd: list[str], port: int, health: str, cpus: str | None, timeout: float = 60,
              env: dict[str, str] | None = None) -> Proc:
        p = Proc(name, cmd, self.work / f"{name}.log", cpus=cpus, env=env, cwd=str(self.work))
        self.procs.append(p)
        p.wait_http(port, health, timeout)
        return p

    def stop(self, p: Proc | None) -> None:
        if p is not None:
            p.stop()
            if p in self.procs:
                self.procs.remove(p)

    def start_mock(self, name: str, token_ms: float = 0.0) -> tuple[Proc, int]:
        port = free_port()
        cmd = [PY, "-m", "trigate.cli", "mock", "--port", str(port), "--token-delay-ms", str(token_ms)]
        return self.start(name, cmd, port, "/_mock/requests", self.cpus.upstream), port

    def trigate_config(self, port: int) -> Path:
        slow = f"http://127.0.0.1:{self.slow_port}" if self.slow_port else f"http://127.0.0.1:{self.mock_port}"
        cfg = {
            "listen": {"host": "127.0.0.1", "port": port},
            "auth": {"open": True},
            "server": {"access_log": True},
            "providers": {
                "up": {"kind": "openai", "base_url": f"http://127.0.0.1:{self.mock_port}/v1", "api_key": UPSTREAM_KEY},
                "up-anthropic": {"kind": "anthropic", "base_url": f"http://127.0.0.1:{self.mock_port}",
                                 "api_key": UPSTREAM_KEY},
                "slow": {"kind": "openai", "base_url": f"{slow}/v1", "api_key": UPSTREAM_KEY},
            },
            "models": [
                {"name": "gpt-bench", "provider": "up"},
                {"name": "claude-bench", "provider": "up-anthropic"},
                {"name": "gpt-slow", "provider": "slow"},
            ],
            "store": {"responses_path": ":memory:"},
        }
        return write(self.work / f"trigate-{port}.json", json.dumps(cfg, indent=1))  # JSON is YAML

    def candidate_env(self) -> dict[str, str]:
        """The environment that makes ``import trigate`` load the --candidate source tree."""
        path = str(Path(self.a.candidate).resolve())
        return {**os.environ, "PYTHONPATH": path + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def start_trigate(self, name: str, workers: int = 1, cpus: str | None = "default",
                      candidate: bool = False) -> tuple[Proc, int]:
        port = free_port()
        cfg = self.trigate_config(port)
        cmd = [PY, "-m", "trigate.cli", "serve", "--config", str(cfg)]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        env = self.candidate_env() if candidate else None
        return self.start(name, cmd, port, "/health", self.cpus.gateway if cpus == "default" else cpus,
                          env=env), port

    def start_litellm(self) -> tuple[Proc, int] | None:
        if self.litellm_exe is None:
            return None
        port = free_port()
        slow = self.slow_port or self.mock_port
        up = f"http://127.0.0.1:{self.mock_port}"

        def model(name: str, model: str, base: str) -> dict[str, Any]:
            return {"model_name": name, "litellm_params": {"model": model, "api_base": base, "api_key": UPSTREAM_KEY}}

        cfg = json.dumps({  # JSON is YAML
            "model_list": [model("gpt-bench", "openai/gpt-bench", f"{up}/v1"),
                           model("claude-bench", "anthropic/claude-bench", up),
                           model("gpt-slow", "openai/gpt-slow", f"http://127.0.0.1:{slow}/v1")],
            "general_settings": {"master_key": MASTER_KEY},
            "router_settings": {"disable_cooldowns": True},
        }, indent=1)
        path = write(self.work / f"litellm-{port}.yaml", cfg)
        env = {**os.environ, **setup.LITELLM_ENV}
        cmd = [str(self.litellm_exe), "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", "1"]
        try:
            return self.start("litellm", cmd, port, "/health/liveliness", self.cpus.gateway, timeout=180, env=env), port
        except RuntimeError as exc:
            self.notes.append(f"LiteLLM did not start: {str(exc).splitlines()[0]}")
            log(str(exc))
            return None

    def only_running(self, name: str | None) -> None:
        """SIGSTOP every gateway but ``name`` so an idle one cannot steal its core; SIGCONT ``name``."""
        for tname, t in self.targets.items():
            p: Proc | None = t.get("proc")
            if p is None or p.p.poll() is not None:
                continue
            if tname == name and tname in self.stopped:
                signal_tree(p, signal.SIGCONT)
                self.stopped.discard(tname)
            elif tname != name and tname not in self.stopped:
                signal_tree(p, signal.SIGSTOP)
                self.stopped.add(tname)
        if name is not None:
            time.sleep(0.2)

    def shutdown(self) -> None:
        for tname in list(self.stopped):
            p = self.targets[tname].get("proc")
            if p is not None:
                signal_tree(p, signal.SIGCONT)
        self.stopped.clear()
        for p in list(self.procs):
            self.stop(p)

    # ---- requests

    def request_file(self, target: str, path: str, body: dict[str, Any], anthropic: bool = False) -> Path:
        t = self.targets[target]
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        if anthropic:
            headers["anthropic-version"] = "2023-06-01"
        from bench_lib.http1 import build_request

        data = build_request("127.0.0.1", t["port"], path, json.dumps(body).encode(), headers)
        key = f"{target}-{path}-{hash(data)}"
        if key not in self._req_files:
            self._req_files[key] = write(self.work / "requests" / f"{len(self._req_files)}.http", data)
        return self._req_files[key]

    def run_json(self, cmd: list[str], cpus: str | None, timeout: float) -> dict[str, Any]:
        r = subprocess.run(pinned(cmd, cpus), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed ({r.returncode}): {r.stderr[-2000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def loadgen(self, spec: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        f = write(Path(tempfile.mkdtemp(dir=self.work)) / "spec.json", json.dumps(spec))
        return self.run_json([PY, str(HERE / "loadgen.py"), str(f)], self.cpus.client, timeout)

    def cpu_of(self, target: str) -> Proc | None:
        t = self.targets[target]
        return t.get("cpu") or t.get("proc")

    def saturate_round(self, r: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """One logged saturation run of non-streamed chat completions (workloads 1 and 5)."""
        a = self.a
        res = self.saturate(name, "/v1/chat/completions", body, a.seconds, a.concurrency)
        log(f"  round {r + 1} {name:9s} {res['rps']:8.1f} req/s  p50 {res['p50_ms']:.1f} ms  "
            f"p99 {res['p99_ms']:.1f} ms  errors {res['errors']}  {fmt(res['per_cpu_s'], 0)} req per CPU-second")
        return res

    def saturate(self, target: str, path: str, body: dict[str, Any], seconds: float, conc: int,
                 expect: str = "") -> dict[str, Any]:
        """Closed loop at ``conc`` connections for ``seconds`` (after a 1 s warm-up): wrk when available,
        else the trio generator for about as many requests as ``seconds`` allows. Also the CPU time the
        server (gateway, or the upstream for direct) used: requests per CPU-second hold up on a noisy
        machine where wall-clock throughput does not."""
        res = self._saturate(target, path, body, seconds, conc, expect)
        return res

    def _saturate(self, target: str, path: str, body: dict[str, Any], seconds: float, conc: int,
                  expect: str = "") -> dict[str, Any]:
        t = self.targets[target]
        cpu = self.cpu_of(target)
        if self.wrk is None:
            f = self.request_file(target, path, body)
            probe = self.loadgen({"mode": "closed", "host": "127.0.0.1", "port": t["port"], "request_file": str(f),
                                  "concurrency": conc, "count": conc * 4, "expect": expect})
            count = max(conc * 4, int((probe["rps"] or 10) * seconds))
            c0 = cpu.cpu_seconds() if cpu else None
            r = self.loadgen({"mode": "closed", "host": "127.0.0.1", "port": t["port"], "request_file": str(f),
                              "concurrency": conc, "count": count, "expect": expect})
            cpu_s = cpu.cpu_seconds() - c0 if cpu and c0 is not None else None
            lat = r["latency_ms"]
            return {"rps": r["rps"], "p50_ms": lat["p50"], "p99_ms": lat["p99"], "requests": r["ok"],
                    "errors": r["errors"] + r["bad"], "tool": "trio closed loop", "cpu_s": cpu_s,
                    "per_cpu_s": r["ok"] / cpu_s if cpu_s else None}
        bodyf = write(self.work / "requests" / f"wrk-{target}.json", json.dumps(body))
        lua = f"""
local f = assert(io.open("{bodyf}", "rb")); local body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.path = "{path}"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {MASTER_KEY}"
function done(s, latency, requests)
  io.write(string.format('WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\\n', s.requests, s.duration,
    s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
        script = write(self.work / "requests" / f"wrk-{target}.lua", lua)
        url = f"http://127.0.0.1:{t['port']}"
        warm = [self.wrk, "-t1", f"-c{conc}", "-d1s", "--timeout", "10s", "-s", str(script), url]
        subprocess.run(pinned(warm, self.cpus.client), capture_output=True, timeout=60)
        cmd = [self.wrk, "-t1", f"-c{conc}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), url]
        c0 = cpu.cpu_seconds() if cpu else None
        r = subprocess.run(pinned(cmd, self.cpus.client), capture_output=True, text=True, timeout=seconds + 60)
        cpu_s = cpu.cpu_seconds() - c0 if cpu and c0 is not None else None
        line = next((x for x in r.stdout.splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed: {r.stdout[-1000:]} {r.stderr[-1000:]}")
        w = json.loads(line[8:])
        errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
        return {"rps": w["requests"] / (w["duration_us"] / 1e6), "p50_ms": w["p50"] / 1000, "p99_ms": w["p99"] / 1000,
                "requests": w["requests"], "errors": errors, "tool": "wrk", "cpu_s": cpu_s,
                "per_cpu_s": w["requests"] / cpu_s if cpu_s else None}

    # ---------------------------------------------------------------------------------------- setup

    def prepare(self) -> None:
        self.wrk = setup.ensure_wrk(self.notes)
        if not self.a.no_litellm and not self.a.profile:
            self.litellm_exe = setup.ensure_litellm(Path(self.a.litellm_venv), self.notes)
        else:
            self.notes.append("LiteLLM skipped (--no-litellm)")
        mock, self.mock_port = self.start_mock("mock")
        self.targets["direct"] = {"port": self.mock_port, "proc": None, "cpu": mock}
        gw, port = self.start_trigate("trigate")
        self.targets["trigate"] = {"port": port, "proc": gw}
        wanted = not self.a.profile and bool({1, 2, 3} & self.a.only)
        ll = self.start_litellm() if wanted else None
        if ll is not None:
            self.targets["litellm"] = {"port": ll[1], "proc": ll[0]}
        if self.a.candidate:
            env = self.candidate_env()
            where = subprocess.run([PY, "-c", "import trigate; print(trigate.__file__)"], env=env,
                                   capture_output=True, text=True, cwd=str(self.work)).stdout.strip()
            if not where.startswith(str(Path(self.a.candidate).resolve())):
                raise SystemExit(f"--candidate {self.a.candidate}: `import trigate` loads {where or '?'} instead")
            self.notes.append(f"candidate: trigate from {Path(where).parent} (PYTHONPATH), same config and pinning")
            cp, cport = self.start_trigate("candidate", candidate=True)
            self.targets["candidate"] = {"port": cport, "proc": cp}
        self.gateways = [t for t in ("trigate", "candidate", "litellm") if t in self.targets]

    def names(self, with_direct: bool = True) -> list[str]:
        return (["direct"] if with_direct else []) + self.gateways

    # -------------------------------------------------------------------------------------- workloads

    def w1(self) -> dict[str, Any]:
        a = self.a
        body = {"model": "gpt-bench", "messages": [{"role": "user", "content": PROMPT}]}
        sat: dict[str, list[dict[str, Any]]] = {n: [] for n in self.names()}
        log(f"workload 1: saturation, {a.seconds:g} s at concurrency {a.concurrency}, {a.rounds} round(s)")
        for r in range(a.rounds):
            for name in self.names():
                self.only_running(None if name == "direct" else name)
                sat[name].append(self.saturate_round(r, name, body))
        out: dict[str, Any] = {"saturation": {n: {"rps": median([x["rps"] for x in v]),
                                                  "per_cpu_s": median([x["per_cpu_s"] for x in v]),
                                                  "p50_ms": median([x["p50_ms"] for x in v]),
                                                  "p99_ms": median([x["p99_ms"] for x in v]),
                                                  "errors": sum(x["errors"] for x in v), "runs": v}
                                              for n, v in sat.items()}}
        # the fixed rate: what was asked, unless direct or trigate cannot sustain it with headroom
        limit = min(out["saturation"][n]["rps"] or 0 for n in ("direct", "trigate"))
        rate = a.rate
        if limit and rate > 0.85 * limit:
            rate = max(10.0, round(0.7 * limit / 10) * 10)
            self.notes.append(f"fixed-rate latency measured at {rate:g} req/s, not {a.rate:g}: this machine's "
                              f"saturation throughput (min of direct and trigate) is {limit:.0f} req/s, and "
                              f"{a.rate:g} would be over 85% of it")
        out["rate"] = rate
        log(f"workload 1: latency at a fixed {rate:g} req/s (open loop, from the scheduled send time), "
            f"{a.rate_seconds:g} s per run")
        lat: dict[str, list[dict[str, Any]]] = {n: [] for n in self.names()}
        for r in range(a.rounds):
            for name in self.names():
                self.only_running(None if name == "direct" else name)
                f = self.request_file(name, "/v1/chat/completions", body)
                cpu = self.cpu_of(name)
                c0 = cpu.cpu_seconds() if cpu else None
                res = self.loadgen({"mode": "open", "host": "127.0.0.1", "port": self.targets[name]["port"],
                                    "request_file": str(f), "rate": rate, "duration": a.rate_seconds,
                                    "warmup": 1.0, "expect": "}", "max_outstanding": 256})
                done = res["ok"] + res["errors"] + res["bad"]
                res["cpu_ms_per_request"] = ((cpu.cpu_seconds() - c0) * 1000 / done
                                             if cpu and c0 is not None and done else None)
                lat[name].append(res)
                L = res["latency_ms"]
                log(f"  round {r + 1} {name:8s} p50 {fmt(L['p50'])} ms  p99 {fmt(L['p99'])} ms  "
                    f"ok {res['ok']}/{res['scheduled']}  errors {res['errors'] + res['bad']}  "
                    f"dropped {res['dropped']}")
        out["fixed_rate"] = {n: {"p50_ms": median([x["latency_ms"]["p50"] for x in v]),
                                 "p90_ms": median([x["latency_ms"]["p90"] for x in v]),
                                 "p99_ms": median([x["latency_ms"]["p99"] for x in v]),
                                 "cpu_ms_per_request": median([x["cpu_ms_per_request"] for x in v]),
                                 "ok": sum(x["ok"] for x in v), "scheduled": sum(x["scheduled"] for x in v),
                                 "errors": sum(x["errors"] + x["bad"] + x["dropped"] for x in v), "runs": v}
                             for n, v in lat.items()}
        return out

    def stream_runs(self, label: str, names: list[str], path: str, bodies: dict[str, dict[str, Any]],
                    expects: dict[str, str], anthropic: bool, rate: float, conc: int) -> dict[str, Any]:
        """Per target: TTFB/total at a fixed stream rate (open loop), then chunks/s at saturation."""
        a = self.a
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"rate": [], "sat": []} for n in names}
        for r in range(a.stream_rounds):
            for name in names:
                self.only_running(None if name.startswith("direct") else name)
                tname = "direct" if name.startswith("direct") else name
                f = self.request_file(tname, path if not name.startswith("direct:") else name.split(":", 1)[1],
                                      bodies[name], anthropic=anthropic or name == "direct:/v1/messages")
                port = self.targets[tname]["port"]
                expect = expects[name]
                cpu = self.cpu_of(tname)
                o = self.loadgen({"mode": "open", "host": "127.0.0.1", "port": port, "request_file": str(f),
                                  "rate": rate, "duration": a.stream_seconds, "warmup": 1.0, "expect": expect,
                                  "max_outstanding": 256})
                c0 = cpu.cpu_seconds() if cpu else None
                c = self.loadgen({"mode": "closed", "host": "127.0.0.1", "port": port, "request_file": str(f),
                                  "concurrency": conc, "duration": a.stream_seconds, "expect": expect})
                cpu_s = cpu.cpu_seconds() - c0 if cpu and c0 is not None else None
                events = (c["events_per_s"] or 0) * c["wall_s"]
                c["chunks_per_cpu_s"] = events / cpu_s if cpu_s else None
                runs[name]["rate"].append(o)
                runs[name]["sat"].append(c)
                log(f"  round {r + 1} {label} {name:22s} ttfb p50 {fmt(o['ttfb_ms']['p50'])} ms "
                    f"p99 {fmt(o['ttfb_ms']['p99'])} ms  total p50 {fmt(o['latency_ms']['p50'])} ms | "
                    f"saturated: {fmt(c['events_per_s'], 0)} chunks/s {fmt(c['rps'], 1)} streams/s "
                    f"({fmt(c['chunks_per_cpu_s'], 0)} chunks per CPU-second)  "
                    f"errors {o['errors'] + o['bad'] + c['errors'] + c['bad']}")
        out = {}
        for name, v in runs.items():
            out[name] = {
                "ttfb_p50_ms": median([x["ttfb_ms"]["p50"] for x in v["rate"]]),
                "ttfb_p99_ms": median([x["ttfb_ms"]["p99"] for x in v["rate"]]),
                "total_p50_ms": median([x["latency_ms"]["p50"] for x in v["rate"]]),
                "total_p99_ms": median([x["latency_ms"]["p99"] for x in v["rate"]]),
                "chunks_per_stream": median([x["events_per_request"]["p50"] for x in v["rate"]]),
                "chunks_per_s": median([x["events_per_s"] for x in v["sat"]]),
                "chunks_per_cpu_s": median([x["chunks_per_cpu_s"] for x in v["sat"]]),
                "streams_per_s": median([x["rps"] for x in v["sat"]]),
                "sat_ttfb_p50_ms": median([x["ttfb_ms"]["p50"] for x in v["sat"]]),
                "errors": sum(x["errors"] + x["bad"] + x.get("dropped", 0) for x in v["rate"] + v["sat"]),
                "runs": v,
            }
        return out

    def w2(self, rate: float) -> dict[str, Any]:
        a = self.a
        body = {"model": "gpt-bench", "stream": True, "messages": [{"role": "user", "content": STREAM_PROMPT}]}
        srate = a.stream_rate
        log(f"workload 2: streaming chat completions; TTFB/total at {srate:g} streams/s, chunks/s at "
            f"concurrency 32")
        names = self.names()
        out = self.stream_runs("w2", names, "/v1/chat/completions", dict.fromkeys(names, body),
                               dict.fromkeys(names, "[DONE]"), False, srate, 32)
        return {"stream_rate": srate, "results": out}

    def w3(self, rate: float) -> dict[str, Any]:
        a = self.a
        log("workload 3: translated streaming; pure-core microbenchmark first")
        self.only_running(None)
        micro = self.run_json([PY, str(HERE / "micro.py"), "2" if a.quick else "4"], self.cpus.gateway, 300)
        for k, v in micro.items():
            log(f"  micro {k:22s} {v['chunks_per_s']:9.0f} chunks/s  ({v['us_per_chunk']:.1f} us/chunk)")
        srate = a.stream_rate
        oa = {"model": "claude-bench", "stream": True, "messages": [{"role": "user", "content": STREAM_PROMPT}]}
        an = {"model": "gpt-bench", "stream": True, "max_tokens": 1024,
              "messages": [{"role": "user", "content": STREAM_PROMPT}]}
        log("workload 3: OpenAI client -> Anthropic upstream (POST /v1/chat/completions, model claude-bench); "
            "direct = the upstream's native Anthropic stream")
        names = ["direct:/v1/messages", *self.gateways]
        bodies = {"direct:/v1/messages": {**an, "model": "claude-bench"}, **dict.fromkeys(self.gateways, oa)}
        expects = {n: "message_stop" if n == "direct:/v1/messages" else "[DONE]" for n in names}
        o2a = self.stream_runs("w3", names, "/v1/chat/completions", bodies, expects, False, srate, 32)
        log("workload 3: Anthropic client -> OpenAI upstream (POST /v1/messages, model gpt-bench); "
            "direct = the upstream's native OpenAI stream")
        names = ["direct:/v1/chat/completions", *self.gateways]
        bodies = {"direct:/v1/chat/completions": oa | {"model": "gpt-bench"}, **dict.fromkeys(self.gateways, an)}
        expects = {n: "[DONE]" if n == "direct:/v1/chat/completions" else "message_stop" for n in names}
        a2o = self.stream_runs("w3", names, "/v1/messages", bodies, expects, True, srate, 32)
        return {"micro": micro, "openai_client_anthropic_upstream": o2a, "anthropic_client_openai_upstream": a2o}

    def w4(self) -> dict[str, Any]:
        a = self.a
        # stop what workloads 1-3 used; the slow streams get a fresh gateway each, for a clean RSS
        self.only_running(None)
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        fd_cap = ((hard if hard != resource.RLIM_INFINITY else 1 << 20) - 300) // 2
        chunks = max(10, int(a.slow_seconds * 1000 / a.slow_token_ms))
        if a.slow_upstream == "mock":
            slow, self.slow_port = self.start_mock("mock-slow", a.slow_token_ms)
            body = slow_body("gpt-slow", a.slow_seconds, a.slow_token_ms)
            upstream = ("trigate mock --token-delay-ms (a tool call whose arguments stream in 8-character "
                        "fragments: the mock echoes at most 200 characters of text)")
        else:
            self.slow_port = free_port()
            slow = self.start("sse-upstream", [PY, str(HERE / "sseupstream.py"), "--port", str(self.slow_port),
                                               "--token-ms", str(a.slow_token_ms), "--chunks", str(chunks)],
                              self.slow_port, "/", self.cpus.upstream)
            body = {"model": "gpt-slow", "stream": True, "messages": [{"role": "user", "content": "Talk slowly."}]}
            upstream = "scripts/bench_lib/sseupstream.py (lean epoll SSE server, OpenAI chunk format)"
        log(f"workload 4: slow upstream: {upstream}, {chunks} chunks per stream")
        out: dict[str, Any] = {"token_ms": a.slow_token_ms, "seconds": a.slow_seconds, "chunks": chunks,
                               "upstream": upstream, "runs": {}}
        for n_req in a.slow_n:
            n = min(n_req, fd_cap)
            if n < n_req:
                self.notes.append(f"slow streams: N={n_req} does not fit one gateway process here (open-files hard "
                                  f"limit {hard}, a stream holds 2 descriptors in the gateway): ran N={n}")
            ramp = max(1.0, n / a.slow_ramp_rate)
            timeout = ramp + a.slow_seconds * 1.5 + 10
            row: dict[str, Any] = {"n": n, "requested_n": n_req, "ramp_s": ramp}
            runs: list[tuple[str, str | None]] = []
            if n * 1000 / a.slow_token_ms <= 40_000:
                runs.append(("direct", None))
            else:
                self.notes.append(f"slow streams: no direct baseline at N={n}: {n * 1000 / a.slow_token_ms:,.0f} "
                                  "chunks/s is more than the fake upstream and the client, sharing one core, deliver")
            runs.append(("trigate", "trigate"))
            if a.candidate:
                runs.append(("candidate", "candidate"))
            if a.slow_litellm and self.litellm_exe is not None and n_req == min(a.slow_n):
                runs.append(("litellm", "litellm"))
            for label, kind in runs:
                proc = None
                if kind in ("trigate", "candidate"):
                    proc, port = self.start_trigate(f"{kind}-slow", candidate=kind == "candidate")
                elif kind == "litellm":
                    started = self.start_litellm()
                    if started is None:
                        continue
                    proc, port = started
                else:
                    port = self.slow_port
                log(f"workload 4: {n} slow streams ({a.slow_token_ms:g} ms/token, {a.slow_seconds:g} s each, "
                    f"ramp {ramp:g} s) -> {label}")
                spec = {"host": "127.0.0.1", "port": port, "n": n, "ramp_s": ramp, "nominal_ms": a.slow_token_ms,
                        "timeout_s": timeout}
                from bench_lib.http1 import build_request

                data = build_request("127.0.0.1", port, "/v1/chat/completions", json.dumps(body).encode(),
                                     {"Authorization": f"Bearer {MASTER_KEY}"})
                spec["request_file"] = str(write(self.work / "requests" / f"slow-{label}.http", data))
                specf = write(Path(tempfile.mkdtemp(dir=self.work)) / "spec.json", json.dumps(spec))
                base_rss = proc.rss_kb() if proc else status_kb(slow.pid, "VmRSS")
                sampler = RSSSampler(proc if proc else slow)
                sampler.start()
                try:
                    res = self.run_json([PY, str(HERE / "slowstreams.py"), str(specf)], self.cpus.client,
                                        timeout + 60)
                finally:
                    sampler.stop()
                res["rss_base_kb"] = base_rss
                res["rss_peak_kb"] = sampler.peak
                # per stream the gateway actually held (client + upstream socket open): streams still
                # waiting in the listen backlog cost it nothing, so dividing by N would flatter it
                held = sampler.held if proc else n
                res["held_streams_peak"] = held
                res["rss_per_stream_kb"] = (sampler.peak - base_rss) / max(1, held)
                res["cpu_s"] = sampler.cpu
                row[label] = res
                log(f"  {label:8s} completed {res['completed']}/{n} failed {res['failed']} {res['fail_kinds']} "
                    f"peak streaming {res['peak_streaming']} held by the gateway {res['held_streams_peak']} "
                    f"chunk delay p50 {fmt(res['delay_ms']['p50'])} p99 {fmt(res['delay_ms']['p99'])} ms "
                    f"(full-concurrency window p99 {fmt(res['delay_window_ms']['p99'])} ms over "
                    f"{res['delay_window_ms']['window_s']:.1f} s)  max gap {res['max_gap_ms']:.0f} ms  "
                    f"RSS {base_rss / 1024:.0f} -> {sampler.peak / 1024:.0f} MiB "
                    f"({res['rss_per_stream_kb']:.1f} KiB/stream)  {res['chunks_per_s']:.0f} chunks/s")
                self.stop(proc)
            out["runs"][str(n_req)] = row
        self.stop(slow)
        self.slow_port = 0
        return out

    def w5(self) -> dict[str, Any]:
        a = self.a
        self.only_running(None)
        body = {"model": "gpt-bench", "messages": [{"role": "user", "content": PROMPT}]}
        log("workload 5: 1 vs 2 trigate workers (trigate serve --workers 2: SO_REUSEPORT), workload 1 "
            "saturation, nothing pinned")
        # nothing pinned here: two workers need both cores, which the upstream and wrk share too
        w1p, w1port = self.start_trigate("trigate-1w", 1, cpus=None)
        w2p, w2port = self.start_trigate("trigate-2w", 2, cpus=None)
        saved = dict(self.targets)
        saved_stopped = set(self.stopped)
        self.targets = {"direct": saved["direct"], "1 worker": {"port": w1port, "proc": w1p},
                        "2 workers": {"port": w2port, "proc": w2p}}
        self.stopped = set()
        cpus_client, self.cpus.client = self.cpus.client, None
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in self.targets}
        try:
            for r in range(a.rounds):
                for name in self.targets:
                    self.only_running(None if name == "direct" else name)
                    runs[name].append(self.saturate_round(r, name, body))
        finally:
            self.only_running(None)
            self.cpus.client = cpus_client
            for tname in ("1 worker", "2 workers"):
                if tname in self.stopped:
                    signal_tree(self.targets[tname]["proc"], signal.SIGCONT)
            self.targets, self.stopped = saved, saved_stopped
            self.stop(w1p)
            self.stop(w2p)
        return {n: {"rps": median([x["rps"] for x in v]), "per_cpu_s": median([x["per_cpu_s"] for x in v]),
                    "p50_ms": median([x["p50_ms"] for x in v]),
                    "p99_ms": median([x["p99_ms"] for x in v]), "runs": v} for n, v in runs.items()}

    # ---------------------------------------------------------------------------------------- profile

    def profile(self, outdir: Path) -> None:
        from bench_lib import profile

        profile.run(self, outdir)


def signal_tree(p: Proc, sig: int) -> None:
    """``sig`` to the process and each of its descendants (multi-worker trigate puts its workers in
    their own process groups, so a group signal would miss them)."""
    for pid in p.pids():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class RSSSampler(threading.Thread):
    """Peak RSS and peak open sockets of a server process tree while a workload runs."""

    def __init__(self, proc: Proc, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.proc, self.every = proc, every
        self.peak = proc.rss_kb()
        self.base_sockets = self.peak_sockets = self.sockets()
        self.cpu0 = proc.cpu_seconds()
        self.cpu = 0.0
        self._stop_ev = threading.Event()

    def sockets(self) -> int:
        n = 0
        for pid in self.proc.pids():
            try:
                n += sum(1 for fd in os.scandir(f"/proc/{pid}/fd") if os.readlink(fd.path).startswith("socket:"))
            except OSError:
                pass
        return n

    def run(self) -> None:
        while not self._stop_ev.wait(self.every):
            self.peak = max(self.peak, self.proc.rss_kb())
            self.peak_sockets = max(self.peak_sockets, self.sockets())

    def stop(self) -> None:
        self._stop_ev.set()
        self.join()
        self.peak = max(self.peak, self.proc.rss_kb())
        self.cpu = self.proc.cpu_seconds() - self.cpu0

    @property
    def held(self) -> int:
        """Most connections the gateway held at once: each stream holds a client and an upstream socket."""
        return max(0, self.peak_sockets - self.base_sockets) // 2


def fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        info["loadavg_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    b = Bench(a)
    if b.cpus.client is not None:
        os.sched_setaffinity(0, {int(b.cpus.client)})  # this orchestrator stays off the gateway's core
    t0 = time.monotonic()
    results: dict[str, Any] = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                                        "args": {k: (sorted(v) if isinstance(v, set) else v)
                                                 for k, v in vars(a).items()}}}
    try:
        b.prepare()
        results["meta"]["pinning"] = b.cpus.note
        results["meta"]["load_generator"] = ("wrk (saturation) + trio open-loop generator (fixed rate, streams) + "
                                             "epoll raw-socket client (slow streams)") if b.wrk else \
            "trio closed/open-loop generator (wrk unavailable) + epoll raw-socket client (slow streams)"
        if b.litellm_exe is not None:
            results["meta"]["litellm_version"] = setup.litellm_version(Path(a.litellm_venv))
        log(b.cpus.note)
        if a.profile:
            b.profile(Path(a.profile))
            return 0
        rate = a.rate
        if 1 in a.only:
            results["w1"] = b.w1()
            rate = results["w1"]["rate"]
        if 2 in a.only:
            results["w2"] = b.w2(rate)
        if 3 in a.only:
            results["w3"] = b.w3(rate)
        if 4 in a.only:
            results["w4"] = b.w4()
        if 5 in a.only:
            results["w5"] = b.w5()
    except KeyboardInterrupt:
        b.notes.append("interrupted: partial results")
        log("interrupted")
    finally:
        b.shutdown()
    if a.profile:
        return 0
    results["meta"]["notes"] = b.notes
    results["meta"]["seconds"] = round(time.monotonic() - t0, 1)
    results["meta"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    table, targets = report.build(results)
    results["table"] = table
    results["targets"] = targets
    text = report.render(results)
    print(text)
    out = Path(a.out)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nresults: {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
