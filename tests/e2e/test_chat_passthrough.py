"""Chat completions through the gateway to an OpenAI-format upstream, with the official SDK and raw
HTTP: the same-format fast path, its errors, and cancellation."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
import trio

import trigate
from tests.harness import UPSTREAM_KEY, Servers
from trigate.mock.state import Fault

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
}


def client(servers: Servers) -> openai.OpenAI:
    return openai.OpenAI(base_url=servers.url + "/v1", api_key="client-key", max_retries=0)


def test_sync_completion(servers: Servers, mock) -> None:
    r = client(servers).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello there"}])
    assert r.choices[0].message.content == "Hello from the trigate mock. You said: Hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == mock.requests[-1].usage["completion_tokens"] == 9
    seen = mock.requests[-1]
    assert seen.body["model"] == "gpt-4o-mini"
    # the provider key is injected, the client's own key is not passed on
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    # the gateway names itself, and asks for no compression it would have to undo on the fast path
    assert seen.headers["user-agent"] == f"trigate/{trigate.__version__}"
    assert "accept-encoding" not in seen.headers and "cookie" not in seen.headers


def test_alias_and_prefix_routes_rewrite_the_model(servers: Servers, mock) -> None:
    c = client(servers)
    c.chat.completions.create(model="fast", messages=[{"role": "user", "content": "a"}])
    assert mock.requests[-1].body["model"] == "gpt-4o-mini"
    c.chat.completions.create(model="openai/gpt-5", messages=[{"role": "user", "content": "b"}])
    assert mock.requests[-1].body["model"] == "gpt-5"


def test_sync_stream_with_usage(servers: Servers, mock) -> None:
    stream = client(servers).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream me"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the trigate mock. You said: stream me"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_stream_without_usage_hides_the_forced_usage_chunk(servers: Servers, mock, access_log) -> None:
    chunks = list(client(servers).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "no usage please"}], stream=True))
    assert all(c.choices for c in chunks), "a usage-only chunk leaked to a client that did not ask for it"
    # ...but the gateway asked upstream for usage, and accounted for it
    assert mock.requests[-1].body["stream_options"] == {"include_usage": True}
    time.sleep(0.05)
    line = json.loads(access_log.snapshot()[-1])
    assert line["stream"] is True and line["output_tokens"] == mock.requests[-1].usage["completion_tokens"]


async def test_async_client_stream_and_tools(servers: Servers, mock) -> None:
    c = openai.AsyncOpenAI(base_url=servers.url + "/v1", api_key="k", max_retries=0)
    messages = [{"role": "user", "content": "Weather and time in Paris?"}]
    stream = await c.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                             tools=[WEATHER_TOOL, TIME_TOOL], stream=True)
    calls: dict[int, dict] = {}
    finish = None
    async for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "arguments": ""})
            entry["arguments"] += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "city-sample"}
    # second turn: tool results go back, the model answers with them
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": calls[i]["id"], "type": "function",
         "function": {"name": calls[i]["name"], "arguments": calls[i]["arguments"]}} for i in sorted(calls)]})
    messages += [{"role": "tool", "tool_call_id": calls[0]["id"], "content": "21C"},
                 {"role": "tool", "tool_call_id": calls[1]["id"], "content": "14:00"}]
    r = await c.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    assert r.choices[0].message.content == "Tool results: 21C | 14:00"
    await c.close()


def test_unknown_model_is_404_model_not_found(servers: Servers) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(servers).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert "no-such-model" in info.value.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "gpt-4o-mini"}', "messages"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', "messages"),
        (b'{"model": "gpt-4o-mini", "messages": [{"content": "x"}]}', "messages[0].role"),
        (b"[1, 2]", None),
    ],
)
def test_bad_input_is_400_naming_the_field(servers: Servers, body: bytes, field: str | None) -> None:
    r = httpx.post(servers.url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    if field is None:
        assert "JSON" in err["message"]
    else:
        assert err["param"] == field and field in err["message"]


def test_upstream_error_keeps_status_and_openai_shape(servers: Servers, mock) -> None:
    mock.add_fault(Fault(status=429, message="slow down", headers={"retry-after": "7"}))
    r = httpx.post(servers.url + "/v1/chat/completions",
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 429
    assert r.json()["error"]["message"] == "slow down"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert r.headers["retry-after"] == "7"
    # the gateway retries a 500 once; when that fails too the client sees it
    mock.add_fault(Fault(status=500, message="boom", times=2))
    with pytest.raises(openai.InternalServerError):
        client(servers).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


def test_malformed_upstream_body_is_502(servers: Servers, mock) -> None:
    mock.add_fault(Fault(malformed=True, times=2))
    r = httpx.post(servers.url + "/v1/chat/completions",
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502
    assert "openai" in r.json()["error"]["message"]


def test_upstream_drop_mid_stream_gives_an_error_event(servers: Servers, mock) -> None:
    mock.add_fault(Fault(drop_after=3))
    stream = client(servers).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three four five"}], stream=True)
    got = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk)
    assert len(got) == 3
    assert "connection" in str(info.value.message).lower()


def test_client_disconnect_cancels_upstream_within_100ms() -> None:
    # A slow upstream (50 ms per token) so the stream is surely in flight when the client leaves.
    from tests.harness import openai_config

    with Servers(openai_config, mock_key=UPSTREAM_KEY, token_delay_ms=50) as s:
        with httpx.Client(timeout=10) as http:
            with http.stream("POST", s.url + "/v1/chat/completions", json={
                    "model": "gpt-4o-mini", "stream": True,
                    "messages": [{"role": "user", "content": " ".join(["word"] * 100)}]}) as r:
                lines = r.iter_lines()
                assert next(lines).startswith("data: ")
                seen = s.mock.requests[-1]
                assert seen.disconnected is None
                closed_at = time.monotonic()
            # leaving the block closed the connection mid-stream
        deadline = closed_at + 2
        while seen.disconnected is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert seen.disconnected is not None, "upstream never saw the disconnect"
        assert seen.disconnected - closed_at < 0.1
        assert seen.finished is None


def test_health_and_ready(servers: Servers) -> None:
    assert httpx.get(servers.url + "/health").json() == {"status": "ok"}
    r = httpx.get(servers.url + "/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_unknown_endpoint_is_openai_shaped_404(servers: Servers) -> None:
    r = httpx.get(servers.url + "/v1/nope")
    assert r.status_code == 404 and "no such endpoint" in r.json()["error"]["message"]


def test_access_log_has_one_line_per_request_and_no_keys(servers: Servers, mock, access_log) -> None:
    before = len(access_log.snapshot())
    client(servers).chat.completions.create(model="fast", messages=[{"role": "user", "content": "log me"}])
    httpx.post(servers.url + "/v1/chat/completions",
               json={"model": "missing", "messages": [{"role": "user", "content": "x"}]},
               headers={"authorization": "Bearer client-secret-key"})
    trio.run(trio.sleep, 0.05)
    lines = access_log.snapshot()[before:]
    assert len(lines) == 2
    ok, missing = (json.loads(x) for x in lines)
    assert ok["model"] == "fast" and ok["upstream_model"] == "gpt-4o-mini" and ok["provider"] == "openai"
    assert ok["status"] == 200 and ok["input_tokens"] == mock.requests[-1].usage["prompt_tokens"]
    assert missing["status"] == 404 and missing["error"] == "not_found"
    blob = "\n".join(access_log.snapshot())
    assert UPSTREAM_KEY not in blob and "client-secret-key" not in blob
