"""Per-request accounting and the access log: one JSON line per request or stream.

The record holds names, numbers and statuses only; it never sees request headers, so no API key can
reach the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from attrs import define, field

from trigate.translate.ir import Usage

access_logger = logging.getLogger("trigate.access")


@define
class Exchange:
    method: str
    path: str
    api: str
    client_format: str
    started: float = field(factory=time.monotonic)
    model: str | None = None  # as requested
    provider: str | None = None
    upstream_model: str | None = None
    status: int = 0
    stream: bool = False
    translated: bool = False
    usage: Usage | None = None
    first_byte: float | None = None  # monotonic time the first body byte went to the client
    error: str | None = None  # error kind, when the request failed
    cancelled: bool = False  # the client went away before the end
    key_id: str | None = None  # the client key's id (never the key)
    attempts: int = 0  # upstream attempts, retries and fallbacks included
    retries: int = 0

    def mark_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.monotonic()

    def record(self) -> dict[str, Any]:
        now = time.monotonic()
        rec: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "api": self.api,
            "client_format": self.client_format,
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "status": self.status,
            "stream": self.stream,
            "translated": self.translated,
            "key_id": self.key_id,
            "attempts": self.attempts,
            "duration_ms": round((now - self.started) * 1000, 2),
        }
        if self.first_byte is not None:
            rec["ttfb_ms"] = round((self.first_byte - self.started) * 1000, 2)
        if self.usage is not None:
            rec["input_tokens"] = self.usage.input_tokens
            rec["output_tokens"] = self.usage.output_tokens
            rec["cached_tokens"] = self.usage.cache_read_tokens
        if self.error:
            rec["error"] = self.error
        if self.cancelled:
            rec["cancelled"] = True
        return rec


def log_exchange(ex: Exchange) -> None:
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info(orjson.dumps(ex.record()).decode())
