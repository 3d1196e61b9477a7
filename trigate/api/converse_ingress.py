"""Amazon Bedrock ``POST /model/{modelId}/converse`` and ``/model/{modelId}/converse-stream``, so AWS
clients (boto3's ``bedrock-runtime``) reach every provider.

The modelId (percent-encoded by the SDKs: ARNs, ``us.anthropic...:0``) is looked up in the routes like any
model name. The gateway key is a Bedrock API key (``Authorization: Bearer``, what botocore sends when
``AWS_BEARER_TOKEN_BEDROCK`` is set) or, for SigV4-signed requests, the access key id (see
``policies.auth.sigv4_access_key``: the signature itself is not checked). A Bedrock target gets the body as
sent; any other is translated through the IR. Streams are AWS event-stream frames. Errors are Bedrock's:
the exception name in ``x-amzn-ErrorType`` and ``{"message": ...}``; in a stream, an exception message.
"""

from __future__ import annotations

from typing import Any

import orjson
from quart import Quart, Response

from trigate.api.text import Hooks, handle_text
from trigate.errors import invalid_request
from trigate.gateway import Gateway

CLIENT_FORMAT = "bedrock"


def validate_converse(body: dict[str, Any]) -> None:
    """What every provider needs, checked even when the body is forwarded untranslated."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages: field required (a non-empty array of messages)", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise invalid_request(f"messages.{i}.role: must be 'user' or 'assistant'", param=f"messages.{i}.role")
        if not isinstance(m.get("content"), list):
            raise invalid_request(f"messages.{i}.content: field required (an array)", param=f"messages.{i}.content")


_HOOKS = Hooks(validate=validate_converse)


async def name_error(resp: Response) -> Response:
    """AWS SDKs take the exception name from ``x-amzn-ErrorType``; the codec's error body carries it as
    ``__type`` (its fallback)."""
    if resp.status_code >= 400 and "x-amzn-errortype" not in resp.headers:
        try:
            etype = orjson.loads(await resp.get_data()).get("__type")
        except (orjson.JSONDecodeError, AttributeError):
            etype = None
        if isinstance(etype, str):
            resp.headers["x-amzn-ErrorType"] = etype
    return resp


def register(app: Quart, gw: Gateway) -> None:
    @app.post("/model/<path:model_id>/converse")
    async def bedrock_converse(model_id: str) -> Response:
        return await name_error(await handle_text(gw, "chat", CLIENT_FORMAT, _HOOKS, url_model=model_id,
                                                  url_stream=False))

    @app.post("/model/<path:model_id>/converse-stream")
    async def bedrock_converse_stream(model_id: str) -> Response:
        return await name_error(await handle_text(gw, "chat", CLIENT_FORMAT, _HOOKS, url_model=model_id,
                                                  url_stream=True))
