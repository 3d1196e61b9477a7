"""Tools the benchmark installs for itself: a load generator (wrk, from Debian) and LiteLLM's proxy
(from PyPI, into its own virtualenv, never into trigate's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY_DISABLED": "true",
               "LITELLM_LOG": "ERROR"}


def ensure_wrk(log: list[str]) -> str | None:
    """Path of wrk, installing the Debian package when we are root; None if it cannot be had."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (apt-get install wrk) ...", file=sys.stderr, flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            found = shutil.which("wrk")
            if found:
                log.append("wrk installed from Debian (apt-get install wrk)")
                return found
    log.append("wrk is not installed and could not be installed: saturation runs use the trio closed-loop "
               "generator in scripts/bench_lib/loadgen.py instead (slower client, lower ceiling)")
    return None


def ensure_litellm(venv: Path, log: list[str]) -> Path | None:
    """The litellm proxy executable in ``venv``, created with ``pip install 'litellm[proxy]'`` if missing."""
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"bench: installing LiteLLM's proxy into {venv} (pip install 'litellm[proxy]'; takes a few minutes) ...",
          file=sys.stderr, flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    logfile = venv.parent / "litellm-install.log"
    with open(logfile, "wb") as f:
        if not (venv / "bin" / "python").exists():
            r = subprocess.run([sys.executable, "-m", "venv", str(venv)], stdout=f, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                log.append(f"LiteLLM: could not create a virtualenv at {venv} (see {logfile})")
                return None
        r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], stdout=f,
                           stderr=subprocess.STDOUT)
    if r.returncode != 0 or not exe.exists():
        log.append(f"LiteLLM failed to install (pip exit {r.returncode}; see {logfile}): LiteLLM columns are empty")
        return None
    log.append(f"LiteLLM installed into {venv}")
    return exe


def litellm_version(venv: Path) -> str | None:
    try:
        r = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.metadata as m; print(m.version('litellm'))"],
                           capture_output=True, text=True, timeout=60, env={**os.environ, **LITELLM_ENV})
        return r.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None
