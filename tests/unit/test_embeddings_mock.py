"""The fake upstream's embedding routes, served for real (Hypercorn on a loopback port inside the test's trio
loop) and driven with httpx through the gateway's own encoders and decoders."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import orjson
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio

from trigate.formats import embeddings as E
from trigate.mock import embeddings as mock_embeddings
from trigate.mock import rerank as mock_rerank
from trigate.mock.embeddings import DEFAULT_DIMENSIONS, mock_vector
from trigate.mock.run import serve_mock
from trigate.mock.state import Fault, MockState

KEY = "sk-mock-test"


@asynccontextmanager
async def serve_app(app: QuartTrio) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:<free port> for the duration of the block; yields its base URL."""
    hc = HyperConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.errorlog = None
    hc.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        done = trio.Event()
        binds = await nursery.start(partial(serve, app, hc, shutdown_trigger=done.wait))  # type: ignore[arg-type]
        try:
            yield binds[0]
        finally:
            done.set()


def mock_app(state: MockState) -> QuartTrio:
    app = QuartTrio("test-embeddings-mock")
    mock_embeddings.register(app, state)
    mock_rerank.register(app, state)
    return app


@asynccontextmanager
async def mock_client(state: MockState | None = None) -> AsyncIterator[tuple[httpx.AsyncClient, MockState]]:
    state = state or MockState(api_key=KEY)
    async with serve_app(mock_app(state)) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client, state


BEARER = {"authorization": f"Bearer {KEY}"}
TEXTS = ["the quick brown fox", "jumps over", "the lazy dog"]


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------------
# Deterministic vectors
# --------------------------------------------------------------------------------------------


def test_mock_vectors_are_deterministic_unit_float32() -> None:
    v = mock_vector("hello", 12)
    assert v == mock_vector("hello", 12)
    assert v != mock_vector("hello!", 12)
    assert len(v) == 12 and len(mock_vector("x")) == DEFAULT_DIMENSIONS
    assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-6)
    assert E.base64_to_floats(E.floats_to_base64(v)) == v  # float32-exact


# --------------------------------------------------------------------------------------------
# Every provider, through the gateway's codecs
# --------------------------------------------------------------------------------------------


async def _embed_via(client: httpx.AsyncClient, provider: str, req: E.EmbedRequest) -> E.EmbedResponse:
    """One provider round trip, batched as the shell would."""
    model = {
        "openai": "text-embedding-3-small",
        "azure": "my-deployment",
        "gemini": "gemini-embedding-001",
        "vertex": "text-embedding-005",
        "cohere": "embed-v4.0",
        "bedrock-titan": "amazon.titan-embed-text-v2:0",
        "bedrock-cohere": "cohere.embed-v4:0",
    }[provider]
    kind = provider.split("-")[0]
    parts = []
    for piece in E.split_request(req, E.batch_limit(kind, model)):
        if provider == "openai":
            r = await client.post("/v1/embeddings", json=E.encode_openai_request(piece, model), headers=BEARER)
            parts.append(E.decode_openai_response(r.json(), piece))
        elif provider == "azure":
            r = await client.post(
                f"/openai/deployments/{model}/embeddings?api-version=2024-10-21",
                json=E.encode_openai_request(piece, model),
                headers={"api-key": KEY},
            )
            parts.append(E.decode_openai_response(r.json(), piece))
        elif provider == "gemini":
            r = await client.post(
                f"/v1beta/models/{model}:batchEmbedContents",
                json=E.encode_gemini_request(piece, model),
                headers={"x-goog-api-key": KEY},
            )
            parts.append(E.decode_gemini_response(r.json(), piece))
        elif provider == "vertex":
            r = await client.post(
                f"/v1/projects/p/locations/us-central1/publishers/google/models/{model}:predict",
                json=E.encode_vertex_request(piece, model),
                headers=BEARER,
            )
            parts.append(E.decode_vertex_response(r.json(), piece))
        elif provider == "cohere":
            r = await client.post("/v2/embed", json=E.encode_cohere_request(piece, model), headers=BEARER)
            parts.append(E.decode_cohere_response(r.json(), piece))
        else:
            r = await client.post(f"/model/{model}/invoke", json=E.encode_bedrock_request(piece, model), headers=BEARER)
            count = r.headers.get("x-amzn-bedrock-input-token-count")
            parts.append(E.decode_bedrock_response(r.json(), piece, model, count))
        assert r.status_code == 200, r.text
    return E.merge_responses(parts)


