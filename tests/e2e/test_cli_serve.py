"""`trigate serve` as users run it: a real process, the embedded default, signals and bad configs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai

from tests.harness import free_loopback_port, wait_healthy

NO_KEYS = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}


@contextmanager
def serve(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_loopback_port()
    proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--port", str(port), *args],
                            env=NO_KEYS, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, 20, lambda: proc.stderr.read() if proc.stderr else "")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_embedded_default_answers_the_readme_curl() -> None:
    with serve() as (proc, url):
        r = httpx.post(url + "/v1/chat/completions",
                       json={"model": "mock-gpt", "messages": [{"role": "user", "content": "Hello!"}]})
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "Hello from the trigate mock. You said: Hello!"
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused-in-open-mode", max_retries=0)
        text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "Hello!"}], stream=True))
        assert text.endswith("You said: Hello!")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        err = proc.stderr.read()
        assert "providers:" in err and "mock" in err and "mock-*" in err
        assert '"model":"mock-gpt"' in err, "access log line missing"


def test_sigterm_lets_in_flight_streams_finish(tmp_path: Path) -> None:
    cfg = tmp_path / "slow.yaml"
    cfg.write_text("auth: {open: true}\nserver: {graceful_timeout: 10}\nstore: {responses_path: ':memory:'}\n"
                   "providers: {mock: {kind: mock, token_delay_ms: 20}}\n"
                   "models: [{name: 'mock-*', provider: mock}]\n")
    with serve("--config", str(cfg)) as (proc, url), httpx.Client(timeout=20) as http:
        body = {"model": "mock-slow", "stream": True,
                "messages": [{"role": "user", "content": " ".join(["w"] * 40)}]}
        with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]", "the in-flight stream was cut by shutdown"
        assert len(rest) > 40
        assert proc.wait(10) == 0
        # and no new requests are taken once it has stopped
        try:
            httpx.get(url + "/health", timeout=1)
            raise AssertionError("still serving after shutdown")
        except httpx.TransportError:
            pass


def test_broken_config_names_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("auth: {open: true}\nproviders: {openai: {kind: openai, api_key: x}}\n"
                   "models: [{name: a, provider: openai}, {name: b, provider: openai}, {name: c, provider: opneai}]\n")
    proc = subprocess.run([sys.executable, "-m", "trigate.cli", "serve", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30, env=NO_KEYS)
    assert proc.returncode == 2
    assert "models[2].provider: unknown provider 'opneai'" in proc.stderr
