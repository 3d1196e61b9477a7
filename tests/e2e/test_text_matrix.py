"""The issue-3 matrix: {chat, messages, responses} x {OpenAI provider, Anthropic provider} x {stream, not},
each a multi-turn tool-call conversation driven by the official SDK through the real gateway."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.harness import Servers

# provider -> (client-facing model, path fragment of its upstream calls, upstream format)
PROVIDERS = {
    "openai": ("gpt-4o-mini", "/v1/", "openai"),
    "anthropic": ("claude-sonnet-4-6", "/v1/messages", "anthropic"),
    "azure": ("azure/gpt-4o", "/openai/v1/", "openai"),
    "azure-dated": ("azure-dated/my-deployment", "/openai/deployments/my-deployment/", "openai"),
    "groq": ("groq/llama-3.3-70b", "/v1/chat/completions", "openai"),
    "bedrock": ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", "/model/anthropic.claude", "bedrock"),
    "bedrock-key": ("bedrock-key/amazon.nova-pro-v1:0", "/model/amazon.nova", "bedrock"),
    "gemini": ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:", "gemini"),
    "vertex-gemini": ("vertex/gemini-2.5-pro", "/publishers/google/models/gemini-2.5-pro:", "gemini"),
    "vertex-claude": ("vertex/claude-sonnet-4-6", "/publishers/anthropic/models/claude-sonnet-4-6:", "anthropic"),
}
PROVIDER_MODELS = {name: model for name, (model, _, _) in PROVIDERS.items()}
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"name": "get_time", "description": "Local time",
        "schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
RESULTS = {"get_weather": "21C and sunny", "get_time": "14:00"}
EXPECTED_ANSWER = "Tool results: 21C and sunny | 14:00"

matrix = pytest.mark.parametrize(("provider", "stream"), [
    (p, s) for p in PROVIDER_MODELS for s in (False, True)])


def last_upstream(mock, provider: str):
    fragment = PROVIDERS[provider][1]
    return [r for r in mock.requests if fragment in r.path][-1]


def output_tokens(seen) -> int:
    """What the fake upstream reported as output tokens, in whichever format it spoke."""
    u = seen.usage
    for key in ("completion_tokens", "output_tokens", "outputTokens", "candidatesTokenCount"):
        if key in u:
            return u[key] + u.get("thoughtsTokenCount", 0)
    raise AssertionError(u)


@matrix
def test_chat_completions(servers: Servers, mock, provider: str, stream: bool) -> None:
    client = openai.OpenAI(base_url=servers.url + "/v1", api_key="k", max_retries=0)
    tools = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                               "parameters": t["schema"]}} for t in (WEATHER, TIME)]
    messages: list[dict] = [{"role": "system", "content": "You are terse."},
                            {"role": "user", "content": "Weather and time in Paris?"}]

    def call() -> tuple[str | None, list[dict], str, dict | None]:
        if not stream:
            r = client.chat.completions.create(model=PROVIDER_MODELS[provider], messages=messages, tools=tools)
            m = r.choices[0].message
            calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                     for c in m.tool_calls or []]
            return m.content, calls, r.choices[0].finish_reason, r.usage.model_dump()
        text, calls, finish, usage = "", {}, "", None
        for chunk in client.chat.completions.create(model=PROVIDER_MODELS[provider], messages=messages,
                                                    tools=tools, stream=True, stream_options={"include_usage": True}):
            if chunk.usage:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for tc in choice.delta.tool_calls or []:
                    entry = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "arguments": ""})
                    entry["arguments"] += tc.function.arguments or ""
                finish = choice.finish_reason or finish
        return text or None, [calls[i] for i in sorted(calls)], finish, usage

    content, calls, finish, usage = call()
    assert finish == "tool_calls"
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "city-sample"}
    seen = last_upstream(mock, provider)
    assert usage is not None and usage["completion_tokens"] == output_tokens(seen)
    messages.append({"role": "assistant", "content": content, "tool_calls": [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls]})
    messages += [{"role": "tool", "tool_call_id": c["id"], "content": RESULTS[c["name"]]} for c in calls]
    content, calls, finish, _ = call()
    assert (content, calls, finish) == (EXPECTED_ANSWER, [], "stop")
    if PROVIDERS[provider][2] == "anthropic":
        sent = last_upstream(mock, provider).body
        assert sent["system"] in ("You are terse.", [{"type": "text", "text": "You are terse."}])
        assert [b["type"] for b in sent["messages"][-1]["content"]] == ["tool_result", "tool_result"]


@matrix
def test_messages(servers: Servers, mock, provider: str, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=servers.url, api_key="k", max_retries=0)
    tools = [{"name": t["name"], "description": t["description"], "input_schema": t["schema"]}
             for t in (WEATHER, TIME)]
    messages: list[dict] = [{"role": "user", "content": "Weather and time in Paris?"}]

    def call() -> anthropic.types.Message:
        kwargs = dict(model=PROVIDER_MODELS[provider], max_tokens=1024, system="You are terse.",
                      messages=messages, tools=tools)
        if not stream:
            return client.messages.create(**kwargs)
        with client.messages.stream(**kwargs) as s:
            events = [e.type for e in s]
            final = s.get_final_message()
        assert events[0] == "message_start" and events[-1] == "message_stop"
        return final

    msg = call()
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather", "get_time"]
    assert uses[0].input == {"city": "city-sample"}
    seen = last_upstream(mock, provider)
    assert msg.usage.output_tokens == output_tokens(seen)
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]})
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": u.id, "content": RESULTS[u.name]} for u in uses]})
    msg = call()
    assert msg.stop_reason == "end_turn"
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == EXPECTED_ANSWER
    if PROVIDERS[provider][2] == "openai":
        sent = last_upstream(mock, provider).body
        assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
        assert [m["role"] for m in sent["messages"][-2:]] == ["tool", "tool"]


@matrix
def test_responses_with_previous_response_id(servers: Servers, mock, provider: str, stream: bool) -> None:
    client = openai.OpenAI(base_url=servers.url + "/v1", api_key="k", max_retries=0)
    tools = [{"type": "function", "name": t["name"], "description": t["description"], "parameters": t["schema"]}
             for t in (WEATHER, TIME)]

    def call(**kwargs):
        kwargs = dict(model=PROVIDER_MODELS[provider], tools=tools, instructions="You are terse.", **kwargs)
        if not stream:
            return client.responses.create(**kwargs)
        with client.responses.stream(**kwargs) as s:
            types = [e.type for e in s]
            final = s.get_final_response()
        assert types[:2] == ["response.created", "response.in_progress"]
        assert types[-1] == "response.completed"
        return final

    first = call(input="Weather and time in Paris?")
    calls = [o for o in first.output if o.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].arguments) == {"city": "city-sample"}
    assert first.usage is not None and first.usage.output_tokens > 0
    # continue with only the new items: the gateway (or OpenAI) supplies the history
    second = call(previous_response_id=first.id, input=[
        {"type": "function_call_output", "call_id": c.call_id, "output": RESULTS[c.name]} for c in calls])
    assert second.output_text == EXPECTED_ANSWER
    assert second.previous_response_id == first.id
    if PROVIDERS[provider][2] == "anthropic":
        sent = last_upstream(mock, provider).body
        # the translated upstream received the whole conversation, rebuilt from the store
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        first_turn = sent["messages"][0]["content"]
        assert first_turn in ("Weather and time in Paris?", [{"type": "text", "text": "Weather and time in Paris?"}])
        assert [b["type"] for b in sent["messages"][1]["content"]] == ["tool_use", "tool_use"]
    # stored: retrievable, its input items listed, deletable
    got = client.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == EXPECTED_ANSWER
    items = client.responses.input_items.list(second.id, order="asc")
    types = [i.type for i in items.data]
    assert types[-2:] == ["function_call_output", "function_call_output"]
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)
