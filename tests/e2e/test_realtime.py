"""Realtime sessions through the gateway, end to end: the official SDK (GA and beta) and raw
trio-websocket clients against the fake upstream's scripted voice conversation. Usage is checked to
the token against what the upstream reported; keys against what the upstream and the log saw."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url

from tests.harness import UPSTREAM_KEY, LogCapture, Servers
from trigate.mock.realtime import RealtimeSessionRecord, records
from trigate.mock.state import Fault, MockState

CLIENT_KEY = "sk-client-key-do-not-forward-42"
AUTH = [(b"authorization", f"Bearer {CLIENT_KEY}".encode())]


# -- helpers (imported by the other realtime test modules) ---------------------------------------


def ws_base(servers: Servers) -> str:
    return "ws" + servers.url.removeprefix("http")


def audio_b64(size: int) -> str:
    return base64.b64encode(bytes(i % 251 for i in range(size))).decode()


async def recv(ws: WebSocketConnection, within: float = 5) -> dict[str, Any]:
    with trio.fail_after(within):
        return json.loads(await ws.get_message())


async def recv_until(ws: WebSocketConnection, kind: str, within: float = 5) -> list[dict[str, Any]]:
    """Events up to and including the first of type ``kind``."""
    out: list[dict[str, Any]] = []
    with trio.fail_after(within):
        while True:
            out.append(json.loads(await ws.get_message()))
            if out[-1]["type"] == kind:
                return out


async def send(ws: WebSocketConnection, event: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(event))


def text_item(text: str) -> dict[str, Any]:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}


def wait_for(predicate: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


async def await_for(predicate: Callable[[], Any], within: float = 3.0) -> Any:
    with trio.fail_after(within):
        while True:
            value = predicate()
            if value:
                return value
            await trio.sleep(0.01)


def session_lines(access_log: LogCapture, model: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in access_log.snapshot())
    return [r for r in lines if r.get("api") == "realtime" and r.get("model") == model]


def session_line(access_log: LogCapture, model: str) -> dict[str, Any]:
    return wait_for(lambda: (session_lines(access_log, model) or [None])[-1])


def mock_session(mock: MockState, model: str, since: float = 0.0) -> RealtimeSessionRecord:
    """The newest session the mock saw for ``model`` opened after ``since`` (time.monotonic()), so a
    late close from an earlier test on the shared mock is never mistaken for this one."""
    return wait_for(lambda: next((r for r in reversed(records(mock).snapshot())
                                  if r.model == model and r.opened >= since), None))


def closed_session(mock: MockState, model: str) -> RealtimeSessionRecord:
    return wait_for(lambda: next((r for r in reversed(records(mock).snapshot())
                                  if r.model == model and r.closed is not None), None))


def summed(usages: list[dict[str, Any]], *path: str) -> int:
    total = 0
    for u in usages:
        v: Any = u
        for key in path:
            v = v[key]
        total += v
    return total


@pytest.fixture
def rt(mock: MockState) -> Iterator[MockState]:
    """The shared fake upstream with its realtime records and token delay reset."""
    records(mock).reset()
    delay = mock.token_delay_ms
    yield mock
    mock.token_delay_ms = delay


# -- the official SDK ----------------------------------------------------------------------------


def test_sdk_voice_session_usage_matches_the_upstream_to_the_token(servers: Servers, rt: MockState,
                                                                   access_log: LogCapture) -> None:
    client = openai.OpenAI(base_url=servers.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    model = "openai/gpt-realtime-sdk"
    events: list[Any] = []
    with client.realtime.connect(model=model) as conn:
        assert conn.recv().type == "session.created"
        conn.session.update(session={
            "type": "realtime", "output_modalities": ["audio"],
            "instructions": "You are a terse voice assistant for a test suite; answer in one short sentence only",
            "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}}})
        assert conn.recv().type == "session.updated"
        conn.input_audio_buffer.append(audio=audio_b64(4800))
        conn.input_audio_buffer.append(audio=audio_b64(4800))
        conn.input_audio_buffer.commit()
        conn.response.create()
        for event in conn:
            events.append(event)
            if event.type == "response.done":
                break
        # a second turn: the first answer is now context, part of it reported as cached
        conn.conversation.item.create(item={"type": "message", "role": "user",
                                            "content": [{"type": "input_text", "text": "and again please"}]})
        conn.response.create()
        for event in conn:
            events.append(event)
            if event.type == "response.done":
                break
    kinds = [e.type for e in events]
    assert "conversation.item.input_audio_transcription.completed" in kinds
    first = kinds.index("response.done")
    audio = b"".join(base64.b64decode(e.delta) for e in events[:first] if e.type == "response.output_audio.delta")
    transcript = "".join(e.delta for e in events[:first] if e.type == "response.output_audio_transcript.delta")
    assert transcript == "Hello from the trigate mock realtime. I heard 9600 bytes of audio."
    assert len(audio) == 2400 * len(transcript.split())
    dones = [e for e in events if e.type == "response.done"]
    assert [d.response.status for d in dones] == ["completed", "completed"]

    seen = closed_session(rt, "gpt-realtime-sdk")
    assert seen.audio_bytes == 9600 and seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert [d.response.usage.input_tokens for d in dones] == [u["input_tokens"] for u in seen.usage]
    assert seen.usage[1]["input_token_details"]["cached_tokens"] > 0

    line = session_line(access_log, model)
    assert line["status"] == 101 and line["provider"] == "openai" and line["upstream_model"] == "gpt-realtime-sdk"
    assert line["input_tokens"] == summed(seen.usage, "input_tokens")
    assert line["output_tokens"] == summed(seen.usage, "output_tokens")
    assert line["cached_tokens"] == summed(seen.usage, "input_token_details", "cached_tokens")
    assert line["input_audio_tokens"] == summed(seen.usage, "input_token_details", "audio_tokens")
    assert line["output_audio_tokens"] == summed(seen.usage, "output_token_details", "audio_tokens")
    assert line["input_text_tokens"] == summed(seen.usage, "input_token_details", "text_tokens")
    assert line["responses"] == 2 and line["response_statuses"] == {"completed": 2}
    assert line["transcriptions"] == 1
    assert line["transcription_input_tokens"] == seen.transcription_usage[0]["input_tokens"]
    assert line["transcription_output_tokens"] == seen.transcription_usage[0]["output_tokens"]
    assert line["client_frames"] == 7 and line["upstream_frames"] == len(events) + 2
    assert line["closed_by"] == "client" and line["upstream_close_code"] == 1000


def test_sdk_beta_interface_passes_the_beta_header_upstream(servers: Servers, rt: MockState,
                                                            access_log: LogCapture) -> None:
    client = openai.OpenAI(base_url=servers.url + "/v1", api_key=CLIENT_KEY, max_retries=0,
                           websocket_base_url=ws_base(servers) + "/v1")
    model = "openai/gpt-4o-realtime-preview-beta"
    kinds: list[str] = []
    with client.beta.realtime.connect(model=model) as conn:
        conn.send({"type": "session.update", "session": {"modalities": ["audio", "text"],
                                                         "input_audio_transcription": {"model": "whisper-1"}}})
        conn.send({"type": "input_audio_buffer.append", "audio": audio_b64(24000)})
        conn.send({"type": "input_audio_buffer.commit"})
        conn.send({"type": "response.create"})
        for event in conn:
            kinds.append(event.type)
            if event.type == "response.done":
                break
    assert "conversation.item.created" in kinds and "conversation.item.added" not in kinds
    assert "response.audio.delta" in kinds and "response.audio_transcript.delta" in kinds
    assert "response.output_audio.delta" not in kinds
    seen = closed_session(rt, "gpt-4o-realtime-preview-beta")
    assert seen.beta and seen.headers["openai-beta"] == "realtime=v1"
    line = session_line(access_log, model)
    assert line["beta"] is True
    assert line["transcription_seconds"] == pytest.approx(0.5)  # whisper bills by duration
    assert line["input_tokens"] == seen.usage[0]["input_tokens"]


def test_azure_client_on_the_azure_path(servers: Servers, rt: MockState, access_log: LogCapture) -> None:
    client = openai.AzureOpenAI(azure_endpoint=servers.url, api_key=CLIENT_KEY, api_version="2025-04-01-preview",
                                websocket_base_url=ws_base(servers) + "/openai", max_retries=0)
    model = "azure-dated/voice-deployment"
    with client.realtime.connect(model=model) as conn:
        assert conn.recv().type == "session.created"
        conn.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi azure"}]}})
        conn.send({"type": "response.create"})
        texts = []
        for event in conn:
            if event.type == "response.audio_transcript.delta":  # the dated (preview) API speaks beta
                texts.append(event.delta)
            if event.type == "response.done":
                break
    assert "".join(texts) == "Hello from the trigate mock realtime. You said: hi azure"
    seen = closed_session(rt, "voice-deployment")
    assert seen.path == "/openai/realtime"
    assert seen.query == {"api-version": "2024-10-21", "deployment": "voice-deployment"}
    assert seen.headers["api-key"] == UPSTREAM_KEY and "authorization" not in seen.headers
    assert CLIENT_KEY not in json.dumps(seen.headers)
    line = session_line(access_log, model)
    assert line["path"] == "/openai/realtime" and line["provider"] == "azure-dated"


# -- raw WebSocket clients -----------------------------------------------------------------------


async def test_browser_subprotocol_auth_and_a_raw_voice_turn(servers: Servers, rt: MockState, access_log: LogCapture,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    model = "openai/gpt-realtime-browser"
    offered = ["realtime", f"openai-insecure-api-key.{CLIENT_KEY}"]
    async with open_websocket_url(f"{ws_base(servers)}/v1/realtime?model={model}", subprotocols=offered) as ws:
        assert ws.subprotocol == "realtime"
        assert (await recv(ws))["type"] == "session.created"
        await send(ws, {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        assert (await recv(ws))["type"] == "session.updated"
        for _ in range(3):
            await send(ws, {"type": "input_audio_buffer.append", "audio": audio_b64(1600)})
        await send(ws, {"type": "input_audio_buffer.commit"})
        await send(ws, {"type": "response.create"})
        events = await recv_until(ws, "response.done")
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Hello from the trigate mock realtime. I heard 4800 bytes of audio."
    assert not any(e["type"] == "response.output_audio.delta" for e in events)
    usage = events[-1]["response"]["usage"]

    seen = closed_session(rt, "gpt-realtime-browser")
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen.subprotocols == []  # the browser's key form is not passed on
    assert CLIENT_KEY not in json.dumps(seen.headers)
    assert seen.usage == [usage]
    line = session_line(access_log, model)
    assert line["input_tokens"] == usage["input_tokens"] and line["output_tokens"] == usage["output_tokens"]
    assert line["output_audio_tokens"] == 0
    assert CLIENT_KEY not in "\n".join(access_log.snapshot())
    assert CLIENT_KEY not in caplog.text


async def raw_handshake(servers: Servers, target: str, protocols: list[str]) -> tuple[int, list[tuple[str, str]]]:
    """The status and headers of a handshake's answer, as sent (no client library in between)."""
    host, port = servers.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    key = base64.b64encode(b"0123456789abcdef").decode()
    req = (f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
           f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n\r\n")
    await stream.send_all(req.encode())
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    await stream.aclose()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in head[1:])]
    return status, headers


