"""Rerank: the Cohere ``/v1/rerank`` and ``/v2/rerank`` client APIs <-> a small IR <-> each provider's rerank API.

Pure (sans-IO). Providers: Cohere (v1 and v2), the Cohere-like servers (Jina, Voyage, vLLM), the Bedrock agent
runtime ``Rerank`` API and Vertex AI ranking (Discovery Engine ``rankingConfigs:rank``).

The gateway, not the provider, applies ``top_n`` and ``return_documents`` to what the client gets: every
encoder asks the provider for bare ``(index, score)`` results (documents are the client's own text, and
some providers cannot send them back), and ``encode_cohere_response`` sorts, truncates and attaches the
documents. That also lets a request bigger than a provider's limit be split (``split_request``) and merged
(``merge_responses``): a cross-encoder scores each (query, document) pair on its own, so scores from
different calls compare.

Billing: Cohere bills search units, the others tokens. When the provider gives no search units the gateway
estimates one per 100 documents (Cohere's definition, ignoring its splitting of documents over 500 tokens).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from attrs import define, evolve, field

from trigate.errors import GatewayError
from trigate.formats.checks import bad as _bad
from trigate.formats.checks import kind_name as _kind_name
from trigate.formats.cohere_errors import parse_cohere_error, render_cohere_error

__all__ = [
    "RERANK_LIMIT_BEDROCK",
    "RERANK_LIMIT_VERTEX",
    "RERANK_LIMIT_VOYAGE",
    "RankedDocument",
    "RerankRequest",
    "RerankResponse",
    "bedrock_model_arn",
    "decode_bedrock_response",
    "decode_cohere_request",
    "decode_cohere_response",
    "decode_jina_response",
    "decode_vertex_response",
    "decode_vllm_response",
    "decode_voyage_response",
    "encode_bedrock_request",
    "encode_cohere_request",
    "encode_cohere_response",
    "encode_jina_request",
    "encode_jina_response",
    "encode_vertex_request",
    "encode_vllm_request",
    "encode_voyage_request",
    "encode_voyage_response",
    "estimate_search_units",
    "merge_responses",
    "parse_cohere_error",
    "parse_rerank_error",
    "render_cohere_error",
    "rerank_limit",
    "split_request",
    "top_results",
]

ApiVersion = Literal[1, 2]

# Documents per call. Sources: Discovery Engine RankRequest ("At most 200 records"); Bedrock
# BedrockRerankingConfiguration.numberOfResults (1..1000) and RerankResult.index (0..1000); Voyage rerank
# ("The number of documents cannot exceed 1000"). Cohere and Jina document no hard count.
RERANK_LIMIT_VERTEX = 200
RERANK_LIMIT_BEDROCK = 1000
RERANK_LIMIT_VOYAGE = 1000


# --------------------------------------------------------------------------------------------
# IR
# --------------------------------------------------------------------------------------------


class RankedDocument(NamedTuple):
    index: int  # into RerankRequest.documents
    relevance_score: float


@define
class RerankRequest:
    model: str
    query: str
    documents: list[str]  # the text each document is ranked by
    top_n: int | None = None
    max_tokens_per_doc: int | None = None
    return_documents: bool = False
    # Cohere v1 only: the documents exactly as sent (objects keep all their fields, and Cohere echoes them
    # back that way) and the object fields ranked on.
    raw_documents: list[Any] | None = None
    rank_fields: list[str] | None = None
    # Fields the IR does not model (Cohere's priority, relevant_spans, max_chunks_per_doc...), restored
    # only for a Cohere upstream.
    extras: dict[str, Any] = field(factory=dict)


@define
class RerankResponse:
    results: list[RankedDocument]  # any order; encoders sort
    search_units: int | None = None
    total_tokens: int | None = None
    id: str | None = None
    model: str | None = None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _upstream_bad(provider: str, problem: str) -> GatewayError:
    return GatewayError("upstream_unavailable", f"invalid {provider} rerank response from upstream: {problem}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _opt_positive_int(body: dict[str, Any], key: str) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not _is_int(v):
        raise _bad(key, f"expected an integer, got {_kind_name(v)}")
    if v < 1:
        raise _bad(key, "must be at least 1")
    return v


def _count(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        return None
    return int(v)


def _new_id() -> str:
    return str(uuid.uuid4())


def estimate_search_units(req: RerankRequest) -> int:
    """Cohere's unit: one query with up to 100 documents."""
    return max(1, math.ceil(len(req.documents) / 100))


