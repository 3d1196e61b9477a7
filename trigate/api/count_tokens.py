"""Anthropic ``POST /v1/messages/count_tokens`` against any provider, and the counting behind OpenAI's
``POST /v1/responses/input_tokens`` (api/responses.py).

Exact where the provider can count (Anthropic natively, Claude on Vertex and Bedrock, Gemini
``countTokens``, OpenAI ``/responses/input_tokens``); otherwise a local estimate with OpenAI's BPE
vocabularies (offline). The ``x-trigate-token-count`` response header says which: exact | estimated.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from quart import Quart, Response, request

from trigate.api.text import error_response, json_response, parse_body, request_credential
from trigate.errors import GatewayError, invalid_request
from trigate.formats import get_codec
from trigate.gateway import Gateway
from trigate.policies.auth import check_model
from trigate.routing import Target
from trigate.tokens import estimate
from trigate.translate import ir
from trigate.upstream.client import transport_error
from trigate.upstream.providers import Provider, Upstream

COUNT_HEADER = "x-trigate-token-count"
# Statuses meaning "this upstream has no such endpoint": fall back to the local estimate.
_NO_ENDPOINT = (404, 405, 501)
# The fields of the counting endpoints that take a generation request's shape (Anthropic's
# count_tokens, OpenAI's /responses/input_tokens): no sampling, output or storage options.
_COUNT_FIELDS = {
    "anthropic": frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}),
    "openai_responses": frozenset({"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
                                   "reasoning", "text", "truncation", "previous_response_id", "conversation"}),
}


def _read_count(body: Any) -> int | None:
    if isinstance(body, dict):
        for key in ("input_tokens", "totalTokens", "inputTokens"):
            if isinstance(body.get(key), int):
                return body[key]
    return None


async def _exact(gw: Gateway, provider: Provider, up: Upstream, client_format: str, req: ir.Request,
                 body: dict[str, Any], model: str) -> int | None:
    """The provider's own count, or None when it has no counting endpoint after all. A counter that
    speaks the client's format gets the client's body itself."""
    if up.format == client_format:
        payload = dict(body)
    else:
        payload = get_codec(up.format).encode_request(req, model)
        if up.format in _COUNT_FIELDS:  # an encoded generation request: keep what the counter takes
            payload = {k: v for k, v in payload.items() if k in _COUNT_FIELDS[up.format]}
    payload = provider.count_tokens_body(up.format, payload, model)
    raw = orjson.dumps(payload)
    headers = {"content-type": "application/json"}
    if up.format == "anthropic" and request.headers.get("anthropic-beta"):
        headers["anthropic-beta"] = request.headers["anthropic-beta"]
    headers.update(await provider.auth_headers("POST", up.url, headers, raw))
    try:
        r = await gw.http.post(up.url, content=raw, headers=headers)
    except httpx.HTTPError as exc:
        raise transport_error(exc, provider.name) from None
    if r.status_code in _NO_ENDPOINT:
        return None
    if r.status_code >= 400:
        raise get_codec(up.format).parse_error(r.status_code, r.content)
    try:
        n = _read_count(r.json())
    except ValueError:
        n = None
    if n is None:
        raise GatewayError("upstream_unavailable", f"upstream provider '{provider.name}' sent an unreadable "
                           "token count", status=502)
    return n


def required_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("model: field required", param="model")
    return model


async def count_target(gw: Gateway, model: str) -> tuple[Target, Provider]:
    """The caller's key may use ``model``, and where it routes (the first target: a count sends
    nothing to the model, so there is nothing to balance or fall back from)."""
    principal = await gw.keys.authenticate(request_credential())
    check_model(principal, model)
    target = gw.router.resolve(model)
    if target is None:
        raise GatewayError("not_found", f"The model '{model}' does not exist or is not served by this "
                           "gateway", param="model", code="model_not_found")
    return target, gw.providers[target.provider]


async def count_input(gw: Gateway, provider: Provider, model: str, client_format: str, req: ir.Request,
                      body: dict[str, Any]) -> tuple[int, str]:
    """Input tokens of a request (decoded as ``req``, sent as ``body`` in ``client_format``) on
    ``provider``'s ``model``, and how they were counted: exact | estimated."""
    up = provider.count_tokens(model)
    n = await _exact(gw, provider, up, client_format, req, body, model) if up is not None else None
    if n is None:
        return estimate(req, model), "estimated"
    return n, "exact"


def register(app: Quart, gw: Gateway) -> None:
    codec = get_codec("anthropic")

    @app.post("/v1/messages/count_tokens")
    async def count_tokens() -> Response:
        try:
            body = parse_body(await request.get_data())
            model = required_model(body)
            if not isinstance(body.get("messages"), list):
                raise invalid_request("messages: field required (an array)", param="messages")
            target, provider = await count_target(gw, model)
            # count_tokens bodies have no max_tokens; the decoder wants one.
            req = codec.decode_request({**body, "max_tokens": body.get("max_tokens") or 1})
            n, kind = await count_input(gw, provider, target.model, "anthropic", req, body)
            return json_response({"input_tokens": n}, headers={COUNT_HEADER: kind})
        except GatewayError as err:
            return error_response(codec, err)
