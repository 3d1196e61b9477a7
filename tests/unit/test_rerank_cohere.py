"""The Cohere rerank client side: request validation, response encoding, Cohere-shaped errors, and the official
cohere SDK (v2 ClientV2 and v1 Client) talking to a handler built from these functions."""

from __future__ import annotations

from typing import Any

import cohere
import orjson
import pytest
import trio
from cohere.core.unchecked_base_model import construct_type
from cohere.v2.types import V2RerankResponse
from quart import Response, request
from quart_trio import QuartTrio

from tests.unit.test_embeddings_mock import serve_app
from trigate.errors import GatewayError
from trigate.formats import rerank as R
from trigate.mock.rerank import ranked

# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def test_v2_request() -> None:
    req = R.decode_cohere_request(
        {"model": "rerank-v3.5", "query": "q", "documents": ["a", {"text": "b"}], "top_n": 1, "max_tokens_per_doc": 99}
    )
    assert (req.model, req.query, req.documents, req.top_n, req.max_tokens_per_doc) == (
        "rerank-v3.5",
        "q",
        ["a", "b"],
        1,
        99,
    )
    assert req.return_documents is False and req.raw_documents is None and req.extras == {}


def test_v1_request_objects_and_rank_fields() -> None:
    docs = [{"title": "T", "text": "body", "url": "u"}, "plain"]
    req = R.decode_cohere_request(
        {"query": "q", "documents": docs, "rank_fields": ["title", "text"], "return_documents": True}, 1,
        default_model="rerank-english-v3.0",
    )  # fmt: skip
    assert req.model == "rerank-english-v3.0"
    assert req.documents == ["title: T\ntext: body", "plain"]
    assert req.raw_documents == docs and req.rank_fields == ["title", "text"] and req.return_documents


def test_voyage_style_top_k_is_top_n() -> None:
    assert R.decode_cohere_request({"model": "m", "query": "q", "documents": ["a"], "top_k": 3}).top_n == 3


@pytest.mark.parametrize(
    ("body", "version", "param"),
    [
        ({"query": "q", "documents": ["a"]}, 2, "model"),
        ({"query": "q", "documents": ["a"]}, 1, "model"),
        ({"model": 1, "query": "q", "documents": ["a"]}, 2, "model"),
        ({"model": "m", "documents": ["a"]}, 2, "query"),
        ({"model": "m", "query": "", "documents": ["a"]}, 2, "query"),
        ({"model": "m", "query": ["q"], "documents": ["a"]}, 2, "query"),
        ({"model": "m", "query": "q"}, 2, "documents"),
        ({"model": "m", "query": "q", "documents": []}, 2, "documents"),
        ({"model": "m", "query": "q", "documents": "a"}, 2, "documents"),
        ({"model": "m", "query": "q", "documents": ["a", 3]}, 2, "documents[1]"),
        ({"model": "m", "query": "q", "documents": [{"title": "x"}]}, 2, "documents[0].text"),
        ({"model": "m", "query": "q", "documents": [{"text": 5}]}, 1, "documents[0].text"),
        ({"model": "m", "query": "q", "documents": [{"a": "x"}], "rank_fields": ["b"]}, 1, "documents[0]"),
        ({"model": "m", "query": "q", "documents": [{"a": 1}], "rank_fields": ["a"]}, 1, "documents[0].a"),
        ({"model": "m", "query": "q", "documents": ["a"], "rank_fields": ["a"]}, 2, "rank_fields"),
        ({"model": "m", "query": "q", "documents": ["a"], "rank_fields": "a"}, 1, "rank_fields"),
        ({"model": "m", "query": "q", "documents": ["a"], "top_n": 0}, 2, "top_n"),
        ({"model": "m", "query": "q", "documents": ["a"], "top_n": "2"}, 2, "top_n"),
        ({"model": "m", "query": "q", "documents": ["a"], "top_k": -1}, 2, "top_k"),
        ({"model": "m", "query": "q", "documents": ["a"], "max_tokens_per_doc": 1.5}, 2, "max_tokens_per_doc"),
        ({"model": "m", "query": "q", "documents": ["a"], "return_documents": "yes"}, 1, "return_documents"),
        ({"model": "m", "query": "q", "documents": ["a"], "max_chunks_per_doc": 0}, 1, "max_chunks_per_doc"),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], version: R.ApiVersion, param: str) -> None:
    with pytest.raises(GatewayError) as exc:
        R.decode_cohere_request(body, version)
    assert (exc.value.status, exc.value.param) == (400, param)
    assert exc.value.message.startswith(f"{param}: ")


