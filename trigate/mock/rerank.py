"""The fake upstream's rerank endpoints, one per wire flavour, on paths a provider's base URL can point at:

  Cohere     POST /v2/rerank, /v1/rerank
  Jina       POST /jina/v1/rerank
  Voyage     POST /voyage/v1/rerank
  vLLM       POST /vllm/rerank, /vllm/v1/rerank, /vllm/v2/rerank
  Bedrock    POST /rerank  (bedrock-agent-runtime's Rerank; Bearer API key or SigV4)
  Vertex AI  POST /v1/projects/<p>/locations/<l>/rankingConfigs/<cfg>:rank  (Discovery Engine)

Relevance is deterministic: the share of the query's distinct words (lower-cased ``\\w+`` runs) that the
document contains, so tests can predict the order; ties go to the lower index. Each route insists on its
own spelling (Voyage's ``top_k``, Cohere v2's string-only documents, Bedrock's ARN) so a translation that
sends the wrong one fails here as it would upstream.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

from quart import Response
from quart_trio import QuartTrio

from trigate.mock.embeddings import (
    bearer_ok,
    bedrock_auth_error,
    bedrock_error,
    cohere_error,
    fault_response,
    finish,
    google_error,
    json_response,
    prelude,
)
from trigate.mock.replies import count_tokens
from trigate.mock.state import MockState

_WORD = re.compile(r"\w+")


def relevance(query: str, document: str) -> float:
    q = set(_WORD.findall(query.lower()))
    if not q:
        return 0.0
    return round(len(q & set(_WORD.findall(document.lower()))) / len(q), 6)


def ranked(query: str, documents: list[str]) -> list[tuple[int, float]]:
    """(index, score), most relevant first, ties by index."""
    scored = [(i, relevance(query, d)) for i, d in enumerate(documents)]
    return sorted(scored, key=lambda r: (-r[1], r[0]))


def _tokens(query: str, documents: list[str]) -> int:
    # Cross-encoders read the query once per document.
    return sum(count_tokens(query) + count_tokens(d) for d in documents)


def _top(v: Any) -> int | str | None:
    """A top_n / top_k value, or the problem with it."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        return "must be a positive integer"
    return v


def _texts(documents: Any, *, objects: bool, rank_fields: list[str] | None = None) -> list[str] | str:
    if not isinstance(documents, list) or not documents:
        return "documents must be a non-empty array"
    out = []
    for i, d in enumerate(documents):
        if isinstance(d, str):
            out.append(d)
        elif objects and isinstance(d, dict):
            fields = rank_fields or ["text"]
            values = [d[f] for f in fields if isinstance(d.get(f), str)]
            if not values:
                return f"documents[{i}] has none of the fields {fields}"
            out.append("\n".join(values))
        else:
            return f"documents[{i}] must be a string"
    return out


def cohere_rerank_body(body: dict[str, Any], version: int) -> dict[str, Any] | str:
    model = body.get("model")
    if version == 2 and (not isinstance(model, str) or not model):
        return "invalid request: model is required"
    query = body.get("query")
    if not isinstance(query, str) or not query:
        return "invalid request: query must be a non-empty string"
    if version == 2:
        for key in ("rank_fields", "max_chunks_per_doc"):
            if key in body:
                return f"invalid request: {key} is not a valid parameter for v2 rerank"
    rank_fields = body.get("rank_fields") if version == 1 else None
    texts = _texts(body.get("documents"), objects=version == 1, rank_fields=rank_fields)
    if isinstance(texts, str):
        return f"invalid request: {texts}"
    top = _top(body.get("top_n"))
    if isinstance(top, str):
        return f"invalid request: top_n {top}"
    results: list[dict[str, Any]] = []
    for i, score in ranked(query, texts)[:top]:
        item: dict[str, Any] = {"index": i, "relevance_score": score}
        if body.get("return_documents"):
            doc = body["documents"][i]
            item["document"] = doc if isinstance(doc, dict) else {"text": doc}
        results.append(item)
    units = math.ceil(len(texts) / 100)
    return {
        "id": str(uuid.uuid4()),
        "results": results,
        "meta": {"api_version": {"version": str(version)}, "billed_units": {"search_units": units}},
    }


def jina_rerank_body(body: dict[str, Any], *, vllm: bool = False) -> dict[str, Any] | str:
    model, query = body.get("model"), body.get("query")
    if not isinstance(model, str) or not model:
        return "model: field required"
    if not isinstance(query, str) or not query:
        return "query: field required"
    texts = _texts(body.get("documents"), objects=True)
    if isinstance(texts, str):
        return texts
    top = _top(body.get("top_n"))
    if isinstance(top, str):
        return f"top_n: {top}"
    # Jina returns documents unless told not to; vLLM always does.
    with_docs = vllm or body.get("return_documents", True)
    results = []
    for i, score in ranked(query, texts)[:top]:
        item: dict[str, Any] = {"index": i, "relevance_score": score}
        if with_docs:
            item["document"] = {"text": texts[i]}
        results.append(item)
    tokens = _tokens(query, texts)
    out: dict[str, Any] = {"model": model, "usage": {"total_tokens": tokens}, "results": results}
    if vllm:
        out = {"id": f"rerank-{uuid.uuid4().hex[:16]}", **out}
        out["usage"]["prompt_tokens"] = tokens
    return out


