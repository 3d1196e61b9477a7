"""Cohere ``POST /v2/rerank`` (and ``/v1/rerank``) against any provider that ranks.

Native to Cohere and Cohere-compatible servers; translated for Jina, Voyage and vLLM dialects, Bedrock
(agent runtime ``Rerank``) and Vertex AI ranking. Documents beyond a provider's limit are ranked in
batches and merged; ``top_n`` and ``return_documents`` are applied by the gateway after merging.
Errors use Cohere's shape, which the ``cohere`` SDK parses.
"""

from __future__ import annotations

from typing import Any

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
from trigate.formats import rerank as R
from trigate.formats.cohere_errors import render_cohere_error
from trigate.gateway import Gateway
from trigate.routing import Resolved, Target
from trigate.translate.ir import Usage
from trigate.upstream.providers import BedrockProvider, Provider


class _CohereErrors:
    """The Codec slice error_response needs, for Cohere-shaped errors."""

    name = "cohere"

    @staticmethod
    def render_error(err: GatewayError) -> tuple[int, dict[str, Any]]:
        return render_cohere_error(err)


def _encode(fmt: str, req: R.RerankRequest, model: str, provider: Provider) -> dict[str, Any]:
    if fmt == "cohere":
        return R.encode_cohere_request(req, model)
    if fmt == "jina":
        return R.encode_jina_request(req, model)
    if fmt == "voyage":
        return R.encode_voyage_request(req, model)
    if fmt == "vllm":
        return R.encode_vllm_request(req, model)
    if fmt == "bedrock":
        region = provider.region if isinstance(provider, BedrockProvider) else "us-east-1"
        return R.encode_bedrock_request(req, model, region)
    return R.encode_vertex_request(req, model)


_DECODERS = {"cohere": R.decode_cohere_response, "jina": R.decode_jina_response, "voyage": R.decode_voyage_response,
             "vllm": R.decode_vllm_response, "bedrock": R.decode_bedrock_response, "vertex": R.decode_vertex_response}


async def rank(gw: Gateway, provider: Provider, model: str, req: R.RerankRequest, deadline: float) -> R.RerankResponse:
    up = provider.rerank(model)
    limit = R.rerank_limit(up.format)
    batches = R.split_request(req, limit) if limit else [req]
    parse_error = error_parser(up.format)
    parts = []
    for batch in batches:  # sequential: rerank batches are rare and each is already large
        payload = provider.adapt(up.format, _encode(up.format, batch, model, provider), model)
        body, _ = await post_json(gw, provider, up.url, payload, parse_error, deadline)
        parts.append(_DECODERS[up.format](body, batch))
    return R.merge_responses(parts, batches) if len(parts) > 1 else parts[0]


def register(app: Quart, gw: Gateway) -> None:
    errors = _CohereErrors()

    async def handle(api_version: int) -> Response:
        ctx = RequestContext(gw, "rerank", errors, NO_HOOKS)  # type: ignore[arg-type]
        ex = ctx.ex
        try:
            raw = await request.get_data()
            body = parse_body(raw)
            resolved, deadline = await ctx.admit(body, max(len(raw) // 4, 1))
            rreq = R.decode_cohere_request(body, api_version)  # type: ignore[arg-type]

            async def one(route: Resolved, target: Target, provider: Provider) -> R.RerankResponse:
                return await rank(gw, provider, target.model, rreq, deadline)

            resp = await run_attempts(ctx, resolved, one, deadline)
            ex.usage = Usage(input_tokens=resp.total_tokens or 0)
            out = R.encode_cohere_response(resp, rreq, api_version)  # type: ignore[arg-type]
        except GatewayError as err:
            headers = ctx.refuse(err)
            await ctx.end(err.status)
            return error_response(errors, err, headers)  # type: ignore[arg-type]
        await ctx.end(200)
        return json_response(out, headers=ctx.headers())

    @app.post("/v2/rerank")
    async def rerank_v2() -> Response:
        return await handle(2)

    @app.post("/v1/rerank")
    async def rerank_v1() -> Response:
        return await handle(1)
