"""Google Gemini ``POST /v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse`` and
``:countTokens`` (also under ``/v1``), so Google clients (google-genai, the Gemini CLI) reach every provider.

The model is the URL's (``models/{model}``; a route name may hold slashes, ``openai/gpt-4o``); the key is
``x-goog-api-key``, ``?key=`` or ``Authorization: Bearer``. A Gemini or Vertex Gemini target gets the body
as sent (the same-format fast path); any other is translated through the IR. Errors are Google's
``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, Response, request

from trigate.api.count_tokens import COUNT_HEADER, count_input, count_target
from trigate.api.text import Hooks, error_response, handle_text, json_response, parse_body
from trigate.errors import GatewayError, invalid_request
from trigate.formats import get_codec
from trigate.gateway import Gateway

CLIENT_FORMAT = "gemini"
# The fields of a generateContent body that countTokens counts (its generateContentRequest form).
_COUNTED_FIELDS = ("contents", "systemInstruction", "system_instruction", "tools", "toolConfig", "tool_config",
                   "generationConfig", "generation_config")


def validate_contents(body: dict[str, Any]) -> None:
    """What every provider needs, checked even when the body is forwarded untranslated."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise invalid_request("contents: field required (a non-empty array of contents)", param="contents")
    for i, c in enumerate(contents):
        if not isinstance(c, dict) or not isinstance(c.get("parts"), list):
            raise invalid_request(f"contents[{i}].parts: field required (an array)", param=f"contents[{i}].parts")


_HOOKS = Hooks(validate=validate_contents)


def split_method(target: str) -> tuple[str, str]:
    """``gemini-2.5-flash:generateContent`` -> (model, method); a ``models/`` prefix is the API's own."""
    model, sep, method = target.rpartition(":")
    if not sep or not model:
        raise GatewayError("not_found", f"no such method: models/{target} (expected models/{{model}}:{{method}})",
                           status=404)
    return model.removeprefix("models/"), method


def count_body(body: dict[str, Any]) -> dict[str, Any]:
    """A countTokens body -> the generateContent-shaped body to count: ``{contents}`` or the
    ``generateContentRequest`` form (which also counts the system instruction and tools)."""
    inner = body.get("generateContentRequest", body.get("generate_content_request"))
    if inner is None:
        inner = {"contents": body.get("contents")}
    elif not isinstance(inner, dict):
        raise invalid_request("generateContentRequest: must be an object", param="generateContentRequest")
    out = {k: v for k, v in inner.items() if k in _COUNTED_FIELDS}
    validate_contents(out)
    return out


async def count_tokens(gw: Gateway, model: str) -> Response:
    codec = get_codec(CLIENT_FORMAT)
    try:
        body = count_body(parse_body(await request.get_data()))
        target, provider = await count_target(gw, model)
        req = codec.decode_request(body)
        n, kind = await count_input(gw, provider, target.model, CLIENT_FORMAT, req, body)
        return json_response({"totalTokens": n}, headers={COUNT_HEADER: kind})
    except GatewayError as err:
        return error_response(codec, err)


def register(app: Quart, gw: Gateway) -> None:
    @app.post("/v1beta/models/<path:target>")
    @app.post("/v1/models/<path:target>")
    async def gemini_model_method(target: str) -> Response:
        try:
            model, method = split_method(target)
            if method == "streamGenerateContent" and request.args.get("alt") != "sse":
                # Without alt=sse Google streams one growing JSON array; every Google SDK asks for SSE.
                raise invalid_request("streamGenerateContent is served with alt=sse only", param="alt")
            if method not in ("generateContent", "streamGenerateContent", "countTokens"):
                raise GatewayError("not_found", f"no such method: models/{model}:{method}", status=404)
        except GatewayError as err:
            return error_response(get_codec(CLIENT_FORMAT), err)
        if method == "countTokens":
            return await count_tokens(gw, model)
        return await handle_text(gw, "chat", CLIENT_FORMAT, _HOOKS, url_model=model,
                                 url_stream=method == "streamGenerateContent")
