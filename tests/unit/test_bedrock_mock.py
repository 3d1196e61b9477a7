"""The fake Bedrock Runtime: served for real by Hypercorn on a loopback port, called with SigV4-signed requests
(``sign_request``), Bedrock API keys, and botocore's own bedrock-runtime client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import botocore.session
import httpx
import orjson
import pytest
import trio
from botocore.exceptions import ClientError
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio

from trigate.formats import openai_chat
from trigate.formats.bedrock import CODEC
from trigate.mock import bedrock as mock_bedrock
from trigate.mock.state import Fault, MockState
from trigate.translate import ir
from trigate.upstream.sigv4 import sign_request
from trigate.wire.eventstream import EventStreamDecoder, EventStreamError

AKID, SECRET = "AKIAMOCKMOCKMOCK", "mock/secret/key"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
API_KEY = "bedrock-api-key-123"


class Mock:
    def __init__(self, url: str, state: MockState) -> None:
        self.url, self.state = url, state
        self.http = httpx.AsyncClient(timeout=10)

    def model_url(self, model: str = MODEL, stream: bool = False) -> str:
        return f"{self.url}/model/{quote(model, safe='')}/{'converse-stream' if stream else 'converse'}"

    async def post(
        self, body: dict, *, model: str = MODEL, stream: bool = False, secret: str = SECRET, bearer: str | None = None
    ) -> httpx.Response:
        url = self.model_url(model, stream)
        payload = orjson.dumps(body)
        headers = {"content-type": "application/json"}
        if bearer is not None:
            headers["authorization"] = f"Bearer {bearer}"
        else:
            headers.update(
                sign_request("POST", url, headers, payload, access_key=AKID, secret_key=secret, region="us-east-1")
            )
        return await self.http.post(url, content=payload, headers=headers)


@pytest.fixture
async def mock(nursery) -> AsyncIterator[Mock]:
    state = MockState(api_key=API_KEY)
    app = QuartTrio("bedrock-mock-test")
    mock_bedrock.register(app, state, credentials=(AKID, SECRET))
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    stop = trio.Event()

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]

    binds = await nursery.start(run)
    m = Mock(binds[0], state)
    yield m
    await m.http.aclose()
    stop.set()


def user(text: str) -> dict:
    return {"role": "user", "content": [{"text": text}]}


def stream_ir(raw: bytes, pieces: int = 7) -> list[ir.StreamEvent]:
    framer, dec = EventStreamDecoder(), CODEC.stream_decoder(ir.Request(model=MODEL))
    events: list[ir.StreamEvent] = []
    for i in range(0, len(raw), pieces):
        for msg in framer.feed(raw[i : i + pieces]):
            events += dec.feed(msg)
    return events + dec.close()


WEATHER = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Weather.",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    }
}


# --------------------------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------------------------


async def test_signed_converse(mock: Mock) -> None:
    r = await mock.post(
        {"system": [{"text": "Be brief."}], "messages": [user("Hello there")], "inferenceConfig": {"maxTokens": 100}}
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-amzn-requestid"]
    resp = CODEC.decode_response(r.json())
    assert resp.content == [ir.Text("Hello from the trigate mock. You said: Hello there")]
    assert resp.stop_reason == "end_turn"
    seen = mock.state.requests[-1]
    assert seen.path == f"/model/{MODEL}/converse"
    assert seen.usage == {"inputTokens": 7, "outputTokens": 9, "totalTokens": 16} and seen.finished is not None
    assert resp.usage == ir.Usage(input_tokens=7, output_tokens=9)


async def test_wrong_secret_is_refused(mock: Mock) -> None:
    r = await mock.post({"messages": [user("hi")]}, secret="not-the-secret")
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    assert r.json()["message"].startswith("The request signature we calculated does not match")
    err = CODEC.parse_error(r.status_code, orjson.dumps({"__type": r.headers["x-amzn-errortype"], **r.json()}))
    assert err.kind == "authentication"


async def test_unsigned_and_bearer(mock: Mock) -> None:
    r = await mock.http.post(mock.model_url(), content=orjson.dumps({"messages": [user("hi")]}))
    assert r.status_code == 403 and r.headers["x-amzn-errortype"].startswith("MissingAuthenticationToken")
    r = await mock.post({"messages": [user("hi")]}, bearer=API_KEY)
    assert r.status_code == 200
    r = await mock.post({"messages": [user("hi")]}, bearer="wrong-key")
    assert r.status_code == 403 and r.headers["x-amzn-errortype"].startswith("UnrecognizedClientException")


async def test_model_ids_needing_encoding(mock: Mock) -> None:
    # ':' in the id and '/' in ARNs travel percent-encoded; the signature covers the encoded path.
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    for model in (MODEL, arn):
        r = await mock.post({"messages": [user("hi")]}, model=model)
        assert r.status_code == 200, (model, r.text)
    assert mock.state.requests[-1].path.endswith("/abc123/converse")


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


async def test_stream_text(mock: Mock) -> None:
    r = await mock.post({"messages": [user("stream me please")]}, stream=True)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.amazon.eventstream"
    frames = EventStreamDecoder().feed(r.content)
    assert [f.headers[":event-type"] for f in frames][:2] == ["messageStart", "contentBlockDelta"]
    assert all(
        f.headers[":message-type"] == "event" and f.headers[":content-type"] == "application/json" for f in frames
    )
    events = stream_ir(r.content)
    text = "".join(e.text for e in events if type(e) is ir.TextDelta)
    assert text == "Hello from the trigate mock. You said: stream me please"
    end = events[-1]
    assert type(end) is ir.MessageEnd and end.stop_reason == "end_turn"
    seen = mock.state.requests[-1]
    assert end.usage == ir.Usage(input_tokens=seen.usage["inputTokens"], output_tokens=seen.usage["outputTokens"])


async def test_stream_tools_then_results(mock: Mock) -> None:
    body = {"messages": [user("Weather in Paris?")], "toolConfig": {"tools": [WEATHER]}}
    r = await mock.post(body, stream=True)
    events = stream_ir(r.content)
    starts = [e for e in events if type(e) is ir.BlockStart]
    assert [(s.kind, s.tool_name) for s in starts] == [("tool_call", "get_weather")]
    args = "".join(e.fragment for e in events if type(e) is ir.ToolArgsDelta)
    assert orjson.loads(args) == {"city": "city-sample"}
    assert events[-1].stop_reason == "tool_use"

    call_id = starts[0].tool_id
    body["messages"] += [
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": call_id, "name": "get_weather", "input": {"city": "Paris"}}}],
        },
        {"role": "user", "content": [{"toolResult": {"toolUseId": call_id, "content": [{"json": {"temp": 21}}]}}]},
    ]
    r = await mock.post(body)
    assert r.status_code == 200, r.text
    assert r.json()["output"]["message"]["content"] == [{"text": 'Tool results: {"temp":21}'}]


async def test_stream_thinking(mock: Mock) -> None:
    body = {
        "messages": [user("think")],
        "inferenceConfig": {"maxTokens": 4000},
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2000}},
    }
    events = stream_ir((await mock.post(body, stream=True)).content)
    kinds = [e.kind for e in events if type(e) is ir.BlockStart]
    assert kinds == ["reasoning", "text"]
    assert [e.signature.startswith("sig_") for e in events if type(e) is ir.SignatureDelta] == [True]


async def test_translated_chat_request_end_to_end(mock: Mock) -> None:
    chat = {
        "model": "m",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Terse."},
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call 1/odd",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"A"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call 1/odd", "content": "sunny"},
        ],
    }
    req = openai_chat.CODEC.decode_request(chat)
    body = CODEC.encode_request(req, MODEL)  # no tools in the request: toolConfig comes from the history
    r = await mock.post(body, stream=True)
    assert r.status_code == 200, r.text
    events = stream_ir(r.content)
    assert "".join(e.text for e in events if type(e) is ir.TextDelta) == "Tool results: sunny"
    out = b"".join(openai_chat.CODEC.stream_encoder(req).encode(e) for e in events)
    assert b'"content":"sunny"' in out and b'"finish_reason":"stop"' in out and out.endswith(b"data: [DONE]\n\n")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "extra", "needle"),
    [
        ([user("a"), user("b")], {}, "alternate between user and assistant"),
        ([{"role": "assistant", "content": [{"text": "a"}]}], {}, "must start with a user message"),
        ([{"role": "user", "content": [{"text": "  "}]}], {}, "is blank"),
        (
            [
                user("a"),
                {
                    "role": "assistant",
                    "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}],
                },
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t2", "content": [{"text": "x"}]}}]},
            ],
            {"toolConfig": {"tools": [WEATHER]}},
            "Expected toolResult blocks",
        ),
        (
            [
                user("a"),
                {
                    "role": "assistant",
                    "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}],
                },
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}}]},
            ],
            {},
            "toolConfig field must be defined",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"document": {"format": "pdf", "name": "a.pdf", "source": {"bytes": "JV"}}}],
                }
            ],
            {},
            "document name",
        ),
        (
            [user("a")],
            {
                "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2000}},
                "inferenceConfig": {"maxTokens": 1000},
            },
            "must be greater than",
        ),
    ],
)
async def test_validation(mock: Mock, messages: list, extra: dict, needle: str) -> None:
    r = await mock.post({"messages": messages, **extra})
    assert r.status_code == 400
    assert r.headers["x-amzn-errortype"].startswith("ValidationException")
    assert needle in r.json()["message"]


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


async def test_fault_status(mock: Mock) -> None:
    mock.state.add_fault(Fault(status=429, message="Too many requests", headers={"retry-after": "3"}))
    r = await mock.post({"messages": [user("hi")]})
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.headers["x-amzn-errortype"].startswith("ThrottlingException")
    err = CODEC.parse_error(429, r.content)
    assert (err.kind, err.message) == ("rate_limit", "Too many requests")


async def test_fault_error_after_and_drop_after(mock: Mock) -> None:
    mock.state.add_fault(Fault(error_after=3, message="Model is busy", error_type="throttlingException"))
    events = stream_ir((await mock.post({"messages": [user("one two three four")]}, stream=True)).content)
    assert type(events[-1]) is ir.StreamError and events[-1].error.kind == "rate_limit"
    assert events[-1].error.message == "Model is busy"
    assert mock.state.requests[-1].finished is None

    mock.state.add_fault(Fault(drop_after=4))
    try:
        r = await mock.post({"messages": [user("one two three four")]}, stream=True)
        raw = r.content
    except httpx.RemoteProtocolError:
        raw = b""
    events = stream_ir(raw)
    assert type(events[-1]) is ir.StreamError and events[-1].error.kind == "upstream_unavailable"


async def test_fault_malformed(mock: Mock) -> None:
    mock.state.add_fault(Fault(malformed=True))
    r = await mock.post({"messages": [user("hi")]}, stream=True)
    with pytest.raises(EventStreamError, match="CRC"):
        EventStreamDecoder().feed(r.content)
    mock.state.add_fault(Fault(malformed=True))
    r = await mock.post({"messages": [user("hi")]})
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(r.content)


# --------------------------------------------------------------------------------------------
# botocore's own client against the mock
# --------------------------------------------------------------------------------------------


def _client(url: str, secret: str = SECRET):
    session = botocore.session.get_session()
    return session.create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id=AKID,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


async def test_botocore_client(mock: Mock) -> None:
    def calls() -> tuple[dict, list[dict], str]:
        client = _client(mock.url)
        resp = client.converse(
            modelId=MODEL,
            messages=[{"role": "user", "content": [{"text": "from boto"}]}],
            toolConfig={"tools": [WEATHER], "toolChoice": {"any": {}}},
        )
        stream = client.converse_stream(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "hey"}]}])
        events = list(stream["stream"])
        try:
            _client(mock.url, "bad").converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "x"}]}])
            code = ""
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
        return resp, events, code

    resp, events, code = await trio.to_thread.run_sync(calls)
    assert resp["stopReason"] == "tool_use"
    assert resp["output"]["message"]["content"][0]["toolUse"]["input"] == {"city": "city-sample"}
    assert resp["usage"]["totalTokens"] == resp["usage"]["inputTokens"] + resp["usage"]["outputTokens"]
    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert (
        "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
        == "Hello from the trigate mock. You said: hey"
    )
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0
    assert code == "InvalidSignatureException"


async def test_garbage_is_a_400_not_a_crash(mock: Mock) -> None:
    for body in (
        {"messages": [user("a")], "inferenceConfig": {"temperature": "hot"}},
        {"messages": [{"role": "user", "content": [{"toolResult": 5}]}]},
        {"messages": "nope"},
    ):
        r = await mock.post(body)
        assert r.status_code == 400, body
        assert r.headers["x-amzn-errortype"].startswith("ValidationException")
