"""Issue 14 item 4: stored Responses shared by replicas. Two real ``trigate serve`` processes, one real
fake upstream process, sharing PostgreSQL and then Redis: a previous_response_id chain started on one
replica continues on the other and back, through translated (Anthropic) and native (OpenAI) turns, and
GET/DELETE/input_items answer the same on both. Then the store going away: a clear 503 in OpenAI's
format where the store is needed, answers still served where it is not. Driven by the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.harness import GatewayProcess, MockProcess, Servers, free_loopback_port, openai_config, start_redis


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockProcess]:
    mock = MockProcess()
    yield mock
    mock.stop()


def replica_config(mock_url: str, store: dict[str, Any], database_url: str) -> dict[str, Any]:
    return {
        "auth": {"open": True},
        "providers": {
            "openai": {"kind": "openai", "base_url": f"{mock_url}/v1", "api_key": "sk-upstream-openai"},
            "anthropic": {"kind": "anthropic", "base_url": mock_url, "api_key": "sk-upstream-anthropic"},
        },
        "models": [{"name": "claude-*", "provider": "anthropic"}, {"name": "gpt-*", "provider": "openai"}],
        "store": store,
        "database": {"url": database_url},
    }


def texts(value: Any) -> list[str]:
    """Every text of an upstream request's conversation, in order, whatever the wire format's shape."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    if isinstance(value, dict):
        inner = value.get("text", value.get("content"))
        return texts(inner) if inner is not None else []
    return []


def upstream_conversation(mock: MockProcess) -> tuple[str, dict[str, Any]]:
    """The path and body of the last model call the fake upstream received."""
    seen = [r for r in httpx.get(mock.url + "/_mock/requests").json()
            if r["path"].endswith(("/messages", "/responses"))]
    return seen[-1]["path"], seen[-1]["body"]


def said(text: str) -> str:
    """The fake upstream's answer: it echoes the last user text."""
    return f"Hello from the trigate mock. You said: {text}"


def run_chain_across_replicas(a: GatewayProcess, b: GatewayProcess, mock: MockProcess) -> None:
    ca = openai.OpenAI(base_url=a.url + "/v1", api_key="k", max_retries=0)
    cb = openai.OpenAI(base_url=b.url + "/v1", api_key="k", max_retries=0)

    one = ca.responses.create(model="claude-sonnet-4-6", input="My name is Ada.", store=True)
    assert one.output_text == said("My name is Ada.")
    path, sent = upstream_conversation(mock)
    assert path == "/v1/messages" and texts(sent["messages"]) == ["My name is Ada."]

    two = cb.responses.create(model="claude-sonnet-4-6", input="I live in Paris.", previous_response_id=one.id)
    assert two.previous_response_id == one.id
    path, sent = upstream_conversation(mock)
    assert path == "/v1/messages"
    assert texts(sent["messages"]) == ["My name is Ada.", said("My name is Ada."), "I live in Paris."]

    # natively served by OpenAI: A has no upstream state for B's translated turn, so it sends the history
    three = ca.responses.create(model="gpt-4o-mini", input="Where do I live?", previous_response_id=two.id)
    assert three.previous_response_id == two.id
    path, sent = upstream_conversation(mock)
    assert path == "/v1/responses" and "previous_response_id" not in sent
    history = ["My name is Ada.", said("My name is Ada."), "I live in Paris.", said("I live in Paris."),
               "Where do I live?"]
    assert texts(sent["input"]) == history

    # the native turn, stored by A, continues on B's translated target
    four = cb.responses.create(model="claude-sonnet-4-6", input="Thanks!", previous_response_id=three.id)
    path, sent = upstream_conversation(mock)
    assert path == "/v1/messages" and texts(sent["messages"]) == [*history, said("Where do I live?"),
                                                                        "Thanks!"]
    assert four.output_text == said("Thanks!")

    # retrieve and list on the replica that did not serve the turn
    got = cb.responses.retrieve(one.id)
    assert got.id == one.id and got.output_text == one.output_text
    items = ca.responses.input_items.list(two.id, order="asc").data
    assert [texts(i.model_dump().get("content")) for i in items] == [["My name is Ada."], [said("My name is Ada.")],
                                                                      ["I live in Paris."]]
    native = cb.responses.retrieve(three.id)  # A stored it; B sends the GET to the provider that owns it
    assert native.id == three.id and native.output_text == three.output_text

    # delete on one replica: gone on the other, translated and native alike
    assert ca.responses.delete(two.id) is None
    with pytest.raises(openai.NotFoundError):
        cb.responses.retrieve(two.id)
    with pytest.raises(openai.NotFoundError):
        cb.responses.create(model="claude-sonnet-4-6", input="x", previous_response_id=two.id)
    cb.responses.delete(three.id)
    with pytest.raises(openai.NotFoundError):
        ca.responses.retrieve(three.id)


