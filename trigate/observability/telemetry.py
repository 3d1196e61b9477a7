"""The gateway's Telemetry: one ``finish(ex)`` turns a finished Exchange into metrics, a durable usage
row, span attributes and one JSON access-log line, all from the same numbers.

It also owns the request's edges: an ASGI wrapper that fixes the request id, extracts the caller's
trace context and counts in-flight requests and realtime sessions; a Quart hook that puts
``x-request-id`` on every HTTP response; and a fallback log line for requests that have no Exchange
(model lists, token counts, unknown endpoints).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import trio
from quart import Quart, Response

from trigate.config import Config
from trigate.formats import client_format_for_path
from trigate.observability.cost import PriceTable, load_shipped
from trigate.observability.labels import ModelLabels
from trigate.observability.metrics import Metrics
from trigate.observability.names import api_for_path, operation_name, semconv_provider
from trigate.observability.redact import redact_body, redact_text
from trigate.observability.request_id import RequestContext, current, effective_request_id
from trigate.observability.tracing import Tracing, make_tracing
from trigate.store.usage import UsageWriter, row_from_exchange

if TYPE_CHECKING:
    from trigate.telemetry import Exchange

access_logger = logging.getLogger("trigate.access")

# Probes and scrapes: no access-log line and no request metrics (they would drown the real traffic).
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
ID_HEADERS = ("x-request-id",)
ANTHROPIC_ID_HEADERS = ("x-request-id", "request-id")

_SHIPPED: dict[str, Any] | None = None

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def shipped_prices() -> dict[str, Any]:
    global _SHIPPED
    if _SHIPPED is None:
        _SHIPPED = load_shipped()
    return _SHIPPED


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _id_headers(ctx: RequestContext) -> tuple[str, ...]:
    """The response headers that carry the request id: ``x-request-id`` (what OpenAI's SDK reads) on
    every answer, and Anthropic's own ``request-id`` on answers to Anthropic-format callers (its SDK reads
    only that one)."""
    return ANTHROPIC_ID_HEADERS if ctx.anthropic else ID_HEADERS


class Telemetry:
    def __init__(self, config: Config) -> None:
        self.metrics = Metrics()
        self.tracing: Tracing | None = make_tracing(config.observability.tracing)
        self.gw: Any = None
        self.usage: UsageWriter | None = None  # where finished requests' usage rows go (server.py sets it)
        self._config: Config | None = None
        self._apply(config)

    def bind(self, gw: Any) -> None:
        """Follow ``gw``'s config (reloads swap it) and look provider kinds up in its providers."""
        self.gw = gw

    # -- settings that follow config reloads -----------------------------------------------------

    def _apply(self, config: Config) -> None:
        obs = config.observability
        self._config = config
        self.log_bodies = obs.log_bodies
        self.log_body_max_bytes = obs.log_body_max_bytes
        self.metrics_enabled = obs.metrics
        self.metrics_require_admin = obs.metrics_require_admin
        self.prices = PriceTable(shipped_prices(), dict(obs.prices))
        self.labels = ModelLabels(config, self.prices)

    def refresh(self) -> None:
        cfg = self.gw.config if self.gw is not None else None
        if cfg is not None and cfg is not self._config:
            self._apply(cfg)

    def redact_body(self, raw: bytes | str | None) -> Any:
        return redact_body(raw, self.log_body_max_bytes)

    def redact_text(self, text: str) -> str:
        return redact_text(text, self.log_body_max_bytes)

    # -- the single end of a request ---------------------------------------------------------------

    def provider_kind(self, name: str | None) -> str | None:
        if name is None or self.gw is None:
            return None
        p = self.gw.providers.get(name)
        return getattr(p, "kind", None) if p is not None else None

    def finish(self, ex: Exchange) -> None:
        if ex.finished:
            return
        ex.finished = True
        now = ex.ended = time.monotonic()
        if ex.ctx is not None:
            ex.ctx.logged = True
        self.refresh()
        kind = self.provider_kind(ex.provider)
        u = ex.usage
        if ex.cost_usd is None and u is not None and ex.upstream_model:
            ex.cost_usd = self.prices.cost_of(u, ex.upstream_model, kind)
        failed = ex.status >= 400 or ex.error is not None
        requested, route = self.labels.request(ex.model)
        response = self.labels.served(ex.upstream_model, kind, route)
        # the served model names the usage row's report group and the per-key series alike (bounded the
        # same way), so /admin/usage and the counters group the same
        served = response or requested or f"({ex.api})"  # passthrough: no model
        self._count(ex, kind, now, failed, (requested, response, route, served))
        if ex.key_id and self.usage is not None:
            self.usage.offer(row_from_exchange(ex, served, failed, time.time()))
        if self.tracing is not None:
            self._end_spans(ex, kind, failed)
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info(orjson.dumps(ex.record()).decode())

    def _count(self, ex: Exchange, kind: str | None, now: float, failed: bool,
               models: tuple[str, str, str, str]) -> None:
        requested, response, route, served = models
        m = self.metrics
        provider = ex.provider or ""
        if provider and kind is None and self.gw is not None:
            provider = "_unknown"  # a passthrough path naming no configured provider: not a label value
        genai_provider = semconv_provider(kind, provider)
        base = (ex.api, provider, operation_name(ex.api), genai_provider, requested, response)
        error = ex.error or ""
        m.requests(*base, str(ex.status), error).inc()
        m.request_duration(*base, error).observe(now - ex.started)
        u = ex.usage
        if ex.stream and ex.first_byte is not None and not failed:
            m.ttft(*base).observe(ex.first_byte - ex.started)
            if u is not None and u.output_tokens > 1:
                m.tpot(*base).observe((now - ex.first_byte) / (u.output_tokens - 1))
        if u is not None:
            m.token_usage(*base, "input").observe(u.input_tokens)
            m.token_usage(*base, "output").observe(u.output_tokens)
            if ex.upstream_model and ex.cost_usd is None:
                m.unpriced(provider, response).inc()
        self._count_tries(ex, now, route)
        if ex.limit_scope:
            m.rate_limited(ex.limit_scope).inc()
        if ex.key_id:
            key, model = ex.key_id, served
            m.key_requests(key, model).inc()
            if failed:
                m.key_errors(key, model).inc()
            if u is not None:
                m.key_tokens(key, model, "input").inc(u.input_tokens)
                m.key_tokens(key, model, "output").inc(u.output_tokens)
                m.key_tokens(key, model, "cache_read").inc(u.cache_read_tokens)
                m.key_tokens(key, model, "cache_write").inc(u.cache_write_tokens)
                m.key_tokens(key, model, "reasoning").inc(u.reasoning_tokens or 0)
            m.cost(key, model).inc(ex.cost_usd or 0.0)

    def _count_tries(self, ex: Exchange, now: float, route: str) -> None:
        m = self.metrics
        op = operation_name(ex.api)
        prev = None
        for i, t in enumerate(ex.tries):
            error = t.error
            if error is None and i == len(ex.tries) - 1 and ex.stream and ex.status < 400 and ex.error \
                    and not ex.error.startswith("limiter"):
                error = ex.error  # the upstream failed after the stream had started
            genai_provider = semconv_provider(t.provider_kind, t.provider)
            m.operation_duration(t.provider, op, genai_provider, self.labels.served(t.model, t.provider_kind, route),
                                 error or "").observe((t.ended or now) - t.started)
            if error:
                m.upstream_errors(t.provider, genai_provider, error).inc()
            if prev is not None:
                reason = "retry" if (prev.provider, prev.model) == (t.provider, t.model) else "fallback"
                m.retries(prev.provider, semconv_provider(prev.provider_kind, prev.provider), prev.error or "",
                          reason).inc()
            prev = t

    def _end_spans(self, ex: Exchange, kind: str | None, failed: bool) -> None:
        tracing = self.tracing
        assert tracing is not None
        u = ex.usage
        usage_attrs: dict[str, Any] = {}
        if u is not None:
            usage_attrs = {"gen_ai.usage.input_tokens": u.input_tokens, "gen_ai.usage.output_tokens": u.output_tokens,
                           "gen_ai.usage.cache_read.input_tokens": u.cache_read_tokens,
                           "gen_ai.usage.cache_creation.input_tokens": u.cache_write_tokens}
            if u.reasoning_tokens is not None:
                usage_attrs["gen_ai.usage.reasoning.output_tokens"] = u.reasoning_tokens
        for t in ex.tries:
            if t.span is not None:  # the attempt that answered: it ends with the exchange
                t.span.set_attributes(usage_attrs)
                t.span.set_attribute("gen_ai.response.model", t.model)
                if ex.error and ex.status < 400:
                    tracing.fail(t.span, ex.error)
                t.span.end()
                t.span = None
        span = ex.span
        if span is None:
            return
        op = operation_name(ex.api)
        span.update_name(f"{op} {ex.model}" if ex.model else op)
        attrs: dict[str, Any] = {"gen_ai.operation.name": op, "http.request.method": ex.method,
                                 "url.path": ex.path, "http.response.status_code": ex.status,
                                 "trigate.api": ex.api, "trigate.client_format": ex.client_format,
                                 "trigate.attempts": ex.attempts, "trigate.stream": ex.stream, **usage_attrs}
        for name, value in (("gen_ai.request.model", ex.model), ("gen_ai.response.model", ex.upstream_model),
                            ("gen_ai.request.max_tokens", ex.max_tokens), ("trigate.provider", ex.provider),
                            ("trigate.request_id", ex.request_id), ("trigate.key_id", ex.key_id),
                            ("trigate.cost_usd", ex.cost_usd)):
            if value is not None:
                attrs[name] = value
        if ex.provider:
            attrs["gen_ai.provider.name"] = semconv_provider(kind, ex.provider)
        span.set_attributes(attrs)
        if failed:
            error = ex.error or str(ex.status)
            if ex.status >= 500 or ex.status < 400:  # server spans: a 4xx is the caller's error, not ours
                tracing.fail(span, error)
            else:
                span.set_attribute("error.type", error)
        span.end()
        ex.span = None

    # -- request edges -------------------------------------------------------------------------------

    def asgi(self, app: ASGIApp) -> ASGIApp:
        metrics = self.metrics

        async def observed(scope: dict[str, Any], receive: Any, send: Any) -> None:
            kind = scope["type"]
            if kind not in ("http", "websocket"):
                return await app(scope, receive, send)
            headers = scope.get("headers") or ()
            given, anthropic = None, False
            for k, v in headers:  # one pass over the raw headers: cheaper than the framework's lookups later
                if k == b"x-request-id":
                    given = v.decode("latin-1")
                elif k == b"anthropic-version":
                    anthropic = True
            ctx = RequestContext(request_id=effective_request_id(given), telemetry=self,
                                 anthropic=anthropic or client_format_for_path(scope.get("path", "")) == "anthropic")
            if self.tracing is not None:
                ctx.trace_parent = self.tracing.extract(headers)
            token = current.set(ctx)
            try:
                if kind == "http":
                    metrics.inflight.inc()
                    try:
                        await app(scope, receive, send)
                    finally:
                        metrics.inflight.dec()
                        if ctx.stream:
                            metrics.streams.dec()
                else:
                    await self._websocket(app, scope, receive, send, ctx)
            finally:
                current.reset(token)
                if not ctx.logged:
                    self._fallback(scope, ctx)

        return observed

    async def _websocket(self, app: ASGIApp, scope: dict[str, Any], receive: Any, send: Any,
                         ctx: RequestContext) -> None:
        rid = ctx.request_id.encode()
        sessions = self.metrics.sessions
        accepted = False

        async def tagged_send(message: dict[str, Any]) -> None:
            nonlocal accepted
            t = message["type"]
            if t == "websocket.accept" or t == "websocket.http.response.start":
                headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid)]}
                if t == "websocket.accept":
                    accepted = True
                    sessions.inc()
                else:
                    ctx.status = message.get("status", 0)
            await send(message)

        try:
            await app(scope, receive, tagged_send)
        finally:
            if accepted:
                sessions.dec()

    def _fallback(self, scope: dict[str, Any], ctx: RequestContext) -> None:
        """The log line and request count of a request no handler made an Exchange for."""
        path = scope.get("path", "")
        if path in QUIET_PATHS or not ctx.status:
            return
        api = api_for_path(path)
        error = "" if ctx.status < 400 else "http_error"
        duration = time.monotonic() - ctx.started
        self.metrics.requests(api, "", operation_name(api), "", "", "", str(ctx.status), error).inc()
        if access_logger.isEnabledFor(logging.INFO):
            rec = {"time": _iso(time.time() - duration), "request_id": ctx.request_id,
                   "method": scope.get("method", "GET"), "path": path, "api": api, "status": ctx.status,
                   "duration_ms": round(duration * 1000, 2)}
            access_logger.info(orjson.dumps(rec).decode())

    def install(self, app: Quart) -> None:
        """The response side of the request edge: every HTTP answer carries the request id."""
        streams = self.metrics.streams

        @app.after_request
        async def tag_response(response: Response) -> Response:
            ctx = current.get()
            if ctx is None:
                return response
            ctx.status = response.status_code
            for name in _id_headers(ctx):
                upstream_id = response.headers.get(name)
                if upstream_id and upstream_id != ctx.request_id and "x-upstream-request-id" not in response.headers:
                    # a passthrough answer carries the provider's own id: keep it under another name
                    response.headers["x-upstream-request-id"] = upstream_id
                response.headers[name] = ctx.request_id
            if response.mimetype == "text/event-stream" and not ctx.stream:
                ctx.stream = True
                streams.inc()
            return response

    async def aclose(self) -> None:
        if self.tracing is not None:
            await trio.to_thread.run_sync(self.tracing.shutdown)
        self.metrics.close()
