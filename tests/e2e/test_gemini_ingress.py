"""Native Gemini ingress: the google-genai SDK and the Gemini CLI against the real gateway, routed to the
fake upstream's OpenAI, Anthropic, Bedrock and Gemini endpoints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.harness import UPSTREAM_KEY, LogCapture, Servers, openai_config

GATEWAY_KEY = "gw-gemini-ingress-key-0123"

# route name -> the path the fake upstream must see, in that provider's own format
TARGETS = {
    "openai": ("gpt-4o-mini", "/v1/chat/completions"),
    "anthropic": ("claude-sonnet-4-6", "/v1/messages"),
    "bedrock": ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", "/model/anthropic.claude-sonnet-4-5"),
    "gemini": ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:"),
}


def _config(mock_url: str) -> dict[str, Any]:
    cfg = openai_config(mock_url)
    cfg["auth"] = {"open": False, "keys": [{"id": "gemini-client", "key": GATEWAY_KEY}]}
    return cfg


@pytest.fixture(scope="module")
def gw(access_log: LogCapture) -> Iterator[Servers]:
    with Servers(_config, mock_key=UPSTREAM_KEY) as s:
        yield s


@pytest.fixture
def client(gw: Servers) -> genai.Client:
    gw.mock.reset()
    return genai.Client(api_key=GATEWAY_KEY, http_options=types.HttpOptions(base_url=gw.url, api_version="v1beta"))


def _upstream_paths(gw: Servers) -> list[str]:
    return [r.path for r in gw.mock.requests]


def _access(log: LogCapture, path_part: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in log.snapshot() if path_part in line]
    assert lines, f"no access-log line for {path_part}"
    return lines[-1]


@pytest.mark.parametrize("provider", list(TARGETS))
def test_generate_content_reaches_every_provider(client: genai.Client, gw: Servers, provider: str) -> None:
    model, upstream_path = TARGETS[provider]
    resp = client.models.generate_content(
        model=model, contents="Hello from Gemini",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=100))
    assert resp.text == "Hello from the trigate mock. You said: Hello from Gemini"
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    assert resp.usage_metadata.prompt_token_count > 0
    assert resp.usage_metadata.candidates_token_count == 10  # the mock's words
    assert [p for p in _upstream_paths(gw) if upstream_path in p], _upstream_paths(gw)
    seen = gw.mock.requests[-1]
    # the gateway's own key never goes upstream; the provider's key does
    assert GATEWAY_KEY not in json.dumps(seen.headers)
    if provider == "gemini":  # the same-format fast path: the body as sent, without a model in it
        assert "model" not in seen.body
        assert seen.body["systemInstruction"]["parts"][0]["text"] == "Be brief."


@pytest.mark.parametrize("provider", list(TARGETS))
def test_stream_generate_content_reaches_every_provider(client: genai.Client, gw: Servers, access_log: LogCapture,
                                                        provider: str) -> None:
    model, upstream_path = TARGETS[provider]
    chunks = list(client.models.generate_content_stream(model=model, contents="Stream to me"))
    assert len(chunks) > 2
    assert "".join(c.text or "" for c in chunks) == "Hello from the trigate mock. You said: Stream to me"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 10
    assert [p for p in _upstream_paths(gw) if upstream_path in p]
    line = _access(access_log, "streamGenerateContent")
    assert line["stream"] is True and line["status"] == 200
    # usage is accounted on the fast path too (the sniffer reads Gemini's usageMetadata)
    assert line["output_tokens"] == 10, line
    assert line["translated"] is (provider != "gemini")


@pytest.mark.parametrize("provider", list(TARGETS))
def test_count_tokens_on_every_provider(client: genai.Client, gw: Servers, provider: str) -> None:
    model, _ = TARGETS[provider]
    counted = client.models.count_tokens(model=model, contents="one two three four")
    assert counted.total_tokens is not None and counted.total_tokens >= 4


def test_count_tokens_is_the_providers_own_count(gw: Servers) -> None:
    gw.mock.reset()
    r = httpx.post(f"{gw.url}/v1beta/models/claude-sonnet-4-6:countTokens", headers={"x-goog-api-key": GATEWAY_KEY},
                   json={"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-trigate-token-count"] == "exact"
    assert r.json()["totalTokens"] > 0
    assert _upstream_paths(gw) == ["/v1/messages/count_tokens"]


_WEATHER = types.FunctionDeclaration(
    name="get_weather", description="Current weather in a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock", "gemini"])
def test_function_calling_round_trip(client: genai.Client, gw: Servers, provider: str) -> None:
    model, _ = TARGETS[provider]
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[_WEATHER])])
    question = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    first = client.models.generate_content(model=model, contents=[question], config=config)
    calls = first.function_calls
    assert calls and calls[0].name == "get_weather" and calls[0].args == {"city": "city-sample"}
    answer = types.Part.from_function_response(name="get_weather", response={"temperature": "21C"})
    if calls[0].id:
        answer.function_response.id = calls[0].id
    history = [question, first.candidates[0].content, types.Content(role="user", parts=[answer])]
    second = client.models.generate_content(model=model, contents=history, config=config)
    assert second.text is not None and "21C" in second.text
    assert not second.function_calls


def test_v1_path_and_sdk_api_version(gw: Servers) -> None:
    gw.mock.reset()
    client = genai.Client(api_key=GATEWAY_KEY, http_options=types.HttpOptions(base_url=gw.url, api_version="v1"))
    assert client.models.generate_content(model="gpt-4o-mini", contents="on v1").text.endswith("on v1")


def test_key_in_query_and_bearer(gw: Servers) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    url = f"{gw.url}/v1beta/models/gpt-4o-mini:generateContent"
    assert httpx.post(url, params={"key": GATEWAY_KEY}, json=body).status_code == 200
    assert httpx.post(url, headers={"authorization": f"Bearer {GATEWAY_KEY}"}, json=body).status_code == 200
    bad = httpx.post(url, params={"key": "not-the-key"}, json=body)
    assert bad.status_code == 401
    assert bad.json()["error"]["status"] == "UNAUTHENTICATED"


def test_wrong_key_is_a_google_error(gw: Servers) -> None:
    client = genai.Client(api_key="wrong-key", http_options=types.HttpOptions(base_url=gw.url))
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="gpt-4o-mini", contents="hi")
    assert info.value.code == 401 and info.value.status == "UNAUTHENTICATED"
    assert UPSTREAM_KEY not in str(info.value.details)


def test_unknown_model_and_bad_body_are_google_errors(client: genai.Client, gw: Servers) -> None:
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="no-such-model", contents="hi")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    headers = {"x-goog-api-key": GATEWAY_KEY}
    r = httpx.post(f"{gw.url}/v1beta/models/gpt-4o-mini:generateContent", headers=headers, json={"contents": []})
    assert r.status_code == 400
    assert r.json()["error"] == {"code": 400, "message": r.json()["error"]["message"], "status": "INVALID_ARGUMENT"}
    assert "contents" in r.json()["error"]["message"]
    r = httpx.post(f"{gw.url}/v1beta/models/gpt-4o-mini:streamGenerateContent", headers=headers,
                   json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert r.status_code == 400 and "alt=sse" in r.json()["error"]["message"]
    r = httpx.post(f"{gw.url}/v1beta/models/gpt-4o-mini:embedEverything", headers=headers, json={})
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    assert not gw.mock.requests


# ---------------------------------------------------------------------------------------------
# The Gemini CLI (npm @google/gemini-cli), headless, with a tool-call round trip
# ---------------------------------------------------------------------------------------------

SECRET = "the secret word is pineapple"


def _gemini_cli() -> str:
    found = shutil.which("gemini")
    assert found, "the Gemini CLI is not installed: npm install -g @google/gemini-cli (.ci/run does it)"
    return found


def _cli_home(tmp_path: Path) -> Path:
    """A HOME of its own: API-key auth, no telemetry, usage statistics or update checks, and the one
    tool offered to the model read_file (the fake upstream calls every tool it is offered)."""
    home = tmp_path / "home"
    (home / ".gemini").mkdir(parents=True)
    settings = {
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "tools": {"core": ["read_file"]},
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    return home


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_gemini_cli_through_the_gateway(gw: Servers, tmp_path: Path, provider: str) -> None:
    gw.mock.reset()
    work = tmp_path / "work"
    work.mkdir()
    # The fake upstream samples string arguments as "<name>-sample": read_file asks for file_path-sample.
    (work / "file_path-sample").write_text(SECRET + "\n")
    env = {
        "PATH": os.environ["PATH"], "HOME": str(_cli_home(tmp_path)), "TERM": "dumb", "NO_COLOR": "1",
        "GEMINI_API_KEY": GATEWAY_KEY, "GOOGLE_GEMINI_BASE_URL": gw.url,
        "GEMINI_CLI_TRUST_WORKSPACE": "true", "GEMINI_TELEMETRY_ENABLED": "false",
    }
    model, upstream_path = TARGETS[provider]
    proc = subprocess.run([_gemini_cli(), "-m", model, "-p", "What is the secret word?", "--output-format", "json"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reply = json.loads(proc.stdout)["response"]
    assert reply.startswith("Tool results:") and SECRET in reply
    seen = [r for r in gw.mock.requests if upstream_path in r.path]
    assert len(seen) == 2, _upstream_paths(gw)
    # the second upstream request carries the file the CLI read, in the provider's own wire format
    assert SECRET in json.dumps(seen[1].body)
    assert "read_file" in json.dumps(seen[0].body["tools"])