def top_results(results: Sequence[RankedDocument], top_n: int | None) -> list[RankedDocument]:
    """Most relevant first (ties: lower index first), at most ``top_n``."""
    ranked = sorted(results, key=lambda r: (-r.relevance_score, r.index))
    return ranked if top_n is None else ranked[:top_n]


def _results(items: Any, provider: str, where: str, score_key: str, req: RerankRequest) -> list[RankedDocument]:
    if not isinstance(items, list):
        raise _upstream_bad(provider, f"no '{where}' array")
    out = []
    for i, r in enumerate(items):
        if not isinstance(r, dict):
            raise _upstream_bad(provider, f"{where}[{i}] is not an object")
        index, score = r.get("index"), r.get(score_key)
        if not _is_int(index) or not 0 <= index < len(req.documents):
            raise _upstream_bad(provider, f"{where}[{i}].index is not a document index")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise _upstream_bad(provider, f"{where}[{i}].{score_key} is not a number")
        out.append(RankedDocument(index, float(score)))
    return out


# --------------------------------------------------------------------------------------------
# Cohere client API: POST /v2/rerank and /v1/rerank
# --------------------------------------------------------------------------------------------

_KNOWN_FIELDS = frozenset(
    {"model", "query", "documents", "top_n", "top_k", "max_tokens_per_doc", "return_documents", "rank_fields"}
)
# Request fields of the other API version, which a Cohere upstream of this version would reject.
_V1_ONLY = frozenset({"max_chunks_per_doc"})
_V2_ONLY = frozenset({"priority", "relevant_spans"})


def _document_text(d: Any, i: int, api_version: ApiVersion, rank_fields: list[str] | None) -> str:
    param = f"documents[{i}]"
    if isinstance(d, str):
        return d
    if not isinstance(d, dict):
        raise _bad(param, f"expected a string or an object, got {_kind_name(d)}")
    if api_version == 1 and rank_fields:
        parts = []
        for f in rank_fields:
            if f in d:
                v = d[f]
                if not isinstance(v, str):
                    raise _bad(f"{param}.{f}", f"expected a string, got {_kind_name(v)}")
                parts.append(f"{f}: {v}")
        if not parts:
            raise _bad(param, f"has none of the rank_fields ({', '.join(rank_fields)})")
        return "\n".join(parts)
    text = d.get("text")
    if text is None:
        raise _bad(f"{param}.text", "field required")
    if not isinstance(text, str):
        raise _bad(f"{param}.text", f"expected a string, got {_kind_name(text)}")
    return text


