"""The OpenAI ``/v1/embeddings`` client side: request validation (400s naming the field), response encoding,
and what the official openai SDK makes of the base64 the gateway sends."""

from __future__ import annotations

import array
import base64
import struct
import sys
from typing import Any

import openai
import orjson
import pytest
import trio
from openai._models import construct_type
from openai._types import omit
from openai.lib._parsing._embeddings import parse_embedding_response
from openai.types import CreateEmbeddingResponse
from quart import Response, request
from quart_trio import QuartTrio

from tests.unit.test_embeddings_mock import serve_app
from trigate.errors import GatewayError
from trigate.formats import embeddings as E
from trigate.formats import openai_chat
from trigate.mock.embeddings import mock_vector, token_key

# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "inputs"),
    [
        ("hello", ["hello"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
        ([0] * 5000, [[0] * 5000]),  # one long token array is one input, not 5000
    ],
)
def test_input_shapes(value: Any, inputs: list[Any]) -> None:
    req = E.decode_openai_request({"model": "m", "input": value})
    assert req.inputs == inputs
    assert req.is_tokens == isinstance(inputs[0], list)


def test_defaults_and_fields() -> None:
    req = E.decode_openai_request({"model": "m", "input": "x"})
    assert (req.encoding_format, req.dimensions, req.user, req.input_type, req.extras) == (
        "float",
        None,
        None,
        None,
        {},
    )
    req = E.decode_openai_request(
        {"model": "m", "input": "x", "encoding_format": "base64", "dimensions": 64.0, "user": "u",
         "input_type": "search_query", "encoding_extra": True}
    )  # fmt: skip
    assert (req.encoding_format, req.dimensions, req.user, req.input_type) == ("base64", 64, "u", "search_query")
    assert req.extras == {"encoding_extra": True}
    assert E.decode_openai_request({"model": "m", "input": "x", "encoding_format": None}).encoding_format == "float"


def test_2048_inputs_is_the_limit() -> None:
    assert len(E.decode_openai_request({"model": "m", "input": ["a"] * 2048}).inputs) == 2048
    with pytest.raises(GatewayError) as exc:
        E.decode_openai_request({"model": "m", "input": ["a"] * 2049})
    assert exc.value.param == "input" and "2048" in exc.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": 3, "input": "x"}, "model"),
        ({"model": "", "input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": 5}, "input"),
        ({"model": "m", "input": {"text": "a"}}, "input"),
        ({"model": "m", "input": ["a", ""]}, "input[1]"),
        ({"model": "m", "input": ["a", 3]}, "input[1]"),
        ({"model": "m", "input": [[1, 2], []]}, "input[1]"),
        ({"model": "m", "input": [[1, 2], "a"]}, "input[1]"),
        ({"model": "m", "input": [[1, "x"]]}, "input[0][1]"),
        ({"model": "m", "input": [[1, -1]]}, "input[0][1]"),
        ({"model": "m", "input": [1, -2]}, "input[1]"),
        ({"model": "m", "input": [1, 2.5]}, "input[1]"),
        ({"model": "m", "input": [True]}, "input[0]"),
        ({"model": "m", "input": [{"text": "a"}]}, "input[0]"),
        ({"model": "m", "input": "x", "dimensions": "3"}, "dimensions"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "x", "dimensions": 1.5}, "dimensions"),
        ({"model": "m", "input": "x", "dimensions": True}, "dimensions"),
        ({"model": "m", "input": "x", "encoding_format": "binary"}, "encoding_format"),
        ({"model": "m", "input": "x", "user": 5}, "user"),
        ({"model": "m", "input": "x", "input_type": "bogus"}, "input_type"),
        ({"model": "m", "input": "x", "input_type": 1}, "input_type"),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as exc:
        E.decode_openai_request(body)
    err = exc.value
    assert (err.kind, err.status, err.param) == ("invalid_request", 400, param)
    assert err.message.startswith(f"{param}: ")


def test_non_object_body() -> None:
    with pytest.raises(GatewayError) as exc:
        E.decode_openai_request(["model"])
    assert exc.value.status == 400


@pytest.mark.parametrize(
    ("hint", "cohere", "gemini"),
    [
        ("search_query", "search_query", "RETRIEVAL_QUERY"),
        ("search_document", "search_document", "RETRIEVAL_DOCUMENT"),
        ("classification", "classification", "CLASSIFICATION"),
        ("clustering", "clustering", "CLUSTERING"),
        ("RETRIEVAL_QUERY", "search_query", "RETRIEVAL_QUERY"),
        ("question_answering", "search_query", "QUESTION_ANSWERING"),
        ("SEMANTIC_SIMILARITY", "clustering", "SEMANTIC_SIMILARITY"),
        ("query", "search_query", "RETRIEVAL_QUERY"),
        ("passage", "search_document", "RETRIEVAL_DOCUMENT"),
        ("retrieval.query", "search_query", "RETRIEVAL_QUERY"),
        (None, None, None),
    ],
)
def test_input_type_vocabularies(hint: str | None, cohere: str | None, gemini: str | None) -> None:
    assert E.cohere_input_type(hint) == cohere
    assert E.gemini_task_type(hint) == gemini


