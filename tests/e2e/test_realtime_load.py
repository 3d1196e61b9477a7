"""Many Realtime sessions at once through one gateway: every one relayed, accounted and closed."""

from __future__ import annotations

import json
import time

import trio
from trio_websocket import open_websocket_url

from tests.e2e.test_realtime import AUTH, await_for, recv, recv_until, send, text_item, ws_base
from tests.harness import LogCapture, Servers
from trigate.mock.realtime import records
from trigate.mock.state import MockState

SESSIONS = 200


async def test_200_concurrent_sessions(servers: Servers, mock: MockState, access_log: LogCapture) -> None:
    records(mock).reset()
    done: dict[int, dict] = {}
    everyone_connected = trio.Event()
    connected = 0

    async def session(i: int) -> None:
        nonlocal connected
        model = f"openai/load-{i}"
        async with open_websocket_url(f"{ws_base(servers)}/v1/realtime?model={model}", extra_headers=AUTH,
                                      connect_timeout=20) as ws:
            assert (await recv(ws, 20))["type"] == "session.created"
            connected += 1
            if connected == SESSIONS:
                everyone_connected.set()
            # every session is open at the same time before any of them talks
            with trio.fail_after(20):
                await everyone_connected.wait()
            await send(ws, {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
            await send(ws, text_item(f"caller number {i}"))
            await send(ws, {"type": "response.create"})
            events = await recv_until(ws, "response.done", within=20)
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert text == f"Hello from the trigate mock realtime. You said: caller number {i}"
        done[i] = events[-1]["response"]["usage"]

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(SESSIONS):
            nursery.start_soon(session, i)
    assert len(done) == SESSIONS
    # ~8-10 s on a 2-core machine (client, gateway and upstream share one process); the bound only
    # catches a relay that serializes sessions
    assert time.monotonic() - started < 30

    def lines() -> dict[str, dict]:
        out = {}
        for raw in access_log.snapshot():
            rec = json.loads(raw)
            if rec.get("api") == "realtime" and str(rec.get("model", "")).startswith("openai/load-"):
                out[rec["model"]] = rec
        return out

    await await_for(lambda: len(lines()) == SESSIONS
                    and sum(r.closed is not None for r in records(mock).snapshot()) == SESSIONS, within=5)
    logged = lines()
    for i, usage in done.items():
        rec = logged[f"openai/load-{i}"]
        assert (rec["input_tokens"], rec["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
        assert rec["closed_by"] == "client" and rec["client_frames"] == 3
    assert servers.running is not None
    assert servers.running.gateway.extras["realtime.sessions"].active == 0