def decode_cohere_request(body: Any, api_version: ApiVersion = 2, *, default_model: str | None = None) -> RerankRequest:
    """A Cohere rerank request (``/v2/rerank`` or ``/v1/rerank``; also the Jina/Voyage-style bodies those
    clients send there, ``top_k`` being Voyage's ``top_n``) -> RerankRequest. v1 made ``model`` optional:
    ``default_model`` fills it in, else it is required."""
    if not isinstance(body, dict):
        raise GatewayError("invalid_request", "request body must be a JSON object")
    model = body.get("model")
    if model is None:
        model = default_model
    if model is None:
        raise _bad("model", "field required")
    if not isinstance(model, str):
        raise _bad("model", f"expected a string, got {_kind_name(model)}")
    if not model:
        raise _bad("model", "must not be empty")

    query = body.get("query")
    if query is None:
        raise _bad("query", "field required")
    if not isinstance(query, str):
        raise _bad("query", f"expected a string, got {_kind_name(query)}")
    if not query:
        raise _bad("query", "must not be empty")

    rank_fields = body.get("rank_fields")
    if rank_fields is not None:
        if api_version != 1:
            raise _bad("rank_fields", "only supported by /v1/rerank; v2 takes documents as strings")
        if not isinstance(rank_fields, list) or not all(isinstance(f, str) for f in rank_fields):
            raise _bad("rank_fields", "expected an array of strings")
        rank_fields = list(rank_fields) or None

    raw = body.get("documents")
    if raw is None:
        raise _bad("documents", "field required")
    if not isinstance(raw, list):
        raise _bad("documents", f"expected an array, got {_kind_name(raw)}")
    if not raw:
        raise _bad("documents", "must not be empty")
    documents = [_document_text(d, i, api_version, rank_fields) for i, d in enumerate(raw)]

    top_n = _opt_positive_int(body, "top_n")
    if top_n is None:
        top_n = _opt_positive_int(body, "top_k")
    max_tokens_per_doc = _opt_positive_int(body, "max_tokens_per_doc")
    ret = body.get("return_documents")
    if ret is not None and not isinstance(ret, bool):
        raise _bad("return_documents", f"expected a boolean, got {_kind_name(ret)}")
    extras = {k: v for k, v in body.items() if k not in _KNOWN_FIELDS}
    if "max_chunks_per_doc" in extras:
        _opt_positive_int(body, "max_chunks_per_doc")
    keep_raw = api_version == 1 and any(isinstance(d, dict) for d in raw)
    return RerankRequest(
        model=model,
        query=query,
        documents=documents,
        top_n=top_n,
        max_tokens_per_doc=max_tokens_per_doc,
        return_documents=bool(ret),
        raw_documents=list(raw) if keep_raw else None,
        rank_fields=rank_fields,
        extras=extras,
    )


def _client_document(req: RerankRequest, index: int) -> Any:
    if req.raw_documents is not None and isinstance(req.raw_documents[index], dict):
        return req.raw_documents[index]
    return {"text": req.documents[index]}


def encode_cohere_response(resp: RerankResponse, req: RerankRequest, api_version: ApiVersion = 2) -> dict[str, Any]:
    """The Cohere rerank response for the client: sorted by score, cut to ``top_n``, documents attached when
    asked. The official SDK's V2RerankResponse / RerankResponse accept it (extra keys are allowed)."""
    results = []
    for r in top_results(resp.results, req.top_n):
        item: dict[str, Any] = {"index": r.index, "relevance_score": r.relevance_score}
        if req.return_documents:
            item["document"] = _client_document(req, r.index)
        results.append(item)
    units = resp.search_units if resp.search_units is not None else estimate_search_units(req)
    out: dict[str, Any] = {
        "id": resp.id or _new_id(),
        "results": results,
        "meta": {"api_version": {"version": str(api_version)}, "billed_units": {"search_units": units}},
    }
    if resp.total_tokens is not None:
        # Jina-style clients posting to /v1/rerank read usage; Cohere's SDK keeps it as an extra field.
        out["usage"] = {"total_tokens": resp.total_tokens}
    return out


# --------------------------------------------------------------------------------------------
# Cohere upstream (also vLLM's /v2/rerank, which is Cohere-shaped)
# --------------------------------------------------------------------------------------------


def encode_cohere_request(req: RerankRequest, model: str, api_version: ApiVersion = 2) -> dict[str, Any]:
    drop = _V1_ONLY if api_version == 2 else _V2_ONLY
    body: dict[str, Any] = {k: v for k, v in req.extras.items() if k not in drop}
    body["model"] = model
    body["query"] = req.query
    if api_version == 1 and req.raw_documents is not None:
        body["documents"] = req.raw_documents
        if req.rank_fields:
            body["rank_fields"] = req.rank_fields
    else:
        body["documents"] = req.documents
    if req.top_n is not None:
        body["top_n"] = req.top_n
    if req.max_tokens_per_doc is not None and api_version == 2:
        body["max_tokens_per_doc"] = req.max_tokens_per_doc
    if api_version == 1:
        body["return_documents"] = False
    return body


