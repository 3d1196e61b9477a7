"""The I/O shell shared by the three text API types (chat completions, messages, responses).

One request: parse -> route -> (forward the bytes when the provider speaks the client's format, or
translate through the IR) -> answer or stream back. A stream is an async generator owned by the
request's task: when the client goes away Quart-Trio cancels it, and the ``finally`` closes the
upstream response, so the upstream sees the disconnect at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import trio
from attrs import define
from quart import Response, request

from trigate.errors import GatewayError, invalid_request
from trigate.formats import get_codec
from trigate.formats.base import Codec
from trigate.gateway import Gateway
from trigate.telemetry import Exchange, log_exchange
from trigate.translate import ir
from trigate.upstream.client import transport_error
from trigate.upstream.providers import Provider, Upstream
from trigate.upstream.sniff import UsageSniffer, sniffer_for
from trigate.wire.sse import SSEDecoder, SSEError

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_PASS_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")


@define
class Hooks:
    """API-specific steps around the shared pipeline (the Responses API's stored state uses them)."""

    # A cheap structural check run on every request, also on the same-format fast path where the
    # body is otherwise not decoded; raises GatewayError(invalid_request) naming the field.
    validate: Callable[[dict[str, Any]], None] | None = None
    # Translated requests: reject what the provider cannot do (raises GatewayError).
    check_ir: Callable[[ir.Request], None] | None = None
    # After routing: may rewrite the body (e.g. expand previous_response_id). Args: body, provider,
    # native (True when the provider speaks the client's format and the body will be forwarded).
    prepare: Callable[[dict[str, Any], Provider, bool], Awaitable[dict[str, Any]]] | None = None
    # A translated request succeeded: called with the body and the final client-format result.
    completed: Callable[[dict[str, Any], dict[str, Any], Provider], Awaitable[None]] | None = None
    # A forwarded request succeeded: called with the body and the upstream's response id, if any.
    forwarded: Callable[[dict[str, Any], str | None, Provider], Awaitable[None]] | None = None


_NO_HOOKS = Hooks()


def framer(framing: str) -> Any:
    """The byte-level decoder of an upstream stream: SSE, or AWS event-stream (Bedrock)."""
    if framing == "eventstream":
        from trigate.wire.eventstream import EventStreamDecoder

        return EventStreamDecoder()
    return SSEDecoder()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status=status, content_type="application/json", headers=headers)


def error_response(codec: Codec, err: GatewayError) -> Response:
    status, body = codec.render_error(err)
    headers = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(0, round(err.retry_after)))
    return json_response(body, status, headers)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid_request("the request body must be a JSON object")
    return body


async def handle_text(gw: Gateway, api: str, client_format: str, hooks: Hooks | None = None) -> Response:
    client = get_codec(client_format)
    ex = Exchange(method=request.method, path=request.path, api=api, client_format=client_format)
    try:
        body = parse_body(await request.get_data())
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid_request("model: field required (a model name string)", param="model")
        ex.model = model
        target = gw.router.resolve(model)
        if target is None:
            raise GatewayError("not_found", f"The model '{model}' does not exist or is not served by this gateway",
                               param="model", code="model_not_found")
        provider = gw.providers[target.provider]
        ex.provider, ex.upstream_model = provider.name, target.model
        stream = body.get("stream") is True
        ex.stream = stream
        upstream = provider.upstream(api, target.model, stream)
        upstream_format = upstream.format
        hooks = hooks or _NO_HOOKS
        if hooks.validate:
            hooks.validate(body)
        native = upstream_format == client_format
        if hooks.prepare:
            body = await hooks.prepare(body, provider, native)
        if native:
            response = await _forward(gw, ex, client, provider, upstream, body, target.model, stream, hooks)
        else:
            ex.translated = True
            response = await _translate(
                gw, ex, client, get_codec(upstream_format), provider, upstream, body, target.model, stream, hooks
            )
    except GatewayError as err:
        ex.status, ex.error = err.status, err.kind
        log_exchange(ex)
        return error_response(client, err)
    if not stream or response.status_code != 200:
        ex.status = response.status_code
        log_exchange(ex)
    return response


# Client headers a provider of the same format must see to behave as the client expects.
_NATIVE_HEADERS = {"anthropic": ("anthropic-version", "anthropic-beta"), "openai_chat": (), "openai_responses": ()}