def voyage_rerank_body(body: dict[str, Any]) -> dict[str, Any] | str:
    if "top_n" in body:
        return "Request body has an unexpected field 'top_n'; Voyage calls it 'top_k'"
    model, query, documents = body.get("model"), body.get("query"), body.get("documents")
    if not isinstance(model, str) or not model:
        return "Request body is missing 'model'"
    if not isinstance(query, str) or not query:
        return "Request body is missing 'query'"
    if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
        return "'documents' must be a non-empty list of strings"
    if len(documents) > 1000:
        return "The number of documents cannot exceed 1000"
    top = _top(body.get("top_k"))
    if isinstance(top, str):
        return f"top_k {top}"
    data = []
    for i, score in ranked(query, documents)[:top]:
        item: dict[str, Any] = {"index": i, "relevance_score": score}
        if body.get("return_documents"):
            item["document"] = documents[i]
        data.append(item)
    return {"object": "list", "data": data, "model": model, "usage": {"total_tokens": _tokens(query, documents)}}


def bedrock_rerank_body(body: dict[str, Any]) -> dict[str, Any] | str:
    queries = body.get("queries")
    if not isinstance(queries, list) or len(queries) != 1:
        return "1 validation error detected: Value at 'queries' failed to satisfy constraint: Member must have length 1"
    q = queries[0]
    text_query = q.get("textQuery") if isinstance(q, dict) else None
    if not isinstance(q, dict) or q.get("type") != "TEXT" or not isinstance(text_query, dict):
        return "queries[0]: type must be TEXT with a textQuery"
    query = text_query.get("text")
    if not isinstance(query, str) or not query:
        return "queries[0].textQuery.text: a non-empty string is required"
    sources = body.get("sources")
    if not isinstance(sources, list) or not 1 <= len(sources) <= 1000:
        return "Value at 'sources' failed to satisfy constraint: Member must have length between 1 and 1000"
    texts = []
    for i, s in enumerate(sources):
        inline = s.get("inlineDocumentSource") if isinstance(s, dict) else None
        if not isinstance(s, dict) or s.get("type") != "INLINE" or not isinstance(inline, dict):
            return f"sources[{i}]: type must be INLINE with an inlineDocumentSource"
        doc = inline.get("textDocument") if inline.get("type") == "TEXT" else None
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            return f"sources[{i}].inlineDocumentSource: type TEXT with textDocument.text is required"
        texts.append(doc["text"])
    config = body.get("rerankingConfiguration")
    brc = config.get("bedrockRerankingConfiguration") if isinstance(config, dict) else None
    if not isinstance(config, dict) or config.get("type") != "BEDROCK_RERANKING_MODEL" or not isinstance(brc, dict):
        return "rerankingConfiguration: type BEDROCK_RERANKING_MODEL with bedrockRerankingConfiguration is required"
    arn = (brc.get("modelConfiguration") or {}).get("modelArn")
    if not isinstance(arn, str) or not re.fullmatch(r"arn:aws:bedrock:[a-z0-9-]+:\d*:foundation-model/\S+", arn):
        return f"modelArn: {arn!r} is not a valid foundation-model ARN"
    n = brc.get("numberOfResults")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000):
        return "numberOfResults: Member must have value between 1 and 1000"
    return {"results": [{"index": i, "relevanceScore": s} for i, s in ranked(query, texts)[:n]]}


def vertex_rank_body(body: dict[str, Any]) -> dict[str, Any] | str:
    query, records = body.get("query"), body.get("records")
    if not isinstance(query, str) or not query:
        return "query: must be a non-empty string"
    if not isinstance(records, list) or not records:
        return "records: must be a non-empty array"
    if len(records) > 200:
        return f"records: at most 200 records can be ranked, got {len(records)}"
    texts = []
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not isinstance(r.get("id"), str):
            return f"records[{i}].id: a string is required"
        title, content = r.get("title", ""), r.get("content", "")
        if not title and not content:
            return f"records[{i}]: at least one of title or content must be set"
        texts.append(f"{title}\n{content}" if title else content)
    top = _top(body.get("topN"))
    if isinstance(top, str):
        return f"topN {top}"
    out = []
    for i, score in ranked(query, texts)[:top]:
        rec: dict[str, Any] = {"id": records[i]["id"]}
        if score:
            rec["score"] = score  # proto3 JSON leaves zero out
        if not body.get("ignoreRecordDetailsInResponse"):
            rec.update({k: records[i][k] for k in ("title", "content") if k in records[i]})
        out.append(rec)
    return {"records": out}


