"""The fake upstream's Google endpoints, faithful to what the google-genai SDK and the REST API see:

- Gemini Developer API: ``POST /v1beta/models/{model}:generateContent | :streamGenerateContent | :countTokens``
  (also under ``/v1``), ``GET /v1beta/models``; auth ``x-goog-api-key`` header or ``?key=``.
- Vertex AI, same body format: ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:...``
  (also ``/v1beta1``); auth ``Authorization: Bearer <token>``.
- Vertex AI Claude: ``POST .../publishers/anthropic/models/{model}:rawPredict | :streamRawPredict``, an
  Anthropic Messages body without ``model`` and with ``anthropic_version: "vertex-2023-10-16"``.

``state.api_key``, when set, is the API key the Developer API routes want and the bearer token the Vertex
routes want. Streams are ``data:``-only SSE events separated by ``\\r\\n\\r\\n`` (as Google sends them) with
``alt=sse``, or one incrementally written JSON array without it. Like the real API, requests are checked
for what translators most often get wrong: unknown fields (``model`` in the body, OpenAI names), empty
parts, image MIME types Gemini does not take (``image/jpg``), function responses that do not answer the
previous turn's calls, and, for ``gemini-3*`` models, function calls replayed without their thought
signature. Like Gemini 3, ``gemini-3*`` models sign their text answer (``thoughtSignature`` on the text
part, or on the last text chunk of a stream) and the first function call of a step, thinking or not.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio

from trigate.mock import anthropic
from trigate.mock.replies import Conversation, Reply, count_tokens, plan_reply
from trigate.mock.state import Fault, MockState, SeenRequest

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
SKIP_SIGNATURE = "skip_thought_signature_validator"

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_CODES = {name: code for code, name in STATUS_NAMES.items()} | {"FAILED_PRECONDITION": 400}

_REQUEST_FIELDS = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
    "serviceTier",
    "store",
}
_GENERATION_FIELDS = {
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "_responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
    "routingConfig",
    "audioTimestamp",
    "enableAffectiveDialog",
    "modelSelectionConfig",
}
_PART_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)
# The image types Gemini takes; it refuses others, aliases such as image/jpg included.
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite", "gemini-3-pro-preview"]


def _snake(key: str) -> str:
    return _CAMEL.sub("_", key).lower()


def _get(d: Any, key: str) -> Any:
    """A field by its camelCase or snake_case name: the API accepts both."""
    if not isinstance(d, dict):
        return None
    v = d.get(key)
    return d.get(_snake(key)) if v is None else v


def _has(d: dict[str, Any], key: str) -> bool:
    return key in d or _snake(key) in d


def error_body(
    status: int, message: str, rpc_status: str | None = None, details: list[dict[str, Any]] | None = None
) -> bytes:
    err: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": rpc_status or STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        err["details"] = details
    return orjson.dumps({"error": err})


def _error(
    status: int,
    message: str,
    rpc_status: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_body(status, message, rpc_status, details),
        status=status,
        content_type="application/json",
        headers=headers,
    )


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = _get(content, "parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _response_text(fr: dict[str, Any]) -> str:
    resp = _get(fr, "response")
    if isinstance(resp, dict) and set(resp) == {"result"} and isinstance(resp["result"], str):
        return resp["result"]
    return orjson.dumps(resp if resp is not None else {}).decode()


def _part_text(p: dict[str, Any]) -> str:
    text = _get(p, "text")
    if isinstance(text, str):
        return text
    fc = _get(p, "functionCall")
    if isinstance(fc, dict):
        return orjson.dumps(_get(fc, "args") or {}).decode()
    fr = _get(p, "functionResponse")
    if isinstance(fr, dict):
        return _response_text(fr)
    return ""


def conversation(body: dict[str, Any]) -> Conversation:
    conv = Conversation()
    contents = [c for c in _get(body, "contents") or [] if isinstance(c, dict)]
    conv.messages = len(contents)
    si = _get(body, "systemInstruction")
    if si:
        conv.texts.append(si if isinstance(si, str) else " ".join(_part_text(p) for p in _parts(si)))
    for c in contents:
        conv.texts.append(" ".join(_part_text(p) for p in _parts(c)))
    if contents:
        last = contents[-1]
        results = [_get(p, "functionResponse") for p in _parts(last) if isinstance(_get(p, "functionResponse"), dict)]
        if last.get("role") != "model" and results:
            conv.last_role = "tool"
            conv.tool_results = [_response_text(r) for r in results]
    for c in reversed(contents):
        if c.get("role") == "model":
            continue
        text = " ".join(p["text"] for p in _parts(c) if isinstance(p.get("text"), str) and not p.get("thought"))
        if text:
            conv.last_user_text = text
            break
    for t in _get(body, "tools") or []:
        for d in _get(t, "functionDeclarations") or []:
            if isinstance(d, dict) and d.get("name"):
                schema = _get(d, "parametersJsonSchema")
                conv.tools.append(
                    {"name": d["name"], "parameters": schema if schema is not None else _get(d, "parameters")}
                )
    fcc = _get(_get(body, "toolConfig"), "functionCallingConfig") or {}
    mode = _get(fcc, "mode") or "AUTO"
    allowed = _get(fcc, "allowedFunctionNames") or []
    if mode == "NONE":
        conv.tool_choice = "none"
    elif mode == "ANY" and len(allowed) == 1:
        conv.tool_choice, conv.forced_tool = "tool", allowed[0]
    elif mode == "ANY":
        conv.tool_choice = "required"
    gc = _get(body, "generationConfig") or {}
    conv.max_tokens = _get(gc, "maxOutputTokens")
    tc = _get(gc, "thinkingConfig") or {}
    conv.thinking = _get(tc, "includeThoughts") is True and _get(tc, "thinkingBudget") != 0
    return conv


def _check_part(p: Any, where: str, role: str) -> str | None:
    if not isinstance(p, dict):
        return f"Invalid JSON payload received. {where}: expected an object."
    data = [k for k in _PART_DATA if _has(p, k)]
    if len(data) != 1:
        return f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field"
    if data == ["text"]:
        if not isinstance(_get(p, "text"), str):
            return f"Invalid value at '{where}.text': expected a string."
        if not _get(p, "text") and not _has(p, "thoughtSignature"):
            return (
                "Unable to submit request because it has an empty text parameter. Add a value to the parameter "
                "and try again."
            )
    fc = _get(p, "functionCall")
    if fc is not None:
        if role != "model":
            return (
                "Please ensure that function call turn comes immediately after a user turn or after a function "
                "response turn."
            )
        if not isinstance(fc, dict) or not fc.get("name"):
            return f"* GenerateContentRequest.{where}.function_call.name: Name cannot be empty."
        if _get(fc, "args") is not None and not isinstance(_get(fc, "args"), dict):
            return f"Invalid value at '{where}.function_call.args': expected an object."
    fr = _get(p, "functionResponse")
    if fr is not None:
        if not isinstance(fr, dict) or not fr.get("name"):
            return f"* GenerateContentRequest.{where}.function_response.name: Name cannot be empty."
        if not isinstance(_get(fr, "response"), dict):
            return f"Invalid value at '{where}.function_response.response': expected an object."
    for key in ("inlineData", "fileData"):
        blob = _get(p, key)
        if blob is not None:
            field = "data" if key == "inlineData" else "fileUri"
            if not isinstance(blob, dict) or not isinstance(_get(blob, field), str):
                return f"* GenerateContentRequest.{where}.{_snake(key)}.{_snake(field)}: field required"
            if key == "inlineData" and not isinstance(_get(blob, "mimeType"), str):
                return f"* GenerateContentRequest.{where}.inline_data.mime_type: field required"
            mime = _get(blob, "mimeType")
            if isinstance(mime, str) and mime.startswith("image/") and mime not in _IMAGE_TYPES:
                return f"Unsupported MIME type: {mime}"
    return None


def _check_turns(contents: list[dict[str, Any]], model: str) -> str | None:
    prev_calls = 0
    current_turn_start = 0
    for i, c in enumerate(contents):
        parts = _parts(c)
        calls = sum(1 for p in parts if _has(p, "functionCall"))
        results = sum(1 for p in parts if _has(p, "functionResponse"))
        if results and not prev_calls:
            return "Please ensure that function response turn comes immediately after a function call turn."
        if prev_calls and results != prev_calls:
            return (
                "Please ensure that the number of function response parts is equal to the number of function "
                "call parts of the function call turn."
            )
        prev_calls = calls if c.get("role") == "model" else 0
        if c.get("role") != "model" and any(isinstance(p.get("text"), str) for p in parts):
            current_turn_start = i
    if model.startswith("gemini-3"):
        # Gemini 3 validates the signatures of the current turn's function calls (since the last user text).
        for c in contents[current_turn_start:]:
            if c.get("role") != "model":
                continue
            for j, p in enumerate(_parts(c)):
                if _has(p, "functionCall"):
                    if not _get(p, "thoughtSignature"):
                        name = _get(p, "functionCall").get("name")
                        return (
                            "Function call is missing a thought_signature in functionCall parts. This is required "
                            "for tools to work correctly, and missing thought_signature may lead to degraded "
                            f"model performance. Additional data, function call `default_api:{name}` , position "
                            f"{j + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
                            "for more details."
                        )
                    break
    return None


def validate(body: dict[str, Any], model: str) -> str | None:
    """The checks the real API makes that translators most often get wrong; the message, or None."""
    for k in body:
        if k not in _REQUEST_FIELDS and not any(_snake(f) == k for f in _REQUEST_FIELDS):
            return f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.'
    gc = _get(body, "generationConfig")
    if gc is not None:
        if not isinstance(gc, dict):
            return "Invalid JSON payload received. generation_config: expected an object."
        for k in gc:
            if k not in _GENERATION_FIELDS and not any(_snake(f) == k for f in _GENERATION_FIELDS):
                return f"Invalid JSON payload received. Unknown name \"{k}\" at 'generation_config': Cannot find field."
        tc = _get(gc, "thinkingConfig")
        if isinstance(tc, dict) and _has(tc, "thinkingBudget") and _has(tc, "thinkingLevel"):
            return "You can only set only one of thinking budget and thinking level."
    contents = _get(body, "contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, c in enumerate(contents):
        if not isinstance(c, dict):
            return f"Invalid JSON payload received. contents[{i}]: expected an object."
        role = c.get("role", "user")
        if role not in ("user", "model", "function"):
            return f"Please use a valid role: user, model. (got {role!r} at contents[{i}])"
        parts = _get(c, "parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, p in enumerate(parts):
            problem = _check_part(p, f"contents[{i}].parts[{j}]", role)
            if problem:
                return problem
    for t in _get(body, "tools") or []:
        for d in _get(t, "functionDeclarations") or []:
            if not isinstance(d, dict) or not d.get("name"):
                return "* GenerateContentRequest.tools[0].function_declarations[0].name: Name cannot be empty."
            if _has(d, "parameters") and _has(d, "parametersJsonSchema"):
                return "parameters and parameters_json_schema cannot both be set."
    mode = _get(_get(_get(body, "toolConfig"), "functionCallingConfig"), "mode")
    if mode is not None and mode not in ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"):
        return f"Invalid value at 'tool_config.function_calling_config.mode', \"{mode}\""
    return _check_turns(contents, model)


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


def _signature(*parts: str) -> str:
    return base64.b64encode(hashlib.sha256("\x00".join(parts).encode()).digest()[:24]).decode()


def usage_of(reply: Reply, *, final: bool = True) -> dict[str, Any]:
    p = reply.prompt_tokens
    if not final:
        return {
            "promptTokenCount": p,
            "totalTokenCount": p,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p}],
        }
    thoughts = len(reply.thinking_tokens)
    u: dict[str, Any] = {
        "promptTokenCount": p,
        "candidatesTokenCount": reply.completion_tokens - thoughts,
        "totalTokenCount": p + reply.completion_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p}],
    }
    if thoughts:
        u["thoughtsTokenCount"] = thoughts
    return u


def _finish(reply: Reply) -> str:
    return "MAX_TOKENS" if reply.finish == "length" else "STOP"


def _call_parts(reply: Reply) -> list[dict[str, Any]]:
    parts = []
    for i, c in enumerate(reply.calls):
        part: dict[str, Any] = {"functionCall": {"name": c.name, "args": orjson.loads(c.arguments)}}
        if i == 0:
            # Gemini signs the first call of a (parallel) step; replaying it without is an error on Gemini 3.
            part["thoughtSignature"] = _signature("call", c.name, c.arguments)
        parts.append(part)
    return parts


def generate(model: str, reply: Reply) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if reply.thinking_tokens:
        parts.append({"text": reply.thinking, "thought": True})
    if reply.text:
        text: dict[str, Any] = {"text": reply.text}
        if model.startswith("gemini-3"):
            text["thoughtSignature"] = _signature("text", reply.text)
        parts.append(text)
    parts += _call_parts(reply)
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "finishReason": _finish(reply), "index": 0}
    return {
        "candidates": [cand],
        "usageMetadata": usage_of(reply),
        "modelVersion": model,
        "responseId": uuid.uuid4().hex[:22],
    }


def stream_chunks(model: str, reply: Reply) -> list[dict[str, Any]]:
    rid = uuid.uuid4().hex[:22]
    partial = usage_of(reply, final=False)

    def chunk(parts: list[dict[str, Any]], final: bool = False) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if final:
            cand["finishReason"] = _finish(reply)
        cand["index"] = 0
        return {
            "candidates": [cand],
            "usageMetadata": usage_of(reply) if final else partial,
            "modelVersion": model,
            "responseId": rid,
        }

    chunks = [chunk([{"text": t, "thought": True}]) for t in reply.thinking_tokens]
    if reply.calls:
        texts = [chunk([{"text": t}]) for t in reply.text_tokens]
        return chunks + texts + [chunk(_call_parts(reply), final=True)]
    tokens = reply.text_tokens or [""]
    chunks += [chunk([{"text": t}]) for t in tokens[:-1]]
    last: dict[str, Any] = {"text": tokens[-1]}
    if model.startswith("gemini-3") and reply.text:
        last["thoughtSignature"] = _signature("text", reply.text)
    chunks.append(chunk([last], final=True))
    return chunks


async def stream(
    state: MockState,
    seen: SeenRequest,
    chunks: list[dict[str, Any]],
    usage: dict[str, Any],
    fault: Fault | None,
    sse: bool,
) -> AsyncIterator[bytes]:
    """SSE events separated by CRLF CRLF, or (without alt=sse) one JSON array written element by element."""
    delay = state.token_delay_ms / 1000
    try:
        for n, obj in enumerate(chunks):
            if fault and fault.drop_after is not None and n >= fault.drop_after:
                raise ConnectionAbortedError("mock: injected connection drop")
            if fault and fault.error_after is not None and n >= fault.error_after:
                rpc = fault.error_type or "UNAVAILABLE"
                err = error_body(_CODES.get(rpc, 500), fault.message, rpc)
                yield b"data: " + err + b"\r\n\r\n" if sse else (b"," if n else b"[") + err + b"]"
                return
            if delay and n > 0:
                await trio.sleep(delay)
            data = orjson.dumps(obj)
            if sse:
                yield b"data: " + data + b"\r\n\r\n"
            else:
                yield (b"[" if n == 0 else b",\r\n") + data + (b"]" if n == len(chunks) - 1 else b"")
        seen.usage = usage
        seen.finished = time.monotonic()
    except trio.Cancelled:
        seen.disconnected = time.monotonic()
        raise


def count(body: dict[str, Any]) -> dict[str, Any]:
    inner = _get(body, "generateContentRequest")
    conv = conversation(inner if isinstance(inner, dict) else body)
    tools = sum(count_tokens(orjson.dumps(t).decode()) for t in conv.tools)
    total = sum(count_tokens(t) for t in conv.texts) + 3 * conv.messages + tools
    return {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}


def _model_info(name: str) -> dict[str, Any]:
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "thinking": True,
    }


# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------


def register(app: QuartTrio, state: MockState) -> None:
    """Add the Gemini (Developer API and Vertex AI) and Vertex Claude routes to the fake upstream."""

    async def prelude(model: str) -> tuple[SeenRequest, Fault | None]:
        raw = await request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        seen = state.record(request.path, headers, body)
        fault = state.take_fault(request.path, model)
        latency = state.latency_ms + ((fault.latency_ms or 0) if fault else 0)
        if latency:
            await trio.sleep(latency / 1000)
        return seen, fault

    def api_key_error() -> Response | None:
        if state.api_key is None:
            return None
        key = request.headers.get("x-goog-api-key") or request.args.get("key")
        if not key:
            return _error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if key != state.api_key:
            return _error(
                400,
                "API key not valid. Please pass a valid API key.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        return None

    def bearer_error() -> Response | None:
        if state.api_key is None or request.headers.get("authorization") == f"Bearer {state.api_key}":
            return None
        return _error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
            "cookie or other valid authentication credential.",
        )

    def fault_response(fault: Fault) -> Response:
        details = None
        ra = {k.lower(): v for k, v in fault.headers.items()}.get("retry-after")
        if ra:
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{ra}s"}]
        return _error(fault.status or 500, fault.message, fault.error_type, details, fault.headers)

    async def gemini(model: str, method: str, auth: Any) -> Response:
        seen, fault = await prelude(model)
        denied = auth()
        if denied is not None:
            return denied
        body = seen.body
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON payload received. Unexpected token.")
        if fault and fault.status:
            return fault_response(fault)
        if method == "countTokens":
            return Response(orjson.dumps(count(body)), content_type="application/json")
        if fault and fault.malformed:
            return Response(b'{"candidates": [{"content": ', status=200, content_type="application/json")
        problem = validate(body, model)
        if problem:
            return _error(400, problem)
        conv = conversation(body)
        reply = plan_reply(conv, state.take_script(conv, model))
        if method == "streamGenerateContent":
            sse = request.args.get("alt") == "sse"
            gen = stream(state, seen, stream_chunks(model, reply), usage_of(reply), fault, sse)
            return Response(
                gen,
                content_type="text/event-stream" if sse else "application/json",
                headers={"cache-control": "no-cache"},
            )
        seen.usage = usage_of(reply)
        seen.finished = time.monotonic()
        return Response(orjson.dumps(generate(model, reply)), content_type="application/json")

    async def claude(model: str, method: str) -> Response:
        seen, fault = await prelude(model)

        def error(
            status: int, message: str, etype: str | None = None, headers: dict[str, str] | None = None
        ) -> Response:
            return Response(
                anthropic.error_body(status, message, etype),
                status=status,
                content_type="application/json",
                headers=headers,
            )

        if bearer_error() is not None:
            return error(401, "invalid authentication credentials", "authentication_error")
        body = seen.body
        if not isinstance(body, dict):
            return error(400, "There was an error parsing the body of your request")
        if fault and fault.status:
            return error(fault.status, fault.message, fault.error_type, fault.headers)
        if model == "count-tokens":
            if not isinstance(body.get("messages"), list):
                return error(400, "messages: Field required")
            return Response(orjson.dumps(anthropic.count(body)), content_type="application/json")
        if body.get("anthropic_version") != VERTEX_ANTHROPIC_VERSION:
            return error(400, f"anthropic_version: Input should be '{VERTEX_ANTHROPIC_VERSION}'")
        if "model" in body:
            return error(400, "model: Extra inputs are not permitted (Vertex AI takes the model from the URL)")
        if fault and fault.malformed:
            return Response(b'{"type": "message", "content": [', status=200, content_type="application/json")
        problem = anthropic.validate(body)
        if problem:
            return error(400, problem)
        conv = anthropic.conversation(body)
        reply = plan_reply(conv, state.take_script(conv, model))
        named = {**body, "model": model}
        if method == "streamRawPredict" or body.get("stream"):
            return Response(
                anthropic.stream(state, seen, named, reply, fault),
                content_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        seen.usage = anthropic.usage_of(reply)
        seen.finished = time.monotonic()
        return Response(orjson.dumps(anthropic.message(named, reply)), content_type="application/json")

    @app.post("/v1beta/models/<path:rest>")
    @app.post("/v1/models/<path:rest>")
    async def gemini_developer(rest: str) -> Response:
        model, _, method = rest.rpartition(":")
        if method not in ("generateContent", "streamGenerateContent", "countTokens") or not model:
            return _error(404, f"Method not found: {rest}")
        return await gemini(model.removeprefix("models/"), method, api_key_error)

    @app.post("/v1/projects/<project>/locations/<location>/publishers/<publisher>/models/<path:rest>")
    @app.post("/v1beta1/projects/<project>/locations/<location>/publishers/<publisher>/models/<path:rest>")
    async def vertex(project: str, location: str, publisher: str, rest: str) -> Response:
        model, _, method = rest.rpartition(":")
        if publisher == "anthropic" and method in ("rawPredict", "streamRawPredict") and model:
            return await claude(model, method)
        if publisher == "google" and method in ("generateContent", "streamGenerateContent", "countTokens") and model:
            return await gemini(model, method, bearer_error)
        return _error(
            404,
            f"Publisher Model `projects/{project}/locations/{location}/publishers/{publisher}/"
            f"models/{model or rest}` not found or method {method!r} not supported.",
        )

    @app.get("/v1beta/models")
    async def gemini_models() -> Response:
        denied = api_key_error()
        if denied is not None:
            return denied
        return Response(orjson.dumps({"models": [_model_info(m) for m in MODELS]}), content_type="application/json")


__all__ = ["conversation", "count", "error_body", "generate", "register", "stream_chunks", "usage_of", "validate"]
