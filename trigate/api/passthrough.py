"""Passthrough: ``/{provider}/{path}`` forwarded to that configured provider without transformation.

Any method; the request body is streamed upstream as it arrives and the response streamed back. The
caller's own credentials are removed and the provider's injected; hop-by-hop headers are dropped. The
upstream host is always the configured provider's, so this is no open proxy: the path only ever
extends that host's URL. Usage is picked out of JSON and SSE answers when recognisable.

A raw provider API reaches every model of that provider, so a key may only use the providers its
``providers`` patterns allow (none, if it is held to some ``models`` and names no providers), and the
key's and the global limits apply as to any model call; tokens are settled from the usage seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import trio
from quart import Quart, Response, request

from trigate.api.text import acquire_lease, end_lease, error_response, limit_rules
from trigate.errors import GatewayError
from trigate.formats import get_codec
from trigate.gateway import Gateway
from trigate.policies.auth import check_provider, credential_from_headers
from trigate.policies.budgets import refusal_headers, reserve_request
from trigate.policies.headers import quota_headers
from trigate.policies.limits import Lease, Limiter
from trigate.telemetry import Exchange, log_exchange
from trigate.translate.ir import Usage
from trigate.upstream.client import transport_error
from trigate.upstream.sniff import usage_from_anthropic, usage_from_openai
from trigate.wire.sse import SSEDecoder

# RFC 9110 hop-by-hop headers, plus those httpx/hypercorn set themselves.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})
# Set again by Hypercorn on every answer: relayed too, the client would see each twice.
SERVER_SET = frozenset({"date", "server"})
# Client credentials, never forwarded: the provider's own are injected instead.
CLIENT_AUTH = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"})
# Keep at most this much of a JSON answer to look for usage in.
_SNIFF_LIMIT = 1 << 20
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def usage_from_json(obj: Any) -> Usage | None:
    """Usage in any of the provider shapes we know (OpenAI, Anthropic, Gemini, Bedrock, Cohere)."""
    if not isinstance(obj, dict):
        return None
    u = obj.get("usage")
    if isinstance(u, dict):
        if "prompt_tokens" in u:
            return usage_from_openai(u)
        if "input_tokens" in u or "output_tokens" in u:
            return usage_from_anthropic(u)
        if "inputTokens" in u:
            return Usage(input_tokens=int(u.get("inputTokens") or 0), output_tokens=int(u.get("outputTokens") or 0))
    meta = obj.get("usageMetadata")
    if isinstance(meta, dict):
        output = int(meta.get("candidatesTokenCount") or 0) + int(meta.get("thoughtsTokenCount") or 0)
        return Usage(input_tokens=int(meta.get("promptTokenCount") or 0), output_tokens=output)
    billed = (obj.get("meta") or {}).get("billed_units") if isinstance(obj.get("meta"), dict) else None
    if isinstance(billed, dict):
        return Usage(input_tokens=int(billed.get("input_tokens") or 0),
                     output_tokens=int(billed.get("output_tokens") or 0))
    for key in ("response", "message"):  # Responses / Anthropic stream events wrap the object
        if isinstance(obj.get(key), dict):
            found = usage_from_json(obj[key])
            if found is not None:
                return found
    return None


class _UsageTap:
    """Watches response bytes go by and keeps the last usage it recognised."""

    def __init__(self, content_type: str) -> None:
        self.usage: Usage | None = None
        self._sse = SSEDecoder() if content_type.startswith("text/event-stream") else None
        self._json = bytearray() if "json" in content_type else None

    def feed(self, chunk: bytes) -> None:
        if self._sse is not None:
            for ev in self._sse.feed(chunk):
                if "sage" in ev.data:  # usage / usageMetadata
                    self._take(ev.data)
        elif self._json is not None:
            if len(self._json) + len(chunk) <= _SNIFF_LIMIT:
                self._json += chunk
            else:
                self._json = None

    def close(self) -> None:
        if self._json:
            self._take(bytes(self._json))

    def _take(self, data: str | bytes) -> None:
        try:
            found = usage_from_json(orjson.loads(data))
        except orjson.JSONDecodeError:
            return
        if found is not None:
            if self.usage is not None and found.input_tokens == 0:
                found.input_tokens = self.usage.input_tokens  # Anthropic message_delta lacks input
            self.usage = found


def register(app: Quart, gw: Gateway) -> None:
    codec = get_codec("openai_chat")

    @app.route("/<provider_name>/<path:path>", methods=_METHODS)
    async def passthrough(provider_name: str, path: str) -> Response:
        ex = Exchange(method=request.method, path=request.path, api="passthrough", client_format="passthrough",
                      provider=provider_name)
        provider = gw.providers.get(provider_name)
        if provider is None:
            ex.status = 404
            log_exchange(ex)
            return error_response(codec, GatewayError("not_found", f"no such endpoint: {request.method} "
                                                      f"{request.path}", status=404))
        limiter, lease = gw.limiter, None  # the limiter the lease came from, even if a reload swaps it
        try:
            headers = {k.lower(): v for k, v in request.headers.items()}
            principal = await gw.keys.authenticate(credential_from_headers(headers))
            ex.key_id, ex.team = principal.key_id, principal.team
            check_provider(principal, provider_name)
            # no model to price before the call: nothing is reserved, but an exhausted budget refuses
            await reserve_request(gw, principal, (), 0, 0, codec.name)
            rules = limit_rules(gw, principal, None)
            if rules:
                # nothing to estimate tokens from (the body is streamed as it comes): the usage seen
                # in the answer is settled afterwards, and an exhausted tpm still refuses
                lease = await acquire_lease(gw, limiter, rules, 0)
            try:
                return await _forward(gw, ex, provider, path, headers, limiter, lease)
            except BaseException:
                if lease is not None:  # no relay started, which would have ended it
                    await end_lease(limiter, lease, ex)
                raise
        except GatewayError as err:
            ex.fail(err)
            ex.status = err.status
            log_exchange(ex)
            quota = getattr(err, "quota", None)
            headers = quota_headers(codec.name, quota) if quota is not None else {}
            return error_response(codec, err, {**headers, **refusal_headers(err)})


async def _forward(gw: Gateway, ex: Exchange, provider: Any, path: str, headers: dict[str, str],
                   limiter: Limiter, lease: Lease | None) -> Response:
    url = f"{provider.origin()}/{path.lstrip('/')}"
    query = request.query_string.decode()
    if query:
        url += "?" + query
    out = {k: v for k, v in headers.items() if k not in HOP_BY_HOP and k not in CLIENT_AUTH
           and k != "remote-addr"}
    ex.upstream_headers(out)  # the effective request id (not the client's raw one) and our traceparent
    # SigV4 signs the body, so a signing provider needs it whole; the others get it streamed.
    signs_body = provider.kind == "bedrock" and not provider.api_key
    if signs_body or request.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        body: bytes | AsyncIterator[bytes] = await request.get_data()
        signed_body = body
    else:
        body, signed_body = _request_body(), b""
    out.update(await provider.auth_headers(request.method, url, out, signed_body))  # type: ignore[arg-type]
    upstream_req = gw.http.build_request(request.method, url, content=body, headers=out)
    try:
        resp = await gw.http.send(upstream_req, stream=True)
    except httpx.HTTPError as exc:
        raise transport_error(exc, provider.name) from None
    tap = _UsageTap(resp.headers.get("content-type", ""))
    resp_headers = [(k, v) for k, v in resp.headers.multi_items()
                    if k.lower() not in HOP_BY_HOP and k.lower() not in SERVER_SET]
    ex.status = resp.status_code
    ex.stream = resp.headers.get("content-type", "").startswith("text/event-stream")
    return Response(_relay(ex, resp, tap, limiter, lease), status=resp.status_code, headers=resp_headers)


async def _request_body() -> AsyncIterator[bytes]:
    async for chunk in request.body:
        yield chunk


async def _relay(ex: Exchange, resp: httpx.Response, tap: _UsageTap, limiter: Limiter,
                 lease: Lease | None) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.aiter_raw():
            tap.feed(chunk)
            ex.mark_first_byte()
            yield chunk
        tap.close()
    except httpx.HTTPError:
        ex.error = "upstream_unavailable"
    except trio.Cancelled:
        ex.cancelled = True
        raise
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await resp.aclose()
        ex.usage = tap.usage
        if lease is not None:
            await end_lease(limiter, lease, ex)
        log_exchange(ex)
