"""The fake upstream's embedding endpoints: OpenAI (and Azure), Gemini batchEmbedContents / embedContent,
Vertex AI ``:predict``, Cohere ``/v2/embed`` and Bedrock InvokeModel for Titan and Cohere Embed models.

Vectors are deterministic: derived from the SHA-256 of the text, unit length, ``DEFAULT_DIMENSIONS`` long
unless the request asks for a size, and identical across providers for the same text and size, so a test
can compare what the gateway returns from any of them. Values are float32-exact, so base64 and JSON float
answers agree bit for bit. Token counts are one per whitespace-separated word.

Each route checks what the real API checks that a translator is likely to get wrong (batch sizes, Cohere's
required ``input_type``, Gemini's per-request model) and answers in that provider's error shape. Bedrock
routes accept ``Authorization: Bearer <api_key>`` (Bedrock API keys) and, when the state has AWS
credentials, verify SigV4 signatures made with them.

Also the helpers the rerank mock shares: ``prelude``, ``bearer_ok``, the provider error responses.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
import time
import uuid
from typing import Any

import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.routing import BaseConverter

from trigate.mock import openai_chat
from trigate.mock.replies import count_tokens
from trigate.mock.state import Fault, MockState, SeenRequest
from trigate.upstream.sigv4 import verify_request

DEFAULT_DIMENSIONS = 16

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip
_BEDROCK_EXCEPTIONS = {
    400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
    408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
    500: "InternalServerException", 503: "ServiceUnavailableException",
}  # fmt: skip
_GEMINI_TASK_TYPES = frozenset(
    {
        "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION",
        "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY",
    }
)  # fmt: skip
_COHERE_INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering", "image"})
# Cohere's v3 and later embed models refuse a request without input_type.
_COHERE_NEEDS_INPUT_TYPE = re.compile(r"embed-(?:.*v3|v[4-9])")
_TITAN_V2_DIMENSIONS = (256, 512, 1024)


# --------------------------------------------------------------------------------------------
# Deterministic vectors
# --------------------------------------------------------------------------------------------


def mock_vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The unit vector every mock provider returns for ``text`` at ``dimensions``."""
    raw = b""
    block = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(f"{block}:{text}".encode()).digest()
        block += 1
    words = struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])
    values = [w / 2**31 - 1.0 for w in words]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Through float32 and back, so that every encoding of the vector carries the same numbers.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values))))


def token_key(tokens: list[int]) -> str:
    """The text a token-array input is hashed as."""
    return "tokens:" + ",".join(str(t) for t in tokens)


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# --------------------------------------------------------------------------------------------
# Shared route helpers (also used by trigate.mock.rerank)
# --------------------------------------------------------------------------------------------


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status=status, content_type="application/json", headers=headers)


async def prelude(state: MockState, model: str | None = None) -> tuple[SeenRequest, Fault | None]:
    """Record the request, take a matching fault and apply latency, as every mock route does. ``model``:
    the model a fault may be aimed at when it is in the URL rather than the body."""
    raw = await request.get_data()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        body: Any = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = raw.decode("utf-8", "replace")
    seen = state.record(request.path, headers, body)
    if model is None and isinstance(body, dict) and isinstance(body.get("model"), str):
        model = body["model"]
    fault = state.take_fault(request.path, model)
    latency = state.latency_ms + ((fault.latency_ms or 0) if fault else 0)
    if latency:
        await trio.sleep(latency / 1000)
    return seen, fault


def bearer_ok(state: MockState) -> bool:
    return state.api_key is None or request.headers.get("authorization") == f"Bearer {state.api_key}"


def finish(seen: SeenRequest, usage: dict[str, int]) -> None:
    seen.usage = usage
    seen.finished = time.monotonic()


def openai_error(
    status: int, message: str, etype: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        openai_chat.error_body(status, message, etype), status=status, content_type="application/json", headers=headers
    )


