"""The per-request record (``Exchange``) and its single end, ``log_exchange``.

An Exchange is filled in as a request goes (model, provider, attempts, usage, first byte) and finished
once: ``log_exchange`` hands it to the gateway's ``Telemetry`` (``trigate.observability``), which feeds
the metrics, the durable usage row, the cost and the JSON access log from that one record, so they cannot
disagree. The record holds names, numbers and statuses only; it never sees request headers, so no API
key can reach the log (bodies, when body logging is on, are redacted first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from attrs import define, field

from trigate.observability.names import limit_scope, operation_name, semconv_provider
from trigate.observability.request_id import RequestContext, current, current_request_id
from trigate.policies.limits import RateLimited
from trigate.translate.ir import Usage

access_logger = logging.getLogger("trigate.access")


@define(eq=False)
class UpstreamTry:
    """One upstream attempt of a request."""

    provider: str
    provider_kind: str | None
    model: str
    started: float = field(factory=time.monotonic)
    ended: float | None = None
    error: str | None = None
    span: Any = field(default=None, repr=False)


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
    team: str | None = None  # the key's team (its metadata.team), for usage by team
    attempts: int = 0  # upstream attempts, retries and fallbacks included
    retries: int = 0
    request_id: str | None = field(factory=current_request_id)
    time: float = field(factory=time.time)  # wall clock at the start, for the log line
    ended: float | None = None
    cost_usd: float | None = None
    max_tokens: int | None = None  # the output cap the client asked for
    limit_scope: str | None = None  # key | model | global, when a gateway limit refused the request
    tries: list[UpstreamTry] = field(factory=list, repr=False)
    request_body: Any = field(default=None, repr=False)
    response_body: Any = field(default=None, repr=False)
    ctx: RequestContext | None = field(factory=current.get, repr=False)
    span: Any = field(default=None, repr=False)
    finished: bool = field(default=False, repr=False)

    def __attrs_post_init__(self) -> None:
        tracing = self._tracing()
        if tracing is not None and self.span is None:
            # named after the operation for now; finish() renames it once the model is known
            self.span = tracing.start_server(self.api, self.ctx.trace_parent if self.ctx else None)

    def _telemetry(self) -> Any:
        return self.ctx.telemetry if self.ctx is not None else None

    def _tracing(self) -> Any:
        tel = self._telemetry()
        return tel.tracing if tel is not None else None

    def mark_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.monotonic()

    def fail(self, err: Exception) -> None:
        """The request ends with ``err`` (a GatewayError); notes which gateway limit said no, if one did."""
        self.error = getattr(err, "kind", None) or type(err).__name__
        if isinstance(err, RateLimited):
            self.limit_scope = limit_scope(err)

    def note_request(self, body: dict[str, Any], raw: bytes | None = None) -> None:
        """What the request asked for: the output cap (for traces) and, with body logging on, the body."""
        for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
            v = body.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                self.max_tokens = v
                break
        tel = self._telemetry()
        if tel is not None and tel.log_bodies:
            self.request_body = tel.redact_body(raw if raw is not None else orjson.dumps(body))

    def note_response(self, raw: bytes | None) -> None:
        tel = self._telemetry()
        if tel is not None and tel.log_bodies:
            self.response_body = tel.redact_body(raw)

    def tap_stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``chunks`` itself unless body logging is on; then a pass-through that keeps the start of the
        stream for the log. Streams pay nothing per chunk when logging is off."""
        tel = self._telemetry()
        if tel is None or not tel.log_bodies:
            return chunks
        return _StreamTap(self, chunks, tel.log_body_max_bytes)

    def begin_try(self, provider: str, provider_kind: str | None, model: str) -> UpstreamTry:
        t = UpstreamTry(provider, provider_kind, model)
        tracing = self._tracing()
        if tracing is not None:
            op = operation_name(self.api)
            t.span = tracing.start_client(f"{op} {model}", self.span)
            t.span.set_attributes({"gen_ai.operation.name": op, "gen_ai.request.model": model,
                                   "gen_ai.provider.name": semconv_provider(provider_kind, provider),
                                   "trigate.provider": provider, "trigate.attempt": len(self.tries) + 1})
        self.tries.append(t)
        return t

    def end_try(self, t: UpstreamTry, error: str | None) -> None:
        """A failed attempt ends now; a successful one ends with the exchange (its stream may go on)."""
        t.ended, t.error = time.monotonic(), error
        if t.span is not None:
            tracing = self._tracing()
            if error:
                tracing.fail(t.span, error)
            t.span.end()
            t.span = None

    def upstream_headers(self, headers: dict[str, str]) -> None:
        """Headers every upstream call of this request carries: the effective request id and, with
        tracing on, the W3C ``traceparent`` of the current attempt's span."""
        if self.request_id:
            headers["x-request-id"] = self.request_id
        tracing = self._tracing()
        if tracing is not None:
            span = self.tries[-1].span if self.tries and self.tries[-1].span is not None else self.span
            if span is not None:
                tracing.inject(span, headers)

    def record(self) -> dict[str, Any]:
        end = self.ended if self.ended is not None else time.monotonic()
        rec: dict[str, Any] = {
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds"),
            "request_id": self.request_id,
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
            "team": self.team,
            "attempts": self.attempts,
            "retries": self.retries,
            "duration_ms": round((end - self.started) * 1000, 2),
        }
        if self.first_byte is not None:
            rec["ttft_ms"] = round((self.first_byte - self.started) * 1000, 2)
        u = self.usage
        if u is not None:
            rec["input_tokens"] = u.input_tokens
            rec["output_tokens"] = u.output_tokens
            rec["cached_tokens"] = u.cache_read_tokens
            rec["cache_write_tokens"] = u.cache_write_tokens
            if u.reasoning_tokens is not None:
                rec["reasoning_tokens"] = u.reasoning_tokens
        if self.cost_usd is not None:
            rec["cost_usd"] = round(self.cost_usd, 10)
        if self.error:
            rec["error"] = self.error
        if self.limit_scope:
            rec["limit_scope"] = self.limit_scope
        if self.cancelled:
            rec["cancelled"] = True
        if self.request_body is not None:
            rec["request_body"] = self.request_body
        if self.response_body is not None:
            body = self.response_body
            rec["response_body"] = body.render() if isinstance(body, _StreamTap) else body
        return rec


class _StreamTap:
    """Passes stream chunks through, keeping the first ``limit`` bytes. A plain async iterator (not an
    async generator), so dropping it needs no finalisation: the caller closes the wrapped stream."""

    def __init__(self, ex: Exchange, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._ex, self._it, self._limit = ex, chunks.__aiter__(), limit
        self._kept = bytearray()
        self._total = 0
        ex.response_body = self  # rendered when the record is written

    def __aiter__(self) -> _StreamTap:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._it.__anext__()
        self._total += len(chunk)
        if len(self._kept) < self._limit:
            self._kept += chunk[: self._limit - len(self._kept)]
        return chunk

    def render(self) -> str:
        tel = self._ex._telemetry()
        text = self._kept.decode("utf-8", "replace")
        text = tel.redact_text(text) if tel is not None else text
        if self._total > len(self._kept):
            text += f"...[{self._total - len(self._kept)} bytes omitted]"
        return text


def log_exchange(ex: Exchange) -> None:
    """Finish ``ex``: metrics, usage row, spans and one access-log line (once, however often called)."""
    tel = ex._telemetry()
    if tel is not None:
        tel.finish(ex)
        return
    if ex.finished:
        return
    ex.finished = True
    ex.ended = time.monotonic()
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info(orjson.dumps(ex.record()).decode())
