"""The per-request context: the effective request id, the gateway's Telemetry and the trace parent.

It lives in a context variable set by the ASGI wrapper (``Telemetry.asgi``) before the app runs, so
the handler's task and every task it starts see it (trio copies the context into child tasks), and
code that only holds an ``Exchange`` (the realtime relay, passthrough) needs no extra argument.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from typing import Any

from attrs import define, field

MAX_REQUEST_ID = 128


@define(eq=False)
class RequestContext:
    request_id: str
    telemetry: Any = None  # the gateway's Telemetry (Any: no import cycle with telemetry.py)
    trace_parent: Any = None  # an OpenTelemetry Context extracted from the caller's traceparent
    started: float = field(factory=time.monotonic)
    logged: bool = False  # an Exchange for this request has been finished (no fallback line needed)
    status: int = 0  # the HTTP status sent, when known
    stream: bool = False  # the answer is an open SSE stream (counted as such until the request ends)
    # An Anthropic-format caller (its path, or the anthropic-version header every Anthropic SDK sends):
    # its answers carry the id as request-id too.
    anthropic: bool = False


current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("trigate_request", default=None)


def valid_request_id(value: str | None) -> bool:
    """A client-chosen id is kept only if it is visible ASCII (spaces inside allowed), at most 128
    characters: it is echoed in headers and logs, where control characters or a huge value would do harm."""
    if not value or len(value) > MAX_REQUEST_ID or value != value.strip():
        return False
    return all(" " <= c <= "~" for c in value)


def new_request_id() -> str:
    return uuid.uuid4().hex


def effective_request_id(given: str | None) -> str:
    return given if given is not None and valid_request_id(given) else new_request_id()


def current_request_id() -> str | None:
    ctx = current.get()
    return ctx.request_id if ctx is not None else None
