"""``scripts/bench --profile DIR``: py-spy on the (pinned, single-worker) trigate process under
workload 1 (non-streaming: saturated at concurrency 64, and at a fixed moderate rate), workload 2
(streaming, saturated) and workload 3 (translated streaming, saturated). Writes, per workload, a flame
graph (SVG, from a second recording), the raw collapsed stacks, and top.txt: the functions with the
most samples on top of the stack (self) and anywhere on it (inclusive), as % of samples. Only threads
holding the GIL are sampled (``--gil``), so the numbers are CPU time, not waiting."""

from __future__ import annotations

import collections
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

PYSPY_RATE = 250


def py_spy() -> str | None:
    import sys

    cand = Path(sys.executable).parent / "py-spy"
    return str(cand) if cand.exists() else shutil.which("py-spy")


def record(pid: int, out: Path, seconds: int, fmt: str) -> subprocess.Popen[bytes]:
    exe = py_spy()
    assert exe is not None
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate",
                             str(PYSPY_RATE), "--format", fmt, "--output", str(out), "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def summarize(raw: Path, top: int = 30) -> str:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    files: collections.Counter[str] = collections.Counter()
    libs: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        # drop the thread / process root frames py-spy adds
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
        leaf_file = frames[-1].split("(", 1)[-1].split(":", 1)[0]
        files[_package(leaf_file)] += n
        libs[_package(leaf_file).split("/", 1)[0].split(":", 1)[0]] += n
    lines = [f"{total} samples at {PYSPY_RATE} Hz", "", "self time (function on top of the stack):"]
    lines += [f"  {c / total * 100:5.1f}%  {f}" for f, c in self_c.most_common(top)]
    lines += ["", "self time by library (leaf frames; stdlib = Python's own modules):"]
    lines += [f"  {c / total * 100:5.1f}%  {f}" for f, c in libs.most_common(15)]
    lines += ["", "self time by package / module (leaf frames):"]
    lines += [f"  {c / total * 100:5.1f}%  {f}" for f, c in files.most_common(20)]
    lines += ["", "inclusive time (function anywhere on the stack):"]
    lines += [f"  {c / total * 100:5.1f}%  {f}" for f, c in incl.most_common(top * 2)]
    return "\n".join(lines)


def _package(path: str) -> str:
    p = path.replace("\\", "/")
    if "site-packages/" in p:
        rest = p.split("site-packages/", 1)[1]
        return rest.split("/", 1)[0]
    if "/trigate/" in p:
        return "trigate/" + p.split("/trigate/", 1)[1]
    if "/lib/python3" in p or ("/" not in p and p.endswith(".py")) or p.startswith("<frozen"):
        return "stdlib:" + p.rsplit("/", 1)[-1]
    return p


def run(b: Any, outdir: Path) -> None:
    from bench_lib.main import PROMPT, STREAM_PROMPT, log

    if py_spy() is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    outdir.mkdir(parents=True, exist_ok=True)
    b.only_running("trigate")
    pid = b.targets["trigate"]["proc"].pid
    seconds = 12
    plain = {"model": "gpt-bench", "messages": [{"role": "user", "content": PROMPT}]}
    stream = {"model": "gpt-bench", "stream": True, "messages": [{"role": "user", "content": STREAM_PROMPT}]}
    translated = {"model": "claude-bench", "stream": True, "messages": [{"role": "user", "content": STREAM_PROMPT}]}
    jobs = [("w1-nonstreaming", plain, "}", "/v1/chat/completions", None),
            ("w1-nonstreaming-100rps", plain, "}", "/v1/chat/completions", 100.0),
            ("w2-streaming", stream, "[DONE]", "/v1/chat/completions", None),
            ("w3-translated-openai-from-anthropic", translated, "[DONE]", "/v1/chat/completions", None)]
    for name, body, expect, path, rate in jobs:
        for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
            log(f"profile: {name} ({fmt}), {seconds} s under load")
            result: dict[str, Any] = {}

            def load(body: dict[str, Any] = body, expect: str = expect, path: str = path,
                     result: dict[str, Any] = result, rate: float | None = rate) -> None:
                f = b.request_file("trigate", path, body)
                port = b.targets["trigate"]["port"]
                if rate:
                    spec = {"mode": "open", "rate": rate, "duration": seconds + 2, "warmup": 0.5}
                else:
                    spec = {"mode": "closed", "concurrency": 64 if expect == "}" else 32, "count": 200_000}
                spec.update({"host": "127.0.0.1", "port": port, "request_file": str(f), "expect": expect})
                result.update(b.loadgen(spec, timeout=seconds + 30))

            # the load runs longer than the recording; it is stopped when the recording ends
            t = threading.Thread(target=_bounded_load, args=(b, load, seconds + 2), daemon=True)
            t.start()
            import time

            time.sleep(1.5)  # warm
            out = outdir / f"{name}.{suffix}"
            p = record(pid, out, seconds, fmt)
            _, err = p.communicate()
            if p.returncode != 0:
                log(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
            t.join()
            if fmt == "raw" and out.exists():
                summary = summarize(out)
                (outdir / f"{name}.top.txt").write_text(summary)
                log(f"profile: {outdir / (name + '.top.txt')}")
    b.only_running(None)


def _bounded_load(b: Any, load: Any, seconds: float) -> None:
    """Run ``load`` (a closed loop with a huge count) and stop it after ``seconds`` by killing the
    load generator process, whose partial results are not needed."""
    import os
    import signal
    import time

    done = threading.Event()

    def target() -> None:
        try:
            load()
        except Exception:
            pass
        done.set()

    th = threading.Thread(target=target, daemon=True)
    th.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end and not done.is_set():
        time.sleep(0.1)
    # the load generator is a child of this process running loadgen.py: stop it by pid
    for pid in _children(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"loadgen.py" in cmd:
            os.kill(pid, signal.SIGTERM)
    th.join(10)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out
