"""Issue 13, translation fidelity towards Gemini and Bedrock, end to end: official SDKs through the real
gateway to the fake upstream, checking what the upstream received and what the client got back."""

from __future__ import annotations

import anthropic
import openai

from tests.harness import Servers

BEDROCK_CLAUDE = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
JPEG = "/9j/4AAQSkZJRgABAQ"
TOOLS = [
    {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
]


def messages_client(servers: Servers) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=servers.url, api_key="k", max_retries=0)


def chat_client(servers: Servers) -> openai.OpenAI:
    return openai.OpenAI(base_url=servers.url + "/v1", api_key="k", max_retries=0)


def upstream_body(mock, fragment: str) -> dict:
    return [r for r in mock.requests if fragment in r.path][-1].body


def test_effort_alone_leaves_thinking_off_on_bedrock_claude(servers: Servers, mock) -> None:
    r = messages_client(servers).messages.create(
        model=BEDROCK_CLAUDE, max_tokens=300, output_config={"effort": "low"},
        messages=[{"role": "user", "content": "Hello"}],
        extra_body={"temperature": 0.3},  # no longer a typed parameter of the SDK; still one of the API
    )
    assert [b.type for b in r.content] == ["text"]
    sent = upstream_body(mock, "/model/anthropic.claude")
    assert sent["additionalModelRequestFields"] == {"output_config": {"effort": "low"}}
    assert sent["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.3}
    assert "outputConfig" not in sent


def test_effort_alone_sets_no_gemini_thinking(servers: Servers, mock) -> None:
    r = messages_client(servers).messages.create(
        model="gemini-2.5-flash", max_tokens=300, output_config={"effort": "high"},
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert [b.type for b in r.content] == ["text"]
    assert "thinkingConfig" not in upstream_body(mock, "gemini-2.5-flash:")["generationConfig"]


def test_jpg_image_reaches_gemini_as_jpeg(servers: Servers, mock) -> None:
    r = chat_client(servers).chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{JPEG}"}},
    ]}])
    assert r.choices[0].message.content
    part = upstream_body(mock, "gemini-2.5-flash:")["contents"][0]["parts"][1]
    assert part == {"inlineData": {"mimeType": "image/jpeg", "data": JPEG}}


def test_gemini3_answer_has_no_empty_thinking_block(servers: Servers, mock) -> None:
    client = messages_client(servers)
    request = {"model": "gemini-3-pro-preview", "max_tokens": 300, "messages": [{"role": "user", "content": "Hi"}]}
    r = client.messages.create(**request)
    assert [b.type for b in r.content] == ["text"]
    with client.messages.stream(**request) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == r.content[0].text


def test_gemini3_tool_turns_still_work_through_messages(servers: Servers, mock) -> None:
    client = messages_client(servers)
    history: list[dict] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model="gemini-3-pro-preview", max_tokens=300, tools=TOOLS[:1], messages=history)
    assert [b.type for b in first.content] == ["tool_use"]
    history += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[0].id, "content": "21C"}]},
    ]
    second = client.messages.create(model="gemini-3-pro-preview", max_tokens=300, tools=TOOLS[:1], messages=history)
    assert [b.type for b in second.content] == ["text"] and "21C" in second.content[0].text


def test_parallel_tool_calls_off_on_bedrock_claude(servers: Servers, mock) -> None:
    tools = [{"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}} for t in TOOLS]
    request = {"model": BEDROCK_CLAUDE, "messages": [{"role": "user", "content": "Weather and time?"}], "tools": tools}
    both = chat_client(servers).chat.completions.create(**request)
    assert len(both.choices[0].message.tool_calls) == 2
    one = chat_client(servers).chat.completions.create(**request, parallel_tool_calls=False)
    assert [c.function.name for c in one.choices[0].message.tool_calls] == ["get_weather"]
    sent = upstream_body(mock, "/model/anthropic.claude")
    assert sent["additionalModelRequestFields"]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_disable_parallel_tool_use_on_bedrock_claude_stream(servers: Servers, mock) -> None:
    with messages_client(servers).messages.stream(
        model=BEDROCK_CLAUDE, max_tokens=300, tools=TOOLS, messages=[{"role": "user", "content": "Weather and time?"}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    ) as s:
        final = s.get_final_message()
    assert [(b.type, b.name) for b in final.content] == [("tool_use", "get_weather")]
    sent = upstream_body(mock, "/model/anthropic.claude")
    assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    assert sent["additionalModelRequestFields"]["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
