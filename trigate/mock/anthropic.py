"""The fake upstream's Anthropic Messages endpoints: messages (plain and streamed with every event
type: message_start, content_block_start/delta/stop for thinking with signatures, text and tool_use
with input_json_delta, ping, message_delta with cumulative usage, message_stop), count_tokens, and
Anthropic error bodies."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import trio

from trigate.mock.replies import Conversation, Reply, count_tokens, plan_reply
from trigate.mock.state import Fault, MockState, SeenRequest

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


def error_body(status: int, message: str, error_type: str | None = None) -> bytes:
    etype = error_type or ERROR_TYPES.get(status, "api_error")
    return orjson.dumps({"type": "error", "error": {"type": etype, "message": message},
                         "request_id": f"req_{uuid.uuid4().hex[:24]}"})


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    t = block.get("type")
    if t == "text":
        return block.get("text", "")
    if t == "tool_result":
        c = block.get("content")
        return c if isinstance(c, str) else " ".join(_block_text(b) for b in c or [])
    if t == "tool_use":
        return orjson.dumps(block.get("input", {})).decode()
    return ""


def validate(body: dict[str, Any]) -> str | None:
    """The checks the real API makes that translators most often get wrong; the message, or None."""
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    pending: set[str] = set()
    for i, m in enumerate(messages):
        if m.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = m.get("content")
        blocks = [content] if isinstance(content, str) else content or []
        if isinstance(content, list) and not content:
            return f"messages.{i}: all messages must have non-empty content"
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if pending:
            got = {b.get("tool_use_id") for b in results}
            if m.get("role") != "user" or not pending <= got:
                return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                        f"after: {', '.join(sorted(pending - got))}")
            first_other = next((j for j, b in enumerate(blocks) if not (isinstance(b, dict) and
                                                                           b.get("type") == "tool_result")), None)
            if first_other is not None and first_other < len(results):
                return f"messages.{i}: tool_result blocks must come first in the user message"
        pending = {b["id"] for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"} \
            if m.get("role") == "assistant" else set()
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "text" and not b.get("text"):
                return f"messages.{i}.content: text content blocks must be non-empty"
    for t in body.get("tools") or []:
        schema = t.get("input_schema")
        if "type" not in t and (not isinstance(schema, dict) or schema.get("type") != "object"):
            return "tools: input_schema.type: Input should be 'object'"
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens", 0)
        if budget < 1024 or budget >= body["max_tokens"]:
            return "thinking.budget_tokens: must be >= 1024 and less than max_tokens"
        if "temperature" in body and body["temperature"] != 1:
            return "temperature may only be set to 1 when thinking is enabled"
    return None


def conversation(body: dict[str, Any]) -> Conversation:
    conv = Conversation()
    messages = body.get("messages") or []
    conv.messages = len(messages)
    system = body.get("system")
    if system:
        conv.texts.append(system if isinstance(system, str) else " ".join(_block_text(b) for b in system))
    for m in messages:
        content = m.get("content")
        conv.texts.append(content if isinstance(content, str) else " ".join(_block_text(b) for b in content or []))
    if messages:
        last = messages[-1]
        content = last.get("content")
        blocks = content if isinstance(content, list) else []
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if last.get("role") == "user" and results:
            conv.last_role = "tool"
            conv.tool_results = [_block_text(b) for b in results]
    users = [m for m in messages if m.get("role") == "user"]
    for m in reversed(users):
        c = m.get("content")
        text = c if isinstance(c, str) else " ".join(
            b.get("text", "") for b in c or [] if isinstance(b, dict) and b.get("type") == "text")
        if text:
            conv.last_user_text = text
            break
    conv.tools = [{"name": t["name"], "parameters": t.get("input_schema")} for t in body.get("tools") or []
                  if "name" in t]
    choice = body.get("tool_choice") or {"type": "auto"}
    ctype = choice.get("type", "auto")
    conv.tool_choice = {"any": "required", "tool": "tool"}.get(ctype, ctype)
    conv.forced_tool = choice.get("name")
    conv.parallel = not choice.get("disable_parallel_tool_use", False)
    conv.max_tokens = body.get("max_tokens")
    conv.thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    return conv


def _signature(text: str) -> str:
    return "sig_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def usage_of(reply: Reply, *, final: bool = True) -> dict[str, Any]:
    return {"input_tokens": reply.prompt_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": reply.completion_tokens if final else 1, "service_tier": "standard"}


def _stop_reason(reply: Reply) -> str:
    return {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}[reply.finish]


def _tool_id(mid: str, i: int) -> str:
    return f"toolu_{mid[-12:]}{i:02d}"


def message(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    mid = uuid.uuid4().hex[:24]
    content: list[dict[str, Any]] = []
    if reply.thinking_tokens:
        content.append({"type": "thinking", "thinking": reply.thinking, "signature": _signature(reply.thinking)})
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    for i, c in enumerate(reply.calls):
        content.append({"type": "tool_use", "id": _tool_id(mid, i), "name": c.name,
                        "input": orjson.loads(c.arguments)})
    return {"id": f"msg_{mid}", "type": "message", "role": "assistant", "model": body.get("model"),
            "content": content, "stop_reason": _stop_reason(reply), "stop_sequence": None,
            "usage": usage_of(reply)}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


def stream_events(body: dict[str, Any], reply: Reply) -> list[bytes]:
    msg = message(body, reply)
    start = {**msg, "content": [], "stop_reason": None, "usage": usage_of(reply, final=False)}
    out = [_event("message_start", {"message": start})]
    for index, block in enumerate(msg["content"]):
        if block["type"] == "thinking":
            out.append(_event("content_block_start", {"index": index, "content_block":
                                                      {"type": "thinking", "thinking": "", "signature": ""}}))
            out += [_event("content_block_delta", {"index": index, "delta": {"type": "thinking_delta",
                                                                             "thinking": t}})
                    for t in reply.thinking_tokens]
            out.append(_event("content_block_delta", {"index": index, "delta": {"type": "signature_delta",
                                                                                "signature": block["signature"]}}))
        elif block["type"] == "text":
            out.append(_event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
            if index == 0:
                out.append(_event("ping", {}))
            out += [_event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": t}})
                    for t in reply.text_tokens]
        else:
            out.append(_event("content_block_start", {"index": index, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
            args = orjson.dumps(block["input"]).decode()
            out += [_event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                             "partial_json": args[j:j + 8]}})
                    for j in range(0, len(args), 8)]
        out.append(_event("content_block_stop", {"index": index}))
    out.append(_event("message_delta", {"delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                                        "usage": {"output_tokens": reply.completion_tokens}}))
    out.append(_event("message_stop", {}))
    return out


async def stream(state: MockState, seen: SeenRequest, body: dict[str, Any], reply: Reply,
                 fault: Fault | None) -> AsyncIterator[bytes]:
    delay = state.token_delay_ms / 1000
    try:
        for n, piece in enumerate(stream_events(body, reply)):
            if fault and fault.drop_after is not None and n >= fault.drop_after:
                raise ConnectionAbortedError("mock: injected connection drop")
            if fault and fault.error_after is not None and n >= fault.error_after:
                etype = fault.error_type or "overloaded_error"
                yield _event("error", {"error": {"type": etype, "message": fault.message}})
                return
            if delay and n > 0:
                await trio.sleep(delay)
            yield piece
        seen.usage = usage_of(reply)
        seen.finished = time.monotonic()
    except trio.Cancelled:
        seen.disconnected = time.monotonic()
        raise


def count(body: dict[str, Any]) -> dict[str, int]:
    conv = conversation({**body, "max_tokens": 1})
    tools = sum(count_tokens(orjson.dumps(t).decode()) for t in body.get("tools") or [])
    return {"input_tokens": sum(count_tokens(t) for t in conv.texts) + 3 * conv.messages + tools}


__all__ = ["conversation", "count", "error_body", "message", "plan_reply", "stream", "usage_of", "validate"]