def test_non_object_body() -> None:
    with pytest.raises(GatewayError):
        R.decode_cohere_request("query")


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _req(**kw: Any) -> R.RerankRequest:
    return R.RerankRequest(model="m", query="q", documents=["d0", "d1", "d2", "d3"], **kw)


def test_response_sorted_ties_by_index_and_cut() -> None:
    resp = R.RerankResponse([R.RankedDocument(0, 0.5), R.RankedDocument(3, 0.9), R.RankedDocument(1, 0.5)])
    out = R.encode_cohere_response(resp, _req(top_n=2))
    assert out["results"] == [{"index": 3, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.5}]
    assert out["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    assert "usage" not in out and out["id"]


def test_response_with_documents_and_units() -> None:
    resp = R.RerankResponse([R.RankedDocument(1, 0.3)], search_units=4, id="x", total_tokens=12)
    out = R.encode_cohere_response(resp, _req(return_documents=True), 1)
    assert out == {
        "id": "x",
        "results": [{"index": 1, "relevance_score": 0.3, "document": {"text": "d1"}}],
        "meta": {"api_version": {"version": "1"}, "billed_units": {"search_units": 4}},
        "usage": {"total_tokens": 12},
    }


def test_search_units_estimate() -> None:
    assert R.estimate_search_units(R.RerankRequest("m", "q", ["d"] * 100)) == 1
    assert R.estimate_search_units(R.RerankRequest("m", "q", ["d"] * 101)) == 2


def test_sdk_models_accept_our_responses() -> None:
    resp = R.RerankResponse([R.RankedDocument(2, 0.8), R.RankedDocument(0, 0.1)], search_units=1)
    v2 = construct_type(type_=V2RerankResponse, object_=R.encode_cohere_response(resp, _req()))
    assert [(r.index, r.relevance_score) for r in v2.results] == [(2, 0.8), (0, 0.1)]
    assert v2.meta.billed_units.search_units == 1 and v2.meta.api_version.version == "2"
    v1 = cohere.RerankResponse.model_validate(R.encode_cohere_response(resp, _req(return_documents=True), 1))
    assert v1.results[0].document.text == "d2"


def test_upstream_cohere_request_drops_the_other_versions_fields() -> None:
    req = R.decode_cohere_request(
        {
            "model": "m",
            "query": "q",
            "documents": ["a"],
            "max_chunks_per_doc": 3,
            "priority": 2,
            "return_documents": True,
        }
    )
    assert R.encode_cohere_request(req, "up", 2) == {"priority": 2, "model": "up", "query": "q", "documents": ["a"]}
    assert R.encode_cohere_request(req, "up", 1) == {
        "max_chunks_per_doc": 3, "model": "up", "query": "q", "documents": ["a"], "return_documents": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("decode", "body"),
    [
        (R.decode_cohere_response, {"results": [{"index": 5, "relevance_score": 0.1}]}),
        (R.decode_cohere_response, {"results": [{"index": 0, "relevance_score": "high"}]}),
        (R.decode_cohere_response, {"message": "no"}),
        (R.decode_jina_response, []),
        (R.decode_voyage_response, {"results": []}),
        (R.decode_bedrock_response, {"results": [{"index": 0, "relevance_score": 0.2}]}),
        (R.decode_vertex_response, {"records": [{"id": "zero", "score": 0.1}]}),
        (R.decode_vertex_response, {"records": [{"id": "9", "score": 0.1}]}),
    ],
)
def test_unusable_upstream_bodies(decode: Any, body: Any) -> None:
    with pytest.raises(GatewayError) as exc:
        decode(body, _req())
    assert exc.value.kind == "upstream_unavailable"


def test_vertex_with_no_records_means_no_results() -> None:
    assert R.decode_vertex_response({}, _req()).results == []


def test_bedrock_arn() -> None:
    assert R.bedrock_model_arn("cohere.rerank-v3-5:0", "eu-central-1") == (
        "arn:aws:bedrock:eu-central-1::foundation-model/cohere.rerank-v3-5:0"
    )
    arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.rerank-v1:0"
    assert R.bedrock_model_arn(arn, "ignored") == arn
    # Without top_n the gateway asks for every score.
    body = R.encode_bedrock_request(_req(), "amazon.rerank-v1:0", "us-east-1")
    assert body["rerankingConfiguration"]["bedrockRerankingConfiguration"]["numberOfResults"] == 4


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "mapped", "message"),
    [
        (400, b'{"id": "x", "message": "invalid request: bad"}', "invalid_request", 400, "invalid request: bad"),
        (401, b'{"message": "invalid api token"}', "authentication", 401, "invalid api token"),
        (422, b'{"message": "unprocessable"}', "invalid_request", 422, "unprocessable"),
        (429, b'{"message": "rate"}', "rate_limit", 429, "rate"),
        (498, b'{"message": "invalid token"}', "authentication", 401, "invalid token"),
        (499, b'{"message": "client closed"}', "upstream_unavailable", 502, "client closed"),
        (503, b'{"message": "busy"}', "overloaded", 503, "busy"),
        (422, b'{"detail": [{"loc": ["body", "query"], "msg": "Field required"}]}', "invalid_request", 422,
         "Field required"),
        (400, b'{"detail": "Voyage says no"}', "invalid_request", 400, "Voyage says no"),
        (400, b'{"error": {"message": "vLLM says no", "code": 400}}', "invalid_request", 400, "vLLM says no"),
    ],
)  # fmt: skip
def test_parse_cohere_error(status: int, body: bytes, kind: str, mapped: int, message: str) -> None:
    err = R.parse_rerank_error(status, body)
    assert (err.kind, err.status, err.message, err.from_gateway) == (kind, mapped, message, False)