def register(app: QuartTrio, state: MockState) -> None:
    """Add the rerank routes to a mock app."""

    async def cohere(version: int) -> Response:
        seen, fault = await prelude(state)
        if not bearer_ok(state):
            return cohere_error(401, "invalid api token")
        failed = fault_response(fault, cohere_error, b'{"results": [')
        if failed is not None:
            return failed
        if not isinstance(seen.body, dict):
            return cohere_error(400, "invalid request: body must be a JSON object")
        out = cohere_rerank_body(seen.body, version)
        if isinstance(out, str):
            return cohere_error(400, out)
        finish(seen, {"search_units": out["meta"]["billed_units"]["search_units"]})
        return json_response(out)

    @app.post("/v2/rerank")
    async def rerank_cohere_v2() -> Response:
        return await cohere(2)

    @app.post("/v1/rerank")
    async def rerank_cohere_v1() -> Response:
        return await cohere(1)

    def detail_error(
        status: int, message: str, etype: str | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        return json_response({"detail": message}, status, headers)

    def vllm_error(
        status: int, message: str, etype: str | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        err = {"message": message, "type": etype or "BadRequestError", "param": None, "code": status}
        return json_response({"error": err}, status, headers)

    @app.post("/jina/v1/rerank")
    async def rerank_jina() -> Response:
        seen, fault = await prelude(state)
        if not bearer_ok(state):
            return detail_error(401, "Invalid API key")
        failed = fault_response(fault, detail_error, b'{"results": [')
        if failed is not None:
            return failed
        out = jina_rerank_body(seen.body) if isinstance(seen.body, dict) else "body must be a JSON object"
        if isinstance(out, str):
            return detail_error(422, out)
        finish(seen, {"total_tokens": out["usage"]["total_tokens"]})
        return json_response(out)

    @app.post("/voyage/v1/rerank")
    async def rerank_voyage() -> Response:
        seen, fault = await prelude(state)
        if not bearer_ok(state):
            return detail_error(401, "Provided API key is invalid.")
        failed = fault_response(fault, detail_error, b'{"data": [')
        if failed is not None:
            return failed
        out = voyage_rerank_body(seen.body) if isinstance(seen.body, dict) else "body must be a JSON object"
        if isinstance(out, str):
            return detail_error(400, out)
        finish(seen, {"total_tokens": out["usage"]["total_tokens"]})
        return json_response(out)

    @app.post("/vllm/rerank")
    @app.post("/vllm/v1/rerank")
    @app.post("/vllm/v2/rerank")
    async def rerank_vllm() -> Response:
        seen, fault = await prelude(state)
        if not bearer_ok(state):
            return vllm_error(401, "Unauthorized", "Unauthorized")
        failed = fault_response(fault, vllm_error, b'{"results": [')
        if failed is not None:
            return failed
        out = jina_rerank_body(seen.body, vllm=True) if isinstance(seen.body, dict) else "body must be a JSON object"
        if isinstance(out, str):
            return vllm_error(400, out)
        finish(seen, {"total_tokens": out["usage"]["total_tokens"]})
        return json_response(out)

    @app.post("/rerank")
    async def rerank_bedrock() -> Response:
        seen, fault = await prelude(state)
        denied = await bedrock_auth_error(state)
        if denied is not None:
            return denied
        failed = fault_response(fault, bedrock_error, b'{"results": [')
        if failed is not None:
            return failed
        out = bedrock_rerank_body(seen.body) if isinstance(seen.body, dict) else "body must be a JSON object"
        if isinstance(out, str):
            return bedrock_error(400, out)
        finish(seen, {"documents": len(seen.body["sources"])})
        return json_response(out, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    @app.post("/v1/projects/<project>/locations/<location>/rankingConfigs/<config>:rank")
    async def rerank_vertex(project: str, location: str, config: str) -> Response:
        seen, fault = await prelude(state)
        if not bearer_ok(state):
            return google_error(401, "Request had invalid authentication credentials.")
        failed = fault_response(fault, google_error, b'{"records": [')
        if failed is not None:
            return failed
        out = vertex_rank_body(seen.body) if isinstance(seen.body, dict) else "Invalid JSON payload received."
        if isinstance(out, str):
            return google_error(400, out)
        finish(seen, {"documents": len(seen.body["records"])})
        return json_response(out)


__all__ = [
    "bedrock_rerank_body",
    "cohere_rerank_body",
    "jina_rerank_body",
    "ranked",
    "register",
    "relevance",
    "vertex_rank_body",
    "voyage_rerank_body",
]
