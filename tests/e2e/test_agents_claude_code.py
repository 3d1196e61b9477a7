"""Claude Code (``claude -p``) as a real client: Messages through the gateway to OpenAI, Gemini and Bedrock
upstreams, with one tool round trip each (the fake upstream calls Claude Code's Bash tool, Claude Code
runs it in a temporary directory and sends the result back, the upstream answers with text)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.e2e.agents import (
    AGENT_KEY,
    agent_binary,
    agent_config,
    agent_env,
    marker,
    model_requests,
    run_agent,
    tool_exchange,
)
from tests.harness import UPSTREAM_KEY, Servers
from trigate.mock.replies import ScriptedCall


@pytest.fixture(scope="module")
def gateway() -> Iterator[Servers]:
    with Servers(agent_config, mock_key=UPSTREAM_KEY) as servers:
        yield servers


def claude_code(gateway: Servers, model: str, prompt: str, tmp_path: Path) -> dict[str, object]:
    binary = agent_binary("claude", "@anthropic-ai/claude-code")
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = agent_env(
        home,
        ANTHROPIC_BASE_URL=gateway.url, ANTHROPIC_API_KEY=AGENT_KEY, ANTHROPIC_MODEL=model,
        ANTHROPIC_SMALL_FAST_MODEL=model, ANTHROPIC_DEFAULT_HAIKU_MODEL=model,
        DISABLE_TELEMETRY="1", DISABLE_ERROR_REPORTING="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
    )
    # Bash pre-approved instead of --dangerously-skip-permissions, which Claude Code refuses as root.
    done = run_agent([binary, "-p", prompt, "--output-format", "json", "--allowedTools", "Bash",
                      "--no-session-persistence"], work, env)
    return json.loads(done.stdout)


@pytest.mark.parametrize(("model", "path_part", "wire"), [
    ("openai/gpt-4o-mini", "/v1/chat/completions", "openai"),
    ("gemini-2.5-flash", ":streamGenerateContent", "gemini"),
    ("bedrock/amazon.nova-pro-v1:0", "/converse-stream", "bedrock"),
])
def test_claude_code_runs_a_tool_through_the_gateway(gateway: Servers, tmp_path: Path, model: str, path_part: str,
                                                     wire: str) -> None:
    gateway.mock.reset()
    token = marker()
    gateway.mock.add_script(ScriptedCall("Bash", {"command": f"echo {token} > made.txt && cat made.txt",
                                                  "description": "Write made.txt"}))

    result = claude_code(gateway, model, "Create made.txt with a marker in it.", tmp_path)

    assert result["is_error"] is False, result
    assert result["result"] == f"Tool results: {token}"
    assert (tmp_path / "work" / "made.txt").read_text().strip() == token  # the Bash tool really ran
    turns = model_requests(gateway.mock, path_part)
    assert len(turns) == 2, [r.path for r in gateway.mock.requests]
    name, output = tool_exchange(turns[1].body, wire)
    assert (name, output.strip()) == ("Bash", token)


def test_system_turns_inside_messages_are_accepted(gateway: Servers) -> None:
    """Claude Code sends ``role: system`` turns inside ``messages`` (its mid-conversation-system beta);
    the gateway passes them on as system instructions, where they stood."""
    gateway.mock.reset()
    client = anthropic.Anthropic(base_url=gateway.url, api_key=AGENT_KEY)
    reply = client.messages.create(model="openai/gpt-4o-mini", max_tokens=64, messages=[
        {"role": "user", "content": "Hello"},
        {"role": "system", "content": "Answer in one word."},  # type: ignore[list-item, misc]
    ])
    assert reply.content[0].type == "text"
    sent = model_requests(gateway.mock, "/v1/chat/completions")[0].body["messages"]
    assert sent == [{"role": "user", "content": "Hello"}, {"role": "system", "content": "Answer in one word."}]


def test_scripted_call_waits_for_a_request_offering_its_tool(gateway: Servers) -> None:
    """A request without the scripted tool (an agent's side request) is answered as usual and leaves the
    script queued; the next request offering the tool gets exactly the scripted call."""
    gateway.mock.reset()
    r = httpx.post(f"{gateway.mock_url}/_mock/script", json={"tool": "Bash", "arguments": {"command": "true"}})
    assert r.status_code == 200
    assert httpx.post(f"{gateway.mock_url}/_mock/script", json={"tool": "Bash", "oops": 1}).status_code == 400
    client = anthropic.Anthropic(base_url=gateway.url, api_key=AGENT_KEY)
    tools = [{"name": name, "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}
             for name in ("Read", "Bash")]
    side = client.messages.create(model="openai/gpt-4o-mini", max_tokens=64, tools=tools[:1],  # type: ignore[arg-type]
                                  messages=[{"role": "user", "content": "title?"}])
    assert [b.name for b in side.content if b.type == "tool_use"] == ["Read"]  # the usual sampled call
    scripted = client.messages.create(model="openai/gpt-4o-mini", max_tokens=64, tools=tools,  # type: ignore[arg-type]
                                      messages=[{"role": "user", "content": "go"}])
    assert [(b.name, b.input) for b in scripted.content if b.type == "tool_use"] == [("Bash", {"command": "true"})]
    again = client.messages.create(model="openai/gpt-4o-mini", max_tokens=64, tools=tools,  # type: ignore[arg-type]
                                   messages=[{"role": "user", "content": "go"}])
    assert [b.name for b in again.content if b.type == "tool_use"] == ["Read", "Bash"]  # consumed: planned as usual