# --------------------------------------------------------------------------------------------
# Provider-specific refusals
# --------------------------------------------------------------------------------------------

TOKENS = E.EmbedRequest(model="m", inputs=[[1, 2, 3]])


@pytest.mark.parametrize(
    "encode",
    [E.encode_gemini_request, E.encode_vertex_request, E.encode_cohere_request, E.encode_bedrock_cohere_request],
)
def test_token_arrays_cannot_go_to_text_only_providers(encode: Any) -> None:
    with pytest.raises(GatewayError) as exc:
        encode(TOKENS, "model-x")
    assert exc.value.status == 400 and exc.value.param == "input" and "token arrays" in exc.value.message


def test_token_arrays_to_titan_and_to_openai() -> None:
    with pytest.raises(GatewayError):
        E.encode_bedrock_request(TOKENS, "amazon.titan-embed-text-v2:0")
    assert E.encode_openai_request(TOKENS, "x")["input"] == [[1, 2, 3]]


def test_titan_rules() -> None:
    one = E.EmbedRequest(model="m", inputs=["a"], dimensions=300)
    with pytest.raises(GatewayError) as exc:
        E.encode_bedrock_request(one, "amazon.titan-embed-text-v2:0")
    assert exc.value.param == "dimensions"
    with pytest.raises(GatewayError) as exc:
        E.encode_bedrock_request(one, "amazon.titan-embed-text-v1")
    assert exc.value.param == "dimensions"
    assert E.encode_bedrock_request(E.EmbedRequest(model="m", inputs=["a"]), "amazon.titan-embed-text-v1") == {
        "inputText": "a"
    }
    img = E.EmbedRequest(model="m", inputs=["a"], dimensions=384)
    assert E.encode_bedrock_request(img, "amazon.titan-embed-image-v1") == {
        "inputText": "a",
        "embeddingConfig": {"outputEmbeddingLength": 384},
    }
    with pytest.raises(ValueError):
        E.encode_bedrock_request(E.EmbedRequest(model="m", inputs=["a", "b"]), "amazon.titan-embed-text-v2:0")


def test_bedrock_model_families() -> None:
    assert E.bedrock_embed_family("amazon.titan-embed-text-v2:0") == "titan"
    assert E.bedrock_embed_family("us.cohere.embed-v4:0") == "cohere"
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.cohere.embed-v4:0"
    assert E.bedrock_embed_family(arn) == "cohere"
    with pytest.raises(GatewayError) as exc:
        E.bedrock_embed_family("anthropic.claude-3-haiku")
    assert exc.value.param == "model"


def test_batch_limits() -> None:
    assert E.batch_limit("openai", "text-embedding-3-small") == 2048
    assert E.batch_limit("azure", "d") == 2048
    assert E.batch_limit("gemini", "gemini-embedding-001") == 100
    assert E.batch_limit("vertex", "text-embedding-005") == 250
    assert E.batch_limit("vertex", "gemini-embedding-001") == 1
    assert E.batch_limit("cohere", "embed-v4.0") == 96
    assert E.batch_limit("bedrock", "amazon.titan-embed-text-v2:0") == 1
    assert E.batch_limit("bedrock", "cohere.embed-v4:0") == 96


def test_vertex_token_budget_split() -> None:
    # 40 texts of ~1000 estimated tokens each: 250 fit the count limit but not 20,000 tokens.
    texts = ["x" * 4000] * 40
    batches = E.split_batches(texts, E.BATCH_LIMIT_VERTEX, max_tokens=E.VERTEX_MAX_TOKENS_PER_REQUEST)
    assert [len(b) for b in batches] == [20, 20]
    # An input over the budget on its own still goes, alone.
    assert [len(b) for b in E.split_batches(["x" * 100_000, "y"], 250, max_tokens=100)] == [1, 1]


# --------------------------------------------------------------------------------------------
# Upstream responses the gateway cannot use
# --------------------------------------------------------------------------------------------

TWO = E.EmbedRequest(model="m", inputs=["a", "b"])


@pytest.mark.parametrize(
    ("decode", "body"),
    [
        (E.decode_openai_response, {"data": [{"index": 0, "embedding": [0.1]}]}),
        (E.decode_openai_response, {"data": [{"index": 0, "embedding": "!!"}, {"index": 1, "embedding": [1]}]}),
        (E.decode_openai_response, {"data": [{"index": 0, "embedding": "AAA="}, {"index": 1, "embedding": [1]}]}),
        (E.decode_openai_response, {"error": "nope"}),
        (E.decode_gemini_response, {"embeddings": [{"values": [1]}, {"values": ["x"]}]}),
        (E.decode_vertex_response, {"predictions": [{"embeddings": {"values": [1]}}]}),
        (E.decode_cohere_response, {"embeddings": {"int8": [[1], [2]]}}),
        (E.decode_cohere_response, []),
    ],
)
def test_unusable_upstream_bodies(decode: Any, body: Any) -> None:
    with pytest.raises(GatewayError) as exc:
        decode(body, TWO)
    assert exc.value.kind == "upstream_unavailable" and exc.value.status == 502


