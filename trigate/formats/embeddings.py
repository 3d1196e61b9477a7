"""Embeddings: the OpenAI ``/v1/embeddings`` client API <-> a small IR <-> each provider's embedding API.

Pure (sans-IO): dicts and bytes in, dicts and IR objects out. The shell splits a request into provider-sized
batches (``split_request`` with ``batch_limit``), sends them one by one or concurrently, decodes each answer
and joins them with ``merge_responses`` in batch order.

Choices that a reader would otherwise have to rediscover (protocols.md §4):
- Token estimates: Gemini's batchEmbedContents reports no usage, and Cohere-on-Bedrock reports it only in the
  ``X-Amzn-Bedrock-Input-Token-Count`` header. When the upstream gives no count the gateway estimates one token
  per 4 characters of text (at least 1 per non-empty input; token-array inputs count exactly) and marks the
  response ``estimated``.
- ``input_type`` (Cohere's word; Gemini and Vertex call it task type) is a non-standard request field. Either
  vocabulary is accepted and translated for the other. Cohere requires one for v3+ models: absent, the gateway
  sends ``search_document``, the indexing side, which is what most embeddings calls are for.
- Gemini and Vertex return truncated (``outputDimensionality``) vectors without re-normalising them; OpenAI's
  ``dimensions`` does, so the gateway normalises those vectors to unit length.
- The gateway always asks providers for float vectors and does the base64 packing itself (little-endian
  float32, what the openai SDK unpacks), because the openai SDK asks for base64 whenever its caller didn't say.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Sequence
from typing import Any, Literal

from attrs import define, evolve, field

from trigate.errors import GatewayError
from trigate.formats.checks import bad as _bad
from trigate.formats.checks import kind_name as _kind_name
from trigate.formats.cohere_errors import parse_cohere_error, render_cohere_error

__all__ = [
    "BATCH_LIMIT_BEDROCK_COHERE",
    "BATCH_LIMIT_BEDROCK_TITAN",
    "BATCH_LIMIT_COHERE",
    "BATCH_LIMIT_GEMINI",
    "BATCH_LIMIT_OPENAI",
    "BATCH_LIMIT_VERTEX",
    "BATCH_LIMIT_VERTEX_GEMINI",
    "DEFAULT_COHERE_INPUT_TYPE",
    "VERTEX_MAX_TOKENS_PER_REQUEST",
    "EmbedRequest",
    "EmbedResponse",
    "base64_to_floats",
    "batch_limit",
    "bedrock_embed_family",
    "cohere_input_type",
    "decode_bedrock_cohere_response",
    "decode_bedrock_response",
    "decode_bedrock_titan_response",
    "decode_cohere_response",
    "decode_gemini_response",
    "decode_openai_request",
    "decode_openai_response",
    "decode_vertex_response",
    "encode_bedrock_cohere_request",
    "encode_bedrock_request",
    "encode_bedrock_titan_request",
    "encode_cohere_request",
    "encode_gemini_request",
    "encode_openai_request",
    "encode_openai_response",
    "encode_vertex_request",
    "estimate_tokens",
    "floats_to_base64",
    "gemini_task_type",
    "merge_responses",
    "parse_cohere_error",
    "render_cohere_error",
    "split_batches",
    "split_request",
]

EncodingFormat = Literal["float", "base64"]

# --------------------------------------------------------------------------------------------
# Limits. Sources: OpenAI API reference (2048 inputs); Gemini answers more than 100 with
# "BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"; Vertex "Get text
# embeddings" page (250 texts and 20,000 tokens per request, gemini-embedding-001 one instance per
# request); Cohere v2 embed and Bedrock Cohere Embed docs (96 texts); Bedrock Titan (one inputText).
# --------------------------------------------------------------------------------------------

BATCH_LIMIT_OPENAI = 2048
BATCH_LIMIT_GEMINI = 100
BATCH_LIMIT_VERTEX = 250
BATCH_LIMIT_VERTEX_GEMINI = 1
VERTEX_MAX_TOKENS_PER_REQUEST = 20_000
BATCH_LIMIT_COHERE = 96
BATCH_LIMIT_BEDROCK_TITAN = 1
BATCH_LIMIT_BEDROCK_COHERE = 96

DEFAULT_COHERE_INPUT_TYPE = "search_document"


# --------------------------------------------------------------------------------------------
# IR
# --------------------------------------------------------------------------------------------


@define
class EmbedRequest:
    model: str
    # Texts, or token arrays (OpenAI-compatible upstreams only); never a mix.
    inputs: list[str] | list[list[int]]
    dimensions: int | None = None
    encoding_format: EncodingFormat = "float"
    input_type: str | None = None  # Cohere input_type or Gemini task type, as the client spelled it
    user: str | None = None
    # Unknown top-level OpenAI fields, restored only for OpenAI-compatible upstreams.
    extras: dict[str, Any] = field(factory=dict)

    @property
    def is_tokens(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], list)


@define
class EmbedResponse:
    vectors: list[list[float]]
    prompt_tokens: int
    model: str
    estimated: bool = False  # prompt_tokens is the gateway's estimate, not the provider's count


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _upstream_bad(provider: str, problem: str) -> GatewayError:
    return GatewayError("upstream_unavailable", f"invalid {provider} embeddings response from upstream: {problem}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def floats_to_base64(vector: Sequence[float]) -> str:
    """Little-endian float32 bytes, base64: what OpenAI sends for ``encoding_format: "base64"``."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def base64_to_floats(data: str) -> list[float]:
    """The inverse of ``floats_to_base64``; ValueError on anything that is not whole float32s."""
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def estimate_tokens(inputs: Sequence[str] | Sequence[Sequence[int]]) -> int:
    """One token per 4 characters (at least 1 per non-empty text); token arrays count exactly."""
    total = 0
    for x in inputs:
        if isinstance(x, str):
            total += max(1, math.ceil(len(x) / 4)) if x else 0
        else:
            total += len(x)
    return total


