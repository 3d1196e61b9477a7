"""Models, token counting and passthrough through the real gateway with the official SDKs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import anthropic
import httpx
import openai
import pytest

from tests.harness import UPSTREAM_KEY, Servers

MESSAGES = [{"role": "user", "content": "How many tokens are in this short question?"}]


def test_openai_models_list_and_retrieve(servers: Servers) -> None:
    client = openai.OpenAI(base_url=servers.url + "/v1", api_key="k", max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert {"gpt-4o-mini", "fast"} <= set(ids)
    # the expanded wildcard route lists the provider's own models under the client-facing prefix
    assert {"openai/mock-gpt", "openai/mock-gpt-mini"} <= set(ids)
    m = client.models.retrieve("openai/mock-gpt")
    assert m.id == "openai/mock-gpt" and m.owned_by == "openai" and m.created == 1700000000
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope-model")


def test_anthropic_models_shape(servers: Servers) -> None:
    client = anthropic.Anthropic(base_url=servers.url, api_key="k", max_retries=0)
    ids = [m.id for m in client.models.list(limit=100)]
    assert {"claude-mock-sonnet", "claude-mock-haiku", "gpt-4o-mini"} <= set(ids)
    m = client.models.retrieve("claude-mock-sonnet")
    assert m.type == "model" and m.created_at.year == 2025
    page = client.models.list(limit=1)
    assert len(page.data) == 1 and page.has_more
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("nope-model")


def test_count_tokens_exact_on_anthropic(servers: Servers, mock) -> None:
    client = anthropic.Anthropic(base_url=servers.url, api_key="k", max_retries=0)
    raw = client.messages.with_raw_response.count_tokens(model="claude-sonnet-4-6", messages=MESSAGES,
                                                         system="Be brief.")
    assert raw.headers["x-trigate-token-count"] == "exact"
    seen = mock.requests[-1]
    assert seen.path == "/v1/messages/count_tokens" and seen.body["model"] == "claude-sonnet-4-6"
    expected = httpx.post(servers.mock_url + "/v1/messages/count_tokens", json=seen.body,
                          headers={"x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01"}).json()
    assert raw.parse().input_tokens == expected["input_tokens"]


def test_count_tokens_exact_on_openai_via_input_tokens(servers: Servers, mock) -> None:
    client = anthropic.Anthropic(base_url=servers.url, api_key="k", max_retries=0)
    raw = client.messages.with_raw_response.count_tokens(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-trigate-token-count"] == "exact"
    assert mock.requests[-1].path == "/v1/responses/input_tokens"
    assert raw.parse().input_tokens > 0


def test_count_tokens_estimated_where_the_provider_cannot_count(servers: Servers, mock) -> None:
    from trigate.api.count_tokens import estimate
    from trigate.formats import get_codec

    client = anthropic.Anthropic(base_url=servers.url, api_key="k", max_retries=0)
    before = len(mock.requests)
    raw = client.messages.with_raw_response.count_tokens(model="groq/llama-3.3-70b", messages=MESSAGES)
    assert raw.headers["x-trigate-token-count"] == "estimated"
    assert len(mock.requests) == before, "an estimate must not call the provider"
    req = get_codec("anthropic").decode_request({"model": "x", "max_tokens": 1, "messages": MESSAGES})
    assert raw.parse().input_tokens == estimate(req, "llama-3.3-70b") == 9 + 6


def test_offline_estimate_needs_no_network(tmp_path) -> None:
    # A fresh tokenizer cache and a proxy that refuses everything: any download attempt would fail.
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "cache"), "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9"}
    code = "from trigate.tokens import count; print(count('hello offline world', 'gpt-4o'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_passthrough_injects_provider_key_and_streams_both_ways(servers: Servers, mock, access_log) -> None:
    def upload():
        body = json.dumps({"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
                           "messages": [{"role": "user", "content": "passthrough please"}]}).encode()
        for i in range(0, len(body), 7):  # a streamed (chunked) request body
            yield body[i:i + 7]

    with httpx.stream("POST", servers.url + "/openai/v1/chat/completions", content=upload(),
                      headers={"authorization": "Bearer client-own-key", "content-type": "application/json",
                               "x-custom": "kept"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [x for x in r.iter_lines() if x]
    assert lines[-1] == "data: [DONE]"
    seen = mock.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen.headers["x-custom"] == "kept"
    assert seen.headers.get("transfer-encoding") == "chunked"
    time.sleep(0.05)
    line = json.loads(access_log.snapshot()[-1])
    assert line["api"] == "passthrough" and line["status"] == 200
    assert line["output_tokens"] == seen.usage["completion_tokens"]


def test_passthrough_any_method_and_errors_pass_unchanged(servers: Servers, mock) -> None:
    r = httpx.get(servers.url + "/openai/v1/models")
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "mock-gpt"
    r = httpx.delete(servers.url + "/openai/v1/responses/resp_missing")
    assert r.status_code == 404 and "not found" in r.json()["error"]["message"]
    r = httpx.post(servers.url + "/anthropic/v1/messages", headers={"anthropic-version": "2023-06-01"},
                   json={"model": "claude-x", "max_tokens": 10, "messages": MESSAGES})
    assert r.status_code == 200 and r.json()["type"] == "message"
    assert mock.requests[-1].headers["x-api-key"] == UPSTREAM_KEY


def test_passthrough_is_not_an_open_proxy(servers: Servers, mock) -> None:
    for path in ("/evil.example.com/v1/models", "/http:/evil.example.com/x", "/127.0.0.1:9/x"):
        r = httpx.get(servers.url + path)
        assert r.status_code == 404, path
    # whatever the path holds, the request stays on the configured provider's host
    r = httpx.get(servers.url + "/openai/http://evil.example.com/steal")
    assert r.status_code == 404
    assert mock.requests[-1].path.startswith("/http")
    r = httpx.get(servers.url + "/openai/%2e%2e/%2e%2e/etc/passwd")
    assert mock.requests[-1].headers.get("host", "").startswith("127.0.0.1")


@pytest.mark.parametrize(("model", "fragment"), [
    ("claude-sonnet-4-6", "/v1/messages/count_tokens"),
    ("vertex/claude-sonnet-4-6", "/publishers/anthropic/models/count-tokens:rawPredict"),
    ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", "/count-tokens"),
    ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:countTokens"),
    ("vertex/gemini-2.5-pro", "/publishers/google/models/gemini-2.5-pro:countTokens"),
    ("gpt-4o-mini", "/v1/responses/input_tokens"),
])
def test_count_tokens_is_exact_on_every_provider_that_counts(servers: Servers, mock, model: str,
                                                              fragment: str) -> None:
    client = anthropic.Anthropic(base_url=servers.url, api_key="k", max_retries=0)
    raw = client.messages.with_raw_response.count_tokens(model=model, messages=MESSAGES, system="Be brief.")
    assert raw.headers["x-trigate-token-count"] == "exact"
    assert fragment in mock.requests[-1].path
    assert raw.parse().input_tokens > 0


@pytest.mark.parametrize(("prefix", "path", "auth_header", "expected"), [
    ("azure", "/openai/v1/chat/completions", "api-key", UPSTREAM_KEY),
    ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent", "x-goog-api-key", UPSTREAM_KEY),
    ("cohere", "/v2/rerank", "authorization", f"Bearer {UPSTREAM_KEY}"),
    ("bedrock", "/model/anthropic.claude-x-v1:0/converse", "authorization", "AWS4-HMAC-SHA256 "),
])
def test_passthrough_to_each_provider_with_its_own_auth(servers: Servers, mock, prefix: str, path: str,
                                                        auth_header: str, expected: str) -> None:
    bodies = {
        "azure": {"model": "gpt-4o", "messages": MESSAGES},
        "gemini": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        "cohere": {"model": "rerank-v3.5", "query": "q", "documents": ["a", "b"]},
        "bedrock": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
    }
    r = httpx.post(servers.url + f"/{prefix}{path}", json=bodies[prefix],
                   headers={"authorization": "Bearer client-own-key"})
    assert r.status_code == 200, r.text
    seen = mock.requests[-1]
    assert seen.path.endswith(path.split("?")[0]) or path.split(":")[0] in seen.path
    assert seen.headers[auth_header].startswith(expected)
    assert "client-own-key" not in str(seen.headers)
