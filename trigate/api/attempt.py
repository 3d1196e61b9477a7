"""One upstream attempt of a text request: forward the body (same format) or translate it through the
IR, send it, and turn the answer into a client response.

Everything before the first byte reaches the client may fail with a GatewayError, and the caller may
retry or fall back; so a stream is *primed* here: its first chunk is read (within the first-token
deadline) before the attempt counts as a success. After that, failures become the client format's
in-stream error event and a clean end. Deadlines are trio cancel scopes, never held across a yield.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import trio
from attrs import define, field
from quart import request

from trigate.config import Timeouts
from trigate.errors import GatewayError
from trigate.formats import get_codec
from trigate.formats.base import Codec
from trigate.gateway import Gateway
from trigate.telemetry import Exchange
from trigate.tokens import estimate
from trigate.translate import ir
from trigate.upstream.client import USER_AGENT, parsed_url, send, transport_error
from trigate.upstream.providers import Provider, Upstream
from trigate.upstream.sniff import UsageSniffer, sniffer_for
from trigate.upstream.stream_watch import StreamWatch
from trigate.wire.sse import SSEDecoder, SSEError

# Client headers a provider of the same format must see to behave as the client expects.
_NATIVE_HEADERS = {"anthropic": ("anthropic-version", "anthropic-beta")}
# Formats whose URL, not the body, says the model (the handler puts it into the body as "model") and
# whether to stream.
URL_ROUTED = frozenset({"gemini", "bedrock"})
# Client stream formats that report input usage when the stream opens (Anthropic's message_start).
_START_USAGE_FORMATS = frozenset({"anthropic"})


@define
class Hooks:
    """API-specific steps around the shared pipeline (the Responses API's stored state uses them)."""

    # A cheap structural check run on every request, also on the same-format fast path where the
    # body is otherwise not decoded; raises GatewayError(invalid_request) naming the field.
    validate: Callable[[dict[str, Any]], None] | None = None
    # Translated requests: reject what the provider cannot do (raises GatewayError).
    check_ir: Callable[[ir.Request], None] | None = None
    # Once, after the caller was admitted (key, model, limits) and before the first attempt: state
    # every attempt needs, whose failure is no target's fault (not retried, no target marked failing).
    admitted: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    # Per attempt: may rewrite the body (e.g. expand previous_response_id). Args: body, provider,
    # native (True when the provider speaks the client's format and the body will be forwarded).
    prepare: Callable[[dict[str, Any], Provider, bool], Awaitable[dict[str, Any]]] | None = None
    # A translated request succeeded: called with the body and the final client-format result.
    completed: Callable[[dict[str, Any], dict[str, Any], Provider], Awaitable[None]] | None = None
    # A forwarded request succeeded: called with the body and the upstream's response object (as the
    # client got it), if the format's sniffer tracks one.
    forwarded: Callable[[dict[str, Any], dict[str, Any] | None, Provider], Awaitable[None]] | None = None
    # Forwarded requests: response fields ``prepare`` changed for the upstream, shown to the client as
    # it sent them (e.g. a previous_response_id replaced by the history it stands for).
    echo: Callable[[], dict[str, Any] | None] | None = None


NO_HOOKS = Hooks()


@define
class Deadlines:
    """Absolute trio times for one attempt."""

    total: float
    first_token: float
    idle: float | None  # seconds, re-armed per chunk

    @classmethod
    def start(cls, t: Timeouts, total_deadline: float) -> Deadlines:
        now = trio.current_time()
        first = now + t.first_token if t.first_token is not None else math.inf
        return cls(total=total_deadline, first_token=min(first, total_deadline), idle=t.idle)


def served_model(reported: str, called: str) -> str:
    """The ``model`` of every translated answer, streamed or not: the model the upstream says served it,
    else the upstream model id the gateway called (Bedrock names none). Never the client's alias: like
    a same-format answer, relayed as the upstream wrote it, it names what really ran."""
    return reported or called


def timeout_error(what: str, seconds: float | None, provider: str) -> GatewayError:
    span = f" after {seconds:g}s" if seconds is not None and math.isfinite(seconds) else ""
    return GatewayError("timeout", f"upstream provider '{provider}' timed out: {what}{span}", status=504)


@define
class Result:
    """A successful attempt: a JSON body, or a primed stream (first chunk + the rest)."""

    body: bytes | None = None
    content_type: str = "application/json"
    first: bytes = b""
    rest: AsyncIterator[bytes] | None = None
    usage_source: Any = None  # an object whose .usage is read when the stream ends


@define
class Attempt:
    gw: Gateway
    ex: Exchange
    api: str
    client: Codec
    hooks: Hooks
    timeouts: Timeouts
    total_deadline: float
    ir_cache: dict[str, ir.Request] = field(factory=dict)

    def _ir(self, body: dict[str, Any]) -> ir.Request:
        # Decoding does not depend on the target, so a retry or fallback reuses it.
        key = "req"
        if key not in self.ir_cache:
            req = self.client.decode_request(body)
            if self.hooks.check_ir is not None:
                self.hooks.check_ir(req)
            self.ir_cache[key] = req
        return self.ir_cache[key]

    async def run(self, provider: Provider, model: str, body: dict[str, Any], stream: bool) -> Result:
        upstream = provider.upstream(self.api, model, stream)
        native = upstream.format == self.client.name
        body = dict(body)
        if self.hooks.prepare is not None:
            body = await self.hooks.prepare(body, provider, native)
        deadlines = Deadlines.start(self.timeouts, self.total_deadline)
        if native:
            self.ex.translated = False
            return await self._forward(provider, upstream, body, model, stream, deadlines)
        self.ex.translated = True
        return await self._translate(provider, upstream, body, model, stream, deadlines)

    async def _send(self, provider: Provider, upstream: Upstream, payload: bytes, stream: bool,
                    deadline: float, native: bool) -> httpx.Response:
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        if native:
            for name in _NATIVE_HEADERS.get(self.client.name, ()):
                value = request.headers.get(name)
                if value:
                    headers[name] = value
        if stream and upstream.framing == "sse":
            headers["accept"] = "text/event-stream"
        self.ex.upstream_headers(headers)  # the effective request id, and the attempt's traceparent
        headers.update(await provider.auth_headers("POST", upstream.url, headers, payload))
        c = self.timeouts.connect
        req = httpx.Request("POST", parsed_url(upstream.url), content=payload, headers=headers,
                            extensions={"timeout": {"connect": c, "pool": c, "read": None, "write": None}})
        with trio.move_on_at(deadline) as scope:
            try:
                resp = await send(self.gw.transport, req)
            except httpx.HTTPError as exc:
                raise transport_error(exc, provider.name) from None
        if scope.cancelled_caught:
            if stream and deadline < self.total_deadline:
                raise timeout_error("no first token", self.timeouts.first_token, provider.name)
            raise timeout_error("the whole exchange took too long", self.timeouts.total, provider.name)
        return resp

    async def _read(self, resp: httpx.Response, provider: Provider, deadline: float) -> bytes:
        with trio.move_on_at(deadline) as scope:
            try:
                return await resp.aread()
            except httpx.HTTPError as exc:
                raise transport_error(exc, provider.name) from None
            finally:
                await close_quietly(resp)
        assert scope.cancelled_caught
        raise timeout_error("response not complete", self.timeouts.total, provider.name)

    async def _error(self, resp: httpx.Response, codec: Codec, provider: Provider, deadline: float) -> GatewayError:
        raw = await self._read(resp, provider, deadline)
        error_type = resp.headers.get("x-amzn-errortype")
        if error_type:
            # AWS names the error in a header; parse_error only sees the body.
            try:
                raw = orjson.dumps({"__type": error_type.split(":")[0], **orjson.loads(raw)})
            except (orjson.JSONDecodeError, TypeError):
                pass
        err = codec.parse_error(resp.status_code, raw)
        ra = resp.headers.get("retry-after")
        if ra and err.retry_after is None:
            try:
                err.retry_after = float(ra)
            except ValueError:
                pass
        return err

    async def _forward(self, provider: Provider, upstream: Upstream, body: dict[str, Any], model: str,
                       stream: bool, dl: Deadlines) -> Result:
        """Same format both sides: forward the body, rewriting only the model (and asking for usage)."""
        sniffer = sniffer_for(self.client.name, body, self.hooks.echo() if self.hooks.echo is not None else None)
        if self.client.name in URL_ROUTED:
            body.pop("model", None)  # the upstream URL names it; these APIs refuse it in the body
        else:
            body["model"] = model
        sniffer.prepare_request(body)
        body = provider.adapt(self.client.name, body, model)
        resp = await self._send(provider, upstream, orjson.dumps(body), stream,
                                dl.first_token if stream else dl.total, native=True)
        if resp.status_code >= 400:
            raise await self._error(resp, self.client, provider, dl.total)
        if not stream:
            raw = await self._read(resp, provider, dl.total)
            try:
                self.ex.usage = sniffer.usage_from_body(raw)
            except ValueError:
                raise unreadable(provider) from None
            if self.hooks.forwarded is not None:
                await self.hooks.forwarded(body, sniffer.response, provider)
            return Result(body=sniffer.client_body(raw),
                          content_type=resp.headers.get("content-type", "application/json"))
        gen = self._relay(provider, resp, sniffer, body, dl)
        return await prime(gen, dl, self.timeouts, provider, sniffer)

    async def _translate(self, provider: Provider, upstream: Upstream, body: dict[str, Any], model: str,
                         stream: bool, dl: Deadlines) -> Result:
        ir_req = self._ir(body)
        if self.client.name in URL_ROUTED:
            ir_req.stream = stream
        codec = get_codec(upstream.format)
        payload = provider.adapt(codec.name, codec.encode_request(ir_req, model), model)
        resp = await self._send(provider, upstream, orjson.dumps(payload), stream,
                                dl.first_token if stream else dl.total, native=False)
        if resp.status_code >= 400:
            raise await self._error(resp, codec, provider, dl.total)
        if not stream:
            raw = await self._read(resp, provider, dl.total)
            try:
                ir_resp = codec.decode_response(orjson.loads(raw))
            except GatewayError:
                raise
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
                raise unreadable(provider) from None
            self.ex.usage = ir_resp.usage
            ir_resp.model = served_model(ir_resp.model, model)
            out = self.client.encode_response(ir_resp, ir_req)
            if self.hooks.completed is not None:
                await self.hooks.completed(body, out, provider)
            return Result(body=orjson.dumps(out))
        tracker = _UsageTracker()
        gen = self._relay_translated(provider, upstream, codec, resp, ir_req, model, body, tracker, dl)
        return await prime(gen, dl, self.timeouts, provider, tracker)

    async def _relay(self, provider: Provider, resp: httpx.Response, sniffer: UsageSniffer,
                     body: dict[str, Any], dl: Deadlines) -> AsyncIterator[bytes]:
        sent = False
        try:
            try:
                async for chunk in chunks(resp, dl, self.timeouts, provider, self.gw.stream_watch):
                    out = sniffer.feed(chunk)
                    if out:
                        sent = True
                        yield out
                tail = sniffer.close()
                if tail:
                    yield tail
            except (GatewayError, SSEError) as exc:
                err = exc if isinstance(exc, GatewayError) else malformed(provider)
                if not sent:
                    raise err from None
                self.ex.error = err.kind
                yield self.client.render_stream_error(err)
                return
            if self.hooks.forwarded is not None:
                await self.hooks.forwarded(body, sniffer.response, provider)
        finally:
            await close_quietly(resp)

    async def _relay_translated(self, provider: Provider, upstream: Upstream, codec: Codec, resp: httpx.Response,
                                ir_req: ir.Request, model: str, body: dict[str, Any], tracker: _UsageTracker,
                                dl: Deadlines) -> AsyncIterator[bytes]:
        frames = framer(upstream.framing)
        decoder = codec.stream_decoder(ir_req)
        encoder = self.client.stream_encoder(ir_req)
        sent = False

        def emit(events: list[ir.StreamEvent]) -> bytes:
            out = b""
            for ev in events:
                if isinstance(ev, ir.MessageEnd) and ev.usage is not None:
                    tracker.usage = ev.usage
                elif isinstance(ev, ir.MessageStart):
                    ev.model = served_model(ev.model, model)
                    if ev.usage is None and self.client.name in _START_USAGE_FORMATS:
                        # The upstream counts the input only at the end; the client reads it at the start.
                        ev.usage = ir.Usage(input_tokens=estimate(ir_req, model))
                elif isinstance(ev, ir.StreamError):
                    if not sent and not out:
                        raise ev.error  # nothing reached the client yet: let the caller retry
                    self.ex.error = getattr(ev.error, "kind", "upstream_unavailable")
                out += encoder.encode(ev)
            return out

        try:
            try:
                async for chunk in chunks(resp, dl, self.timeouts, provider, self.gw.stream_watch):
                    out = b""
                    for event in frames.feed(chunk):
                        out += emit(decoder.feed(event))
                    if out:
                        sent = True
                        yield out
                out = b""
                for event in getattr(frames, "close", list)():
                    out += emit(decoder.feed(event))
                out += emit(decoder.close())
                if out:
                    yield out
            except (GatewayError, SSEError, ValueError) as exc:
                err = exc if isinstance(exc, GatewayError) else malformed(provider)
                if not sent:
                    raise err from None
                yield emit([ir.StreamError(err)])
                return
            final = getattr(encoder, "final_response", None)
            if self.hooks.completed is not None and final is not None and self.ex.error is None:
                result = final()
                if result is not None and result.get("status") != "failed":
                    await self.hooks.completed(body, result, provider)
        finally:
            await close_quietly(resp)


class _UsageTracker:
    usage: ir.Usage | None = None


def unreadable(provider: Provider) -> GatewayError:
    return GatewayError("upstream_unavailable", f"upstream provider '{provider.name}' sent an unreadable response",
                        status=502)


def malformed(provider: Provider) -> GatewayError:
    return GatewayError("upstream_unavailable", f"upstream provider '{provider.name}' sent a malformed stream",
                        status=502)


def framer(framing: str) -> Any:
    """The byte-level decoder of an upstream stream: SSE, or AWS event-stream (Bedrock)."""
    if framing == "eventstream":
        from trigate.wire.eventstream import EventStreamDecoder

        return EventStreamDecoder()
    return SSEDecoder()


async def close_quietly(resp: httpx.Response) -> None:
    if resp.is_closed:  # read to the end: the connection is already back in the pool
        return
    # Shielded so a cancelled (disconnected) client still closes the upstream connection promptly.
    with trio.CancelScope(shield=True), trio.move_on_after(2):
        await resp.aclose()


async def chunks(resp: httpx.Response, dl: Deadlines, t: Timeouts, provider: Provider,
                 watch: StreamWatch) -> AsyncIterator[bytes]:
    """The upstream body, chunk by chunk, under the idle and total deadlines (kept by ``watch``, which
    closes the response when one passes: no cancel scope per chunk)."""
    w = watch.watch(resp.aclose, dl.idle, dl.total)
    it = resp.aiter_raw().__aiter__()
    try:
        while True:
            w.waiting_since = trio.current_time()
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                return
            except httpx.HTTPError as exc:
                if w.expired is None:
                    raise transport_error(exc, provider.name) from None
                chunk = b""
            w.waiting_since = None
            if w.expired == "idle":
                raise timeout_error("no data between stream chunks", t.idle, provider.name)
            if w.expired == "total":
                raise timeout_error("the whole exchange took too long", t.total, provider.name)
            yield chunk
    finally:
        watch.unwatch(w)


async def prime(gen: AsyncIterator[bytes], dl: Deadlines, t: Timeouts, provider: Provider, usage_source: Any) -> Result:
    """Read a stream's first chunk before committing to it, under the first-token deadline."""
    with trio.move_on_at(dl.first_token) as scope:
        try:
            first = await gen.__anext__()
        except StopAsyncIteration:
            first = b""
        except BaseException:
            with trio.CancelScope(shield=True):
                await gen.aclose()  # type: ignore[attr-defined]
            raise
    if scope.cancelled_caught:
        with trio.CancelScope(shield=True):
            await gen.aclose()  # type: ignore[attr-defined]
        if dl.first_token >= dl.total:
            raise timeout_error("the whole exchange took too long", t.total, provider.name)
        raise timeout_error("no first token", t.first_token, provider.name)
    return Result(content_type="text/event-stream", first=first, rest=gen, usage_source=usage_source)
