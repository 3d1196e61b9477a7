"""Golden fixtures: a Cohere client rerank request -> each provider's request body, and the provider's answer
-> the Cohere response the client gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cohere.types import RerankResponse as V1RerankResponse
from cohere.v2.types import V2RerankResponse

from trigate.formats import rerank as R

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rerank"
CASES = sorted(FIXTURES.glob("*.json"))


def _encode(case: dict[str, Any], req: R.RerankRequest) -> dict[str, Any]:
    provider, model = case["provider"], case["model"]
    if provider == "cohere":
        return R.encode_cohere_request(req, model, case["api_version"])
    if provider == "bedrock":
        return R.encode_bedrock_request(req, model, case["region"])
    return {
        "jina": R.encode_jina_request,
        "voyage": R.encode_voyage_request,
        "vllm": R.encode_vllm_request,
        "vertex": R.encode_vertex_request,
    }[provider](req, model)


def _decode(provider: str, body: Any, req: R.RerankRequest) -> R.RerankResponse:
    return {
        "cohere": R.decode_cohere_response,
        "jina": R.decode_jina_response,
        "voyage": R.decode_voyage_response,
        "vllm": R.decode_vllm_response,
        "bedrock": R.decode_bedrock_response,
        "vertex": R.decode_vertex_response,
    }[provider](body, req)


def test_there_are_fixtures_for_every_provider() -> None:
    providers = {json.loads(p.read_text())["provider"] for p in CASES}
    assert providers == {"cohere", "jina", "voyage", "vllm", "bedrock", "vertex"}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    version = case["api_version"]
    req = R.decode_cohere_request(case["client_request"], version)
    assert _encode(case, req) == case["upstream_request"]
    resp = _decode(case["provider"], case["upstream_response"], req)
    out = R.encode_cohere_response(resp, req, version)
    expected = dict(case["client_response"])
    if "id" not in expected:
        assert isinstance(out.pop("id"), str) and out.get("id") is None
    assert out == expected
    model = V2RerankResponse if version == 2 else V1RerankResponse
    parsed = model.model_validate(out)  # the cohere SDK's response model, validated strictly
    assert [r.index for r in parsed.results] == [r["index"] for r in expected["results"]]