async def test_handshake_answers_exactly_realtime_and_never_the_key(servers: Servers, rt: MockState) -> None:
    status, headers = await raw_handshake(servers, "/v1/realtime?model=openai/raw-handshake",
                                          ["realtime", f"openai-insecure-api-key.{CLIENT_KEY}",
                                           "openai-beta.realtime-v1"])
    assert status == 101
    assert [v for k, v in headers if k == "sec-websocket-protocol"] == ["realtime"]
    assert CLIENT_KEY not in repr(headers)


async def test_beta_subprotocol_sends_the_beta_header_upstream(servers: Servers, rt: MockState) -> None:
    offered = ["realtime", f"openai-insecure-api-key.{CLIENT_KEY}", "openai-beta.realtime-v1"]
    async with open_websocket_url(f"{ws_base(servers)}/v1/realtime?model=openai/beta-sub",
                                  subprotocols=offered) as ws:
        assert ws.subprotocol == "realtime"
        await recv(ws)
        await send(ws, text_item("beta please"))
        await send(ws, {"type": "response.create"})
        kinds = [e["type"] for e in await recv_until(ws, "response.done")]
    assert "conversation.item.created" in kinds and "response.audio.delta" in kinds
    seen = mock_session(rt, "beta-sub")
    assert seen.beta and seen.headers["openai-beta"] == "realtime=v1"


