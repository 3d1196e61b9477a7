"""One JSON POST to a provider for the non-text API types (embeddings, rerank): auth injection,
connect timeout, a deadline as a trio cancel scope, and errors parsed in the provider's own shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import trio

from trigate.errors import GatewayError
from trigate.gateway import Gateway
from trigate.upstream.client import transport_error
from trigate.upstream.providers import Provider

ErrorParser = Callable[[int, bytes], GatewayError]


async def post_json(gw: Gateway, provider: Provider, url: str, payload: dict[str, Any], parse_error: ErrorParser,
                    deadline: float) -> tuple[Any, httpx.Headers]:
    raw = orjson.dumps(payload)
    headers = {"content-type": "application/json"}
    headers.update(await provider.auth_headers("POST", url, headers, raw))
    c = gw.config.timeouts.connect
    with trio.move_on_at(deadline) as scope:
        try:
            r = await gw.http.post(url, content=raw, headers=headers,
                                   extensions={"timeout": {"connect": c, "pool": c, "read": None, "write": None}})
        except httpx.HTTPError as exc:
            raise transport_error(exc, provider.name) from None
    if scope.cancelled_caught:
        raise GatewayError("timeout", f"upstream provider '{provider.name}' timed out", status=504)
    if r.status_code >= 400:
        error_type = r.headers.get("x-amzn-errortype")
        body = r.content
        if error_type:
            try:
                body = orjson.dumps({"__type": error_type.split(":")[0], **orjson.loads(body)})
            except (orjson.JSONDecodeError, TypeError):
                pass
        err = parse_error(r.status_code, body)
        ra = r.headers.get("retry-after")
        if ra and err.retry_after is None:
            try:
                err.retry_after = float(ra)
            except ValueError:
                pass
        raise err
    try:
        return r.json(), r.headers
    except ValueError:
        raise GatewayError("upstream_unavailable", f"upstream provider '{provider.name}' sent an unreadable "
                           "response", status=502) from None


def error_parser(fmt: str) -> ErrorParser:
    """The error parser of a provider dialect."""
    from trigate.formats import get_codec

    if fmt in ("openai", "vllm"):
        return get_codec("openai_chat").parse_error
    if fmt in ("gemini", "vertex"):
        return get_codec("gemini").parse_error
    if fmt == "bedrock":
        return get_codec("bedrock").parse_error
    if fmt in ("jina", "voyage"):
        from trigate.formats.rerank import parse_rerank_error

        return parse_rerank_error
    from trigate.formats.cohere_errors import parse_cohere_error

    return parse_cohere_error
