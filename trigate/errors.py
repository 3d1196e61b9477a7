"""The gateway's error type.

An error is a value: what went wrong (``kind``), the HTTP status to answer with, and a message safe to
show the caller. Each wire format module renders a GatewayError in its own shape (before the first
streamed byte as an HTTP error body, after it as an in-stream error event) and parses upstream errors
into one, so errors cross formats without being swallowed.
"""

from __future__ import annotations

from typing import Literal

from attrs import define

ErrorKind = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "request_too_large",
    "rate_limit",
    "billing",
    "overloaded",
    "timeout",
    "server_error",
    "upstream_unavailable",
]

# Default status per kind; upstream errors keep the upstream's own status where the client format
# knows it.
DEFAULT_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "billing": 402,
    "permission": 403,
    "not_found": 404,
    "request_too_large": 413,
    "rate_limit": 429,
    "server_error": 500,
    "upstream_unavailable": 502,
    "overloaded": 503,
    "timeout": 504,
}


def kind_for_status(status: int) -> ErrorKind:
    """Best-effort kind for an upstream HTTP status whose body did not say."""
    if status == 400 or status == 422:
        return "invalid_request"
    if status == 401:
        return "authentication"
    if status == 402:
        return "billing"
    if status == 403:
        return "permission"
    if status == 404:
        return "not_found"
    if status == 413:
        return "request_too_large"
    if status == 429:
        return "rate_limit"
    if status in (408, 504):
        return "timeout"
    if status in (503, 529):
        return "overloaded"
    if status >= 500:
        return "server_error"
    return "invalid_request"


@define(eq=False)
class GatewayError(Exception):
    kind: ErrorKind
    message: str
    status: int = 0  # 0: DEFAULT_STATUS[kind]
    param: str | None = None
    code: str | None = None
    retry_after: float | None = None  # seconds, passed on as retry-after
    # The upstream body was unusable or absent and the gateway itself produced this error.
    from_gateway: bool = True

    def __attrs_post_init__(self) -> None:
        if not self.status:
            self.status = DEFAULT_STATUS[self.kind]

    def __str__(self) -> str:
        return f"{self.status} {self.kind}: {self.message}"


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError("invalid_request", message, param=param, code=code)
