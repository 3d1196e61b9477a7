"""Properties: batching keeps order and bounds, base64 round-trips every float32, and request decoding only
ever fails with a 400."""

from __future__ import annotations

import array
import base64
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trigate.errors import GatewayError
from trigate.formats import embeddings as E

float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
texts = st.text(min_size=1, max_size=40)


@given(st.lists(texts, max_size=300), st.integers(min_value=1, max_value=120))
def test_split_batches_keeps_order_and_limit(inputs: list[str], limit: int) -> None:
    batches = E.split_batches(inputs, limit)
    assert [x for b in batches for x in b] == inputs
    assert all(1 <= len(b) <= limit for b in batches)
    assert len(batches) == math.ceil(len(inputs) / limit)


@given(st.lists(texts, max_size=100), st.integers(min_value=1, max_value=50), st.integers(min_value=1, max_value=30))
def test_split_batches_token_budget(inputs: list[str], limit: int, budget: int) -> None:
    batches = E.split_batches(inputs, limit, max_tokens=budget)
    assert [x for b in batches for x in b] == inputs
    for b in batches:
        assert 1 <= len(b) <= limit
        assert len(b) == 1 or E.estimate_tokens(b) <= budget


@given(
    st.lists(st.tuples(texts, st.lists(float32s, min_size=1, max_size=4), st.integers(0, 50)), min_size=1, max_size=60),
    st.integers(min_value=1, max_value=20),
    st.booleans(),
)
def test_split_then_merge_reassembles(items: list[tuple[str, list[float], int]], limit: int, estimated: bool) -> None:
    inputs = [t for t, _, _ in items]
    answer = {i: (v, n) for i, (_, v, n) in enumerate(items)}
    req = E.EmbedRequest(model="m", inputs=inputs, dimensions=4)
    parts = []
    offset = 0
    for piece in E.split_request(req, limit):
        assert piece.dimensions == 4 and piece.model == "m"
        idx = range(offset, offset + len(piece.inputs))
        parts.append(E.EmbedResponse([answer[i][0] for i in idx], sum(answer[i][1] for i in idx), "m", estimated))
        offset += len(piece.inputs)
    merged = E.merge_responses(parts)
    assert merged.vectors == [v for _, v, _ in items]
    assert merged.prompt_tokens == sum(n for _, _, n in items)
    assert merged.estimated is estimated


@given(st.lists(float32s, max_size=64))
def test_base64_round_trip(vector: list[float]) -> None:
    b64 = E.floats_to_base64(vector)
    assert E.base64_to_floats(b64) == vector
    # What the openai SDK does without numpy.
    assert array.array("f", base64.b64decode(b64)).tolist() == vector


@given(st.lists(st.lists(float32s, min_size=1, max_size=8), min_size=1, max_size=5))
def test_base64_response_decodes_to_the_float_response(vectors: list[list[float]]) -> None:
    req = E.EmbedRequest(model="m", inputs=["x"] * len(vectors), encoding_format="base64")
    b64 = E.encode_openai_response(E.EmbedResponse(vectors, 1, "m"), req)
    req.encoding_format = "float"
    floats = E.encode_openai_response(E.EmbedResponse(vectors, 1, "m"), req)
    assert [E.base64_to_floats(d["embedding"]) for d in b64["data"]] == [d["embedding"] for d in floats["data"]]
    # And the gateway reads back what it wrote (an OpenAI-compatible upstream answering base64).
    assert E.decode_openai_response(b64, req).vectors == vectors


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "model": json_values,
            "input": json_values,
            "dimensions": json_values,
            "encoding_format": json_values,
            "user": json_values,
            "input_type": json_values,
        },
    )
)
def test_decoding_fails_only_with_400s(body: dict[str, Any]) -> None:
    try:
        req = E.decode_openai_request(body)
    except GatewayError as err:
        assert err.status == 400 and err.param is not None
    else:
        assert req.inputs and all(isinstance(x, (str, list)) for x in req.inputs)