def test_replicas_sharing_postgres_continue_each_others_chains(upstream: MockProcess, postgres_url: str,
                                                                 tmp_path: Path) -> None:
    cfg = replica_config(upstream.url, {"backend": "database"}, postgres_url)
    a, b = GatewayProcess(cfg, tmp_path, "a"), GatewayProcess(cfg, tmp_path, "b")
    try:
        run_chain_across_replicas(a, b, upstream)
        assert "Traceback" not in a.log() + b.log()
    finally:
        a.stop()
        b.stop()


def test_replicas_sharing_redis_continue_each_others_chains(upstream: MockProcess, redis_url: str,
                                                              tmp_path: Path) -> None:
    # each replica has a database of its own: only Redis can carry the chain between them
    a = GatewayProcess(replica_config(upstream.url, {"backend": "redis", "redis_url": redis_url},
                                      str(tmp_path / "a.sqlite3")), tmp_path, "a")
    b = GatewayProcess(replica_config(upstream.url, {"backend": "redis", "redis_url": redis_url},
                                      str(tmp_path / "b.sqlite3")), tmp_path, "b")
    try:
        run_chain_across_replicas(a, b, upstream)
        assert "Traceback" not in a.log() + b.log()
    finally:
        a.stop()
        b.stop()
        flush_responses(redis_url)


def flush_responses(redis_url: str) -> None:
    import trio

    from trigate.store.redis import open_redis

    async def flush() -> None:
        client = open_redis(redis_url)
        async with client:
            found = await client.keys("trigate:resp:*")
            if found:
                await client.delete(list(found))

    trio.run(flush)


# ------------------------------------------------------------------------------------- the store going away


def assert_store_unavailable(err: openai.APIStatusError) -> None:
    assert err.status_code == 503 and err.response.headers.get("retry-after") == "1"
    body = err.response.json()
    assert body["error"]["code"] == "response_store_unavailable" and "store" in body["error"]["message"]


def model_calls(gw: Servers) -> int:
    return sum(1 for r in gw.mock.requests if r.path.endswith(("/messages", "/responses")))


def upstream_failures(gw: Servers) -> list[str]:
    """Upstream attempts the gateway counted as failed or retried (a target blamed, maybe ejected)."""
    lines = httpx.get(gw.url + "/metrics").text.splitlines()
    return [line for line in lines if line.startswith(("trigate_upstream_errors_total",
                                                        "trigate_upstream_retries_total"))]


def check_outage(gw: Servers, client: openai.OpenAI, earlier_id: str) -> None:
    calls = model_calls(gw)
    for model in ("claude-sonnet-4-6", "gpt-4o-mini"):
        with pytest.raises(openai.APIStatusError) as err:
            client.responses.create(model=model, input="again", previous_response_id=earlier_id)
        assert_store_unavailable(err.value)
    assert model_calls(gw) == calls  # refused before any upstream call
    assert upstream_failures(gw) == []  # the store's outage is no target's failure: not retried, not ejected
    for call in (lambda: client.responses.retrieve(earlier_id), lambda: client.responses.delete(earlier_id),
                 lambda: client.responses.input_items.list(earlier_id)):
        with pytest.raises(openai.APIStatusError) as err:
            call()
        assert_store_unavailable(err.value)
    # what does not need the store is still answered (store: true is best effort), streamed or not
    fresh = client.responses.create(model="claude-sonnet-4-6", input="Still here?", store=True)
    assert fresh.output_text == said("Still here?")
    with client.responses.stream(model="gpt-4o-mini", input="Streaming?", store=True) as stream:
        assert stream.get_final_response().output_text == said("Streaming?")


def test_redis_store_outage_is_a_clear_503_and_recovers(tmp_path: Path) -> None:
    port = free_loopback_port()
    redis = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with Servers(lambda m: openai_config(m, store={"backend": "redis", "redis_url": url})) as gw:
            client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
            first = client.responses.create(model="claude-sonnet-4-6", input="Before the outage", store=True)
            redis.kill()
            redis.wait(5)
            check_outage(gw, client, first.id)
            redis = start_redis(port, tmp_path)  # back, empty (no persistence): chains work again
            second = client.responses.create(model="claude-sonnet-4-6", input="After", store=True)
            third = client.responses.create(model="claude-sonnet-4-6", input="Again", previous_response_id=second.id)
            assert third.previous_response_id == second.id
    finally:
        redis.kill()
        redis.wait(5)


def test_database_store_outage_is_a_clear_503(tmp_path: Path) -> None:
    down = f"postgresql://trigate@127.0.0.1:{free_loopback_port()}/trigate"
    with Servers(lambda m: openai_config(m, store={"backend": "database"}, database={"url": down})) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
        check_outage(gw, client, "resp_0123456789")
