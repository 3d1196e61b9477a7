"""The fake upstream's Google routes (trigate/mock/gemini.py), served in-process by Hypercorn and driven
with httpx and the Gemini codec: Developer API and Vertex AI generateContent / streamGenerateContent /
countTokens, Vertex Claude rawPredict / streamRawPredict, auth, validation, faults and disconnects."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio

from trigate.formats import get_codec
from trigate.formats.gemini import CODEC
from trigate.mock.gemini import register
from trigate.mock.state import Fault, MockState
from trigate.translate import ir
from trigate.wire.sse import SSEDecoder

KEY = "gm-test-key-123"
DEV = "/v1beta/models/gemini-2.5-flash"
VERTEX = "/v1/projects/proj-1/locations/us-central1/publishers"


@pytest.fixture
async def server(nursery: trio.Nursery) -> tuple[str, MockState]:
    state = MockState(api_key=KEY)
    app = QuartTrio("test-gemini-mock")
    app.config["RESPONSE_TIMEOUT"] = None
    register(app, state)
    hc = HyperConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.errorlog = None
    hc.graceful_timeout = 1
    binds = await nursery.start(partial(serve, app, hc, shutdown_trigger=trio.sleep_forever))  # type: ignore[arg-type]
    return binds[0], state


def _client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, timeout=10)


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


WEATHER = {
    "functionDeclarations": [
        {"name": "get_weather", "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {}}},
    ]
}


async def _generate(c: httpx.AsyncClient, body: dict[str, Any], path: str = DEV, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", {"x-goog-api-key": KEY})
    return await c.post(f"{path}:generateContent", json=body, headers=headers, **kw)


def _sse_events(raw: bytes) -> list[ir.StreamEvent]:
    sse = SSEDecoder()
    dec = CODEC.stream_decoder(ir.Request(model="m"))
    out: list[ir.StreamEvent] = []
    for ev in sse.feed(raw):
        out.extend(dec.feed(ev))
    for ev in sse.close():
        out.extend(dec.feed(ev))
    out.extend(dec.close())
    return out


# --------------------------------------------------------------------------------------------
# Developer API
# --------------------------------------------------------------------------------------------


async def test_generate_text(server: tuple[str, MockState]) -> None:
    base, state = server
    async with _client(base) as c:
        r = await _generate(
            c, {"contents": [_user("Hello there")], "systemInstruction": {"parts": [{"text": "Be nice"}]}}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    resp = CODEC.decode_response(body)
    assert resp.content == [ir.Text("Hello from the trigate mock. You said: Hello there")]
    assert resp.stop_reason == "end_turn" and resp.model == "gemini-2.5-flash" and resp.id
    u = body["usageMetadata"]
    assert u["totalTokenCount"] == u["promptTokenCount"] + u["candidatesTokenCount"]
    assert resp.usage == ir.Usage(input_tokens=u["promptTokenCount"], output_tokens=u["candidatesTokenCount"])
    seen = state.requests[-1]
    assert seen.path == f"{DEV}:generateContent" and seen.usage == u and seen.finished is not None


async def test_auth(server: tuple[str, MockState]) -> None:
    base, _ = server
    body = {"contents": [_user("hi")]}
    async with _client(base) as c:
        missing = await _generate(c, body, headers={})
        wrong = await _generate(c, body, headers={"x-goog-api-key": "nope"})
        by_query = await c.post(f"{DEV}:generateContent", json=body, params={"key": KEY})
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert wrong.status_code == 400
    err = CODEC.parse_error(wrong.status_code, wrong.content)
    assert err.kind == "authentication"  # API_KEY_INVALID
    assert by_query.status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "gemini-2.5-flash", "contents": [_user("hi")]}, 'Unknown name "model"'),
        ({"contents": [_user("hi")], "generationConfig": {"max_tokens": 5}}, 'Unknown name "max_tokens"'),
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, "empty text parameter"),
        (
            {
                "contents": [
                    _user("hi"),
                    {"role": "model", "parts": [{"functionCall": {"name": "a"}}, {"functionCall": {"name": "b"}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {}}}]},
                ]
            },
            "number of function response parts",
        ),
        (
            {
                "contents": [
                    _user("hi"),
                    {"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {}}}]},
                ]
            },
            "immediately after a function call turn",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "a", "response": "ok"}}]}]},
            "function_response.response",
        ),
        (
            {
                "contents": [_user("hi")],
                "generationConfig": {"thinkingConfig": {"thinkingBudget": 1, "thinkingLevel": "LOW"}},
            },
            "thinking budget and thinking level",
        ),
    ],
)
async def test_validation(server: tuple[str, MockState], body: dict[str, Any], fragment: str) -> None:
    base, _ = server
    async with _client(base) as c:
        r = await _generate(c, body)
    assert r.status_code == 400
    assert fragment in r.json()["error"]["message"]
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_snake_case_bodies_are_accepted(server: tuple[str, MockState]) -> None:
    base, _ = server
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generation_config": {"max_output_tokens": 3}}
    async with _client(base) as c:
        r = await _generate(c, body)
    assert r.status_code == 200
    assert r.json()["candidates"][0]["finishReason"] == "MAX_TOKENS"


async def test_tool_calls_and_results(server: tuple[str, MockState]) -> None:
    base, _ = server
    async with _client(base) as c:
        first = await _generate(c, {"contents": [_user("weather?")], "tools": [WEATHER]})
        forced = await _generate(
            c,
            {
                "contents": [_user("weather?")],
                "tools": [WEATHER],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}},
            },
        )
        none = await _generate(
            c,
            {
                "contents": [_user("weather?")],
                "tools": [WEATHER],
                "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
            },
        )
    parts = first.json()["candidates"][0]["content"]["parts"]
    assert [p["functionCall"]["name"] for p in parts] == ["get_weather", "get_time"]
    assert all("id" not in p["functionCall"] for p in parts)  # like the Developer API
    assert "thoughtSignature" in parts[0] and "thoughtSignature" not in parts[1]
    assert parts[0]["functionCall"]["args"] == {"city": "city-sample"}
    assert CODEC.decode_response(first.json()).stop_reason == "tool_use"
    assert [p["functionCall"]["name"] for p in forced.json()["candidates"][0]["content"]["parts"]] == ["get_time"]
    assert "text" in none.json()["candidates"][0]["content"]["parts"][0]

    history = [
        _user("weather?"),
        {"role": "model", "parts": parts},
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                {"functionResponse": {"name": "get_time", "response": {"now": "noon"}}},
            ],
        },
    ]
    async with _client(base) as c:
        second = await _generate(c, {"contents": history, "tools": [WEATHER]})
    assert second.json()["candidates"][0]["content"]["parts"][0]["text"] == 'Tool results: sunny | {"now":"noon"}'


async def test_gemini3_requires_signatures(server: tuple[str, MockState]) -> None:
    base, _ = server
    call = {"functionCall": {"name": "get_time", "args": {}}}
    result = {"role": "user", "parts": [{"functionResponse": {"name": "get_time", "response": {"t": 1}}}]}
    path = "/v1beta/models/gemini-3-pro-preview"
    async with _client(base) as c:
        unsigned = await _generate(c, {"contents": [_user("t?"), {"role": "model", "parts": [call]}, result]}, path)
        signed = await _generate(
            c,
            {"contents": [_user("t?"), {"role": "model", "parts": [{**call, "thoughtSignature": "AAAA"}]}, result]},
            path,
        )
        # an older turn (before the last user text) is not validated
        old = await _generate(
            c, {"contents": [_user("t?"), {"role": "model", "parts": [call]}, result, _user("again")]}, path
        )
    assert unsigned.status_code == 400 and "thought_signature" in unsigned.json()["error"]["message"]
    assert signed.status_code == 200 and old.status_code == 200
    # Gemini 3 signs its text answers too
    assert "thoughtSignature" in signed.json()["candidates"][0]["content"]["parts"][-1]


async def test_thinking(server: tuple[str, MockState]) -> None:
    base, _ = server
    body = {
        "contents": [_user("think")],
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}},
    }
    async with _client(base) as c:
        r = await _generate(c, body)
    resp = CODEC.decode_response(r.json())
    assert isinstance(resp.content[0], ir.Reasoning) and resp.content[0].text
    assert resp.usage.reasoning_tokens == r.json()["usageMetadata"]["thoughtsTokenCount"] > 0


async def test_count_tokens_and_models(server: tuple[str, MockState]) -> None:
    base, _ = server
    async with _client(base) as c:
        r = await c.post(
            f"{DEV}:countTokens", json={"contents": [_user("one two three")]}, headers={"x-goog-api-key": KEY}
        )
        wrapped = await c.post(
            f"{DEV}:countTokens",
            json={"generateContentRequest": {"model": "models/gemini-2.5-flash", "contents": [_user("one two three")]}},
            headers={"x-goog-api-key": KEY},
        )
        models = await c.get("/v1beta/models", headers={"x-goog-api-key": KEY})
        unknown = await c.post(f"{DEV}:embedEverything", json={}, headers={"x-goog-api-key": KEY})
    assert r.json()["totalTokens"] == 3 + 3 == wrapped.json()["totalTokens"]
    assert "models/gemini-2.5-flash" in [m["name"] for m in models.json()["models"]]
    assert unknown.status_code == 404


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


async def test_stream_sse(server: tuple[str, MockState]) -> None:
    base, state = server
    body = {"contents": [_user("stream this please")]}
    async with _client(base) as c:
        plain = (await _generate(c, body)).json()
        r = await c.post(
            f"{DEV}:streamGenerateContent", params={"alt": "sse"}, json=body, headers={"x-goog-api-key": KEY}
        )
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.content.count(b"\r\n\r\n") >= 3 and b"event:" not in r.content
    events = _sse_events(r.content)
    text = "".join(e.text for e in events if isinstance(e, ir.TextDelta))
    assert text == plain["candidates"][0]["content"]["parts"][0]["text"]
    end = events[-1]
    assert isinstance(end, ir.MessageEnd) and end.stop_reason == "end_turn"
    assert end.usage.output_tokens == plain["usageMetadata"]["candidatesTokenCount"]
    assert state.requests[-1].usage["totalTokenCount"] == plain["usageMetadata"]["totalTokenCount"]
    assert state.requests[-1].finished is not None


async def test_stream_tool_calls_and_json_array(server: tuple[str, MockState]) -> None:
    base, _ = server
    body = {"contents": [_user("weather?")], "tools": [WEATHER]}
    async with _client(base) as c:
        r = await c.post(
            f"{DEV}:streamGenerateContent", params={"alt": "sse"}, json=body, headers={"x-goog-api-key": KEY}
        )
        arr = await c.post(f"{DEV}:streamGenerateContent", json=body, headers={"x-goog-api-key": KEY})
    events = _sse_events(r.content)
    starts = [e for e in events if isinstance(e, ir.BlockStart)]
    assert [(s.kind, s.tool_name, bool(s.signature)) for s in starts] == [
        ("tool_call", "get_weather", True),
        ("tool_call", "get_time", False),
    ]
    assert events[-1].stop_reason == "tool_use"
    # Without alt=sse the same chunks come as one JSON array.
    chunks = arr.json()
    assert isinstance(chunks, list) and chunks[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_stream_faults(server: tuple[str, MockState]) -> None:
    base, state = server
    body = {"contents": [_user("a b c d e f g")]}
    url = f"{DEV}:streamGenerateContent"
    async with _client(base) as c:
        state.add_fault(Fault(error_after=2, error_type="RESOURCE_EXHAUSTED", message="quota"))
        errored = await c.post(url, params={"alt": "sse"}, json=body, headers={"x-goog-api-key": KEY})
        state.add_fault(Fault(drop_after=2))
        raw = b""
        try:
            async with c.stream("POST", url, params={"alt": "sse"}, json=body, headers={"x-goog-api-key": KEY}) as r:
                async for piece in r.aiter_raw():
                    raw += piece
        except httpx.HTTPError:
            pass  # the injected drop may surface as a protocol error
    err = _sse_events(errored.content)[-1]
    assert isinstance(err, ir.StreamError) and (err.error.kind, err.error.status) == ("rate_limit", 429)
    dropped = _sse_events(raw)
    assert sum(isinstance(e, ir.TextDelta) for e in dropped) == 2
    assert isinstance(dropped[-1], ir.StreamError) and dropped[-1].error.kind == "upstream_unavailable"


async def test_disconnect_is_recorded(server: tuple[str, MockState]) -> None:
    base, state = server
    state.token_delay_ms = 50
    body = {"contents": [_user(" ".join(["word"] * 40))]}
    async with _client(base) as c:
        async with c.stream(
            "POST", f"{DEV}:streamGenerateContent", params={"alt": "sse"}, json=body, headers={"x-goog-api-key": KEY}
        ) as r:
            async for _ in r.aiter_raw():
                break
    seen = state.requests[-1]
    with trio.move_on_after(3):
        # The mock records the disconnect from another task; there is no event to wait on.
        while seen.disconnected is None:  # noqa: ASYNC110
            await trio.sleep(0.02)
    assert seen.disconnected is not None and seen.finished is None


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=429, message="slow down", headers={"retry-after": "5"}),
        Fault(status=503, message="overloaded"),
        Fault(malformed=True),
    ],
)
async def test_non_stream_faults(server: tuple[str, MockState], fault: Fault) -> None:
    base, state = server
    state.add_fault(fault)
    async with _client(base) as c:
        r = await _generate(c, {"contents": [_user("hi")]})
    if fault.malformed:
        assert r.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            r.json()
        return
    err = CODEC.parse_error(r.status_code, r.content)
    assert r.status_code == fault.status and err.message == fault.message
    if fault.status == 429:
        assert (err.kind, err.retry_after, r.headers["retry-after"]) == ("rate_limit", 5.0, "5")
    else:
        assert err.kind == "overloaded"


# --------------------------------------------------------------------------------------------
# Vertex AI
# --------------------------------------------------------------------------------------------


async def test_vertex_gemini(server: tuple[str, MockState]) -> None:
    base, state = server
    path = f"{VERTEX}/google/models/gemini-2.5-pro"
    body = {"contents": [_user("hello vertex")]}
    async with _client(base) as c:
        ok = await _generate(c, body, path, headers={"authorization": f"Bearer {KEY}"})
        denied = await _generate(c, body, path, headers={"x-goog-api-key": KEY})
        streamed = await c.post(
            f"{path}:streamGenerateContent",
            params={"alt": "sse"},
            json=body,
            headers={"authorization": f"Bearer {KEY}"},
        )
        beta = await _generate(c, body, path.replace("/v1/", "/v1beta1/"), headers={"authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and ok.json()["modelVersion"] == "gemini-2.5-pro"
    assert denied.status_code == 401 and CODEC.parse_error(401, denied.content).kind == "authentication"
    assert isinstance(_sse_events(streamed.content)[-1], ir.MessageEnd)
    assert beta.status_code == 200
    assert state.requests[0].path.endswith("/publishers/google/models/gemini-2.5-pro:generateContent")


async def test_vertex_claude(server: tuple[str, MockState]) -> None:
    base, _ = server
    auth = {"authorization": f"Bearer {KEY}"}
    path = f"{VERTEX}/anthropic/models/claude-sonnet-4-5@20250929"
    body = {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi Claude"}],
    }
    async with _client(base) as c:
        ok = await c.post(f"{path}:rawPredict", json=body, headers=auth)
        no_version = await c.post(
            f"{path}:rawPredict", json={k: v for k, v in body.items() if k != "anthropic_version"}, headers=auth
        )
        with_model = await c.post(f"{path}:rawPredict", json={**body, "model": "claude"}, headers=auth)
        unauth = await c.post(f"{path}:rawPredict", json=body)
        streamed = await c.post(f"{path}:streamRawPredict", json={**body, "stream": True}, headers=auth)
        counted = await c.post(
            f"{VERTEX}/anthropic/models/count-tokens:rawPredict",
            json={"model": "claude-sonnet-4-5", "messages": body["messages"]},
            headers=auth,
        )
        wrong = await c.post(f"{VERTEX}/meta/models/llama:rawPredict", json=body, headers=auth)
    msg = ok.json()
    assert msg["type"] == "message" and msg["model"] == "claude-sonnet-4-5@20250929"
    assert msg["content"][0]["text"] == "Hello from the trigate mock. You said: Hi Claude"
    assert no_version.status_code == 400 and "anthropic_version" in no_version.json()["error"]["message"]
    assert with_model.status_code == 400 and with_model.json()["type"] == "error"
    assert unauth.status_code == 401
    anthropic = get_codec("anthropic")
    sse, dec, events = SSEDecoder(), anthropic.stream_decoder(ir.Request(model="m")), []
    for ev in sse.feed(streamed.content):
        events.extend(dec.feed(ev))
    assert isinstance(events[-1], ir.MessageEnd) and events[-1].stop_reason == "end_turn"
    assert counted.json()["input_tokens"] > 0
    assert wrong.status_code == 404


# --------------------------------------------------------------------------------------------
# Through the codec: another format's conversation, Gemini upstream, two turns
# --------------------------------------------------------------------------------------------


async def test_chat_tool_loop_through_codec(server: tuple[str, MockState]) -> None:
    base, state = server
    chat = get_codec("openai_chat")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo?"}]
    path = "/v1beta/models/gemini-3-pro-preview"
    async with _client(base) as c:
        req = chat.decode_request({"model": "g", "messages": messages, "tools": tools})
        r1 = await _generate(c, CODEC.encode_request(req, "gemini-3-pro-preview"), path)
        assert r1.status_code == 200, r1.text
        answer = chat.encode_response(CODEC.decode_response(r1.json()), req)
        msg = answer["choices"][0]["message"]
        assert answer["choices"][0]["finish_reason"] == "tool_calls"
        call = msg["tool_calls"][0]
        # The thought signature reaches the Chat client the way Gemini's own OpenAI layer sends it.
        assert call["extra_content"]["google"]["thought_signature"]
        messages += [msg, {"role": "tool", "tool_call_id": call["id"], "content": "rainy, 4C"}]
        req2 = chat.decode_request({"model": "g", "messages": messages, "tools": tools})
        r2 = await _generate(c, CODEC.encode_request(req2, "gemini-3-pro-preview"), path)
    assert r2.status_code == 200, r2.text  # signatures came back: Gemini 3 validation passed
    final = chat.encode_response(CODEC.decode_response(r2.json()), req2)
    assert final["choices"][0]["message"]["content"] == "Tool results: rainy, 4C"
    sent = state.requests[-1].body["contents"][2]["parts"][0]["functionResponse"]
    assert sent == {"name": "get_weather", "response": {"result": "rainy, 4C"}}  # name recovered, id synthetic: dropped


async def test_coexists_with_embedding_routes(nursery: trio.Nursery) -> None:
    # The embeddings mock serves :embedContent / :predict under the same prefixes; Werkzeug must pick the
    # specific rules over the catch-all ``<path:rest>`` whatever the registration order.
    from trigate.mock import embeddings

    state = MockState()
    app = QuartTrio("test-gemini-mock-both")
    register(app, state)
    embeddings.register(app, state)
    hc = HyperConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.errorlog = None
    base = (await nursery.start(partial(serve, app, hc, shutdown_trigger=trio.sleep_forever)))[0]  # type: ignore[arg-type]
    text = {"parts": [{"text": "hi"}]}
    async with _client(base) as c:
        emb = await c.post("/v1beta/models/gemini-embedding-001:embedContent", json={"content": text})
        gen = await c.post(f"{DEV}:generateContent", json={"contents": [text]})
        vtx = await c.post(
            f"{VERTEX}/google/models/text-embedding-005:predict", json={"instances": [{"content": "hi"}]}
        )
    assert "embedding" in emb.json() and "candidates" in gen.json() and "predictions" in vtx.json()


# --------------------------------------------------------------------------------------------
# The official SDK against the mock
# --------------------------------------------------------------------------------------------


async def test_google_genai_sdk_against_mock(server: tuple[str, MockState]) -> None:
    genai = pytest.importorskip("google.genai")
    types = genai.types
    base, state = server

    def run() -> tuple[Any, list[Any], Any]:
        client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=base, api_version="v1beta"))
        config = types.GenerateContentConfig(
            system_instruction="Be brief.",
            max_output_tokens=200,
            thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True),
        )
        plain = client.models.generate_content(model="gemini-2.5-flash", contents="Hello SDK", config=config)
        chunks = list(
            client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hello SDK", config=config)
        )
        tokens = client.models.count_tokens(model="gemini-2.5-flash", contents="one two three")
        return plain, chunks, tokens

    plain, chunks, tokens = await trio.to_thread.run_sync(run)
    assert plain.text == "Hello from the trigate mock. You said: Hello SDK"
    assert plain.candidates[0].content.parts[0].thought is True
    assert plain.usage_metadata.thoughts_token_count > 0
    assert "".join(c.text or "" for c in chunks) == plain.text
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert tokens.total_tokens == 6
    assert state.requests[0].headers["x-goog-api-key"] == KEY
