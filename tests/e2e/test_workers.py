"""`trigate serve --workers 2`: two processes share the port; /metrics adds up both."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx

from tests.e2e.test_cli_serve import NO_KEYS
from tests.harness import free_loopback_port, wait_healthy


def test_two_workers_share_the_port_and_the_metrics(tmp_path) -> None:
    port = free_loopback_port()
    env = {k: v for k, v in NO_KEYS.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--workers", "2", "--port", str(port)],
                            env=env, stderr=open(tmp_path / "log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, 30, (tmp_path / "log").read_text)
        body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(30):  # new connections each time: the kernel spreads them over the workers
            assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 200
        text = httpx.get(url + "/metrics").text
        total = sum(float(m) for m in re.findall(
            r'^trigate_requests_total\{[^}]*api="chat"[^}]*\} ([0-9.e+]+)$', text, re.M))
        assert total == 30, text[:2000]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        log = (tmp_path / "log").read_text()
        assert "2 workers" in log
    finally:
        if proc.poll() is None:
            proc.kill()
