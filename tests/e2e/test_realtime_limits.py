"""Realtime sessions at their edges: the configured limits (idle, duration, concurrency, frame size)
and upstreams that misbehave in ways the fake upstream cannot (a TCP drop without a close frame, an
address nobody listens on, a server that records the close code it was sent)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketRequest, open_websocket_url, serve_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from tests.e2e.test_realtime import (
    AUTH,
    CLIENT_KEY,
    audio_b64,
    await_for,
    recv,
    send,
    session_lines,
    wait_for,
    ws_base,
)
from tests.harness import UPSTREAM_KEY, LogCapture, Servers, free_loopback_port, openai_config
from trigate.config import Config, parse_config
from trigate.mock.realtime import records
from trigate.realtime.settings import RealtimeSettings

LIMITS = RealtimeSettings(idle_timeout_seconds=0.6, max_session_seconds=1.5, max_sessions=2,
                          max_frame_bytes=64 * 1024, close_timeout_seconds=1.0)


def with_realtime(cfg: Config, settings: RealtimeSettings) -> Config:
    return attrs.evolve(cfg, realtime=settings)


class OddUpstreams:
    """Two hand-made Realtime upstreams on their own thread and trio loop:
    ``abrupt`` accepts, sends two events and drops the TCP connection without a close frame;
    ``recorder`` accepts, sends ``session.created`` and records each handshake and the close it gets."""

    def __init__(self) -> None:
        self.handshakes: list[dict[str, str]] = []
        self.closes: list[tuple[int | None, str | None, float]] = []
        self.abrupt_port = 0
        self.recorder_port = 0
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=lambda: trio.run(self._main), daemon=True)

    def __enter__(self) -> OddUpstreams:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None and self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.abrupt_port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, self._abrupt, listeners)
            server = await nursery.start(partial(serve_websocket, self._recorder, "127.0.0.1", 0, None))
            self.recorder_port = server.port
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _abrupt(self, stream: trio.SocketStream) -> None:
        conn = WSConnection(ConnectionType.SERVER)
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
                for event in conn.events():
                    if isinstance(event, Request):
                        out = conn.send(AcceptConnection())
                        out += conn.send(TextMessage(data='{"type":"session.created","event_id":"e1","session":{}}'))
                        out += conn.send(TextMessage(
                            data='{"type":"response.created","event_id":"e2","response":{"id":"resp_lost"}}'))
                        await stream.send_all(out)
                        await trio.sleep(0.05)
                        return
        finally:
            await stream.aclose()

    async def _recorder(self, request: WebSocketRequest) -> None:
        self.handshakes.append({k.decode().lower(): v.decode() for k, v in request.headers})
        ws = await request.accept()
        await ws.send_message('{"type":"session.created","event_id":"e1","session":{}}')
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            reason = exc.reason
            self.closes.append((reason.code if reason else None, reason.reason if reason else None, time.monotonic()))


@pytest.fixture(scope="module")
def odd() -> Iterator[OddUpstreams]:
    with OddUpstreams() as upstreams:
        yield upstreams


@pytest.fixture(scope="module")
def limited(odd: OddUpstreams, access_log: LogCapture) -> Iterator[Servers]:
    dead = free_loopback_port()

    def make(mock_url: str) -> Config:
        raw: dict[str, Any] = openai_config(mock_url)
        raw["providers"].update({
            "abrupt": {"kind": "openai", "base_url": f"http://127.0.0.1:{odd.abrupt_port}/v1", "api_key": "k-abrupt"},
            "recorder": {"kind": "openai", "base_url": f"http://127.0.0.1:{odd.recorder_port}/v1",
                         "api_key": "k-recorder"},
            "dead": {"kind": "openai", "base_url": f"http://127.0.0.1:{dead}/v1", "api_key": "k-dead"},
        })
        raw["models"] += [{"name": f"{p}/*", "provider": p} for p in ("abrupt", "recorder", "dead")]
        return with_realtime(parse_config(raw, env={}), LIMITS)

    with Servers(make, mock_key=UPSTREAM_KEY) as servers:
        yield servers


@pytest.fixture(autouse=True)
def _settled(request: pytest.FixtureRequest) -> None:
    """Each test starts with no session open: a session a previous test closed may still hold one of
    the two slots for a moment, until the gateway has closed its upstream side. (Sync on purpose:
    pytest-trio does not run async autouse fixtures.)"""
    if "limited" in request.fixturenames:
        servers: Servers = request.getfixturevalue("limited")
        assert servers.running is not None
        extras = servers.running.gateway.extras
        wait_for(lambda: getattr(extras.get("realtime.sessions"), "active", 0) == 0)


def _url(servers: Servers, model: str) -> str:
    return f"{ws_base(servers)}/v1/realtime?model={model}"


async def _closed(ws: Any, within: float = 5) -> tuple[list[dict[str, Any]], ConnectionClosed]:
    """Events until the socket closes, and the close."""
    events: list[dict[str, Any]] = []
    with trio.fail_after(within):
        while True:
            try:
                events.append(json.loads(await ws.get_message()))
            except ConnectionClosed as exc:
                return events, exc


async def _line(access_log: LogCapture, model: str) -> dict[str, Any]:
    return await await_for(lambda: (session_lines(access_log, model) or [None])[-1])


# -- misbehaving upstreams -----------------------------------------------------------------------


async def test_upstream_vanishing_without_a_close_frame(limited: Servers, access_log: LogCapture) -> None:
    async with open_websocket_url(_url(limited, "abrupt/x"), extra_headers=AUTH) as ws:
        events, closed = await _closed(ws)
    assert [e["type"] for e in events] == ["session.created", "response.created"]
    assert closed.reason.code == 1011 and closed.reason.reason == "upstream connection lost"
    line = await _line(access_log, "abrupt/x")
    assert line["closed_by"] == "upstream" and line["upstream_close_code"] == 1006
    assert line["responses_unfinished"] == 1


async def test_client_close_reaches_the_upstream_as_a_close_frame(limited: Servers, odd: OddUpstreams) -> None:
    before = len(odd.closes)
    headers = [*AUTH, (b"openai-beta", b"realtime=v1")]
    async with open_websocket_url(_url(limited, "recorder/x"), extra_headers=headers) as ws:
        assert (await recv(ws))["type"] == "session.created"
        closed_at = time.monotonic()
        await ws.aclose()
    code, reason, when = await await_for(lambda: odd.closes[before] if len(odd.closes) > before else None)
    assert (code, reason) == (1000, "client closed the session")
    assert when - closed_at < 0.1
    shake = odd.handshakes[-1]
    assert shake["authorization"] == "Bearer k-recorder" and shake["openai-beta"] == "realtime=v1"
    assert CLIENT_KEY not in json.dumps(shake) and "sec-websocket-protocol" not in shake


async def test_unreachable_upstream_closes_with_1011_and_a_reason(limited: Servers, access_log: LogCapture) -> None:
    async with open_websocket_url(_url(limited, "dead/x"), extra_headers=AUTH, subprotocols=["realtime"]) as ws:
        assert ws.subprotocol == "realtime"
        events, closed = await _closed(ws)
    assert events == []
    assert closed.reason.code == 1011
    assert closed.reason.reason == "upstream unreachable: provider 'dead' (connection failed)"
    line = await _line(access_log, "dead/x")
    assert line["status"] == 502 and line["error"] == "upstream_unavailable"
    assert line["close_code"] == 1011 and line["close_cause"] == "upstream_unreachable"


# -- limits --------------------------------------------------------------------------------------


async def test_idle_session_is_closed_with_a_notice(limited: Servers, access_log: LogCapture) -> None:
    started = time.monotonic()
    async with open_websocket_url(_url(limited, "openai/idle-probe"), extra_headers=AUTH) as ws:
        events, closed = await _closed(ws)
    elapsed = time.monotonic() - started
    assert [e["type"] for e in events] == ["session.created", "error"]
    assert events[1]["error"]["code"] == "session_idle_timeout"
    assert closed.reason.code == 1001 and closed.reason.reason == "idle timeout: no frames for 0.6s"
    assert 0.6 <= elapsed < 1.4
    seen = await await_for(lambda: next((r for r in records(limited.mock).snapshot()
                                         if r.model == "idle-probe" and r.closed is not None), None))
    assert seen.closed_by == "peer"
    line = await _line(access_log, "openai/idle-probe")
    assert line["close_cause"] == "idle_timeout" and line["upstream_close_code"] == 1000


async def test_session_longer_than_the_maximum_is_closed(limited: Servers, access_log: LogCapture) -> None:
    started = time.monotonic()
    async with open_websocket_url(_url(limited, "openai/long-probe"), extra_headers=AUTH) as ws:

        async def keep_talking() -> None:
            try:
                while True:
                    await send(ws, {"type": "input_audio_buffer.append", "audio": audio_b64(480)})
                    await trio.sleep(0.1)
            except ConnectionClosed:
                return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_talking)
            events, closed = await _closed(ws)
            nursery.cancel_scope.cancel()
    elapsed = time.monotonic() - started
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "session_expired"
    assert closed.reason.code == 1001
    assert closed.reason.reason == "Your session hit the maximum duration of 1.5 seconds."
    assert 1.5 <= elapsed < 2.5
    line = await _line(access_log, "openai/long-probe")
    assert line["close_cause"] == "max_duration" and line["client_frames"] >= 10


async def test_sessions_beyond_the_cap_are_refused_with_429(limited: Servers, access_log: LogCapture) -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_websocket_url(_url(limited, "openai/cap-1"), extra_headers=AUTH))
        await stack.enter_async_context(open_websocket_url(_url(limited, "openai/cap-2"), extra_headers=AUTH))
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(_url(limited, "openai/cap-3"), extra_headers=AUTH):
                pass
        assert rejected.value.status_code == 429
        assert json.loads(rejected.value.body)["error"]["code"] == "too_many_sessions"
        assert (b"retry-after", b"1") in [(k.lower(), v) for k, v in rejected.value.headers]
        await first.aclose()
        await _line(access_log, "openai/cap-1")  # logged once the gateway has let it go
        async with open_websocket_url(_url(limited, "openai/cap-4"), extra_headers=AUTH) as again:
            assert (await recv(again))["type"] == "session.created"
    assert (await _line(access_log, "openai/cap-3"))["status"] == 429


async def test_oversized_client_frame_closes_with_1009(limited: Servers, access_log: LogCapture) -> None:
    async with open_websocket_url(_url(limited, "openai/big-probe"), extra_headers=AUTH) as ws:
        await recv(ws)
        await send(ws, {"type": "input_audio_buffer.append", "audio": audio_b64(30_000)})  # ~40 KB: fine
        await send(ws, {"type": "input_audio_buffer.append", "audio": audio_b64(60_000)})  # ~80 KB: too big
        _, closed = await _closed(ws)
    assert closed.reason.code == 1009 and "exceeds the limit of 65536 bytes" in closed.reason.reason
    seen = await await_for(lambda: next((r for r in records(limited.mock).snapshot()
                                         if r.model == "big-probe" and r.closed is not None), None))
    assert seen.audio_bytes == 30_000  # the oversized frame never reached the upstream
    line = await _line(access_log, "openai/big-probe")
    assert line["close_cause"] == "frame_too_big" and line["close_code"] == 1009


async def test_graceful_shutdown_closes_open_sessions_with_1001(access_log: LogCapture) -> None:
    servers = Servers(openai_config, mock_key=UPSTREAM_KEY)
    await trio.to_thread.run_sync(servers.__enter__)
    stopped = False
    try:
        async with open_websocket_url(_url(servers, "openai/shutdown-probe"), extra_headers=AUTH) as ws:
            assert (await recv(ws))["type"] == "session.created"
            started = time.monotonic()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(trio.to_thread.run_sync, servers.__exit__, None, None, None))
                events, closed = await _closed(ws)
            stopped = True
        # the session did not hold the shutdown for the grace period (30 s by default)
        assert time.monotonic() - started < 3
        assert events == []
        assert closed.reason.code == 1001 and closed.reason.reason == "gateway shutting down"
        seen = records(servers.mock).snapshot()[-1]
        assert seen.model == "shutdown-probe" and seen.closed_by == "peer"
        line = await _line(access_log, "openai/shutdown-probe")
        assert line["close_cause"] == "shutdown" and line["upstream_close_code"] == 1001
    finally:
        if not stopped:
            await trio.to_thread.run_sync(servers.__exit__, None, None, None)
