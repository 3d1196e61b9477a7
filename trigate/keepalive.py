"""HTTP/1.1 keep-alive that survives a response sent before the request body was read.

Hypercorn recycles a keep-alive connection (or closes it) from inside the application's last ``send``:
that call tells the app ``http.disconnect``, then starts the connection's next request cycle or, when
the request body is still arriving, closes the connection. Quart-Trio cancels its request nursery as
soon as it receives that ``http.disconnect``, so the rest of the recycling step is cancelled part-way.
When the body was already read nothing is lost but the idle timer; when it was not (a 404, 405, 401 or
413 answered from the headers alone), the connection is neither closed nor reset for the next request,
and the client's next request on it waits forever.

``finish_responses`` wraps the ASGI app once, so every early answer of every route is covered:

- before a response starts, a request body still in flight is drained (Quart's receiver reads and
  discards it) for a bounded time, when its declared size is one the gateway accepts at all, so the
  connection can be reused; otherwise the response says ``connection: close``;
- the last response message is sent shielded, so Hypercorn finishes the recycling (next cycle, idle
  timer, or closing the connection) it runs inside that call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]

# How long an early response waits for the rest of the request body before closing instead.
DRAIN_SECONDS = 5.0
_UNKNOWN = -1


def declared_body_size(headers: Any) -> int | None:
    """The request body's size from its headers: None for no body, ``_UNKNOWN`` for a chunked one."""
    for name, value in headers:
        if name == b"content-length":
            try:
                size = int(value)
            except ValueError:
                return _UNKNOWN
            return size or None
        if name == b"transfer-encoding":
            return _UNKNOWN
    return None


def finish_responses(app: ASGIApp, *, max_drain_bytes: int, drain_seconds: float = DRAIN_SECONDS) -> ASGIApp:
    """``app`` with every HTTP response finished as the module docstring says (WebSockets untouched)."""
    async def guarded(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Message]],
                      send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def finishing_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        size = declared_body_size(scope.get("headers") or ())
        if size is None:
            return await app(scope, receive, finishing_send)
        body_done = trio.Event()

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_done.set()
            return message

        async def draining_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_done.is_set():
                if 0 < size <= max_drain_bytes:
                    with trio.move_on_after(drain_seconds):
                        await body_done.wait()
                if not body_done.is_set():
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await finishing_send(message)

        await app(scope, tracked_receive, draining_send)

    return guarded