def test_openai_response_without_usage_is_estimated() -> None:
    body = {"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [2.0]}]}
    resp = E.decode_openai_response(body, TWO)
    assert resp.estimated and resp.prompt_tokens == 2 and resp.model == "m"


# --------------------------------------------------------------------------------------------
# base64: packing the openai SDK can read
# --------------------------------------------------------------------------------------------

VECTORS = [[0.5, -0.25, 1.0], [0.1, 0.2, 0.3]]


def _f32(v: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(v)}f", struct.pack(f"<{len(v)}f", *v)))


def test_base64_is_little_endian_float32() -> None:
    b64 = E.floats_to_base64([0.5, -0.25, 1.0])
    assert base64.b64decode(b64) == bytes.fromhex("0000003f000080be0000803f")
    assert b64 == "AAAAPwAAgL4AAIA/"
    assert E.base64_to_floats(b64) == [0.5, -0.25, 1.0]
    with pytest.raises(ValueError):
        E.base64_to_floats("AAA=")  # 2 bytes
    with pytest.raises(ValueError):
        E.base64_to_floats("not base64!")


def test_openai_response_shapes() -> None:
    resp = E.EmbedResponse(VECTORS, 7, "up-model")
    req = E.EmbedRequest(model="client-model", inputs=["a", "b"])
    out = E.encode_openai_response(resp, req)
    assert out == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": VECTORS[0]},
            {"object": "embedding", "index": 1, "embedding": VECTORS[1]},
        ],
        "model": "up-model",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    req.encoding_format = "base64"
    out = E.encode_openai_response(resp, req)
    for d, v in zip(out["data"], VECTORS, strict=True):
        # The SDK's own numpy-free decoding (array('f') is native order; every CI host is little-endian).
        assert sys.byteorder == "little"
        assert array.array("f", base64.b64decode(d["embedding"])).tolist() == _f32(v)
        # And with explicit byte order, as numpy's dtype "<f4" would.
        raw = base64.b64decode(d["embedding"])
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == _f32(v)


def test_openai_sdk_parser_decodes_our_base64() -> None:
    req = E.EmbedRequest(model="m", inputs=["a", "b"], encoding_format="base64")
    body = E.encode_openai_response(E.EmbedResponse(VECTORS, 3, "m"), req)
    obj = construct_type(type_=CreateEmbeddingResponse, value=orjson.loads(orjson.dumps(body)))
    parsed = parse_embedding_response(obj, encoding_format=omit)  # the caller did not choose: SDK decodes
    assert [d.embedding for d in parsed.data] == [_f32(v) for v in VECTORS]
    assert parsed.usage.prompt_tokens == 3


# --------------------------------------------------------------------------------------------
# The openai SDK over HTTP against a handler built from these functions
# --------------------------------------------------------------------------------------------


def _embeddings_app() -> QuartTrio:
    app = QuartTrio("test-openai-embeddings")
    seen: list[dict[str, Any]] = []
    app.config["seen"] = seen

    @app.post("/v1/embeddings")
    async def embeddings() -> Response:
        body = orjson.loads(await request.get_data())
        seen.append(body)
        try:
            req = E.decode_openai_request(body)
        except GatewayError as err:
            status, payload = openai_chat.render_error(err)
            return Response(orjson.dumps(payload), status=status, content_type="application/json")
        keys = [token_key(x) if isinstance(x, list) else x for x in req.inputs]
        vectors = [mock_vector(k, req.dimensions or 16) for k in keys]
        resp = E.EmbedResponse(vectors, E.estimate_tokens(req.inputs), req.model)
        return Response(orjson.dumps(E.encode_openai_response(resp, req)), content_type="application/json")

    return app


async def test_openai_sdk_round_trip() -> None:
    app = _embeddings_app()
    async with serve_app(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)

        def calls() -> tuple[Any, Any, Any]:
            default = client.embeddings.create(model="m", input=["alpha", "beta"], dimensions=8)
            floats = client.embeddings.create(model="m", input=[[1, 2], [3]], encoding_format="float")
            with pytest.raises(openai.BadRequestError) as exc:
                client.embeddings.create(model="m", input=["ok", ""])
            return default, floats, exc.value

        default, floats, error = await trio.to_thread.run_sync(calls)
    seen = app.config["seen"]
    assert seen[0]["encoding_format"] == "base64"  # the SDK's own default...
    assert [d.embedding for d in default.data] == [mock_vector("alpha", 8), mock_vector("beta", 8)]  # ...undone
    assert seen[1]["encoding_format"] == "float"
    assert floats.data[1].embedding == mock_vector("tokens:3")
    assert error.status_code == 400 and error.body["param"] == "input[1]"