@pytest.mark.parametrize(("model", "path", "query"), [
    ("azure/gpt-realtime", "/openai/v1/realtime", {"model": "gpt-realtime"}),
    ("azure-dated/rt-deploy", "/openai/realtime", {"api-version": "2024-10-21", "deployment": "rt-deploy"}),
])
async def test_azure_providers_both_url_forms(servers: Servers, rt: MockState, model: str, path: str,
                                              query: dict[str, str]) -> None:
    async with open_websocket_url(f"{ws_base(servers)}/v1/realtime?model={model}", extra_headers=AUTH) as ws:
        assert (await recv(ws))["type"] == "session.created"
        await send(ws, text_item("over azure"))
        await send(ws, {"type": "response.create"})
        done = (await recv_until(ws, "response.done"))[-1]
    assert done["response"]["status"] == "completed"
    seen = mock_session(rt, query.get("model") or query["deployment"])
    assert (seen.path, seen.query) == (path, query)
    assert seen.headers["api-key"] == UPSTREAM_KEY and "authorization" not in seen.headers


async def test_client_disconnect_closes_the_upstream_within_100ms(servers: Servers, rt: MockState,
                                                                  access_log: LogCapture) -> None:
    rt.token_delay_ms = 40
    model = "openai/disconnect-probe"
    async with open_websocket_url(f"{ws_base(servers)}/v1/realtime?model={model}", extra_headers=AUTH) as ws:
        await recv(ws)
        await send(ws, text_item("a long answer please with many words in it"))
        await send(ws, {"type": "response.create"})
        await recv_until(ws, "response.output_audio.delta")  # mid-response
        closed_at = time.monotonic()
        await ws.aclose()
    seen = await await_for(lambda: next((r for r in records(rt).snapshot()
                                         if r.model == "disconnect-probe" and r.closed is not None), None))
    assert seen.closed_by == "peer"
    assert seen.closed - closed_at < 0.1, f"upstream closed {seen.closed - closed_at:.3f}s after the client"
    line = await await_for(lambda: (session_lines(access_log, model) or [None])[-1])
    assert line["closed_by"] == "client" and line["upstream_close_code"] == 1000
    assert line["responses_unfinished"] == 1  # its usage never arrived: unknown, not zero
    assert "input_tokens" not in line