async def _send(
    gw: Gateway, provider: Provider, upstream: Upstream, payload: bytes, stream: bool, native_format: str | None = None
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    for name in _NATIVE_HEADERS.get(native_format or "", ()):
        value = request.headers.get(name)
        if value:
            headers[name] = value
    if stream and upstream.framing == "sse":
        headers["accept"] = "text/event-stream"
    headers.update(await provider.auth_headers("POST", upstream.url, headers, payload))
    req = gw.http.build_request("POST", upstream.url, content=payload, headers=headers)
    try:
        return await gw.http.send(req, stream=stream)
    except httpx.HTTPError as exc:
        raise transport_error(exc, provider.name) from None


async def _upstream_error(resp: httpx.Response, upstream: Codec) -> GatewayError:
    try:
        raw = await resp.aread()
    finally:
        await resp.aclose()
    err = upstream.parse_error(resp.status_code, raw)
    ra = resp.headers.get("retry-after")
    if ra and err.retry_after is None:
        try:
            err.retry_after = float(ra)
        except ValueError:
            pass
    return err


async def _forward(
    gw: Gateway,
    ex: Exchange,
    client: Codec,
    provider: Provider,
    upstream: Upstream,
    body: dict[str, Any],
    upstream_model: str,
    stream: bool,
    hooks: Hooks,
) -> Response:
    """Same format on both sides: forward the body, rewriting only the model (and asking for usage)."""
    sniffer = sniffer_for(client.name, body)
    body["model"] = upstream_model
    sniffer.prepare_request(body)
    body = provider.adapt(client.name, body, upstream_model)
    resp = await _send(gw, provider, upstream, orjson.dumps(body), stream, client.name)
    if resp.status_code >= 400:
        raise await _upstream_error(resp, client)
    if not stream:
        try:
            raw = await resp.aread()
        finally:
            await resp.aclose()
        try:
            ex.usage = sniffer.usage_from_body(raw)
        except ValueError:
            raise GatewayError("upstream_unavailable", f"upstream provider '{provider.name}' sent an unreadable "
                               "response", status=502) from None
        if hooks.forwarded is not None:
            await hooks.forwarded(body, sniffer.response_id, provider)
        return Response(raw, status=200, content_type=resp.headers.get("content-type", "application/json"))
    return Response(
        _relay(ex, client, body, provider, resp, sniffer, hooks),
        status=200,
        content_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _translate(
    gw: Gateway,
    ex: Exchange,
    client: Codec,
    upstream: Codec,
    provider: Provider,
    target: Upstream,
    body: dict[str, Any],
    upstream_model: str,
    stream: bool,
    hooks: Hooks,
) -> Response:
    ir_req = client.decode_request(body)
    if hooks.check_ir is not None:
        hooks.check_ir(ir_req)
    payload = provider.adapt(upstream.name, upstream.encode_request(ir_req, upstream_model), upstream_model)
    resp = await _send(gw, provider, target, orjson.dumps(payload), stream)
    if resp.status_code >= 400:
        raise await _upstream_error(resp, upstream)
    if not stream:
        try:
            raw = await resp.aread()
        finally:
            await resp.aclose()
        try:
            ir_resp = upstream.decode_response(orjson.loads(raw))
        except (orjson.JSONDecodeError, GatewayError, KeyError, TypeError, AttributeError):
            raise GatewayError("upstream_unavailable", f"upstream provider '{provider.name}' sent an unreadable "
                               "response", status=502) from None
        ex.usage = ir_resp.usage
        out = client.encode_response(ir_resp, ir_req)
        if hooks.completed is not None:
            await hooks.completed(body, out, provider)
        return json_response(out)
    return Response(
        _relay_translated(ex, client, upstream, ir_req, body, provider, target, resp, hooks),
        status=200,
        content_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _close_upstream(resp: httpx.Response) -> None:
    # Shielded so a cancelled (disconnected) client still closes the upstream connection promptly.
    with trio.CancelScope(shield=True), trio.move_on_after(2):
        await resp.aclose()


def _finish(ex: Exchange, status: int) -> None:
    ex.status = status
    log_exchange(ex)


async def _relay(
    ex: Exchange,
    client: Codec,
    body: dict[str, Any],
    provider: Provider,
    resp: httpx.Response,
    sniffer: UsageSniffer,
    hooks: Hooks,
) -> AsyncIterator[bytes]:
    try:
        try:
            async for chunk in resp.aiter_raw():
                out = sniffer.feed(chunk)
                if out:
                    ex.mark_first_byte()
                    yield out
            tail = sniffer.close()
            if tail:
                yield tail
        except (httpx.HTTPError, SSEError) as exc:
            err = transport_error(exc, provider.name) if isinstance(exc, httpx.HTTPError) else \
                GatewayError("upstream_unavailable", f"upstream provider '{provider.name}' sent a malformed stream")
            ex.error = err.kind
            yield client.render_stream_error(err)
        ex.usage = sniffer.usage
        if hooks.forwarded is not None and ex.error is None:
            await hooks.forwarded(body, sniffer.response_id, provider)
    except trio.Cancelled:
        ex.cancelled = True
        ex.usage = sniffer.usage
        raise
    finally:
        await _close_upstream(resp)
        _finish(ex, 499 if ex.cancelled else 200)


async def _relay_translated(
    ex: Exchange,
    client: Codec,
    upstream: Codec,
    ir_req: ir.Request,
    body: dict[str, Any],
    provider: Provider,
    target: Upstream,
    resp: httpx.Response,
    hooks: Hooks,
) -> AsyncIterator[bytes]:
    sse = framer(target.framing)
    decoder = upstream.stream_decoder(ir_req)
    encoder = client.stream_encoder(ir_req)

    def emit(events: list[ir.StreamEvent]) -> bytes:
        out = b""
        for ev in events:
            if isinstance(ev, ir.MessageEnd) and ev.usage is not None:
                ex.usage = ev.usage
            elif isinstance(ev, ir.StreamError):
                ex.error = getattr(ev.error, "kind", "upstream_unavailable")
            out += encoder.encode(ev)
        return out

    try:
        try:
            async for chunk in resp.aiter_raw():
                out = b""
                for event in sse.feed(chunk):
                    out += emit(decoder.feed(event))
                if out:
                    ex.mark_first_byte()
                    yield out
            out = b""
            for event in getattr(sse, "close", list)():
                out += emit(decoder.feed(event))
            out += emit(decoder.close())
            if out:
                yield out
        except (httpx.HTTPError, SSEError, ValueError) as exc:
            err = transport_error(exc, provider.name) if isinstance(exc, httpx.HTTPError) else \
                GatewayError("upstream_unavailable", f"upstream provider '{provider.name}' sent a malformed stream")
            yield emit([ir.StreamError(err)])
        final = getattr(encoder, "final_response", None)
        if hooks.completed is not None and final is not None and ex.error is None:
            result = final()
            if result is not None:
                await hooks.completed(body, result, provider)
    except trio.Cancelled:
        ex.cancelled = True
        raise
    finally:
        await _close_upstream(resp)
        _finish(ex, 499 if ex.cancelled else 200)

