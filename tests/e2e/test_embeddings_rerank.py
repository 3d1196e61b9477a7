"""Embeddings (openai SDK, float and base64) and rerank (cohere SDK, v2 and v1) against every provider,
through the real gateway and the fake upstreams."""

from __future__ import annotations

import math

import cohere
import httpx
import openai
import pytest

from tests.harness import Servers
from trigate.mock.state import Fault

# provider -> (client-facing embedding model, path fragment of its upstream calls, dimensions to ask for)
EMBEDDERS = {
    "openai": ("openai/text-embedding-3-small", "/v1/embeddings", 8),
    "azure": ("azure/text-embedding-3-small", "/openai/v1/embeddings", 8),
    "azure-dated": ("azure-dated/embedder", "/openai/deployments/embedder/embeddings", 8),
    "gemini": ("gemini-embedding-001", ":batchEmbedContents", 8),
    "vertex": ("vertex/text-embedding-005", ":predict", 8),
    "cohere": ("cohere/embed-v4.0", "/v2/embed", 8),
    "bedrock-titan": ("bedrock/amazon.titan-embed-text-v2:0", "/invoke", 256),  # Titan v2: 256/512/1024
    "bedrock-cohere": ("bedrock-key/cohere.embed-english-v3", "/invoke", None),  # v3 has no dimensions option
}
TEXTS = ["the quick brown fox", "jumps over", "the lazy dog"]


def oai(s: Servers) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)


@pytest.mark.parametrize("provider", list(EMBEDDERS))
def test_embeddings_float_and_base64_with_the_openai_sdk(servers: Servers, mock, provider: str) -> None:
    model, fragment, dims = EMBEDDERS[provider]
    extra = {"dimensions": dims} if dims else {}
    # the SDK asks for base64 by default and decodes it itself
    r = oai(servers).embeddings.create(model=model, input=TEXTS, **extra)
    assert [d.index for d in r.data] == [0, 1, 2]
    size = len(r.data[0].embedding)
    assert all(len(d.embedding) == size for d in r.data) and (dims is None or size == dims)
    assert fragment in mock.requests[-1].path
    assert r.usage.prompt_tokens > 0
    floats = oai(servers).embeddings.create(model=model, input=TEXTS, encoding_format="float", **extra)
    for a, b in zip(r.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    # every provider of the fake upstream embeds a text the same way: proof the order survived
    reference = oai(servers).embeddings.create(model="openai/text-embedding-3-small", input=TEXTS, dimensions=size,
                                               encoding_format="float")
    for a, b in zip(floats.data, reference.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-5)
        assert math.isclose(sum(x * x for x in a.embedding), 1.0, rel_tol=1e-4)


def test_batches_are_split_and_reassembled_in_order(servers: Servers, mock) -> None:
    texts = [f"document number {i}" for i in range(230)]  # Gemini takes 100 per batch
    before = len(mock.requests)
    r = oai(servers).embeddings.create(model="gemini-embedding-001", input=texts, dimensions=4,
                                       encoding_format="float")
    batches = [q for q in mock.requests[before:] if ":batchEmbedContents" in q.path]
    # sent a few at a time, so they may arrive in any order
    assert sorted(len(q.body["requests"]) for q in batches) == [30, 100, 100]
    one = oai(servers).embeddings.create(model="gemini-embedding-001", input=texts[150], dimensions=4,
                                         encoding_format="float")
    assert r.data[150].embedding == pytest.approx(one.data[0].embedding)
    before = len(mock.requests)
    oai(servers).embeddings.create(model="bedrock/amazon.titan-embed-text-v2:0", input=texts[:5])
    assert len(mock.requests) - before == 5  # Titan embeds one text per call


def test_token_array_input_native_and_refused_where_impossible(servers: Servers) -> None:
    r = oai(servers).embeddings.create(model="openai/text-embedding-3-small", input=[[1, 2, 3], [4, 5]],
                                       encoding_format="float")
    assert len(r.data) == 2
    with pytest.raises(openai.BadRequestError) as info:
        oai(servers).embeddings.create(model="gemini-embedding-001", input=[[1, 2, 3]])
    assert "token" in info.value.message


def test_embedding_errors_in_openai_shape(servers: Servers, mock) -> None:
    r = httpx.post(servers.url + "/v1/embeddings", json={"model": "cohere/embed-v4.0", "input": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    mock.add_fault(Fault(status=429, message="too many", path="/v2/embed", times=2,
                         headers={"retry-after": "60"}))
    with pytest.raises(openai.RateLimitError):
        oai(servers).embeddings.create(model="cohere/embed-v4.0", input="x")
    with pytest.raises(openai.BadRequestError):
        oai(servers).embeddings.create(model="claude-sonnet-4-6", input="x")  # Anthropic has no embeddings


RERANKERS = {
    "cohere": ("cohere/rerank-v3.5", "/v2/rerank"),
    "jina": ("jina/jina-reranker-v2-base-multilingual", "/jina/v1/rerank"),
    "voyage": ("voyage/rerank-2", "/voyage/v1/rerank"),
    "vllm": ("vllm/BAAI/bge-reranker-v2-m3", "/vllm/v1/rerank"),
    "bedrock": ("bedrock/amazon.rerank-v1:0", "/rerank"),
    "vertex": ("vertex/semantic-ranker-default-004", "rankingConfigs/default_ranking_config:rank"),
}
DOCS = ["Paris is the capital of France", "Berlin has many museums", "The capital of France is Paris, a city",
        "Bananas are yellow"]


@pytest.mark.parametrize("provider", list(RERANKERS))
def test_rerank_with_the_cohere_sdk(servers: Servers, mock, provider: str) -> None:
    model, fragment = RERANKERS[provider]
    co = cohere.ClientV2(api_key="k", base_url=servers.url)
    r = co.rerank(model=model, query="capital of France", documents=DOCS, top_n=3)
    assert fragment in mock.requests[-1].path
    indexes = [x.index for x in r.results]
    assert len(indexes) == 3 and set(indexes[:2]) == {0, 2} and 3 not in indexes
    scores = [x.relevance_score for x in r.results]
    assert scores == sorted(scores, reverse=True)
    assert r.meta.billed_units.search_units >= 1


def test_rerank_v1_client_and_documents(servers: Servers) -> None:
    co = cohere.Client(api_key="k", base_url=servers.url)
    r = co.rerank(model="cohere/rerank-v3.5", query="capital of France", documents=DOCS, top_n=2,
                  return_documents=True)
    assert [x.document.text for x in r.results] == [DOCS[0], DOCS[2]] or \
        [x.document.text for x in r.results] == [DOCS[2], DOCS[0]]


def test_rerank_errors_in_cohere_shape(servers: Servers) -> None:
    co = cohere.ClientV2(api_key="k", base_url=servers.url)
    with pytest.raises(cohere.errors.BadRequestError):
        co.rerank(model="cohere/rerank-v3.5", query="q", documents=[], top_n=1)
    r = httpx.post(servers.url + "/v2/rerank", json={"model": "nope", "query": "q", "documents": ["a"]})
    assert r.status_code == 404 and "message" in r.json() and "nope" in r.json()["message"]