async def test_upstream_drop_mid_response_closes_the_client_with_its_code(servers: Servers, rt: MockState,
                                                                          access_log: LogCapture) -> None:
    rt.add_fault(Fault(path="/v1/realtime", model="drop-probe", drop_after=3, message="injected upstream failure"))
    model = "openai/drop-probe"
    deltas = 0
    async with open_websocket_url(f"{ws_base(servers)}/v1/realtime?model={model}", extra_headers=AUTH) as ws:
        await recv(ws)
        await send(ws, text_item("talk to me"))
        await send(ws, {"type": "response.create"})
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                event = await recv(ws)
                deltas += event["type"] == "response.output_audio.delta"
    assert closed.value.reason.code == 1011
    assert closed.value.reason.reason == "injected upstream failure"
    assert deltas == 3
    line = await await_for(lambda: (session_lines(access_log, model) or [None])[-1])
    assert line["closed_by"] == "upstream" and line["close_code"] == 1011 and line["upstream_close_code"] == 1011
    assert line["responses_unfinished"] == 1


async def test_cancelled_and_failed_responses_still_count(servers: Servers, rt: MockState,
                                                          access_log: LogCapture) -> None:
    rt.token_delay_ms = 20
    model = "openai/cancel-probe"
    async with open_websocket_url(f"{ws_base(servers)}/v1/realtime?model={model}", extra_headers=AUTH) as ws:
        await recv(ws)
        await send(ws, text_item("one two three four five six seven eight nine ten"))
        await send(ws, {"type": "response.create"})
        await recv_until(ws, "response.output_audio_transcript.delta")
        await send(ws, {"type": "response.cancel"})
        cancelled = (await recv_until(ws, "response.done"))[-1]["response"]
        rt.add_fault(Fault(path="/v1/realtime", error_after=2, message="model overloaded"))
        # faults are taken when a socket opens: this one applies to the next session, not this one
        await send(ws, {"type": "response.create"})
        completed = (await recv_until(ws, "response.done"))[-1]["response"]
    assert cancelled["status"] == "cancelled" and completed["status"] == "completed"
    assert cancelled["usage"]["output_tokens"] < completed["usage"]["output_tokens"]
    line = await await_for(lambda: (session_lines(access_log, model) or [None])[-1])
    assert line["response_statuses"] == {"cancelled": 1, "completed": 1}
    assert line["output_tokens"] == cancelled["usage"]["output_tokens"] + completed["usage"]["output_tokens"]

    model = "openai/failure-probe"
    async with open_websocket_url(f"{ws_base(servers)}/v1/realtime?model={model}", extra_headers=AUTH) as ws:
        await recv(ws)
        await send(ws, text_item("fail midway"))
        await send(ws, {"type": "response.create"})
        events = await recv_until(ws, "response.done")
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[0]["error"]["message"] == "model overloaded"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["usage"]["output_tokens"] == 4  # 2 words, audio + text
    line = await await_for(lambda: (session_lines(access_log, model) or [None])[-1])
    assert line["response_statuses"] == {"failed": 1} and line["output_tokens"] == 4


