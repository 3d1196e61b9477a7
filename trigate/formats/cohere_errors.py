"""Cohere's error shape, shared by the embed and rerank translations.

Cohere answers errors as ``{"message": "..."}`` (sometimes with an ``id``), and the official SDK picks its
exception class from the HTTP status alone (400 BadRequestError, 401 UnauthorizedError, 403, 404, 422,
429 TooManyRequestsError, 498 InvalidTokenError, 499 ClientClosedRequestError, 500, 501, 503, 504),
keeping the parsed JSON body as ``.body``. So the status is what matters to Cohere clients.

The parser also reads the Cohere-compatible rerank servers' bodies (Jina, Voyage, vLLM), whose messages sit
under other keys.
"""

from __future__ import annotations

from typing import Any

import orjson

from trigate.errors import DEFAULT_STATUS, GatewayError, kind_for_status

# Statuses Cohere uses that the gateway's own vocabulary has no word for.
_COHERE_ONLY: dict[int, tuple[Any, int]] = {
    498: ("authentication", 401),  # "invalid token": every other client format calls that a 401
    499: ("upstream_unavailable", 502),  # the upstream says *its* client went away: for us a broken upstream
}


def parse_cohere_error(status: int, body: bytes) -> GatewayError:
    """A Cohere (or Cohere-shaped) upstream error response -> GatewayError (never raises)."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    message: str | None = None
    if isinstance(data, dict):
        m = data.get("message")
        if not isinstance(m, str) or not m:
            # Cohere-compatible servers say it under other keys: Jina and Voyage (FastAPI) use "detail",
            # a string or a list of validation problems; vLLM uses an OpenAI-style "error" object.
            m = data.get("detail") or data.get("error")
            if isinstance(m, dict):
                m = m.get("message")
            elif isinstance(m, list):
                m = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in m)
        if isinstance(m, str) and m:
            message = m
    if status in _COHERE_ONLY:
        kind, mapped = _COHERE_ONLY[status]
    elif status >= 400:
        kind, mapped = kind_for_status(status), status
    else:
        kind, mapped = "upstream_unavailable", 502
    if message is None:
        text = body[:500].decode("utf-8", "replace").strip() if body else ""
        return GatewayError(kind, f"upstream returned HTTP {status}" + (f": {text}" if text else ""), status=mapped)
    return GatewayError(kind, message, status=mapped, from_gateway=False)


def render_cohere_error(err: GatewayError) -> tuple[int, dict[str, Any]]:
    """(status, body) for a Cohere client."""
    status = err.status or DEFAULT_STATUS[err.kind]
    if status == 529:
        status = 503  # Anthropic's overloaded status; the Cohere SDK maps 503 to ServiceUnavailableError
    return status, {"message": err.message}
