"""Responses ``namespace`` tools through the real gateway, with the openai SDK: a translated target
(Anthropic, Gemini on the fake upstream, which calls every tool offered) sees flat tool names
(``crm__lookup``), the client gets its calls back as name + namespace, streamed or not, and the next turn
returns them; an OpenAI target gets the namespace tool as the client sent it."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.e2e.agents import model_requests, tool_exchange
from tests.harness import Servers
from trigate.mock.state import MockState

CRM = {
    "type": "namespace",
    "name": "crm",
    "description": "Customer records.",
    "tools": [
        {
            "type": "function",
            "name": "lookup",
            "description": "Find a customer by email.",
            "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
            "strict": False,
        }
    ],
}
QUESTION = "Who is ann@example.com?"


@pytest.fixture
def client(servers: Servers, mock: MockState) -> openai.OpenAI:
    return openai.OpenAI(base_url=servers.url + "/v1", api_key="k", max_retries=0)


def create(client: openai.OpenAI, stream: bool, **kwargs: Any) -> Any:
    if not stream:
        return client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as s:
        for _ in s:
            pass
        return s.get_final_response()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("model", "path_part", "wire"), [
    ("claude-sonnet-4-5", "/v1/messages", "anthropic"),
    ("gemini-2.5-flash", "gemini-2.5-flash:", "gemini"),
])
def test_namespace_tool_round_trip(client: openai.OpenAI, mock: MockState, stream: bool, model: str,
                                   path_part: str, wire: str) -> None:
    resp = create(client, stream, model=model, input=QUESTION, tools=[CRM])

    calls = [o for o in resp.output if o.type == "function_call"]
    assert [(c.name, c.namespace) for c in calls] == [("lookup", "crm")]
    first = model_requests(mock, path_part)[0].body
    offered = first["tools"] if wire == "anthropic" else first["tools"][0]["functionDeclarations"]
    assert [(t["name"], t["description"]) for t in offered] == [
        ("crm__lookup", "Customer records.\n\nFind a customer by email.")
    ]

    call = calls[0]
    follow = [
        {"role": "user", "content": QUESTION},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "Ann Lee, customer since 2019"},
    ]
    answer = create(client, stream, model=model, input=follow, tools=[CRM])

    assert answer.output_text == "Tool results: Ann Lee, customer since 2019"
    name, output = tool_exchange(model_requests(mock, path_part)[1].body, wire)
    assert (name, output) == ("crm__lookup", "Ann Lee, customer since 2019")


def test_a_namespace_tool_too_long_for_other_providers_is_a_400(client: openai.OpenAI, mock: MockState) -> None:
    long_ns = {**CRM, "name": "n" * 60}
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="claude-sonnet-4-5", input=QUESTION, tools=[long_ns])
    assert info.value.body["param"] == "tools[0].tools[0].name"  # type: ignore[index]
    assert "64" in info.value.body["message"]  # type: ignore[index]
    assert not model_requests(mock, "/v1/messages")


def test_an_openai_target_gets_the_namespace_tool_verbatim(client: openai.OpenAI, mock: MockState) -> None:
    client.responses.create(model="gpt-4o-mini", input=QUESTION, tools=[CRM])
    assert model_requests(mock, "/v1/responses")[0].body["tools"] == [CRM]
