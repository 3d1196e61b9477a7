"""OpenAI ``POST /v1/embeddings`` against any provider.

Native to OpenAI, Azure and OpenAI-compatible servers; translated for Gemini (batchEmbedContents),
Vertex (predict), Cohere (/v2/embed) and Bedrock (Titan / Cohere embed via InvokeModel). Inputs larger
than a provider's batch limit are split, sent a few batches at a time, and reassembled in order. The
answer is float or base64 (little-endian float32) as the client asked, whatever the provider returned.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Quart, Response, request

from trigate.api.attempt import NO_HOOKS
from trigate.api.text import (
    RequestContext,
    error_response,
    json_response,
    parse_body,
    run_attempts,
)
from trigate.api.upstream_json import error_parser, post_json
from trigate.errors import GatewayError
from trigate.formats import embeddings as E
from trigate.formats import get_codec
from trigate.gateway import Gateway
from trigate.routing import Resolved, Target
from trigate.translate.ir import Usage
from trigate.upstream.providers import Provider

# Batches of one request sent at once: enough to hide latency, few enough to stay polite.
MAX_PARALLEL_BATCHES = 4

_ENCODERS = {"openai": E.encode_openai_request, "gemini": E.encode_gemini_request,
             "vertex": E.encode_vertex_request, "cohere": E.encode_cohere_request,
             "bedrock": E.encode_bedrock_request}


async def embed(gw: Gateway, provider: Provider, model: str, req: E.EmbedRequest, deadline: float) -> E.EmbedResponse:
    up = provider.embeddings(model)
    parse_error = error_parser(up.format)
    max_tokens = E.VERTEX_MAX_TOKENS_PER_REQUEST if up.format == "vertex" else None
    parts = E.split_request(req, E.batch_limit(up.format, model), max_tokens=max_tokens)
    results: list[E.EmbedResponse | None] = [None] * len(parts)
    limiter = trio.CapacityLimiter(MAX_PARALLEL_BATCHES)

    async def one(i: int, part: E.EmbedRequest) -> None:
        async with limiter:
            payload = provider.adapt(up.format, _ENCODERS[up.format](part, model), model)
            body, headers = await post_json(gw, provider, up.url, payload, parse_error, deadline)
            if up.format == "openai":
                results[i] = E.decode_openai_response(body, part)
            elif up.format == "gemini":
                results[i] = E.decode_gemini_response(body, part)
            elif up.format == "vertex":
                results[i] = E.decode_vertex_response(body, part)
            elif up.format == "cohere":
                results[i] = E.decode_cohere_response(body, part)
            else:
                results[i] = E.decode_bedrock_response(body, part, model,
                                                       headers.get("x-amzn-bedrock-input-token-count"))

    try:
        async with trio.open_nursery() as nursery:
            for i, part in enumerate(parts):
                nursery.start_soon(one, i, part)
    except BaseExceptionGroup as group:
        # the first provider error is the answer; the others were cancelled alongside it
        first = next((e for e in _leaves(group) if isinstance(e, GatewayError)), None)
        if first is not None:
            raise first from None
        raise
    return E.merge_responses([r for r in results if r is not None])


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


def register(app: Quart, gw: Gateway) -> None:
    codec = get_codec("openai_chat")

    @app.post("/v1/embeddings")
    @app.post("/embeddings")
    async def embeddings() -> Response:
        ctx = RequestContext(gw, "embeddings", codec, NO_HOOKS)
        ex = ctx.ex
        try:
            raw = await request.get_data()
            body = parse_body(raw)
            resolved, deadline = await ctx.admit(body, max(len(raw) // 4, 1))
            ereq = E.decode_openai_request(body)

            async def one(route: Resolved, target: Target, provider: Provider) -> E.EmbedResponse:
                return await embed(gw, provider, target.model, ereq, deadline)

            resp = await run_attempts(ctx, resolved, one, deadline)
            ex.usage = Usage(input_tokens=resp.prompt_tokens)
            out: dict[str, Any] = E.encode_openai_response(resp, ereq)
        except GatewayError as err:
            headers = ctx.refuse(err)
            await ctx.end(err.status)
            return error_response(codec, err, headers)
        await ctx.end(200)
        headers = ctx.headers()
        if resp.estimated:
            headers["x-trigate-usage"] = "estimated"
        return json_response(out, headers=headers)
