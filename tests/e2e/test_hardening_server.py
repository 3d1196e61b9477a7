"""Server hardening (issue 13): keep-alive after early error responses; `trigate serve` start, logs and exit.

An answer sent from the request's headers alone (404, 405, 401 on passthrough, 413) used to leave the
HTTP/1.1 connection stuck when the body was still arriving: the next request on it was never answered.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h11
import httpx
import openai
import pytest

from tests.e2e.test_cli_serve import NO_KEYS, serve
from tests.harness import UPSTREAM_KEY, Servers, free_loopback_port, openai_config, wait_healthy

GOOD_KEY = "sk-trigate-hardening-good"
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def keyed() -> Iterator[Servers]:
    """A gateway that requires a key (so passthrough answers 401 to a wrong one), with a small body limit."""
    with Servers(lambda mock_url: openai_config(
            mock_url, auth={"keys": [{"id": "good", "key": GOOD_KEY}]},
            server={"max_body_bytes": MAX_BODY}), mock_key=UPSTREAM_KEY) as s:
        yield s


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(3)
    return sock


def _read_response(sock: socket.socket, conn: h11.Connection) -> tuple[int, dict[bytes, bytes], bytes]:
    status, headers, body = 0, {}, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status, headers = event.status_code, dict(event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, headers, body
        else:
            raise AssertionError(f"unexpected {event!r}")


def _request(conn: h11.Connection, method: str, path: str, length: int, *extra: tuple[str, str]) -> bytes:
    headers = [("host", "gateway"), ("content-type", "application/json"), *extra]
    if length:
        headers.append(("content-length", str(length)))
    return conn.send(h11.Request(method=method, target=path, headers=headers)) or b""


EARLY_ERRORS = [
    pytest.param("POST", "/v1/no-such-endpoint", (), 404, id="unknown-path"),
    pytest.param("POST", "/health", (), 405, id="wrong-method"),
    pytest.param("POST", "/openai/v1/chat/completions", (("authorization", "Bearer sk-wrong"),), 401,
                 id="passthrough-wrong-key"),
]


@pytest.mark.parametrize(("method", "path", "extra", "status"), EARLY_ERRORS)
def test_next_request_on_the_connection_is_answered_after_an_early_error(
        keyed: Servers, method: str, path: str, extra: tuple[tuple[str, str], ...], status: int) -> None:
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    conn = h11.Connection(h11.CLIENT)
    with _connect(keyed.url) as sock:
        # The headers first and the body a moment later, as a client writing them separately does:
        # the gateway answers from the headers before the body has arrived.
        sock.sendall(_request(conn, method, path, len(body), *extra))
        time.sleep(0.3)
        sock.sendall((conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        got, _, payload = _read_response(sock, conn)
        assert got == status, payload
        assert b"sk-wrong" not in payload
        assert conn.our_state is h11.DONE and conn.their_state is h11.DONE  # kept alive, not "close"
        conn.start_next_cycle()

        started = time.monotonic()
        sock.sendall(_request(conn, "GET", "/health", 0) + (conn.send(h11.EndOfMessage()) or b""))
        got, _, payload = _read_response(sock, conn)
        assert got == 200 and payload == b'{"status":"ok"}'
        assert time.monotonic() - started < 2


def test_a_body_too_large_to_drain_closes_the_connection(keyed: Servers) -> None:
    conn = h11.Connection(h11.CLIENT)
    with _connect(keyed.url) as sock:
        # only the headers: what the gateway leaves unread on a closed socket would turn its FIN into a reset
        sock.sendall(_request(conn, "POST", "/v1/chat/completions", MAX_BODY * 4))
        status, headers, _ = _read_response(sock, conn)
        assert status == 413
        assert headers.get(b"connection") == b"close"
        # and the gateway really closes it, instead of leaving it open and unanswered
        started = time.monotonic()
        while sock.recv(65536):
            pass
        assert time.monotonic() - started < 2


def test_openai_sdk_keeps_working_on_its_connection_after_a_404(servers: Servers) -> None:
    # A body larger than the socket buffers hold, so it is still being sent when the gateway has
    # answered 404 from the headers; still under server.max_body_bytes, so it is drained, not cut.
    big = "x" * (16 << 20)
    with httpx.Client(timeout=5) as http:
        client = openai.OpenAI(base_url=servers.url + "/v1", api_key="unused", max_retries=0, timeout=5,
                               http_client=http)
        for _ in range(2):
            with pytest.raises(openai.NotFoundError):
                client.post("/no-such-endpoint", cast_to=httpx.Response, body={"input": big})
            reply = client.chat.completions.create(model="gpt-4o-mini",
                                                   messages=[{"role": "user", "content": "still there?"}])
            assert reply.choices[0].message.content


# `trigate serve` as a process (issue 13, items 2 and 5).

GROUP_CONFIG = """\
auth: {open: true}
store: {responses_path: ':memory:'}
providers: {mock: {kind: mock}}
models:
  - {name: 'mock-*', provider: mock}
  - name: smart
    targets: [{provider: mock, model: mock-a, weight: 3}, {provider: mock, model: mock-b}]
    fallbacks: [mock-c]
