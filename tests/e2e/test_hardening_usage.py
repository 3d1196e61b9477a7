"""Issue 13 (usage accounting and the ``model`` field), end to end through the official SDKs:

- usage keeps the upstream's own total: tokens an upstream counts only in ``total_tokens`` (Gemini's
  OpenAI-compatible endpoint leaves thinking out of ``completion_tokens``) reach every client format,
  the access log and the token limits;
- the response's ``model`` is the served model: what the upstream reported, else the upstream model id
  the gateway called; never the client's alias, the same for every provider, streamed or not;
- a translated Messages stream opens with a local estimate of the input tokens and ends with the
  upstream's count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.harness import UPSTREAM_KEY, LogCapture, Servers, openai_config

METERED_KEY = "sk-metered-usage-0001"
LIMITS_KEY = "sk-metered-limits-0002"  # used by the limits test alone, so nothing else settles on it
TPM = 1_000_000

# client-facing alias -> (provider, upstream model id): every alias differs from the id it serves
SERVED = {
    "openai": ("openai", "gpt-4o-mini"),
    "anthropic": ("anthropic", "claude-sonnet-4-6"),
    "azure": ("azure", "gpt-4o"),
    "azure-dated": ("azure-dated", "my-deployment"),
    "groq": ("groq", "llama-3.3-70b"),
    "bedrock": ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    "bedrock-nova": ("bedrock-key", "amazon.nova-pro-v1:0"),
    "gemini": ("gemini", "gemini-2.5-flash"),
    "vertex-gemini": ("vertex", "gemini-2.5-pro"),
    "vertex-claude": ("vertex", "claude-sonnet-4-6"),
    "gemini-openai": ("gemini-openai", "gemini-2.5-flash"),
}


def alias(name: str) -> str:
    return f"served-{name}"


def config(mock_url: str) -> dict[str, Any]:
    cfg = openai_config(mock_url)
    # Gemini's OpenAI-compatible endpoint, as an OpenAI-compatible profile without the Responses API.
    cfg["providers"]["gemini-openai"] = {"kind": "vllm", "base_url": f"{mock_url}/v1beta/openai",
                                         "api_key": UPSTREAM_KEY}
    cfg["models"] = [{"name": alias(n), "provider": p, "model": m} for n, (p, m) in SERVED.items()] + cfg["models"]
    cfg["auth"] = {"keys": [{"id": "metered", "key": METERED_KEY, "tpm": TPM},
                            {"id": "limits", "key": LIMITS_KEY, "tpm": TPM}]}
    return cfg


@pytest.fixture(scope="module")
def gw(access_log: LogCapture) -> Iterator[Servers]:
    with Servers(config, mock_key=UPSTREAM_KEY) as s:
        yield s


def oai(s: Servers) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.url + "/v1", api_key=METERED_KEY, max_retries=0)


def ant(s: Servers) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=s.url, api_key=METERED_KEY, max_retries=0)


def log_line(access_log: LogCapture, model: str) -> dict[str, Any]:
    """The access-log line of the last finished request for ``model`` (streams log when they end)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(x) for x in access_log.snapshot()]
        found = [x for x in lines if x.get("model") == model]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no access-log line for {model}"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------ the model rule

model_matrix = pytest.mark.parametrize(("name", "stream"), [(n, s) for n in SERVED for s in (False, True)])


@model_matrix
def test_chat_completions_model_is_the_served_model(gw: Servers, name: str, stream: bool) -> None:
    messages = [{"role": "user", "content": "Which model are you?"}]
    client = oai(gw)
    if stream:
        models = {c.model for c in client.chat.completions.create(model=alias(name), messages=messages, stream=True)}
    else:
        models = {client.chat.completions.create(model=alias(name), messages=messages).model}
    assert models == {SERVED[name][1]}


@model_matrix
def test_messages_model_is_the_served_model(gw: Servers, name: str, stream: bool) -> None:
    messages = [{"role": "user", "content": "Which model are you?"}]
    client = ant(gw)
    if stream:
        with client.messages.stream(model=alias(name), max_tokens=64, messages=messages) as s:
            model = s.get_final_message().model
    else:
        model = client.messages.create(model=alias(name), max_tokens=64, messages=messages).model
    assert model == SERVED[name][1]


@model_matrix
def test_responses_model_is_the_served_model(gw: Servers, name: str, stream: bool) -> None:
    client = oai(gw)
    if stream:
        final = None
        for ev in client.responses.create(model=alias(name), input="Which model are you?", stream=True):
            if ev.type == "response.completed":
                final = ev.response
        assert final is not None
        model = final.model
    else:
        model = client.responses.create(model=alias(name), input="Which model are you?").model
    assert model == SERVED[name][1]


# ------------------------------------------------------------------------- usage keeps the true total

GEMINI_OPENAI = alias("gemini-openai")
QUESTION = [{"role": "user", "content": "How many tokens did you think?"}]


def upstream_usage(s: Servers, path: str) -> dict[str, Any]:
    """The usage the fake upstream reported for its last request on ``path``."""
    deadline = time.monotonic() + 5
    while True:
        seen = [r for r in s.mock.requests if r.path == path]
        if seen and seen[-1].usage is not None:
            return seen[-1].usage
        assert time.monotonic() < deadline, f"no finished upstream request on {path}"
        time.sleep(0.02)


