"""Shared pieces of the coding-agent tests: the agent CLIs as real subprocesses against a real gateway,
and reading the tool round trip back out of what the fake upstream saw, in each upstream's wire format."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness import openai_config
from trigate.mock.state import MockState, SeenRequest

AGENT_KEY = "sk-trigate-agent-0123456789"  # the gateway key the agents present
AGENT_TIMEOUT = 120  # seconds per agent run: generous, a run takes about a second here


def agent_config(mock_url: str) -> dict[str, Any]:
    """The suite's usual providers on the fake upstream, behind one gateway key for the agents."""
    return openai_config(mock_url, auth={"keys": [{"id": "agents", "key": AGENT_KEY}]})


def agent_binary(name: str, package: str) -> str:
    """The CLI's path; a missing CLI fails the test (CI installs it), it never skips."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} is not on PATH: npm install -g {package} (.ci/run installs it)")
    return path


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no provider keys or agent settings of the machine's leak into the run."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", **extra}


def run_agent(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=AGENT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{argv[0]} did not finish in {AGENT_TIMEOUT}s; output so far: {exc.stdout!r} {exc.stderr!r}")
    assert done.returncode == 0, f"{argv[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def marker() -> str:
    """Text only a command that really ran can have written into the working directory."""
    return f"agent-ran-{uuid.uuid4().hex[:12]}"


def model_requests(mock: MockState, path_part: str) -> list[SeenRequest]:
    return [r for r in mock.requests if path_part in r.path]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text(c.get("text", c.get("content", ""))) if isinstance(c, dict) else str(c)
                        for c in content)
    return str(content)


def tool_exchange(body: dict[str, Any], wire: str) -> tuple[str, str]:
    """(name of the tool called, text of its result) from the second request of a tool round trip:
    the model's call and, right after it, the agent's result for that same call, as the wire format
    links them (call id, or the function name for Gemini)."""
    if wire == "openai":
        call_msg, result = body["messages"][-2], body["messages"][-1]
        call = call_msg["tool_calls"][0]
        assert result["role"] == "tool" and result["tool_call_id"] == call["id"], body["messages"][-2:]
        return call["function"]["name"], _text(result["content"])
    if wire == "anthropic":
        call_msg, result_msg = body["messages"][-2], body["messages"][-1]
        call = next(b for b in call_msg["content"] if b["type"] == "tool_use")
        result = next(b for b in result_msg["content"] if b["type"] == "tool_result")
        assert result_msg["role"] == "user" and result["tool_use_id"] == call["id"], body["messages"][-2:]
        return call["name"], _text(result["content"])
    if wire == "gemini":
        call_turn, result_turn = body["contents"][-2], body["contents"][-1]
        call = next(p["functionCall"] for p in call_turn["parts"] if "functionCall" in p)
        result = next(p["functionResponse"] for p in result_turn["parts"] if "functionResponse" in p)
        assert call_turn["role"] == "model" and result["name"] == call["name"], body["contents"][-2:]
        response = result["response"]
        return call["name"], response["result"] if set(response) == {"result"} else json.dumps(response)
    if wire == "bedrock":
        call_msg, result_msg = body["messages"][-2], body["messages"][-1]
        call = next(b["toolUse"] for b in call_msg["content"] if "toolUse" in b)
        result = next(b["toolResult"] for b in result_msg["content"] if "toolResult" in b)
        assert result_msg["role"] == "user" and result["toolUseId"] == call["toolUseId"], body["messages"][-2:]
        return call["name"], _text(result["content"])
    raise ValueError(wire)