"""


def test_a_start_logs_cleanly_once_per_line_and_the_banner_shows_group_targets(tmp_path: Path) -> None:
    cfg = tmp_path / "group.yaml"
    cfg.write_text(GROUP_CONFIG)
    with serve("--config", str(cfg)) as (proc, url):
        r = httpx.post(url + "/v1/chat/completions",
                       json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        err = proc.stderr.read()
    assert "Logging error" not in err and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == len(set(lines)), f"duplicated lines:\n{err}"
    assert sum("Running on http://" in line for line in lines) == 1
    assert "  smart                    -> mock (mock-a), mock (mock-b); fallbacks: mock-c" in lines, err
    assert "None" not in err
    assert '"model":"smart"' in err  # the access log still reaches stderr


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for workers in ("1", "2"):
            proc = subprocess.run([sys.executable, "-m", "trigate.cli", "serve", "--port", str(port),
                                   "--workers", workers], capture_output=True, text=True, timeout=30, env=NO_KEYS)
            assert proc.returncode == 1
            assert proc.stderr == f"trigate: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_workers_remove_the_metrics_directory_they_made(tmp_path: Path) -> None:
    port = free_loopback_port()
    env = {k: v for k, v in NO_KEYS.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | {"TMPDIR": str(tmp_path)}
    log = tmp_path / "log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trigate.cli", "serve", "--workers", "2", "--port", str(port)],
                                env=env, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, 30, log.read_text)
        made = list(tmp_path.glob("trigate-metrics-*"))
        assert len(made) == 1 and made[0].is_dir()
        body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 200
        assert 'api="chat"' in httpx.get(url + "/metrics").text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not made[0].exists(), log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_fake_upstream_keeps_its_connection_after_an_early_error(keyed: Servers) -> None:
    """The fake upstream runs on the same stack, so the gateway's pooled connections to it must survive too."""
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    conn = h11.Connection(h11.CLIENT)
    with _connect(keyed.mock_url) as sock:
        # a method the route doesn't take: answered by the framework before the body arrived
        sock.sendall(_request(conn, "TRACE", "/_mock/requests", len(body)))
        time.sleep(0.3)
        sock.sendall((conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        got, _, _ = _read_response(sock, conn)
        assert got == 405
        conn.start_next_cycle()
        sock.sendall(_request(conn, "GET", "/v1/models", 0, ("authorization", f"Bearer {UPSTREAM_KEY}"))
                     + (conn.send(h11.EndOfMessage()) or b""))
        got, _, payload = _read_response(sock, conn)
        assert got == 200 and b"mock-gpt" in payload


def test_passthrough_answers_carry_one_date_and_one_server_header(keyed: Servers) -> None:
    conn = h11.Connection(h11.CLIENT)
    with _connect(keyed.url) as sock:
        sock.sendall(_request(conn, "GET", "/openai/v1/models", 0, ("authorization", f"Bearer {GOOD_KEY}"))
                     + (conn.send(h11.EndOfMessage()) or b""))
        status = 0
        names: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status, names = event.status_code, [k for k, _ in event.headers]
            elif isinstance(event, h11.EndOfMessage):
                break
    assert status == 200
    assert names.count(b"date") == 1 and names.count(b"server") == 1, names