def gemini_openai_usage(s: Servers) -> tuple[int, int, int]:
    """(prompt, completion, total) as Gemini's OpenAI-compatible endpoint reported them; its total
    includes thinking tokens that completion_tokens leaves out."""
    u = upstream_usage(s, "/v1beta/openai/chat/completions")
    assert u["total_tokens"] > u["prompt_tokens"] + u["completion_tokens"], u  # the endpoint's real shape
    return u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]


def assert_logged_total(access_log: LogCapture, model: str, prompt: int, total: int) -> None:
    line = log_line(access_log, model)
    assert (line["input_tokens"], line["output_tokens"]) == (prompt, total - prompt), line


@pytest.mark.parametrize("stream", [False, True])
def test_chat_same_format_counts_the_upstream_total(gw: Servers, access_log: LogCapture, stream: bool) -> None:
    client = oai(gw)
    if stream:
        chunks = list(client.chat.completions.create(model=GEMINI_OPENAI, messages=QUESTION, stream=True,
                                                     stream_options={"include_usage": True}))
        usage = chunks[-1].usage
    else:
        usage = client.chat.completions.create(model=GEMINI_OPENAI, messages=QUESTION).usage
    prompt, completion, total = gemini_openai_usage(gw)
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        prompt, completion, total)  # relayed as the upstream wrote it
    assert_logged_total(access_log, GEMINI_OPENAI, prompt, total)
    assert log_line(access_log, GEMINI_OPENAI)["reasoning_tokens"] == total - prompt - completion


@pytest.mark.parametrize("stream", [False, True])
def test_responses_client_sees_the_upstream_total(gw: Servers, access_log: LogCapture, stream: bool) -> None:
    client = oai(gw)
    if stream:
        done = [e for e in client.responses.create(model=GEMINI_OPENAI, input="Think, then answer.", stream=True)
                if e.type == "response.completed"]
        usage = done[0].response.usage
    else:
        usage = client.responses.create(model=GEMINI_OPENAI, input="Think, then answer.").usage
    prompt, completion, total = gemini_openai_usage(gw)
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (prompt, total - prompt, total)
    assert usage.output_tokens_details.reasoning_tokens == total - prompt - completion
    assert_logged_total(access_log, GEMINI_OPENAI, prompt, total)


@pytest.mark.parametrize("stream", [False, True])
def test_messages_output_tokens_include_the_hidden_thinking(gw: Servers, stream: bool) -> None:
    client = ant(gw)
    if stream:
        with client.messages.stream(model=GEMINI_OPENAI, max_tokens=256, messages=QUESTION) as s:
            usage = s.get_final_message().usage
    else:
        usage = client.messages.create(model=GEMINI_OPENAI, max_tokens=256, messages=QUESTION).usage
    prompt, _, total = gemini_openai_usage(gw)
    assert (usage.input_tokens, usage.output_tokens) == (prompt, total - prompt)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_from_gemini_native_counts_thoughts(gw: Servers, stream: bool) -> None:
    """Native Gemini reports thoughtsTokenCount apart from candidatesTokenCount: both are output."""
    client = oai(gw)
    kw: dict[str, Any] = {"model": alias("gemini"), "messages": QUESTION, "reasoning_effort": "low"}
    if stream:
        chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
        usage = chunks[-1].usage
    else:
        usage = client.chat.completions.create(**kw).usage
    u = upstream_usage(gw, "/v1beta/models/gemini-2.5-flash:" + ("streamGenerateContent" if stream else
                                                                 "generateContent"))
    assert u.get("thoughtsTokenCount"), u
    assert usage is not None
    assert usage.total_tokens == u["totalTokenCount"]
    assert usage.completion_tokens == u["candidatesTokenCount"] + u["thoughtsTokenCount"]
    assert usage.completion_tokens_details.reasoning_tokens == u["thoughtsTokenCount"]


def test_token_limit_settles_the_upstream_total(gw: Servers) -> None:
    """Two identical calls: the second one's remaining-tokens header is lower than the first one's by
    exactly what the first call settled, which must be the upstream's total, hidden thinking included."""
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=LIMITS_KEY, max_retries=0)
    if 60 - time.time() % 60 < 3:  # both calls in one limits window, so nothing decays between them
        time.sleep(60 - time.time() % 60 + 0.1)

    def remaining() -> int:
        raw = client.chat.completions.with_raw_response.create(model=GEMINI_OPENAI, messages=QUESTION, max_tokens=50)
        return int(raw.headers["x-ratelimit-remaining-tokens"])

    first = remaining()
    _, _, total = gemini_openai_usage(gw)
    assert first - remaining() == total


# ------------------------------------------------------------- message_start input tokens (Messages)

LONG_PROMPT = ("Please summarise the following notes about the project plan for next week. " * 12).strip()


def test_translated_messages_stream_opens_with_an_input_estimate(gw: Servers) -> None:
    client = ant(gw)
    with client.messages.stream(model=alias("openai"), max_tokens=64,
                                messages=[{"role": "user", "content": LONG_PROMPT}]) as s:
        events = list(s)
        final = s.get_final_message()
    start = next(e for e in events if e.type == "message_start")
    reported = upstream_usage(gw, "/v1/chat/completions")["prompt_tokens"]
    estimate = start.message.usage.input_tokens
    assert abs(estimate - reported) <= reported * 0.25, (estimate, reported)
    assert final.usage.input_tokens == reported  # message_delta carries the upstream's own count
