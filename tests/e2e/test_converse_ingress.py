"""Bedrock Converse ingress: boto3's bedrock-runtime client against the real gateway, routed to the fake
upstream's OpenAI, Anthropic, Gemini and Bedrock endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, EventStreamError

from tests.harness import UPSTREAM_KEY, LogCapture, Servers, openai_config
from trigate.mock.state import Fault

GATEWAY_KEY = "gw-converse-ingress-key-0123"

# route name -> the path the fake upstream must see, in that provider's own format
TARGETS = {
    "openai": ("gpt-4o-mini", "/v1/chat/completions"),
    "anthropic": ("claude-sonnet-4-6", "/v1/messages"),
    "gemini": ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:"),
    "bedrock": ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", "/model/anthropic.claude-sonnet-4-5"),
}
HELLO = [{"role": "user", "content": [{"text": "Hello Converse"}]}]
REPLY = "Hello from the trigate mock. You said: Hello Converse"


def _config(mock_url: str) -> dict[str, Any]:
    cfg = openai_config(mock_url)
    cfg["auth"] = {"open": False, "keys": [{"id": "aws-client", "key": GATEWAY_KEY}]}
    return cfg


@pytest.fixture(scope="module")
def gw(access_log: LogCapture) -> Iterator[Servers]:
    with Servers(_config, mock_key=UPSTREAM_KEY) as s:
        yield s


def _client(url: str, access_key: str = GATEWAY_KEY) -> Any:
    # SigV4 with the gateway key as the access key id (the secret is not checked); no retries, so an
    # error is seen once
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=url,
                        aws_access_key_id=access_key, aws_secret_access_key="any-secret",
                        config=BotoConfig(retries={"max_attempts": 1}))


@pytest.fixture
def bedrock(gw: Servers, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    gw.mock.reset()
    return _client(gw.url)


def _paths(gw: Servers) -> list[str]:
    return [r.path for r in gw.mock.requests]


@pytest.mark.parametrize("provider", list(TARGETS))
def test_converse_reaches_every_provider(bedrock: Any, gw: Servers, provider: str) -> None:
    model, upstream_path = TARGETS[provider]
    out = bedrock.converse(modelId=model, messages=HELLO, system=[{"text": "Be brief."}],
                           inferenceConfig={"maxTokens": 100})
    assert out["output"]["message"] == {"role": "assistant", "content": [{"text": REPLY}]}
    assert out["stopReason"] == "end_turn"
    assert out["usage"]["outputTokens"] == 9 and out["usage"]["inputTokens"] > 0
    assert [p for p in _paths(gw) if upstream_path in p], _paths(gw)
    seen = gw.mock.requests[-1]
    assert GATEWAY_KEY not in json.dumps(seen.headers)
    if provider == "bedrock":  # the same-format fast path: the body as sent, without a model in it
        assert "model" not in seen.body and seen.body["system"] == [{"text": "Be brief."}]


@pytest.mark.parametrize("provider", list(TARGETS))
def test_converse_stream_reaches_every_provider(bedrock: Any, gw: Servers, access_log: LogCapture,
                                                provider: str) -> None:
    model, upstream_path = TARGETS[provider]
    resp = bedrock.converse_stream(modelId=model, messages=HELLO)
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    events = list(resp["stream"])
    assert "messageStart" in events[0]
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    assert text == REPLY
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 9
    assert [p for p in _paths(gw) if upstream_path in p]
    line = json.loads([x for x in access_log.snapshot() if "/converse-stream" in x][-1])
    assert line["stream"] is True and line["status"] == 200
    assert line["output_tokens"] == 9, line  # the fast path reads the metadata event too
    assert line["translated"] is (provider != "bedrock")


_TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather in a city",
                                  "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}}]}


@pytest.mark.parametrize("provider", list(TARGETS))
def test_tool_use_round_trip(bedrock: Any, gw: Servers, provider: str) -> None:
    model, _ = TARGETS[provider]
    first = bedrock.converse(modelId=model, messages=HELLO, toolConfig=_TOOLS)
    assert first["stopReason"] == "tool_use"
    use = next(b["toolUse"] for b in first["output"]["message"]["content"] if "toolUse" in b)
    assert use["name"] == "get_weather" and use["input"] == {"city": "city-sample"}
    history = [*HELLO, first["output"]["message"],
               {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"],
                                                            "content": [{"text": "21C and sunny"}]}}]}]
    second = bedrock.converse(modelId=model, messages=history, toolConfig=_TOOLS)
    assert second["stopReason"] == "end_turn"
    assert "21C and sunny" in second["output"]["message"]["content"][0]["text"]


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_tool_use_streamed(bedrock: Any, provider: str) -> None:
    model, _ = TARGETS[provider]
    events = list(bedrock.converse_stream(modelId=model, messages=HELLO, toolConfig=_TOOLS)["stream"])
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "get_weather"
    args = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                   if "contentBlockDelta" in e and "toolUse" in e["contentBlockDelta"]["delta"])
    assert json.loads(args) == {"city": "city-sample"}
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"


def test_bearer_token_from_the_environment(gw: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore sends AWS_BEARER_TOKEN_BEDROCK as "Authorization: Bearer" instead of signing; the access
    # key id given here is wrong, so only the bearer token can have let the request in
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", GATEWAY_KEY)
    out = _client(gw.url, access_key="AKIDNOTTHEKEY").converse(modelId="gpt-4o-mini", messages=HELLO)
    assert out["output"]["message"]["content"][0]["text"] == REPLY


def test_url_encoded_model_ids(bedrock: Any, gw: Servers) -> None:
    # an inference profile id (':' and '.') and an ARN ('/'), percent-encoded by botocore, routed by name
    profile = "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert bedrock.converse(modelId=profile, messages=HELLO)["stopReason"] == "end_turn"
    assert gw.mock.requests[-1].path.startswith("/model/us.anthropic.claude-sonnet-4-5-20250929-v1")
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    with pytest.raises(ClientError) as info:
        bedrock.converse(modelId=arn, messages=HELLO)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert arn in info.value.response["Error"]["Message"]


def test_errors_are_bedrock_exceptions(gw: Servers, bedrock: Any) -> None:
    with pytest.raises(ClientError) as info:
        _client(gw.url, access_key="AKIDWRONG").converse(modelId="gpt-4o-mini", messages=HELLO)
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as info:
        bedrock.converse(modelId="gpt-4o-mini", messages=[
            {"role": "user", "content": [{"image": {"format": "tiff", "source": {"bytes": b"II*"}}}]}])
    assert info.value.response["Error"]["Code"] == "ValidationException"
    r = httpx.post(f"{gw.url}/model/gpt-4o-mini/converse", headers={"authorization": f"Bearer {GATEWAY_KEY}"},
                   json={"messages": []})
    assert r.status_code == 400
    assert r.headers["x-amzn-errortype"] == "ValidationException"
    assert "messages" in r.json()["message"]
    assert UPSTREAM_KEY not in r.text


def test_stream_error_is_an_exception_event(bedrock: Any, gw: Servers) -> None:
    # Anthropic overloaded after the stream began: the event-stream exception botocore raises mid-stream
    gw.mock.add_fault(Fault(error_after=5, error_type="overloaded_error", message="Overloaded", path="/v1/messages"))
    resp = bedrock.converse_stream(modelId="claude-sonnet-4-6",
                                   messages=[{"role": "user", "content": [{"text": "one two three four five six"}]}])
    with pytest.raises(EventStreamError) as info:
        for _ in resp["stream"]:
            pass
    assert info.value.response["Error"]["Code"] == "serviceUnavailableException"
    assert "Overloaded" in info.value.response["Error"]["Message"]
