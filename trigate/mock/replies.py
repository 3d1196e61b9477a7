"""What the fake upstream answers, independent of wire format (pure).

Each provider route of the mock reduces its request to a ``Conversation`` and renders the ``Reply``
planned here in its own wire format, so every format answers the same conversation the same way and
tests can compare usage across formats to the token.

Behaviour, chosen so multi-turn tool conversations work end to end:
- tools offered (and tool choice not "none") and the last turn is the user's -> call tools (every
  tool in parallel, or only the forced one / the first one when parallel calls are off), with
  arguments sampled from each tool's JSON schema;
- the last turn carries tool results -> a text answer quoting them;
- otherwise -> a text answer echoing the user's last text.

A scripted call (``ScriptedCall``, queued on the mock's state) replaces the first rule for one
request: exactly that tool with exactly those arguments, so a coding agent offering dozens of tools
gets one real command to run rather than a sampled call to each of them.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from attrs import define, field

_WORD = re.compile(r"\S+\s*|\s+")


@define
class Conversation:
    texts: list[str] = field(factory=list)  # every text in the prompt, for token counting
    last_role: str = "user"  # "user" or "tool" (the last turn carries tool results)
    last_user_text: str = ""
    tool_results: list[str] = field(factory=list)  # texts of the last turn's tool results
    tools: list[dict[str, Any]] = field(factory=list)  # [{name, parameters}]
    tool_choice: str = "auto"  # auto | none | required | tool
    forced_tool: str | None = None
    parallel: bool = True
    max_tokens: int | None = None
    messages: int = 0
    thinking: bool = False


@define
class PlannedCall:
    name: str
    arguments: str  # compact JSON


@define
class ScriptedCall:
    """A tool call queued for the next request that offers ``tool`` while its last turn is the user's."""

    tool: str
    arguments: dict[str, Any] = field(factory=dict)
    model: str | None = None  # only requests for this model match
    times: int = 1

    def matches(self, conv: Conversation, model: str | None) -> bool:
        if self.model is not None and self.model != model:
            return False
        if conv.last_role != "user" or conv.tool_choice == "none":
            return False
        return any(t.get("name") == self.tool for t in conv.tools)


@define
class Reply:
    text_tokens: list[str]  # the answer text split into stream tokens
    calls: list[PlannedCall]
    finish: str  # stop | length | tool_calls
    prompt_tokens: int
    completion_tokens: int
    thinking_tokens: list[str] = field(factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_tokens)

    @property
    def thinking(self) -> str:
        return "".join(self.thinking_tokens)


def count_tokens(text: str) -> int:
    """The mock's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def split_tokens(text: str) -> list[str]:
    return _WORD.findall(text)


def sample_value(schema: Any, name: str = "value") -> Any:
    if not isinstance(schema, dict):
        return f"{name}-sample"
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: sample_value(v, k) for k, v in props.items()}
    if t == "array":
        return [sample_value(schema.get("items"), name)]
    if t == "integer":
        return 1
    if t == "number":
        return 1.5
    if t == "boolean":
        return True
    if t == "null":
        return None
    return f"{name}-sample"


def plan_reply(conv: Conversation, scripted: ScriptedCall | None = None) -> Reply:
    prompt_tokens = sum(count_tokens(t) for t in conv.texts) + 3 * conv.messages
    if scripted is not None:
        call = PlannedCall(scripted.tool, orjson.dumps(scripted.arguments).decode())
        return Reply([], [call], "tool_calls", prompt_tokens, max(1, len(call.arguments) // 4) + 2)
    if conv.tool_results and conv.last_role == "tool":
        text = "Tool results: " + " | ".join(r.strip() for r in conv.tool_results)
        return _text_reply(text, conv, prompt_tokens)
    wants_tools = conv.tools and conv.tool_choice != "none" and conv.last_role == "user"
    if wants_tools:
        if conv.tool_choice == "tool" and conv.forced_tool:
            chosen = [t for t in conv.tools if t.get("name") == conv.forced_tool][:1]
        elif conv.parallel:
            chosen = conv.tools
        else:
            chosen = conv.tools[:1]
        calls = [
            PlannedCall(t["name"], orjson.dumps(sample_value(t.get("parameters") or {})).decode())
            for t in chosen
        ]
        if calls:
            completion = sum(max(1, len(c.arguments) // 4) for c in calls) + 2 * len(calls)
            return Reply([], calls, "tool_calls", prompt_tokens, completion)
    echo = conv.last_user_text.strip()
    if len(echo) > 200:
        echo = echo[:200] + "..."
    text = f"Hello from the trigate mock. You said: {echo}" if echo else "Hello from the trigate mock."
    return _text_reply(text, conv, prompt_tokens)


def _text_reply(text: str, conv: Conversation, prompt_tokens: int) -> Reply:
    tokens = split_tokens(text)
    thinking = split_tokens("Let me think about this briefly.") if conv.thinking else []
    finish = "stop"
    budget = conv.max_tokens
    if budget is not None:
        budget -= len(thinking)
        if budget < len(tokens):
            tokens = tokens[: max(budget, 0)]
            finish = "length"
    completion = sum(1 for t in tokens if t.strip()) + len(thinking)
    return Reply(tokens, [], finish, prompt_tokens, completion, thinking)
