"""Running the fake upstream as a real HTTP server (in-process, or as ``trigate mock``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from trigate.keepalive import finish_responses
from trigate.mock.server import create_mock_app
from trigate.mock.state import MockState


async def serve_mock(
    state: MockState,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown_trigger`` returns (or forever); reports the base URL via task_status."""
    hc = HyperConfig()
    hc.bind = [f"{host}:{port}"]
    hc.accesslog = None
    hc.errorlog = None  # injected connection drops are intended, not errors worth a traceback
    hc.graceful_timeout = 1
    hc.keep_alive_timeout = 75
    hc.backlog = 4096
    # the same keep-alive fix as the gateway's: an early error must not strand the connection it came on
    app = finish_responses(create_mock_app(state), max_drain_bytes=64 * 1024 * 1024)

    async def started(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, hc, shutdown_trigger=shutdown_trigger or trio.sleep_forever,  # type: ignore[arg-type]
                    task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(started)
        task_status.started(binds[0])
