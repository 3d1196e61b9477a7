"""The fake upstream's rerank routes, driven through the gateway's rerank codecs over real HTTP, plus the
batching properties."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_embeddings_mock import BEARER, KEY, mock_client
from trigate.formats import bedrock, gemini
from trigate.formats import rerank as R
from trigate.mock.rerank import ranked, relevance
from trigate.mock.state import Fault, MockState

QUERY = "red fox jumps"
DOCS = ["a blue whale", "the red fox", "fox jumps over red fence", "red wine", "nothing at all"]
# Overlap with {red, fox, jumps}: 0, 2, 3, 1, 0 -> order 2, 1, 3, then 0 and 4 by index.
ORDER = [2, 1, 3, 0, 4]


def test_mock_relevance_is_word_overlap() -> None:
    assert relevance("Red fox", "the RED fox!") == 1.0
    assert relevance("red fox", "a fox") == 0.5
    assert relevance("", "x") == 0.0
    assert [i for i, _ in ranked(QUERY, DOCS)] == ORDER


async def _rerank_via(client: httpx.AsyncClient, provider: str, req: R.RerankRequest) -> R.RerankResponse:
    limit = R.rerank_limit(provider)
    pieces = R.split_request(req, limit) if limit else [req]
    parts = []
    for piece in pieces:
        if provider == "cohere":
            r = await client.post("/v2/rerank", json=R.encode_cohere_request(piece, "rerank-v3.5"), headers=BEARER)
            parts.append(R.decode_cohere_response(r.json(), piece))
        elif provider == "cohere-v1":
            body = R.encode_cohere_request(piece, "rerank-english-v3.0", 1)
            r = await client.post("/v1/rerank", json=body, headers=BEARER)
            parts.append(R.decode_cohere_response(r.json(), piece))
        elif provider == "jina":
            r = await client.post("/jina/v1/rerank", json=R.encode_jina_request(piece, "jina-r"), headers=BEARER)
            parts.append(R.decode_jina_response(r.json(), piece))
        elif provider == "voyage":
            body = R.encode_voyage_request(piece, "rerank-2.5")
            r = await client.post("/voyage/v1/rerank", json=body, headers=BEARER)
            parts.append(R.decode_voyage_response(r.json(), piece))
        elif provider in ("vllm", "vllm-v2"):
            path = "/vllm/v2/rerank" if provider == "vllm-v2" else "/vllm/v1/rerank"
            r = await client.post(path, json=R.encode_vllm_request(piece, "bge"), headers=BEARER)
            decode = R.decode_cohere_response if provider == "vllm-v2" else R.decode_vllm_response
            parts.append(decode(r.json(), piece))
        elif provider == "bedrock":
            body = R.encode_bedrock_request(piece, "amazon.rerank-v1:0", "us-west-2")
            r = await client.post("/rerank", json=body, headers=BEARER)
            parts.append(R.decode_bedrock_response(r.json(), piece))
        else:
            body = R.encode_vertex_request(piece, "semantic-ranker-default@latest")
            path = "/v1/projects/p/locations/global/rankingConfigs/default_ranking_config:rank"
            r = await client.post(path, json=body, headers=BEARER)
            parts.append(R.decode_vertex_response(r.json(), piece))
        assert r.status_code == 200, r.text
    return R.merge_responses(parts, pieces)


PROVIDERS = ["cohere", "cohere-v1", "jina", "voyage", "vllm", "vllm-v2", "bedrock", "vertex"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_provider_ranks_the_same(provider: str) -> None:
    async with mock_client() as (client, state):
        for version in (1, 2):
            req = R.decode_cohere_request(
                {"model": "m", "query": QUERY, "documents": DOCS, "top_n": 3, "return_documents": True}, version
            )
            resp = await _rerank_via(client, provider, req)
            out = R.encode_cohere_response(resp, req, version)
            assert [r["index"] for r in out["results"]] == ORDER[:3]
            assert out["results"][0]["relevance_score"] == 1.0
            assert [r["document"]["text"] for r in out["results"]] == [DOCS[i] for i in ORDER[:3]]
            assert out["meta"]["billed_units"]["search_units"] == 1
            if provider in ("jina", "voyage", "vllm"):
                assert resp.total_tokens == 3 * len(DOCS) + sum(len(d.split()) for d in DOCS)
    assert all(r.usage for r in state.requests)


async def test_vertex_over_200_documents_is_split_and_merged() -> None:
    docs = [f"document {i}" for i in range(450)]
    docs[321] = "the best answer here"
    async with mock_client() as (client, state):
        req = R.decode_cohere_request({"model": "m", "query": "best answer", "documents": docs, "top_n": 2})
        resp = await _rerank_via(client, "vertex", req)
    assert [len(r.body["records"]) for r in state.requests] == [200, 200, 50]
    assert all("topN" not in r.body for r in state.requests)  # every score is asked for, top_n applied after
    assert len(resp.results) == 450
    assert [r.index for r in R.top_results(resp.results, req.top_n)] == [321, 0]


async def test_mock_rejects_wrong_spellings() -> None:
    async with mock_client() as (client, _):
        base = {"model": "m", "query": "q", "documents": ["a", "b"]}
        r = await client.post("/voyage/v1/rerank", json={**base, "top_n": 1}, headers=BEARER)
        assert r.status_code == 400 and "top_k" in r.json()["detail"]
        r = await client.post("/v2/rerank", json={**base, "documents": [{"text": "a"}]}, headers=BEARER)
        assert r.status_code == 400 and "message" in r.json()
        r = await client.post("/v2/rerank", json={**base, "rank_fields": ["text"]}, headers=BEARER)
        assert r.status_code == 400
        r = await client.post(
            "/v1/rerank", json={**base, "documents": [{"text": "a"}], "return_documents": True}, headers=BEARER
        )
        assert r.status_code == 200 and r.json()["results"][0]["document"] == {"text": "a"}
        req = R.RerankRequest("m", "q", ["a"])
        body = R.encode_bedrock_request(req, "amazon.rerank-v1:0", "us-west-2")
        body["rerankingConfiguration"]["bedrockRerankingConfiguration"]["modelConfiguration"]["modelArn"] = "rr"
        r = await client.post("/rerank", json=body, headers=BEARER)
        assert r.status_code == 400 and r.headers["x-amzn-errortype"].startswith("ValidationException")
        assert bedrock.parse_error(r.status_code, r.content).kind == "invalid_request"
        many = R.encode_vertex_request(R.RerankRequest("m", "q", ["d"] * 201), "semantic-ranker-default@latest")
        r = await client.post("/v1/projects/p/locations/global/rankingConfigs/c:rank", json=many, headers=BEARER)
        assert r.status_code == 400 and gemini.parse_error(r.status_code, r.content).kind == "invalid_request"


async def test_rerank_auth_and_faults() -> None:
    async with mock_client() as (client, state):
        body = {"model": "m", "query": "q", "documents": ["a"]}
        for path in ("/v2/rerank", "/jina/v1/rerank", "/voyage/v1/rerank", "/vllm/rerank"):
            r = await client.post(path, json=body)
            assert r.status_code == 401, path
            assert R.parse_rerank_error(r.status_code, r.content).kind == "authentication"
        r = await client.post("/rerank", json={}, headers={"authorization": "Bearer wrong"})
        assert r.status_code == 403

        state.add_fault(Fault(status=429, message="too many", path="/v2/rerank", headers={"retry-after": "3"}))
        r = await client.post("/v2/rerank", json=body, headers=BEARER)
        assert r.status_code == 429 and r.headers["retry-after"] == "3"
        err = R.parse_rerank_error(r.status_code, r.content)
        assert (err.kind, err.message) == ("rate_limit", "too many")

        state.add_fault(Fault(status=500, message="vllm broke", path="/vllm/"))
        r = await client.post("/vllm/v1/rerank", json=body, headers=BEARER)
        assert R.parse_rerank_error(r.status_code, r.content).message == "vllm broke"

        state.add_fault(Fault(status=400, message="nope", path="/jina/"))
        r = await client.post("/jina/v1/rerank", json=body, headers=BEARER)
        assert R.parse_rerank_error(r.status_code, r.content).message == "nope"

        state.add_fault(Fault(malformed=True, path="/rerank"))
        r = await client.post("/rerank", json={}, headers=BEARER)
        assert r.status_code == 200 and r.content.startswith(b'{"results": [')


async def test_open_mock_needs_no_key() -> None:
    async with mock_client(MockState()) as (client, _):
        r = await client.post("/jina/v1/rerank", json={"model": "m", "query": "q", "documents": ["q"]})
        assert r.status_code == 200 and r.json()["results"][0]["document"] == {"text": "q"}
    assert KEY  # the shared key is only for the keyed mock


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

scores = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(st.lists(scores, min_size=1, max_size=60), st.integers(1, 25), st.none() | st.integers(1, 70))
def test_split_merge_equals_unsplit(doc_scores: list[float], limit: int, top_n: int | None) -> None:
    req = R.RerankRequest("m", "q", [f"d{i}" for i in range(len(doc_scores))], top_n=top_n)
    whole = R.RerankResponse([R.RankedDocument(i, s) for i, s in enumerate(doc_scores)], search_units=1)
    pieces = R.split_request(req, limit)
    assert [d for p in pieces for d in p.documents] == req.documents
    assert all(1 <= len(p.documents) <= limit for p in pieces)
    parts, offset = [], 0
    for p in pieces:
        # each piece's answer, indexed within the piece and in any order
        local = [R.RankedDocument(i, doc_scores[offset + i]) for i in range(len(p.documents))]
        parts.append(R.RerankResponse(list(reversed(local)), search_units=1))
        offset += len(p.documents)
    merged = R.merge_responses(parts, pieces)
    assert R.top_results(merged.results, top_n) == R.top_results(whole.results, top_n)
    assert merged.search_units == len(pieces)
    out = R.encode_cohere_response(merged, req)
    assert len(out["results"]) == min(top_n or len(doc_scores), len(doc_scores))
    got = [r["relevance_score"] for r in out["results"]]
    assert got == sorted(got, reverse=True)