async def test_session_update_hook_rejects_rewrites_and_forwards(servers: Servers, rt: MockState,
                                                                 access_log: LogCapture) -> None:
    model = "gpt-4o-mini"
    started = time.monotonic()
    lines_before = len(session_lines(access_log, model))
    async with open_websocket_url(f"{ws_base(servers)}/v1/realtime?model={model}", extra_headers=AUTH) as ws:
        await recv(ws)
        # served by another provider: this socket cannot move there
        await send(ws, {"type": "session.update", "event_id": "evt_other",
                        "session": {"type": "realtime", "model": "claude-sonnet-4-6"}})
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "model_not_available_in_session"
        assert err["error"]["event_id"] == "evt_other" and err["error"]["type"] == "invalid_request_error"
        await send(ws, {"type": "session.update", "event_id": "evt_unknown",
                        "session": {"type": "realtime", "model": "no-such-model"}})
        err = await recv(ws)
        assert err["error"]["code"] == "model_not_found" and err["error"]["event_id"] == "evt_unknown"
        # an alias of the same provider: rewritten to the upstream's name
        await send(ws, {"type": "session.update", "session": {"type": "realtime", "model": "fast"}})
        updated = await recv(ws)
        assert updated["type"] == "session.updated" and updated["session"]["model"] == "gpt-4o-mini"
    seen = mock_session(rt, "gpt-4o-mini", since=started)
    assert seen.events == ["session.update"]  # the rejected two never reached the upstream
    line = await await_for(lambda: (session_lines(access_log, model)[lines_before:] or [None])[-1])
    assert line["rejected_events"] == 2 and line["client_frames"] == 3 and line["upstream_frames"] == 2


