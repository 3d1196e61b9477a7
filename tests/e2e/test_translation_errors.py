"""Errors crossing formats: upstream errors rendered in the client's own shape before the stream
starts, and in-stream error events followed by a clean end after it started. Plus request features
that only work if translation is right (thinking budgets, images)."""

from __future__ import annotations

import base64

import anthropic
import httpx
import openai
import pytest

from tests.harness import Servers
from trigate.mock.state import Fault

CLAUDE = "claude-sonnet-4-6"
USER = [{"role": "user", "content": "one two three four five six"}]


def oai(servers: Servers) -> openai.OpenAI:
    return openai.OpenAI(base_url=servers.url + "/v1", api_key="k", max_retries=0)


def ant(servers: Servers) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=servers.url, api_key="k", max_retries=0)


def test_anthropic_529_reaches_openai_client_as_503(servers: Servers, mock) -> None:
    mock.add_fault(Fault(status=529, message="Overloaded", path="/v1/messages", times=2))
    r = httpx.post(servers.url + "/v1/chat/completions", json={"model": CLAUDE, "messages": USER})
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["message"] == "Overloaded" and set(err) >= {"message", "type", "param", "code"}
    mock.add_fault(Fault(status=529, message="Overloaded", path="/v1/messages", times=2))
    with pytest.raises(openai.InternalServerError):
        oai(servers).chat.completions.create(model=CLAUDE, messages=USER)


def test_openai_429_reaches_anthropic_client_in_anthropic_shape(servers: Servers, mock) -> None:
    # a retry-after longer than the gateway is willing to wait goes straight back to the client
    mock.add_fault(Fault(status=429, message="Rate limit reached", headers={"retry-after": "30"},
                         path="/v1/chat/completions"))
    with pytest.raises(anthropic.RateLimitError) as info:
        ant(servers).messages.create(model="gpt-4o-mini", max_tokens=100, messages=USER)
    body = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert body["error"]["message"] == "Rate limit reached"
    assert info.value.response.headers["retry-after"] == "30"


def test_anthropic_in_stream_error_becomes_openai_error_chunk(servers: Servers, mock) -> None:
    mock.add_fault(Fault(error_after=5, error_type="overloaded_error", message="Overloaded", path="/v1/messages"))
    with httpx.stream("POST", servers.url + "/v1/chat/completions",
                      json={"model": CLAUDE, "messages": USER, "stream": True}) as r:
        assert r.status_code == 200
        lines = [x for x in r.iter_lines() if x]
    assert lines[-1].startswith("data: {\"error\"")
    assert "Overloaded" in lines[-1] and "data: [DONE]" not in lines
    mock.add_fault(Fault(error_after=5, error_type="overloaded_error", message="Overloaded", path="/v1/messages"))
    with pytest.raises(openai.APIError, match="Overloaded"):
        for _ in oai(servers).chat.completions.create(model=CLAUDE, messages=USER, stream=True):
            pass


def test_openai_drop_mid_stream_becomes_anthropic_error_event(servers: Servers, mock) -> None:
    mock.add_fault(Fault(drop_after=4, path="/v1/chat/completions"))
    with httpx.stream("POST", servers.url + "/v1/messages", headers={"anthropic-version": "2023-06-01"},
                      json={"model": "gpt-4o-mini", "max_tokens": 50, "messages": USER, "stream": True}) as r:
        text = r.read().decode()
    events = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "error"
    mock.add_fault(Fault(drop_after=4, path="/v1/chat/completions"))
    with pytest.raises(anthropic.APIStatusError):
        with ant(servers).messages.stream(model="gpt-4o-mini", max_tokens=50, messages=USER) as s:
            for _ in s:
                pass


def test_responses_stream_failure_ends_with_response_failed(servers: Servers, mock) -> None:
    mock.add_fault(Fault(drop_after=4, path="/v1/messages"))
    with httpx.stream("POST", servers.url + "/v1/responses",
                      json={"model": CLAUDE, "input": "one two three four", "stream": True}) as r:
        text = r.read().decode()
    events = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    assert events[:2] == ["response.created", "response.in_progress"]
    assert "response.failed" in events[-2:] and "response.completed" not in events


def test_reasoning_effort_becomes_a_thinking_budget_and_comes_back(servers: Servers, mock) -> None:
    r = oai(servers).chat.completions.create(model=CLAUDE, messages=USER, reasoning_effort="low",
                                             max_completion_tokens=4000)
    sent = mock.requests[-1].body
    assert sent["thinking"]["type"] == "enabled"
    assert 1024 <= sent["thinking"]["budget_tokens"] < sent["max_tokens"]
    assert "temperature" not in sent
    extra = r.choices[0].message.model_extra or {}
    assert extra.get("reasoning_content") == "Let me think about this briefly."
    assert r.usage.completion_tokens == mock.requests[-1].usage["output_tokens"]


def test_images_and_max_tokens_default_reach_anthropic_correctly(servers: Servers, mock) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    oai(servers).chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}])
    sent = mock.requests[-1].body
    blocks = sent["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert isinstance(sent["max_tokens"], int) and sent["max_tokens"] >= 1024


def test_bad_translated_request_is_400_naming_the_field(servers: Servers) -> None:
    r = httpx.post(servers.url + "/v1/chat/completions", json={"model": CLAUDE, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:nonsense"}}]}]})
    assert r.status_code == 400
    assert r.json()["error"]["param"].startswith("messages[0].content[0]")
    r = httpx.post(servers.url + "/v1/messages", headers={"anthropic-version": "2023-06-01"},
                   json={"model": "gpt-4o-mini", "messages": USER})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                   "message": "max_tokens: field required (an integer)"}}