def decode_cohere_response(body: Any, req: RerankRequest) -> RerankResponse:
    provider = "Cohere"
    if not isinstance(body, dict):
        raise _upstream_bad(provider, "not a JSON object")
    results = _results(body.get("results"), provider, "results", "relevance_score", req)
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    billed = meta.get("billed_units") if isinstance(meta.get("billed_units"), dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    rid = body.get("id")
    return RerankResponse(
        results=results,
        search_units=_count(billed.get("search_units")),
        total_tokens=_count(usage.get("total_tokens")),
        id=rid if isinstance(rid, str) else None,
        model=body.get("model") if isinstance(body.get("model"), str) else None,
    )


# --------------------------------------------------------------------------------------------
# Jina (POST /v1/rerank) and vLLM (/rerank, /v1/rerank: the same shape)
# --------------------------------------------------------------------------------------------


def encode_jina_request(req: RerankRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "query": req.query, "documents": req.documents}
    if req.top_n is not None:
        body["top_n"] = req.top_n
    body["return_documents"] = False
    return body


def decode_jina_response(body: Any, req: RerankRequest) -> RerankResponse:
    provider = "Jina-style"
    if not isinstance(body, dict):
        raise _upstream_bad(provider, "not a JSON object")
    results = _results(body.get("results"), provider, "results", "relevance_score", req)
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    rid = body.get("id")
    return RerankResponse(
        results=results,
        total_tokens=_count(usage.get("total_tokens")),
        id=rid if isinstance(rid, str) else None,
        model=body.get("model") if isinstance(body.get("model"), str) else None,
    )


encode_vllm_request = encode_jina_request
decode_vllm_response = decode_jina_response


def encode_jina_response(resp: RerankResponse, req: RerankRequest) -> dict[str, Any]:
    """A Jina-shaped response, for a handler serving Jina clients."""
    results = []
    for r in top_results(resp.results, req.top_n):
        item: dict[str, Any] = {"index": r.index, "relevance_score": r.relevance_score}
        if req.return_documents:
            item["document"] = {"text": req.documents[r.index]}
        results.append(item)
    return {"model": resp.model or req.model, "usage": {"total_tokens": resp.total_tokens or 0}, "results": results}


# --------------------------------------------------------------------------------------------
# Voyage: POST /v1/rerank with top_k (not top_n) -> data (not results)
# --------------------------------------------------------------------------------------------


def encode_voyage_request(req: RerankRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"query": req.query, "documents": req.documents, "model": model}
    if req.top_n is not None:
        body["top_k"] = req.top_n
    body["return_documents"] = False
    truncation = req.extras.get("truncation")
    if isinstance(truncation, bool):
        body["truncation"] = truncation
    return body


def decode_voyage_response(body: Any, req: RerankRequest) -> RerankResponse:
    provider = "Voyage"
    if not isinstance(body, dict):
        raise _upstream_bad(provider, "not a JSON object")
    results = _results(body.get("data"), provider, "data", "relevance_score", req)
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return RerankResponse(
        results=results,
        total_tokens=_count(usage.get("total_tokens")),
        model=body.get("model") if isinstance(body.get("model"), str) else None,
    )


def encode_voyage_response(resp: RerankResponse, req: RerankRequest) -> dict[str, Any]:
    """A Voyage-shaped response, for a handler serving Voyage clients."""
    data = []
    for r in top_results(resp.results, req.top_n):
        item: dict[str, Any] = {"index": r.index, "relevance_score": r.relevance_score}
        if req.return_documents:
            item["document"] = req.documents[r.index]
        data.append(item)
    return {
        "object": "list",
        "data": data,
        "model": resp.model or req.model,
        "usage": {"total_tokens": resp.total_tokens or 0},
    }


# --------------------------------------------------------------------------------------------
# Bedrock agent runtime: POST https://bedrock-agent-runtime.{region}.amazonaws.com/rerank
# --------------------------------------------------------------------------------------------


def bedrock_model_arn(model: str, region: str) -> str:
    """The Rerank API names models by ARN only; a bare model id becomes its foundation-model ARN."""
    if model.startswith("arn:"):
        return model
    return f"arn:aws:bedrock:{region}::foundation-model/{model}"


def encode_bedrock_request(req: RerankRequest, model: str, region: str) -> dict[str, Any]:
    sources = [
        {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": d}}} for d in req.documents
    ]
    # Asked explicitly: the service's default result count is not documented, and the gateway wants every
    # score so it can apply top_n itself.
    n = min(req.top_n or len(req.documents), len(req.documents), RERANK_LIMIT_BEDROCK)
    return {
        "queries": [{"type": "TEXT", "textQuery": {"text": req.query}}],
        "sources": sources,
        "rerankingConfiguration": {
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {
                "modelConfiguration": {"modelArn": bedrock_model_arn(model, region)},
                "numberOfResults": n,
            },
        },
    }


def decode_bedrock_response(body: Any, req: RerankRequest) -> RerankResponse:
    """A ``nextToken`` (more results than fit one response) is not followed: numberOfResults is capped at
    the document count, which Bedrock answers in one page."""
    provider = "Bedrock"
    if not isinstance(body, dict):
        raise _upstream_bad(provider, "not a JSON object")
    return RerankResponse(results=_results(body.get("results"), provider, "results", "relevanceScore", req))


# --------------------------------------------------------------------------------------------
# Vertex AI ranking: POST https://discoveryengine.googleapis.com/v1/projects/{p}/locations/global/
#                         rankingConfigs/default_ranking_config:rank
# --------------------------------------------------------------------------------------------


def encode_vertex_request(req: RerankRequest, model: str) -> dict[str, Any]:
    # Record ids are the document indexes, so the answer maps straight back.
    records = [{"id": str(i), "content": d} for i, d in enumerate(req.documents)]
    body: dict[str, Any] = {"model": model, "query": req.query, "records": records}
    if req.top_n is not None:
        body["topN"] = req.top_n
    body["ignoreRecordDetailsInResponse"] = True
    return body


def decode_vertex_response(body: Any, req: RerankRequest) -> RerankResponse:
    provider = "Vertex AI ranking"
    if not isinstance(body, dict):
        raise _upstream_bad(provider, "not a JSON object")
    records = body.get("records", [])
    if not isinstance(records, list):
        raise _upstream_bad(provider, "'records' is not an array")
    results = []
    for i, r in enumerate(records):
        rid = r.get("id") if isinstance(r, dict) else None
        if not isinstance(rid, str) or not rid.isdigit() or int(rid) >= len(req.documents):
            raise _upstream_bad(provider, f"records[{i}].id is not one the gateway sent")
        # proto3 JSON leaves a zero score out.
        score = r.get("score", 0.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise _upstream_bad(provider, f"records[{i}].score is not a number")
        results.append(RankedDocument(int(rid), float(score)))
    return RerankResponse(results=results)


# --------------------------------------------------------------------------------------------
# Errors and batching
# --------------------------------------------------------------------------------------------

# Cohere's {"message"} and the compatible servers' {"detail"} / {"error": {...}} bodies alike.
parse_rerank_error = parse_cohere_error


def rerank_limit(provider: str) -> int | None:
    """Documents per upstream call for a provider kind; None when the provider documents no count limit."""
    return {"vertex": RERANK_LIMIT_VERTEX, "bedrock": RERANK_LIMIT_BEDROCK, "voyage": RERANK_LIMIT_VOYAGE}.get(provider)


def split_request(req: RerankRequest, limit: int) -> list[RerankRequest]:
    """``req`` in provider-sized pieces of consecutive documents, each asking for every score (the gateway
    applies ``top_n`` after merging)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(req.documents) <= limit:
        return [req]
    parts = []
    for start in range(0, len(req.documents), limit):
        raw = req.raw_documents[start : start + limit] if req.raw_documents is not None else None
        parts.append(evolve(req, documents=req.documents[start : start + limit], raw_documents=raw, top_n=None))
    return parts


def merge_responses(parts: Sequence[RerankResponse], batches: Sequence[RerankRequest]) -> RerankResponse:
    """The answers to ``split_request``'s pieces (same order) -> one response indexing the whole request."""
    if not parts or len(parts) != len(batches):
        raise ValueError("need one response per batch")
    results: list[RankedDocument] = []
    offset = 0
    for part, batch in zip(parts, batches, strict=True):
        results += [RankedDocument(r.index + offset, r.relevance_score) for r in part.results]
        offset += len(batch.documents)

    def total(values: list[int | None]) -> int | None:
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    return RerankResponse(
        results=results,
        search_units=total([p.search_units for p in parts]),
        total_tokens=total([p.total_tokens for p in parts]),
        id=parts[0].id,
        model=parts[0].model,
    )