async def test_refused_handshakes_answer_in_openai_shape(servers: Servers, rt: MockState,
                                                         access_log: LogCapture) -> None:
    base = ws_base(servers)
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"{base}/v1/realtime?model=no-such-model", extra_headers=AUTH):
            pass
    assert rejected.value.status_code == 404
    assert json.loads(rejected.value.body)["error"]["code"] == "model_not_found"
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"{base}/v1/realtime", extra_headers=AUTH):
            pass
    assert rejected.value.status_code == 400 and json.loads(rejected.value.body)["error"]["param"] == "model"
    # a provider without a realtime API
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"{base}/v1/realtime?model=claude-sonnet-4-6", extra_headers=AUTH):
            pass
    assert rejected.value.status_code == 400
    # the upstream refuses: its status, body and retry-after are passed on
    rt.add_fault(Fault(path="/v1/realtime", status=429, message="Rate limit reached for realtime sessions",
                       headers={"retry-after": "7"}))
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"{base}/v1/realtime?model=openai/refused", extra_headers=AUTH):
            pass
    assert rejected.value.status_code == 429
    assert json.loads(rejected.value.body)["error"]["message"] == "Rate limit reached for realtime sessions"
    assert (b"retry-after", b"7") in [(k.lower(), v) for k, v in rejected.value.headers]
    assert records(rt).snapshot() == []  # none of them became an upstream session
    line = await await_for(lambda: (session_lines(access_log, "openai/refused") or [None])[-1])
    assert line["status"] == 429 and line["error"] == "rate_limit"


# -- ephemeral keys ------------------------------------------------------------------------------


def test_client_secret_minted_through_the_gateway(servers: Servers, mock: MockState) -> None:
    client = openai.OpenAI(base_url=servers.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    secret = client.realtime.client_secrets.create(session={"type": "realtime", "model": "fast"},
                                                   expires_after={"anchor": "created_at", "seconds": 120})
    assert secret.value.startswith("ek_") and secret.expires_at > time.time()
    seen = mock.requests[-1]
    assert seen.path == "/v1/realtime/client_secrets"
    assert seen.body["session"]["model"] == "gpt-4o-mini"  # the alias, routed
    assert seen.body["expires_after"] == {"anchor": "created_at", "seconds": 120}
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


@pytest.mark.parametrize(("endpoint", "body", "upstream_path", "auth_header"), [
    ("/v1/realtime/sessions", {"model": "openai/gpt-4o-realtime-preview", "voice": "alloy"},
     "/v1/realtime/sessions", "authorization"),
    ("/v1/realtime/sessions", {"model": "azure-dated/rt-deploy"}, "/openai/realtimeapi/sessions", "api-key"),
    ("/v1/realtime/client_secrets", {"session": {"type": "realtime", "model": "azure/gpt-realtime"}},
     "/openai/v1/realtime/client_secrets", "api-key"),
])
def test_ephemeral_key_endpoints_route_by_model(servers: Servers, mock: MockState, endpoint: str,
                                                body: dict[str, Any], upstream_path: str, auth_header: str) -> None:
    r = httpx.post(servers.url + endpoint, json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert r.status_code == 200, r.text
    out = r.json()
    value = out["value"] if "value" in out else out["client_secret"]["value"]
    assert value.startswith("ek_")
    seen = mock.requests[-1]
    assert seen.path == upstream_path
    assert UPSTREAM_KEY in seen.headers[auth_header] and CLIENT_KEY not in json.dumps(seen.headers)


def test_ephemeral_key_errors(servers: Servers, mock: MockState) -> None:
    url = servers.url
    r = httpx.post(url + "/v1/realtime/client_secrets", json={"session": {"model": "no-such-model"}})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(url + "/v1/realtime/client_secrets", json={"expires_after": {"seconds": 10}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "session"
    r = httpx.post(url + "/v1/realtime/sessions", json={"model": "azure/gpt-realtime"})
    assert r.status_code == 400  # Azure's v1 API mints keys at client_secrets only
    mock.add_fault(Fault(path="/v1/realtime/sessions", status=429, message="too many keys"))
    r = httpx.post(url + "/v1/realtime/sessions", json={"model": "gpt-4o-mini"})
    assert r.status_code == 429 and r.json()["error"]["message"] == "too many keys"