def test_parse_cohere_error_unusable_body() -> None:
    err = R.parse_cohere_error(502, b"<html>bad gateway</html>")
    assert err.kind == "server_error" and err.status == 502 and "bad gateway" in err.message and err.from_gateway
    assert R.parse_cohere_error(200, b"").status == 502


def test_render_cohere_error() -> None:
    assert R.render_cohere_error(GatewayError("invalid_request", "documents: must not be empty")) == (
        400,
        {"message": "documents: must not be empty"},
    )
    assert R.render_cohere_error(GatewayError("overloaded", "x", status=529))[0] == 503
    assert R.render_cohere_error(GatewayError("rate_limit", "x"))[0] == 429


# --------------------------------------------------------------------------------------------
# The cohere SDK over HTTP
# --------------------------------------------------------------------------------------------


def _rerank_app() -> QuartTrio:
    app = QuartTrio("test-cohere-rerank")

    async def handle(version: R.ApiVersion) -> Response:
        try:
            req = R.decode_cohere_request(orjson.loads(await request.get_data()), version)
        except GatewayError as err:
            status, payload = R.render_cohere_error(err)
            return Response(orjson.dumps(payload), status=status, content_type="application/json")
        results = [R.RankedDocument(i, s) for i, s in ranked(req.query, req.documents)]
        body = R.encode_cohere_response(R.RerankResponse(results, search_units=1), req, version)
        return Response(orjson.dumps(body), content_type="application/json")

    @app.post("/v2/rerank")
    async def v2() -> Response:
        return await handle(2)

    @app.post("/v1/rerank")
    async def v1() -> Response:
        return await handle(1)

    return app


async def test_cohere_sdks_round_trip() -> None:
    docs = ["the red fox", "a blue whale", "red red wine and a fox"]
    async with serve_app(_rerank_app()) as url:

        def calls() -> tuple[Any, Any, Any]:
            v2 = cohere.ClientV2(api_key="k", base_url=url).rerank(
                model="rerank-v3.5", query="red fox", documents=docs, top_n=2
            )
            v1 = cohere.Client(api_key="k", base_url=url).rerank(
                model="rerank-english-v3.0",
                query="red fox",
                documents=[{"text": d, "source": f"s{i}"} for i, d in enumerate(docs)],
                return_documents=True,
            )
            with pytest.raises(cohere.errors.BadRequestError) as exc:
                cohere.ClientV2(api_key="k", base_url=url).rerank(model="rerank-v3.5", query="q", documents=[])
            return v2, v1, exc.value

        v2, v1, error = await trio.to_thread.run_sync(calls)
    assert [r.index for r in v2.results] == [0, 2]
    assert v2.results[0].relevance_score == 1.0 and v2.meta.billed_units.search_units == 1
    assert [r.index for r in v1.results] == [0, 2, 1]
    assert v1.results[0].document.text == "the red fox"
    assert v1.results[0].document.source == "s0"  # the object comes back whole
    assert error.status_code == 400 and error.body == {"message": "documents: must not be empty"}