def google_error(
    status: int,
    message: str,
    etype: str | None = None,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response:
    err: dict[str, Any] = {"code": status, "message": message, "status": etype or _GOOGLE_STATUS.get(status, "UNKNOWN")}
    if details:
        err["details"] = details
    return json_response({"error": err}, status, headers)


def cohere_error(
    status: int, message: str, etype: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return json_response({"id": str(uuid.uuid4()), "message": message}, status, headers)


def bedrock_error(
    status: int, message: str, etype: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    name = etype or _BEDROCK_EXCEPTIONS.get(status, "InternalServerException")
    hdrs = {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/", **(headers or {})}
    return json_response({"message": message}, status, hdrs)


def fault_response(fault: Fault | None, render: Any, broken: bytes = b'{"data": [') -> Response | None:
    """The injected failure's response, in the route's provider shape; None when there is none to give."""
    if fault is None:
        return None
    if fault.status:
        return render(fault.status, fault.message, fault.error_type, fault.headers)
    if fault.malformed:
        return Response(broken, status=200, content_type="application/json")
    return None


async def bedrock_auth_error(state: MockState) -> Response | None:
    """Bedrock's two ways in: ``Authorization: Bearer <api_key>`` (Bedrock API keys), or, when the state has
    AWS credentials, a SigV4 signature made with them (service ``bedrock`` for the runtime and the agent
    runtime alike)."""
    invalid = "The security token included in the request is invalid."
    auth = request.headers.get("authorization", "")
    if state.api_key is not None and auth == f"Bearer {state.api_key}":
        return None
    if state.aws_credentials is None:
        return None if state.api_key is None else bedrock_error(403, invalid, "UnrecognizedClientException")
    if auth.startswith("Bearer "):
        return bedrock_error(403, invalid, "UnrecognizedClientException")
    # The signature covers the path as sent on the wire, still percent-encoded.
    raw_path = request.scope.get("raw_path") or request.path.encode()
    url = f"{request.scheme}://{request.headers.get('host', '')}{raw_path.decode('latin-1')}"
    query = request.scope.get("query_string") or b""
    if query:
        url += "?" + query.decode("latin-1")
    key_id, secret = state.aws_credentials
    problem = verify_request(
        request.method,
        url,
        dict(request.headers.items()),
        await request.get_data(),
        access_key=key_id,
        secret_key=secret,
    )
    return None if problem is None else bedrock_error(403, problem.message, problem.error_type)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


def openai_inputs(body: dict[str, Any]) -> list[tuple[str, int]] | str:
    """(hash key, token count) per OpenAI ``input``, or the error message the real API gives."""
    invalid = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    v = body.get("input")
    if v is None:
        return "'input' is a required property"
    if isinstance(v, str):
        return [(v, count_tokens(v))] if v else invalid
    if not isinstance(v, list) or not v or len(v) > 2048:
        return invalid
    if all(isinstance(t, int) and not isinstance(t, bool) for t in v):
        return [(token_key(v), len(v))]
    if all(isinstance(s, str) and s for s in v):
        return [(s, count_tokens(s)) for s in v]
    if all(isinstance(a, list) and a and all(isinstance(t, int) and not isinstance(t, bool) for t in a) for a in v):
        return [(token_key(a), len(a)) for a in v]
    return invalid


def openai_embeddings_body(body: dict[str, Any], model: str) -> dict[str, Any] | str:
    inputs = openai_inputs(body)
    if isinstance(inputs, str):
        return inputs
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        return f"{fmt!r} is not one of ['float', 'base64'] - 'encoding_format'"
    dims = body.get("dimensions")
    if dims is not None:
        if "ada-002" in model:
            return "This model does not support specifying dimensions."
        if not _positive_int(dims):
            return f"Invalid value for 'dimensions': {dims!r}"
    size = dims or DEFAULT_DIMENSIONS
    data = []
    for i, (key, _) in enumerate(inputs):
        vec = mock_vector(key, size)
        data.append({"object": "embedding", "index": i, "embedding": _b64(vec) if fmt == "base64" else vec})
    tokens = sum(n for _, n in inputs)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _gemini_text(req: Any, where: str) -> str:
    content = req.get("content") if isinstance(req, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise ValueError(f"* {where}.content: contents must not be empty")
    texts = [p.get("text") for p in parts if isinstance(p, dict)]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"* {where}.content.parts: only text parts are supported by this model")
    return "".join(texts)


def _gemini_embedding(req: Any, model: str, where: str) -> tuple[list[float], int]:
    text = _gemini_text(req, where)
    if req.get("model") not in (None, f"models/{model}"):
        raise ValueError(f"* {where}.model: model '{req.get('model')}' does not match the model in the URL")
    task = req.get("taskType")
    if task is not None and task not in _GEMINI_TASK_TYPES:
        raise ValueError(f"Invalid value at '{where}.task_type' ({task!r})")
    dims = req.get("outputDimensionality")
    if dims is not None and not _positive_int(dims):
        raise ValueError(f"* {where}.output_dimensionality: must be a positive integer")
    vec = mock_vector(text, dims or DEFAULT_DIMENSIONS)
    return vec, count_tokens(text)


def vertex_body(body: dict[str, Any], model: str) -> dict[str, Any] | str:
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        return "instances: must be a non-empty array"
    if "gemini-embedding" in model and len(instances) > 1:
        return f"Unable to submit request because {model} supports only 1 instance per request."
    if len(instances) > 250:
        return f"Unable to submit request because the number of instances ({len(instances)}) exceeds the limit of 250."
    params = body.get("parameters") or {}
    dims = params.get("outputDimensionality") if isinstance(params, dict) else None
    if dims is not None and not _positive_int(dims):
        return "parameters.outputDimensionality: must be a positive integer"
    predictions = []
    for i, inst in enumerate(instances):
        content = inst.get("content") if isinstance(inst, dict) else None
        if not isinstance(content, str) or not content:
            return f"instances[{i}].content: a non-empty string is required"
        task = inst.get("task_type")
        if task is not None and task not in _GEMINI_TASK_TYPES:
            return f"instances[{i}].task_type: invalid value {task!r}"
        predictions.append(
            {
                "embeddings": {
                    "values": mock_vector(content, dims or DEFAULT_DIMENSIONS),
                    "statistics": {"token_count": count_tokens(content), "truncated": False},
                }
            }
        )
    chars = sum(len(i["content"]) for i in instances)
    return {"predictions": predictions, "metadata": {"billableCharacterCount": chars}}


def cohere_embed_body(body: dict[str, Any], model: str | None, *, bedrock: bool = False) -> dict[str, Any] | str:
    """Cohere ``/v2/embed``, or (``bedrock``) Cohere Embed's InvokeModel body, whose model is in the URL."""
    if not bedrock and not model:
        return "invalid request: model must be specified"
    texts = body.get("texts")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return "invalid request: texts must be an array of strings"
    if len(texts) > 96:
        return f"invalid request: total number of texts must be at most 96 - received {len(texts)}"
    input_type = body.get("input_type")
    if input_type is None and _COHERE_NEEDS_INPUT_TYPE.search(model or ""):
        return "invalid request: valid input_type must be provided with the provided model"
    if input_type is not None and input_type not in _COHERE_INPUT_TYPES:
        return f"invalid request: input_type must be one of {sorted(_COHERE_INPUT_TYPES)}, got {input_type!r}"
    dims = body.get("output_dimension")
    if dims is not None and "v4" not in (model or ""):
        return "invalid request: output_dimension is only supported by embed-v4.0 and newer models"
    if dims is not None and not _positive_int(dims):
        return "invalid request: output_dimension must be a positive integer"
    types = body.get("embedding_types")
    if types is not None and (not isinstance(types, list) or not set(types) <= {"float", "base64"}):
        return "invalid request: the mock supports embedding_types float and base64"
    vectors = [mock_vector(t, dims or DEFAULT_DIMENSIONS) for t in texts]
    out: dict[str, Any] = {"id": str(uuid.uuid4()), "texts": texts}
    if types is None:
        out["response_type"] = "embeddings_floats"
        out["embeddings"] = vectors
    else:
        out["response_type"] = "embeddings_by_type"
        by_type: dict[str, Any] = {}
        if "float" in types:
            by_type["float"] = vectors
        if "base64" in types:
            by_type["base64"] = [_b64(v) for v in vectors]
        out["embeddings"] = by_type
    tokens = sum(count_tokens(t) for t in texts)
    if not bedrock:
        out["meta"] = {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}}
    return out


def titan_body(body: dict[str, Any], model: str) -> dict[str, Any] | str:
    text = body.get("inputText")
    if not isinstance(text, str) or not text:
        return "Malformed input request: #: required key [inputText] not found"
    v2 = "titan-embed-text-v2" in model
    allowed = {"inputText", "dimensions", "normalize", "embeddingTypes"} if v2 else {"inputText", "embeddingConfig"}
    extra = sorted(set(body) - allowed)
    if extra:
        return f"Malformed input request: #: extraneous key [{extra[0]}] is not permitted, please reformat your input"
    dims = body.get("dimensions")
    if dims is not None and dims not in _TITAN_V2_DIMENSIONS:
        return f"Malformed input request: #/dimensions: {dims} is not a valid enum value"
    config = body.get("embeddingConfig") if isinstance(body.get("embeddingConfig"), dict) else {}
    size = dims or config.get("outputEmbeddingLength") or DEFAULT_DIMENSIONS
    return {"embedding": mock_vector(text, size), "inputTextTokenCount": count_tokens(text)}


# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------


class BedrockEmbedModel(BaseConverter):
    """Matches only Bedrock embedding model ids, ahead of any catch-all ``/model/<id>/invoke`` route
    (lower weight is tried first), so InvokeModel for chat models can live in another mock module."""

    regex = r"[^/]*(?:titan-embed|cohere\.embed)[^/]*"
    weight = 40


def register(app: QuartTrio, state: MockState) -> None:
    """Add the embedding routes to a mock app."""
    app.url_map.converters["bedrock_embed"] = BedrockEmbedModel

    async def openai_embeddings(deployment: str | None = None) -> Response:
        seen, fault = await prelude(state, deployment)
        azure = request.path.startswith("/openai/")
        if not bearer_ok(state) and not (azure and request.headers.get("api-key") == state.api_key):
            return openai_error(401, "Incorrect API key provided")
        failed = fault_response(fault, openai_error)
        if failed is not None:
            return failed
        body = seen.body
        if not isinstance(body, dict):
            return openai_error(400, "We could not parse the JSON body of your request.")
        if deployment is not None:
            # Azure's dated API: the deployment in the path picks the model.
            if not request.args.get("api-version"):
                return openai_error(404, "Resource not found (missing api-version)")
            model = deployment
        else:
            model = body.get("model")
            if not isinstance(model, str) or not model:
                return openai_error(400, "you must provide a model parameter")
        out = openai_embeddings_body(body, model)
        if isinstance(out, str):
            return openai_error(400, out)
        finish(seen, {"prompt_tokens": out["usage"]["prompt_tokens"]})
        return json_response(out)

    app.add_url_rule("/v1/embeddings", "embeddings_openai", openai_embeddings, methods=["POST"])
    app.add_url_rule("/openai/v1/embeddings", "embeddings_azure_v1", openai_embeddings, methods=["POST"])
    app.add_url_rule(
        "/openai/deployments/<deployment>/embeddings", "embeddings_azure", openai_embeddings, methods=["POST"]
    )

    def gemini_key_ok() -> bool:
        if state.api_key is None:
            return True
        return state.api_key in (request.headers.get("x-goog-api-key"), request.args.get("key"))

    async def gemini_embed(model: str, batch: bool) -> Response:
        seen, fault = await prelude(state, model)
        if not gemini_key_ok():
            reason = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            return google_error(400, "API key not valid. Please pass a valid API key.", details=[reason])
        failed = fault_response(fault, google_error, b'{"embeddings": [')
        if failed is not None:
            return failed
        body = seen.body
        if not isinstance(body, dict):
            return google_error(400, "Invalid JSON payload received.")
        try:
            if batch:
                reqs = body.get("requests")
                if not isinstance(reqs, list) or not reqs:
                    return google_error(400, "* BatchEmbedContentsRequest.requests: must not be empty")
                if len(reqs) > 100:
                    return google_error(
                        400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
                    )
                embedded = [_gemini_embedding(r, model, f"requests[{i}]") for i, r in enumerate(reqs)]
                out: dict[str, Any] = {"embeddings": [{"values": v} for v, _ in embedded]}
            else:
                embedded = [_gemini_embedding(body, model, "EmbedContentRequest")]
                out = {"embedding": {"values": embedded[0][0]}}
        except ValueError as exc:
            return google_error(400, str(exc))
        finish(seen, {"prompt_tokens": sum(n for _, n in embedded)})
        return json_response(out)

    @app.post("/v1beta/models/<model>:batchEmbedContents")
    @app.post("/v1/models/<model>:batchEmbedContents")
    async def embeddings_gemini_batch(model: str) -> Response:
        return await gemini_embed(model, True)

    @app.post("/v1beta/models/<model>:embedContent")
    @app.post("/v1/models/<model>:embedContent")
    async def embeddings_gemini_one(model: str) -> Response:
        return await gemini_embed(model, False)

    @app.post("/v1/projects/<project>/locations/<location>/publishers/google/models/<model>:predict")
    async def embeddings_vertex(project: str, location: str, model: str) -> Response:
        seen, fault = await prelude(state, model)
        if not bearer_ok(state):
            return google_error(401, "Request had invalid authentication credentials.")
        failed = fault_response(fault, google_error, b'{"predictions": [')
        if failed is not None:
            return failed
        if not isinstance(seen.body, dict):
            return google_error(400, "Invalid JSON payload received.")
        out = vertex_body(seen.body, model)
        if isinstance(out, str):
            return google_error(400, out)
        tokens = sum(p["embeddings"]["statistics"]["token_count"] for p in out["predictions"])
        finish(seen, {"prompt_tokens": tokens})
        return json_response(out)

    @app.post("/v2/embed")
    async def embeddings_cohere() -> Response:
        seen, fault = await prelude(state)
        if not bearer_ok(state):
            return cohere_error(401, "invalid api token")
        failed = fault_response(fault, cohere_error, b'{"embeddings": {"float": [')
        if failed is not None:
            return failed
        body = seen.body
        if not isinstance(body, dict):
            return cohere_error(400, "invalid request: body must be a JSON object")
        model = body.get("model")
        out = cohere_embed_body(body, model if isinstance(model, str) else None)
        if isinstance(out, str):
            return cohere_error(400, out)
        finish(seen, {"prompt_tokens": out["meta"]["billed_units"]["input_tokens"]})
        return json_response(out)

    @app.post("/model/<bedrock_embed:model_id>/invoke")
    async def embeddings_bedrock(model_id: str) -> Response:
        seen, fault = await prelude(state, model_id)
        denied = await bedrock_auth_error(state)
        if denied is not None:
            return denied
        failed = fault_response(fault, bedrock_error, b'{"embedding": [')
        if failed is not None:
            return failed
        body = seen.body
        if not isinstance(body, dict):
            return bedrock_error(400, "Malformed input request, please reformat your input and try again.")
        if "titan-embed" in model_id:
            out = titan_body(body, model_id)
            texts = [body.get("inputText", "")]
        else:
            out = cohere_embed_body(body, model_id, bedrock=True)
            texts = body.get("texts") or []
        if isinstance(out, str):
            return bedrock_error(400, out)
        tokens = sum(count_tokens(t) for t in texts if isinstance(t, str))
        finish(seen, {"prompt_tokens": tokens})
        headers = {
            "X-Amzn-Bedrock-Input-Token-Count": str(tokens),
            "X-Amzn-Bedrock-Invocation-Latency": "1",
            "x-amzn-RequestId": str(uuid.uuid4()),
        }
        return json_response(out, headers=headers)


__all__ = [
    "DEFAULT_DIMENSIONS",
    "BedrockEmbedModel",
    "bearer_ok",
    "bedrock_auth_error",
    "bedrock_error",
    "cohere_error",
    "fault_response",
    "finish",
    "google_error",
    "json_response",
    "mock_vector",
    "openai_error",
    "prelude",
    "register",
    "token_key",
]