PROVIDERS = ["openai", "azure", "gemini", "vertex", "cohere", "bedrock-titan", "bedrock-cohere"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_provider_returns_the_same_vectors(provider: str) -> None:
    async with mock_client() as (client, state):
        req = E.decode_openai_request({"model": "m", "input": TEXTS, "dimensions": 256})
        resp = await _embed_via(client, provider, req)
    assert len(resp.vectors) == len(TEXTS)
    for text, vec in zip(TEXTS, resp.vectors, strict=True):
        assert _close(vec, mock_vector(text, 256))
    words = sum(len(t.split()) for t in TEXTS)
    if provider == "gemini":
        assert resp.estimated and resp.prompt_tokens == E.estimate_tokens(TEXTS)
    else:
        assert not resp.estimated and resp.prompt_tokens == words
    calls = 3 if provider == "bedrock-titan" else 1
    assert len(state.requests) == calls
    assert sum(r.usage["prompt_tokens"] for r in state.requests if r.usage) == words


async def test_openai_base64_and_token_arrays() -> None:
    async with mock_client() as (client, _):
        body = {"model": "text-embedding-3-small", "input": [[1, 2, 3], [7]], "encoding_format": "base64"}
        r = await client.post("/v1/embeddings", json=body, headers=BEARER)
        assert r.status_code == 200
        data = r.json()
        assert data["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
        assert E.base64_to_floats(data["data"][0]["embedding"]) == mock_vector("tokens:1,2,3")
        req = E.decode_openai_request(body)
        resp = E.decode_openai_response(data, req)
        assert resp.vectors[1] == mock_vector("tokens:7")


async def test_large_request_is_split_for_gemini_and_merged_in_order() -> None:
    texts = [f"text number {i}" for i in range(250)]
    async with mock_client() as (client, state):
        req = E.decode_openai_request({"model": "m", "input": texts})
        resp = await _embed_via(client, "gemini", req)
    assert [len(r.body["requests"]) for r in state.requests] == [100, 100, 50]
    assert resp.vectors == [mock_vector(t) for t in texts]


async def test_cohere_batches_of_96() -> None:
    texts = [f"t{i}" for i in range(200)]
    async with mock_client() as (client, state):
        resp = await _embed_via(client, "cohere", E.decode_openai_request({"model": "m", "input": texts}))
    assert [len(r.body["texts"]) for r in state.requests] == [96, 96, 8]
    assert resp.vectors == [mock_vector(t) for t in texts]
    assert resp.prompt_tokens == 200


# --------------------------------------------------------------------------------------------
# What the mock rejects, as the real APIs do
# --------------------------------------------------------------------------------------------


async def test_mock_rejects_what_the_real_apis_reject() -> None:
    async with mock_client() as (client, _):
        gem = {"x-goog-api-key": KEY}
        too_many = {"requests": [{"model": "models/g", "content": {"parts": [{"text": "x"}]}}] * 101}
        r = await client.post("/v1beta/models/g:batchEmbedContents", json=too_many, headers=gem)
        assert r.status_code == 400 and "at most 100 requests" in r.json()["error"]["message"]
        assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
        wrong_model = {"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]}
        r = await client.post("/v1beta/models/g:batchEmbedContents", json=wrong_model, headers=gem)
        assert r.status_code == 400

        r = await client.post("/v2/embed", json={"model": "embed-english-v3.0", "texts": ["a"]}, headers=BEARER)
        assert r.status_code == 400 and "input_type" in r.json()["message"]
        r = await client.post(
            "/v2/embed",
            json={"model": "embed-v4.0", "texts": ["a"] * 97, "input_type": "search_document"},
            headers=BEARER,
        )
        assert r.status_code == 400 and "96" in r.json()["message"]

        r = await client.post(
            "/model/amazon.titan-embed-text-v2:0/invoke", json={"inputText": "a", "dimensions": 100}, headers=BEARER
        )
        assert r.status_code == 400 and r.headers["x-amzn-errortype"].startswith("ValidationException")
        r = await client.post("/model/amazon.titan-embed-text-v2:0/invoke", json={"texts": ["a"]}, headers=BEARER)
        assert r.status_code == 400
        r = await client.post("/model/cohere.embed-english-v3/invoke", json={"texts": ["a"]}, headers=BEARER)
        assert r.status_code == 400 and "input_type" in r.json()["message"]

        instances = {"instances": [{"content": "a"}, {"content": "b"}]}
        path = "/v1/projects/p/locations/l/publishers/google/models/gemini-embedding-001:predict"
        r = await client.post(path, json=instances, headers=BEARER)
        assert r.status_code == 400 and "1 instance" in r.json()["error"]["message"]

        r = await client.post("/v1/embeddings", json={"model": "m", "input": ""}, headers=BEARER)
        assert r.status_code == 400 and "'$.input' is invalid" in r.json()["error"]["message"]
        ada = {"model": "text-embedding-ada-002", "input": "a", "dimensions": 8}
        r = await client.post("/v1/embeddings", json=ada, headers=BEARER)
        assert r.status_code == 400
        r = await client.post("/openai/deployments/d/embeddings", json={"input": "a"}, headers=BEARER)
        assert r.status_code == 404  # no api-version


async def test_auth_per_provider() -> None:
    async with mock_client() as (client, _):
        bad = {"authorization": "Bearer nope"}
        assert (await client.post("/v1/embeddings", json={"model": "m", "input": "a"}, headers=bad)).status_code == 401
        assert (await client.post("/v1/embeddings", json={"model": "m", "input": "a"})).status_code == 401
        ok = await client.post("/openai/v1/embeddings", json={"model": "m", "input": "a"}, headers={"api-key": KEY})
        assert ok.status_code == 200
        gem = {"requests": [{"content": {"parts": [{"text": "a"}]}}]}
        r = await client.post("/v1beta/models/g:batchEmbedContents", json=gem, headers=BEARER)
        assert r.status_code == 400 and r.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        r = await client.post(f"/v1beta/models/g:batchEmbedContents?key={KEY}", json=gem)
        assert r.status_code == 200
        r = await client.post("/v2/embed", json={"model": "embed-v4.0", "texts": ["a"], "input_type": "clustering"})
        assert r.status_code == 401 and "message" in r.json()
        r = await client.post("/model/amazon.titan-embed-text-v2:0/invoke", json={"inputText": "a"}, headers=bad)
        assert r.status_code == 403 and r.headers["x-amzn-errortype"].startswith("UnrecognizedClientException")


async def test_no_key_configured_means_no_auth() -> None:
    async with mock_client(MockState()) as (client, _):
        r = await client.post("/v1/embeddings", json={"model": "m", "input": "a"})
        assert r.status_code == 200


async def test_faults_are_provider_shaped_and_parsed() -> None:
    from trigate.formats import bedrock, gemini, openai_chat

    async with mock_client() as (client, state):
        state.add_fault(Fault(status=429, message="slow down", headers={"retry-after": "2"}, path="/v1/embeddings"))
        r = await client.post("/v1/embeddings", json={"model": "m", "input": "a"}, headers=BEARER)
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        assert openai_chat.parse_error(r.status_code, r.content).kind == "rate_limit"

        state.add_fault(Fault(status=503, message="busy", model="gemini-embedding-001"))
        gem = {"requests": [{"content": {"parts": [{"text": "a"}]}}]}
        r = await client.post(
            "/v1beta/models/gemini-embedding-001:batchEmbedContents", json=gem, headers={"x-goog-api-key": KEY}
        )
        assert r.status_code == 503 and gemini.parse_error(r.status_code, r.content).kind == "overloaded"

        state.add_fault(Fault(status=500, message="boom", path="/v2/embed"))
        r = await client.post(
            "/v2/embed", json={"model": "embed-v4.0", "texts": ["a"], "input_type": "clustering"}, headers=BEARER
        )
        err = E.parse_cohere_error(r.status_code, r.content)
        assert (err.kind, err.message, err.status) == ("server_error", "boom", 500)

        state.add_fault(Fault(status=429, message="throttled", model="amazon.titan-embed-text-v2:0"))
        r = await client.post("/model/amazon.titan-embed-text-v2:0/invoke", json={"inputText": "a"}, headers=BEARER)
        assert bedrock.parse_error(r.status_code, r.content).kind == "rate_limit"

        state.add_fault(Fault(malformed=True, path="/v2/embed"))
        r = await client.post(
            "/v2/embed", json={"model": "embed-v4.0", "texts": ["a"], "input_type": "clustering"}, headers=BEARER
        )
        assert r.status_code == 200
        with pytest.raises(ValueError):
            r.json()


async def test_latency_fault_delays() -> None:
    async with mock_client() as (client, state):
        state.add_fault(Fault(latency_ms=200, path="/v2/embed"))
        start = trio.current_time()
        r = await client.post(
            "/v2/embed", json={"model": "embed-v4.0", "texts": ["a"], "input_type": "clustering"}, headers=BEARER
        )
        assert r.status_code == 200 and trio.current_time() - start >= 0.2


async def test_routes_are_wired_into_the_default_mock_app() -> None:
    state = MockState(api_key=KEY)
    async with trio.open_nursery() as nursery:
        done = trio.Event()
        url = await nursery.start(partial(serve_mock, state, shutdown_trigger=done.wait))
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                body: dict[str, Any] = {"model": "m", "input": "a"}
                assert (await client.post("/v1/embeddings", json=body, headers=BEARER)).status_code == 200
                body = {"model": "rerank-v3.5", "query": "a", "documents": ["a", "b"]}
                assert (await client.post("/v2/rerank", json=body, headers=BEARER)).status_code == 200
        finally:
            done.set()


async def test_bedrock_routes_verify_sigv4_when_the_state_has_aws_credentials() -> None:
    from trigate.formats import rerank as R
    from trigate.upstream.sigv4 import sign_request

    state = MockState(api_key=KEY, aws_credentials=("AKIDMOCK", "mock-secret"))
    async with mock_client(state) as (client, _):

        async def signed(path: str, body: dict[str, Any], secret: str = "mock-secret") -> httpx.Response:
            raw = orjson.dumps(body)
            url = f"{client.base_url}{path}"
            headers = {"content-type": "application/json", "host": httpx.URL(url).netloc.decode()}
            headers.update(
                sign_request("POST", url, headers, raw, access_key="AKIDMOCK", secret_key=secret, region="us-west-2")
            )
            return await client.post(httpx.URL(url), content=raw, headers=headers)

        # Model ids percent-encoded, as AWS SDKs send (and sign) them.
        titan = "/model/amazon.titan-embed-text-v2%3A0/invoke"
        assert (await signed(titan, {"inputText": "a"})).status_code == 200
        r = await signed(titan, {"inputText": "a"}, secret="wrong")
        assert r.status_code == 403 and "Signature" in r.headers["x-amzn-errortype"]
        rerank = R.encode_bedrock_request(R.RerankRequest("m", "q", ["q"]), "amazon.rerank-v1:0", "us-west-2")
        assert (await signed("/rerank", rerank)).status_code == 200
        # A Bedrock API key still works, and no credentials at all does not.
        assert (await client.post(titan, json={"inputText": "a"}, headers=BEARER)).status_code == 200
        assert (await client.post(titan, json={"inputText": "a"})).status_code == 403
