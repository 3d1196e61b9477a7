"""Starting, pinning, watching and stopping the benchmark's server processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen[bytes], seconds: float = 30, log: Path | None = None) -> None:
    """Until ``url`` answers any HTTP status; exits the script (with the tail of ``log``) if ``proc`` dies
    or ``seconds`` pass first. For the focused scripts/bench_*.py that run plain subprocesses."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else "did not come up"
            raise SystemExit(f"{url}: {why}" + (f"\n{tail(log)}" if log is not None else ""))
        time.sleep(0.05)


# every CPU this run may use, taken before the orchestrator pins itself to one
ALL_CPUS = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """``cmd`` under taskset: on ``cpus``, or (None) on every CPU, so it does not inherit the orchestrator's pin."""
    if shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", cpus or ALL_CPUS, *cmd]


def http_ok(port: int, path: str, timeout: float = 1.0) -> bool:
    """One GET over a raw socket: True on any HTTP status line (the server is up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.")
    except OSError:
        return False


class Proc:
    """A server process in its own process group (so helpers it forks go with it)."""

    def __init__(self, name: str, cmd: list[str], log: Path, *, cpus: str | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.name = name
        self.cmd = pinned(cmd, cpus)
        self.cpus = cpus
        self.log = log
        self._logf = open(log, "ab")
        self.p = subprocess.Popen(self.cmd, stdout=self._logf, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                  start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def wait_http(self, port: int, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.p.returncode}; see {self.log}:\n"
                                   + tail(self.log))
            if http_ok(port, path):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer on port {port} within {timeout:g}s; see {self.log}:\n"
                           + tail(self.log))

    def pids(self) -> list[int]:
        """The process and its descendants (LiteLLM and multi-worker trigate fork)."""
        out = [self.p.pid]
        i = 0
        while i < len(out):
            try:
                kids = Path(f"/proc/{out[i]}/task/{out[i]}/children").read_text().split()
            except OSError:
                kids = []
            out += [int(k) for k in kids]
            i += 1
        return out

    def rss_kb(self) -> int:
        """Resident set size of the process tree, KiB (python processes only: taskset exec's)."""
        return sum(status_kb(pid, "VmRSS") for pid in self.pids())

    def hwm_kb(self) -> int:
        return sum(status_kb(pid, "VmHWM") for pid in self.pids())

    def cpu_seconds(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass
        return total

    def stop(self, timeout: float = 10.0) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        self._logf.close()


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""
