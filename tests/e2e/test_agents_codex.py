"""Codex CLI (``codex exec``) as a real client: Responses through the gateway to Anthropic and Gemini
upstreams, with one tool round trip each (the fake upstream calls Codex's exec_command tool, Codex runs
it in a temporary directory and sends the output back, the upstream answers with text)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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

# Codex's own default tools include the hosted `web_search`, which only OpenAI runs: the gateway refuses
# it for other providers (400), so it is turned off, as anyone pointing Codex at a non-OpenAI model
# through the gateway has to. Its `namespace` of multi-agent tools stays on: those go through flattened.
CODEX_CONFIG = """\
model = "{model}"
model_provider = "trigate"
approval_policy = "never"
sandbox_mode = "danger-full-access"
web_search = "disabled"
check_for_update_on_startup = false

[model_providers.trigate]
name = "trigate"
base_url = "{base_url}/v1"
env_key = "TRIGATE_API_KEY"
wire_api = "responses"

[analytics]
enabled = false

[otel]
exporter = "none"
"""


@pytest.fixture(scope="module")
def gateway() -> Iterator[Servers]:
    with Servers(agent_config, mock_key=UPSTREAM_KEY) as servers:
        yield servers


def codex_exec(gateway: Servers, model: str, prompt: str, tmp_path: Path) -> str:
    """The agent's last message."""
    binary = agent_binary("codex", "@openai/codex")
    work, home = tmp_path / "work", tmp_path / "codex-home"
    work.mkdir()
    home.mkdir()
    (home / "config.toml").write_text(CODEX_CONFIG.format(model=model, base_url=gateway.url))
    last = tmp_path / "last-message.txt"
    env = agent_env(home, CODEX_HOME=str(home), TRIGATE_API_KEY=AGENT_KEY)
    run_agent([binary, "exec", "--skip-git-repo-check", "--ephemeral", "-o", str(last), prompt], work, env)
    return last.read_text()


@pytest.mark.parametrize(("model", "path_part", "wire"), [
    ("claude-sonnet-4-5", "/v1/messages", "anthropic"),
    ("gemini-2.5-flash", ":streamGenerateContent", "gemini"),
])
def test_codex_runs_a_tool_through_the_gateway(gateway: Servers, tmp_path: Path, model: str, path_part: str,
                                               wire: str) -> None:
    gateway.mock.reset()
    token = marker()
    gateway.mock.add_script(ScriptedCall("exec_command", {"cmd": f"echo {token} > made.txt && cat made.txt"}))

    answer = codex_exec(gateway, model, "Create made.txt with a marker in it.", tmp_path)

    assert (tmp_path / "work" / "made.txt").read_text().strip() == token  # the command really ran
    turns = model_requests(gateway.mock, path_part)
    assert len(turns) == 2, [r.path for r in gateway.mock.requests]
    offered = turns[0].body["tools"] if wire == "anthropic" else turns[0].body["tools"][0]["functionDeclarations"]
    assert "multi_agent_v1__spawn_agent" in [t["name"] for t in offered]  # Codex's namespace, flattened
    name, output = tool_exchange(turns[1].body, wire)
    assert name == "exec_command"
    # Codex wraps the command's output in its own report (exit code, wall time, then the output).
    assert "Process exited with code 0" in output and output.rstrip().endswith(token)
    assert answer.startswith("Tool results: ") and answer.rstrip().endswith(token)