def _normalise(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else vector


def _vector(v: Any, provider: str, where: str) -> list[float]:
    if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise _upstream_bad(provider, f"{where} is not an array of numbers")
    return [float(x) for x in v]


def _count(v: Any) -> int | None:
    """A token count from a body or header value; None when absent or unusable."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)) and v >= 0:
        return int(v)
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


def _check_count(vectors: list[list[float]], req: EmbedRequest, provider: str) -> None:
    if len(vectors) != len(req.inputs):
        raise _upstream_bad(provider, f"{len(vectors)} embeddings for {len(req.inputs)} inputs")


def _texts_only(req: EmbedRequest, provider: str) -> list[str]:
    if req.is_tokens:
        raise _bad("input", f"token arrays cannot be sent to {provider}, which embeds text only; send strings")
    return list(req.inputs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# input_type / task type vocabularies
# --------------------------------------------------------------------------------------------

_COHERE_TYPES = ("search_document", "search_query", "classification", "clustering")
_GEMINI_TYPES = (
    "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION", "CLUSTERING",
    "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY",
)  # fmt: skip
# Spellings other embedding APIs use (Voyage "query"/"document", Jina "retrieval.query"/"retrieval.passage").
_ALIASES = {
    "query": "search_query",
    "document": "search_document",
    "passage": "search_document",
    "retrieval.query": "search_query",
    "retrieval.passage": "search_document",
}
_COHERE_TO_GEMINI = {
    "search_query": "RETRIEVAL_QUERY",
    "search_document": "RETRIEVAL_DOCUMENT",
    "classification": "CLASSIFICATION",
    "clustering": "CLUSTERING",
}
_GEMINI_TO_COHERE = {
    "RETRIEVAL_QUERY": "search_query",
    "QUESTION_ANSWERING": "search_query",
    "FACT_VERIFICATION": "search_query",
    "CODE_RETRIEVAL_QUERY": "search_query",
    "RETRIEVAL_DOCUMENT": "search_document",
    "CLASSIFICATION": "classification",
    "CLUSTERING": "clustering",
    # Symmetric similarity has no Cohere type of its own; clustering is the symmetric one Cohere has.
    "SEMANTIC_SIMILARITY": "clustering",
}


def _check_input_type(value: str) -> None:
    v = value.strip()
    if v.lower() in _COHERE_TYPES or v.lower() in _ALIASES or v.upper() in _GEMINI_TYPES:
        return
    raise _bad(
        "input_type",
        f"unknown value {value!r}; expected one of {', '.join(_COHERE_TYPES)} or a Gemini task type "
        f"({', '.join(_GEMINI_TYPES)})",
    )


def cohere_input_type(value: str | None) -> str | None:
    """The Cohere ``input_type`` for a hint in either vocabulary; None when there is no hint."""
    if value is None:
        return None
    v = value.strip()
    if v.lower() in _COHERE_TYPES:
        return v.lower()
    if v.lower() in _ALIASES:
        return _ALIASES[v.lower()]
    if v.upper() in _GEMINI_TO_COHERE:
        return _GEMINI_TO_COHERE[v.upper()]
    _check_input_type(value)
    return None


def gemini_task_type(value: str | None) -> str | None:
    """The Gemini / Vertex task type for a hint in either vocabulary; None when there is no hint."""
    if value is None:
        return None
    v = value.strip()
    if v.upper() in _GEMINI_TYPES:
        return v.upper()
    c = _ALIASES.get(v.lower(), v.lower())
    if c in _COHERE_TO_GEMINI:
        return _COHERE_TO_GEMINI[c]
    _check_input_type(value)
    return None


# --------------------------------------------------------------------------------------------
# OpenAI /v1/embeddings (client side, and OpenAI-compatible upstreams)
# --------------------------------------------------------------------------------------------

_KNOWN_OPENAI_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user", "input_type"})


def _decode_input(v: Any) -> list[str] | list[list[int]]:
    if v is None:
        raise _bad("input", "field required")
    if isinstance(v, str):
        if not v:
            raise _bad("input", "must not be an empty string")
        return [v]
    if not isinstance(v, list):
        raise _bad("input", f"expected a string or an array, got {_kind_name(v)}")
    if not v:
        raise _bad("input", "must not be an empty array")
    first = v[0]
    if _is_int(first):
        # One token array: a single input, however long.
        for j, t in enumerate(v):
            if not _is_int(t) or t < 0:
                raise _bad(f"input[{j}]", f"expected a non-negative integer token id, got {_kind_name(t)}")
        return [list(v)]
    if len(v) > BATCH_LIMIT_OPENAI:
        raise _bad("input", f"at most {BATCH_LIMIT_OPENAI} inputs per request, got {len(v)}")
    if isinstance(first, str):
        texts: list[str] = []
        for i, s in enumerate(v):
            if not isinstance(s, str):
                raise _bad(f"input[{i}]", f"expected a string like the other inputs, got {_kind_name(s)}")
            if not s:
                raise _bad(f"input[{i}]", "must not be an empty string")
            texts.append(s)
        return texts
    if isinstance(first, list):
        arrays: list[list[int]] = []
        for i, arr in enumerate(v):
            if not isinstance(arr, list):
                raise _bad(
                    f"input[{i}]", f"expected an array of token ids like the other inputs, got {_kind_name(arr)}"
                )
            if not arr:
                raise _bad(f"input[{i}]", "must not be an empty array")
            for j, t in enumerate(arr):
                if not _is_int(t) or t < 0:
                    raise _bad(f"input[{i}][{j}]", f"expected a non-negative integer token id, got {_kind_name(t)}")
            arrays.append(list(arr))
        return arrays
    raise _bad("input[0]", f"expected a string, a token id or an array of token ids, got {_kind_name(first)}")


def decode_openai_request(body: Any) -> EmbedRequest:
    """An OpenAI ``/v1/embeddings`` request body -> EmbedRequest; GatewayError(invalid_request) naming the field."""
    if not isinstance(body, dict):
        raise GatewayError("invalid_request", "request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise _bad("model", "field required")
    if not isinstance(model, str):
        raise _bad("model", f"expected a string, got {_kind_name(model)}")
    if not model:
        raise _bad("model", "must not be empty")
    inputs = _decode_input(body.get("input"))

    dimensions = body.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, float) and dimensions.is_integer():
            dimensions = int(dimensions)
        if not _is_int(dimensions):
            raise _bad("dimensions", f"expected an integer, got {_kind_name(dimensions)}")
        if dimensions < 1:
            raise _bad("dimensions", "must be at least 1")

    fmt = body.get("encoding_format")
    if fmt is None:
        fmt = "float"
    elif fmt not in ("float", "base64"):
        raise _bad("encoding_format", f"expected 'float' or 'base64', got {fmt!r}")

    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user", f"expected a string, got {_kind_name(user)}")

    input_type = body.get("input_type")
    if input_type is not None:
        if not isinstance(input_type, str):
            raise _bad("input_type", f"expected a string, got {_kind_name(input_type)}")
        _check_input_type(input_type)

    extras = {k: v for k, v in body.items() if k not in _KNOWN_OPENAI_FIELDS}
    return EmbedRequest(
        model=model, inputs=inputs, dimensions=dimensions, encoding_format=fmt, input_type=input_type, user=user,
        extras=extras,
    )  # fmt: skip


def encode_openai_response(resp: EmbedResponse, req: EmbedRequest) -> dict[str, Any]:
    """EmbedResponse -> the OpenAI ``/v1/embeddings`` response body, in the encoding the client asked for."""
    b64 = req.encoding_format == "base64"
    data = [
        {"object": "embedding", "index": i, "embedding": floats_to_base64(v) if b64 else v}
        for i, v in enumerate(resp.vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": resp.model or req.model,
        "usage": {"prompt_tokens": resp.prompt_tokens, "total_tokens": resp.prompt_tokens},
    }


def encode_openai_request(req: EmbedRequest, model: str, *, forward_input_type: bool = False) -> dict[str, Any]:
    """The body for an OpenAI-compatible upstream (OpenAI, Azure, vLLM...). ``input_type`` is dropped unless
    ``forward_input_type``: OpenAI rejects unknown parameters, some compatible servers want it."""
    body: dict[str, Any] = {**req.extras, "model": model, "input": req.inputs}
    # base64 is a quarter of the bytes of JSON floats, and decode_openai_response reads either.
    body["encoding_format"] = req.encoding_format
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    if req.user is not None:
        body["user"] = req.user
    if forward_input_type and req.input_type is not None:
        body["input_type"] = req.input_type
    return body


def decode_openai_response(body: Any, req: EmbedRequest) -> EmbedResponse:
    """An OpenAI-compatible embeddings response (float or base64 vectors) -> EmbedResponse."""
    provider = "OpenAI-compatible"
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise _upstream_bad(provider, "no 'data' array")
    items: list[tuple[int, list[float]]] = []
    for pos, d in enumerate(body["data"]):
        if not isinstance(d, dict):
            raise _upstream_bad(provider, f"data[{pos}] is not an object")
        index = d.get("index", pos)
        if not _is_int(index):
            raise _upstream_bad(provider, f"data[{pos}].index is not an integer")
        emb = d.get("embedding")
        if isinstance(emb, str):
            try:
                vec = base64_to_floats(emb)
            except ValueError as exc:
                raise _upstream_bad(provider, f"data[{pos}].embedding: {exc}") from None
        else:
            vec = _vector(emb, provider, f"data[{pos}].embedding")
        items.append((index, vec))
    items.sort(key=lambda it: it[0])
    vectors = [v for _, v in items]
    _check_count(vectors, req, provider)
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    tokens = _count(usage.get("prompt_tokens"))
    if tokens is None:
        tokens = _count(usage.get("total_tokens"))
    model = body.get("model") if isinstance(body.get("model"), str) else req.model
    if tokens is None:
        return EmbedResponse(vectors, estimate_tokens(req.inputs), model, estimated=True)
    return EmbedResponse(vectors, tokens, model)


# --------------------------------------------------------------------------------------------
# Gemini Developer API: POST /v1beta/models/{model}:batchEmbedContents
# --------------------------------------------------------------------------------------------


def encode_gemini_request(req: EmbedRequest, model: str) -> dict[str, Any]:
    texts = _texts_only(req, "Gemini")
    # Each request repeats the model, and it must match the one in the URL.
    name = model if model.startswith("models/") else f"models/{model}"
    task = gemini_task_type(req.input_type)
    requests = []
    for t in texts:
        r: dict[str, Any] = {"model": name, "content": {"parts": [{"text": t}]}}
        if task is not None:
            r["taskType"] = task
        if req.dimensions is not None:
            r["outputDimensionality"] = req.dimensions
        requests.append(r)
    return {"requests": requests}


def decode_gemini_response(body: Any, req: EmbedRequest) -> EmbedResponse:
    provider = "Gemini"
    if not isinstance(body, dict) or not isinstance(body.get("embeddings"), list):
        raise _upstream_bad(provider, "no 'embeddings' array")
    vectors = []
    for i, e in enumerate(body["embeddings"]):
        if not isinstance(e, dict):
            raise _upstream_bad(provider, f"embeddings[{i}] is not an object")
        vec = _vector(e.get("values"), provider, f"embeddings[{i}].values")
        vectors.append(_normalise(vec) if req.dimensions is not None else vec)
    _check_count(vectors, req, provider)
    # The classic response has no usage; newer ones may.
    meta = body.get("usageMetadata") if isinstance(body.get("usageMetadata"), dict) else {}
    tokens = _count(meta.get("promptTokenCount"))
    if tokens is None:
        return EmbedResponse(vectors, estimate_tokens(req.inputs), req.model, estimated=True)
    return EmbedResponse(vectors, tokens, req.model)


# --------------------------------------------------------------------------------------------
# Vertex AI: POST .../publishers/google/models/{model}:predict
# --------------------------------------------------------------------------------------------


def encode_vertex_request(req: EmbedRequest, model: str) -> dict[str, Any]:
    """``model`` is in the URL, not the body; it is taken for symmetry with the other encoders."""
    texts = _texts_only(req, "Vertex AI")
    task = gemini_task_type(req.input_type)
    instances = []
    for t in texts:
        inst: dict[str, Any] = {"content": t}
        if task is not None:
            inst["task_type"] = task
        instances.append(inst)
    body: dict[str, Any] = {"instances": instances}
    if req.dimensions is not None:
        body["parameters"] = {"outputDimensionality": req.dimensions}
    return body


def decode_vertex_response(body: Any, req: EmbedRequest) -> EmbedResponse:
    provider = "Vertex AI"
    if not isinstance(body, dict) or not isinstance(body.get("predictions"), list):
        raise _upstream_bad(provider, "no 'predictions' array")
    vectors = []
    tokens = 0
    counted = True
    for i, p in enumerate(body["predictions"]):
        emb = p.get("embeddings") if isinstance(p, dict) else None
        if not isinstance(emb, dict):
            raise _upstream_bad(provider, f"predictions[{i}].embeddings is not an object")
        vec = _vector(emb.get("values"), provider, f"predictions[{i}].embeddings.values")
        vectors.append(_normalise(vec) if req.dimensions is not None else vec)
        stats = emb.get("statistics") if isinstance(emb.get("statistics"), dict) else {}
        n = _count(stats.get("token_count"))
        if n is None:
            counted = False
        else:
            tokens += n
    _check_count(vectors, req, provider)
    if not counted:
        return EmbedResponse(vectors, estimate_tokens(req.inputs), req.model, estimated=True)
    return EmbedResponse(vectors, tokens, req.model)


# --------------------------------------------------------------------------------------------
# Cohere v2: POST /v2/embed
# --------------------------------------------------------------------------------------------


def encode_cohere_request(req: EmbedRequest, model: str) -> dict[str, Any]:
    texts = _texts_only(req, "Cohere")
    body: dict[str, Any] = {
        "model": model,
        "texts": texts,
        "input_type": cohere_input_type(req.input_type) or DEFAULT_COHERE_INPUT_TYPE,
        "embedding_types": ["float"],
    }
    if req.dimensions is not None:
        body["output_dimension"] = req.dimensions
    return body


def _cohere_vectors(body: Any, provider: str) -> list[list[float]]:
    if not isinstance(body, dict):
        raise _upstream_bad(provider, "not a JSON object")
    emb = body.get("embeddings")
    if isinstance(emb, dict):  # response_type "embeddings_by_type"
        emb = emb.get("float")
    if not isinstance(emb, list):  # else "embeddings_floats": a bare list of vectors
        raise _upstream_bad(provider, "no float embeddings")
    return [_vector(v, provider, f"embeddings[{i}]") for i, v in enumerate(emb)]


def decode_cohere_response(body: Any, req: EmbedRequest) -> EmbedResponse:
    provider = "Cohere"
    vectors = _cohere_vectors(body, provider)
    _check_count(vectors, req, provider)
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    billed = meta.get("billed_units") if isinstance(meta.get("billed_units"), dict) else {}
    tokens = _count(billed.get("input_tokens"))
    if tokens is None:
        return EmbedResponse(vectors, estimate_tokens(req.inputs), req.model, estimated=True)
    return EmbedResponse(vectors, tokens, req.model)


# --------------------------------------------------------------------------------------------
# Bedrock InvokeModel: POST /model/{modelId}/invoke, body per model family
# --------------------------------------------------------------------------------------------

_TITAN_V2_DIMENSIONS = (256, 512, 1024)
_TITAN_IMAGE_DIMENSIONS = (256, 384, 1024)


def bedrock_embed_family(model: str) -> Literal["titan", "cohere"]:
    """Which body shape a Bedrock model id (or inference profile / ARN) takes."""
    m = model.lower().rsplit("/", 1)[-1]
    if "titan-embed" in m:
        return "titan"
    if "cohere.embed" in m:
        return "cohere"
    raise _bad("model", f"{model!r} is not a Bedrock embedding model the gateway can translate (Titan or Cohere Embed)")


def encode_bedrock_titan_request(req: EmbedRequest, model: str) -> dict[str, Any]:
    """One text per call: split with BATCH_LIMIT_BEDROCK_TITAN first."""
    texts = _texts_only(req, "Bedrock Titan")
    if len(texts) != 1:
        raise ValueError(f"Titan embeds one text per call, got {len(texts)}: split the request first")
    body: dict[str, Any] = {"inputText": texts[0]}
    m = model.lower()
    if "titan-embed-text-v2" in m:
        if req.dimensions is not None:
            if req.dimensions not in _TITAN_V2_DIMENSIONS:
                raise _bad(
                    "dimensions", f"Titan Text Embeddings V2 supports {_TITAN_V2_DIMENSIONS}, got {req.dimensions}"
                )
            body["dimensions"] = req.dimensions
        # OpenAI's vectors are unit length; Titan's are only when asked.
        body["normalize"] = True
    elif "titan-embed-image" in m:
        if req.dimensions is not None:
            if req.dimensions not in _TITAN_IMAGE_DIMENSIONS:
                raise _bad("dimensions", f"Titan Multimodal Embeddings supports {_TITAN_IMAGE_DIMENSIONS}")
            body["embeddingConfig"] = {"outputEmbeddingLength": req.dimensions}
    elif req.dimensions is not None:
        raise _bad("dimensions", f"not supported by {model}")
    return body


def decode_bedrock_titan_response(
    body: Any, req: EmbedRequest, input_token_count: str | int | None = None
) -> EmbedResponse:
    provider = "Bedrock Titan"
    if not isinstance(body, dict):
        raise _upstream_bad(provider, "not a JSON object")
    vectors = [_vector(body.get("embedding"), provider, "embedding")]
    _check_count(vectors, req, provider)
    tokens = _count(body.get("inputTextTokenCount"))
    if tokens is None:
        tokens = _count(input_token_count)
    if tokens is None:
        return EmbedResponse(vectors, estimate_tokens(req.inputs), req.model, estimated=True)
    return EmbedResponse(vectors, tokens, req.model)


def encode_bedrock_cohere_request(req: EmbedRequest, model: str) -> dict[str, Any]:
    """Cohere Embed on Bedrock: the model is in the URL, not the body."""
    texts = _texts_only(req, "Bedrock Cohere Embed")
    body: dict[str, Any] = {
        "texts": texts,
        "input_type": cohere_input_type(req.input_type) or DEFAULT_COHERE_INPUT_TYPE,
        "embedding_types": ["float"],
    }
    if req.dimensions is not None:
        body["output_dimension"] = req.dimensions  # Embed v4 only; v3 models answer a ValidationException
    return body


def decode_bedrock_cohere_response(
    body: Any, req: EmbedRequest, input_token_count: str | int | None = None
) -> EmbedResponse:
    """``input_token_count``: the ``X-Amzn-Bedrock-Input-Token-Count`` response header, the only usage Bedrock
    gives for Cohere models."""
    provider = "Bedrock Cohere Embed"
    vectors = _cohere_vectors(body, provider)
    _check_count(vectors, req, provider)
    tokens = _count(input_token_count)
    if tokens is None:
        return EmbedResponse(vectors, estimate_tokens(req.inputs), req.model, estimated=True)
    return EmbedResponse(vectors, tokens, req.model)


def encode_bedrock_request(req: EmbedRequest, model: str) -> dict[str, Any]:
    if bedrock_embed_family(model) == "titan":
        return encode_bedrock_titan_request(req, model)
    return encode_bedrock_cohere_request(req, model)


def decode_bedrock_response(
    body: Any, req: EmbedRequest, model: str, input_token_count: str | int | None = None
) -> EmbedResponse:
    if bedrock_embed_family(model) == "titan":
        return decode_bedrock_titan_response(body, req, input_token_count)
    return decode_bedrock_cohere_response(body, req, input_token_count)


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------


def batch_limit(provider: str, model: str) -> int:
    """Inputs per upstream call for a provider kind (openai, azure, gemini, vertex, cohere, bedrock, or any
    OpenAI-compatible kind) and upstream model."""
    m = model.lower()
    if provider == "gemini":
        return BATCH_LIMIT_GEMINI
    if provider == "vertex":
        return BATCH_LIMIT_VERTEX_GEMINI if "gemini-embedding" in m else BATCH_LIMIT_VERTEX
    if provider == "cohere":
        return BATCH_LIMIT_COHERE
    if provider == "bedrock":
        return BATCH_LIMIT_BEDROCK_TITAN if bedrock_embed_family(model) == "titan" else BATCH_LIMIT_BEDROCK_COHERE
    return BATCH_LIMIT_OPENAI


def split_batches(inputs: Sequence[Any], limit: int, *, max_tokens: int | None = None) -> list[list[Any]]:
    """Consecutive batches of at most ``limit`` inputs and, when ``max_tokens`` is given, at most that many
    estimated tokens (an input bigger than that alone still gets a batch of its own). Order is kept, so
    concatenating the batches gives ``inputs`` back."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    batches: list[list[Any]] = []
    current: list[Any] = []
    tokens = 0
    for x in inputs:
        t = estimate_tokens([x]) if max_tokens is not None else 0
        if current and (len(current) >= limit or (max_tokens is not None and tokens + t > max_tokens)):
            batches.append(current)
            current, tokens = [], 0
        current.append(x)
        tokens += t
    if current:
        batches.append(current)
    return batches


def split_request(req: EmbedRequest, limit: int, *, max_tokens: int | None = None) -> list[EmbedRequest]:
    """``req`` as provider-sized requests, in order; join their answers with ``merge_responses``."""
    return [evolve(req, inputs=b) for b in split_batches(req.inputs, limit, max_tokens=max_tokens)]


def merge_responses(parts: Sequence[EmbedResponse]) -> EmbedResponse:
    """The answers to ``split_request``'s requests, given in the same order -> one response."""
    if not parts:
        raise ValueError("nothing to merge")
    vectors = [v for p in parts for v in p.vectors]
    return EmbedResponse(
        vectors=vectors,
        prompt_tokens=sum(p.prompt_tokens for p in parts),
        model=parts[0].model,
        estimated=any(p.estimated for p in parts),
    )
