"""Golden fixtures: an OpenAI client request -> the provider's request body, and the provider's answer ->
the OpenAI response the client gets, for every embeddings provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trigate.formats import embeddings as E

FIXTURES = Path(__file__).parent.parent / "fixtures" / "embeddings"
CASES = sorted(FIXTURES.glob("*.json"))


def _encode(provider: str, req: E.EmbedRequest, model: str) -> dict[str, Any]:
    return {
        "openai": E.encode_openai_request,
        "gemini": E.encode_gemini_request,
        "vertex": E.encode_vertex_request,
        "cohere": E.encode_cohere_request,
        "bedrock": E.encode_bedrock_request,
    }[provider](req, model)


def _decode(provider: str, body: Any, req: E.EmbedRequest, model: str, headers: dict[str, str]) -> E.EmbedResponse:
    if provider == "bedrock":
        return E.decode_bedrock_response(body, req, model, headers.get("X-Amzn-Bedrock-Input-Token-Count"))
    return {
        "openai": E.decode_openai_response,
        "gemini": E.decode_gemini_response,
        "vertex": E.decode_vertex_response,
        "cohere": E.decode_cohere_response,
    }[provider](body, req)


def test_there_are_fixtures_for_every_provider() -> None:
    providers = {json.loads(p.read_text())["provider"] for p in CASES}
    assert providers == {"openai", "gemini", "vertex", "cohere", "bedrock"}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    provider, model = case["provider"], case["model"]
    req = E.decode_openai_request(case["client_request"])
    assert _encode(provider, req, model) == case["upstream_request"]
    resp = _decode(provider, case["upstream_response"], req, model, case.get("upstream_headers", {}))
    assert resp.estimated is case.get("estimated", False)
    assert E.encode_openai_response(resp, req) == case["client_response"]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_survives_batching(path: Path) -> None:
    """Split one input per call and merged back, every fixture gives the same client response."""
    case = json.loads(path.read_text())
    provider, model = case["provider"], case["model"]
    req = E.decode_openai_request(case["client_request"])
    whole = _decode(provider, case["upstream_response"], req, model, case.get("upstream_headers", {}))
    parts = []
    for i, piece in enumerate(E.split_request(req, 1)):
        assert piece.inputs == [req.inputs[i]]
        parts.append(E.EmbedResponse([whole.vectors[i]], 0, whole.model, whole.estimated))
    merged = E.merge_responses(parts)
    assert merged.vectors == whole.vectors
    assert merged.model == whole.model
