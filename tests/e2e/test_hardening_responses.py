"""Issue 13, Responses API: the input token count endpoint, previous_response_id chains that fail over
between a native OpenAI target and a translated one (both directions), and the usage fields current
openai SDKs model. Real gateway, real fake upstream, the official openai SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response as SDKResponse

from tests.harness import UPSTREAM_KEY, Servers, openai_config

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"type": "function", "name": "get_time", "description": "Local time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
RESULTS = {"get_weather": "21C and sunny", "get_time": "14:00"}
EXPECTED_ANSWER = "Tool results: 21C and sunny | 14:00"
QUESTION = "Weather and time in Paris?"


def _config(mock_url: str) -> dict[str, Any]:
    def group(*targets: tuple[str, str]) -> dict[str, Any]:
        return {"targets": [{"provider": p, "model": m} for p, m in targets], "strategy": "ordered"}

    base = openai_config(mock_url)
    base["models"] = [
        {"name": "native-first", **group(("openai", "gpt-chain-a"), ("anthropic", "claude-chain-a"))},
        {"name": "translated-first", **group(("anthropic", "claude-chain-b"), ("openai", "gpt-chain-b"))},
        *base["models"],
    ]
    # one try per target, and no ejection: each test picks the target that fails itself
    base["retry"] = {"attempts": 1}
    base["health"] = {"eject_after": 1000, "eject_seconds": 1}
    return base


@pytest.fixture(scope="module")
def gw() -> Iterator[Servers]:
    with Servers(_config, mock_key=UPSTREAM_KEY) as s:
        yield s


@pytest.fixture
def client(gw: Servers) -> openai.OpenAI:
    gw.mock.reset()
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)


def fail_next(gw: Servers, upstream_model: str) -> None:
    """The fake upstream answers the next request for ``upstream_model`` with a 500."""
    r = httpx.post(gw.mock_url + "/_mock/faults", json={"status": 500, "model": upstream_model})
    assert r.status_code == 200


def upstream_bodies(gw: Servers, fragment: str) -> list[dict[str, Any]]:
    r = httpx.get(gw.mock_url + "/_mock/requests")
    return [seen["body"] for seen in r.json() if fragment in seen["path"]]


def create(client: openai.OpenAI, stream: bool, **kwargs: Any) -> Any:
    kwargs = {"tools": [WEATHER, TIME], "instructions": "You are terse.", **kwargs}
    if not stream:
        return client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as s:
        types = [e.type for e in s]
        final = s.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    return final


def tool_outputs(resp: Any) -> list[dict[str, Any]]:
    calls = [o for o in resp.output if o.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    return [{"type": "function_call_output", "call_id": c.call_id, "output": RESULTS[c.name]} for c in calls]


def assert_retrievable(client: openai.OpenAI, resp: Any, last_input_type: str) -> None:
    got = client.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == resp.output_text
    items = client.responses.input_items.list(resp.id, order="asc").data
    assert items and items[-1].type == last_input_type


# ------------------------------------------------------------------- previous_response_id across failover


@pytest.mark.parametrize("stream", [False, True])
def test_chain_continues_from_native_openai_on_translated_anthropic(gw: Servers, client: openai.OpenAI,
                                                                    stream: bool) -> None:
    first = create(client, stream, model="native-first", input=QUESTION)
    assert upstream_bodies(gw, "/v1/responses")[-1]["model"] == "gpt-chain-a"  # served natively

    fail_next(gw, "gpt-chain-a")
    second = create(client, stream, model="native-first", previous_response_id=first.id, input=tool_outputs(first))
    assert second.output_text == EXPECTED_ANSWER
    assert second.previous_response_id == first.id
    sent = upstream_bodies(gw, "/v1/messages")[-1]
    assert sent["model"] == "claude-chain-a"
    # the translated upstream got the whole conversation, rebuilt from the gateway's copy of turn 1
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][0]["content"] in (QUESTION, [{"type": "text", "text": QUESTION}])
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["tool_use", "tool_use"]
    assert [b["type"] for b in sent["messages"][2]["content"]] == ["tool_result", "tool_result"]

    # and back on the native target: it never saw turn 2, so it gets the history instead of the id
    third = create(client, stream, model="native-first", previous_response_id=second.id, input="Thanks!")
    assert third.previous_response_id == second.id
    sent = upstream_bodies(gw, "/v1/responses")[-1]
    assert sent["model"] == "gpt-chain-a" and "previous_response_id" not in sent
    assert [(i.get("type", "message"), i.get("role")) for i in sent["input"]] == [
        ("message", "user"), ("function_call", None), ("function_call", None),
        ("function_call_output", None), ("function_call_output", None), ("message", "assistant"),
        ("message", "user")]
    assert not any("id" in i for i in sent["input"])  # ids of the gateway's store mean nothing upstream

    assert_retrievable(client, first, "message")  # natively served: from the upstream that owns it
    assert_retrievable(client, second, "function_call_output")
    assert_retrievable(client, third, "message")


@pytest.mark.parametrize("stream", [False, True])
def test_chain_continues_from_translated_anthropic_on_native_openai(gw: Servers, client: openai.OpenAI,
                                                                    stream: bool) -> None:
    first = create(client, stream, model="translated-first", input=QUESTION)
    assert upstream_bodies(gw, "/v1/messages")[-1]["model"] == "claude-chain-b"

    fail_next(gw, "claude-chain-b")
    second = create(client, stream, model="translated-first", previous_response_id=first.id,
                    input=tool_outputs(first))
    assert second.output_text == EXPECTED_ANSWER
    assert second.previous_response_id == first.id  # as the client sent it, though upstream never saw it
    sent = upstream_bodies(gw, "/v1/responses")[-1]
    assert sent["model"] == "gpt-chain-b" and "previous_response_id" not in sent
    assert [i.get("type") for i in sent["input"]] == [
        "message", "function_call", "function_call", "function_call_output", "function_call_output"]
    assert sent["input"][0]["content"] == [{"type": "input_text", "text": QUESTION}]
    assert [i["call_id"] for i in sent["input"][1:3]] == [i["call_id"] for i in sent["input"][3:]]

    # natively served turn 2 is stored whole too: turn 3 goes back to the translated target
    third = create(client, stream, model="translated-first", previous_response_id=second.id, input="Thanks!")
    assert third.previous_response_id == second.id
    sent = upstream_bodies(gw, "/v1/messages")[-1]
    assert sent["model"] == "claude-chain-b"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user", "assistant", "user"]

    assert_retrievable(client, first, "message")
    assert_retrievable(client, second, "function_call_output")  # natively served
    assert_retrievable(client, third, "message")


def test_native_chain_on_the_same_upstream_keeps_its_id(gw: Servers, client: openai.OpenAI) -> None:
    """The upstream that served turn 1 holds its state (hidden reasoning included): it gets the id."""
    first = create(client, False, model="native-first", input=QUESTION)
    second = create(client, False, model="native-first", previous_response_id=first.id, input=tool_outputs(first))
    assert second.output_text == EXPECTED_ANSWER
    sent = upstream_bodies(gw, "/v1/responses")[-1]
    assert sent["previous_response_id"] == first.id and len(sent["input"]) == 2


# ------------------------------------------------------------------------------ input token counting


def mock_count(gw: Servers, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    r = httpx.post(gw.mock_url + path, json=body, headers={"authorization": f"Bearer {UPSTREAM_KEY}",
                                                           "anthropic-version": "2023-06-01", **(headers or {})})
    assert r.status_code == 200, r.text
    return r.json()["input_tokens"]


def test_input_tokens_forwarded_to_openai(gw: Servers, client: openai.OpenAI) -> None:
    raw = client.responses.input_tokens.with_raw_response.count(
        model="gpt-4o-mini", input=QUESTION, instructions="You are terse.", tools=[WEATHER, TIME])
    counted = raw.parse()
    assert counted.object == "response.input_tokens"
    assert raw.headers["x-trigate-token-count"] == "exact"
    sent = upstream_bodies(gw, "/v1/responses/input_tokens")[-1]
    assert sent["model"] == "gpt-4o-mini" and sent["input"] == QUESTION
    assert counted.input_tokens == mock_count(gw, "/v1/responses/input_tokens", sent)


def test_input_tokens_translated_to_anthropic_count(gw: Servers, client: openai.OpenAI) -> None:
    raw = client.responses.input_tokens.with_raw_response.count(
        model="claude-sonnet-4-6", input=QUESTION, instructions="You are terse.", tools=[WEATHER])
    counted = raw.parse()
    assert counted.object == "response.input_tokens"
    assert raw.headers["x-trigate-token-count"] == "exact"
    sent = upstream_bodies(gw, "/v1/messages/count_tokens")[-1]
    assert sent["model"] == "claude-sonnet-4-6" and sent["system"] in ("You are terse.", [
        {"type": "text", "text": "You are terse."}])
    assert [t["name"] for t in sent["tools"]] == ["get_weather"]
    assert "max_tokens" not in sent
    assert counted.input_tokens == mock_count(gw, "/v1/messages/count_tokens", sent)


@pytest.mark.parametrize(("model", "fragment"), [("gpt-4o-mini", "/v1/responses/input_tokens"),
                                                 ("claude-sonnet-4-6", "/v1/messages/count_tokens")])
def test_input_tokens_count_the_stored_history(gw: Servers, client: openai.OpenAI, model: str,
                                               fragment: str) -> None:
    first = create(client, False, model=model, input=QUESTION)
    alone = client.responses.input_tokens.count(model=model, input=tool_outputs(first), tools=[WEATHER, TIME])
    chained = client.responses.input_tokens.count(model=model, input=tool_outputs(first), tools=[WEATHER, TIME],
                                                  previous_response_id=first.id)
    assert chained.input_tokens > alone.input_tokens
    sent = upstream_bodies(gw, fragment)[-1]
    if model.startswith("gpt"):
        assert sent["previous_response_id"] == first.id  # OpenAI holds that response itself
    else:
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]


def test_input_tokens_estimated_where_the_provider_cannot_count(gw: Servers, client: openai.OpenAI) -> None:
    raw = client.responses.input_tokens.with_raw_response.count(model="groq/llama-3.3-70b", input=QUESTION)
    assert raw.headers["x-trigate-token-count"] == "estimated"
    assert raw.parse().input_tokens > 0
    assert upstream_bodies(gw, "") == []  # nothing sent upstream


def test_input_tokens_errors_in_openai_format(gw: Servers, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.input_tokens.count(input=QUESTION)
    assert exc.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as nf:
        client.responses.input_tokens.count(model="claude-sonnet-4-6", input="x", previous_response_id="resp_nope")
    assert nf.value.body["param"] == "previous_response_id"
    r = httpx.post(gw.url + "/v1/responses/input_tokens", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


# ------------------------------------------------------------------------------------- usage fields


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-6"])
@pytest.mark.parametrize("stream", [False, True])
def test_usage_carries_every_field_the_sdk_models(gw: Servers, client: openai.OpenAI, model: str,
                                                  stream: bool) -> None:
    resp = create(client, stream, model=model, input="hello usage")
    details = resp.usage.input_tokens_details
    assert details.cache_write_tokens == 0 and details.cached_tokens == 0
    # strict validation of the whole object as the SDK types it: every required field is there
    SDKResponse.model_validate(json.loads(resp.to_json()))


def test_mock_usage_validates_against_the_sdk_type(gw: Servers) -> None:
    r = httpx.post(gw.mock_url + "/v1/responses", json={"model": "gpt-4o-mini", "input": "hi"},
                   headers={"authorization": f"Bearer {UPSTREAM_KEY}"})
    usage = SDKResponse.model_validate(r.json()).usage
    assert usage is not None and usage.input_tokens_details.cache_write_tokens == 0
    assert usage.input_tokens_details.cache_write_tokens_details is not None
