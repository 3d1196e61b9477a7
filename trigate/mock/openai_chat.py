"""The fake upstream's OpenAI Chat Completions endpoint, faithful to the wire format the `openai`
SDK parses: chat.completion objects, chat.completion.chunk SSE streams with tool-call deltas, usage
chunks when `stream_options.include_usage`, `[DONE]`, and OpenAI error bodies.

``gemini=True`` answers as Gemini's OpenAI-compatible endpoint does for its thinking models: the
model thinks unless ``reasoning_effort`` is "none", the thoughts are not shown, and their tokens count
in ``total_tokens`` but not in ``completion_tokens`` (no ``completion_tokens_details``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import trio

from trigate.mock.replies import Conversation, Reply
from trigate.mock.state import Fault, MockState, SeenRequest


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def conversation(body: dict[str, Any], gemini: bool = False) -> Conversation:
    conv = Conversation()
    messages = body.get("messages") or []
    conv.messages = len(messages)
    for m in messages:
        conv.texts.append(_text_of(m.get("content")))
        for tc in m.get("tool_calls") or []:
            conv.texts.append(tc.get("function", {}).get("arguments", ""))
    # The trailing run of tool messages is "the last turn's tool results".
    tail = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        tail.append(_text_of(m.get("content")))
    if tail:
        conv.last_role = "tool"
        conv.tool_results = list(reversed(tail))
    users = [m for m in messages if m.get("role") == "user"]
    if users:
        conv.last_user_text = _text_of(users[-1].get("content"))
    conv.tools = [
        {"name": t["function"]["name"], "parameters": t["function"].get("parameters")}
        for t in body.get("tools") or []
        if t.get("type") == "function"
    ]
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        conv.tool_choice, conv.forced_tool = "tool", choice.get("function", {}).get("name")
    elif isinstance(choice, str):
        conv.tool_choice = choice
    conv.parallel = body.get("parallel_tool_calls", True) is not False
    conv.max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    effort = body.get("reasoning_effort")
    conv.thinking = effort != "none" if gemini else bool(effort)
    return conv


def usage_of(reply: Reply, gemini: bool = False) -> dict[str, Any]:
    if gemini:
        thoughts = len(reply.thinking_tokens)
        return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens - thoughts,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens}
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": len(reply.thinking_tokens),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def error_body(status: int, message: str, error_type: str | None = None) -> bytes:
    types = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 429: "rate_limit_error"}
    etype = error_type or types.get(status, "server_error")
    code = "rate_limit_exceeded" if status == 429 else None
    return orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})


def _tool_calls(reply: Reply, call_id: str) -> list[dict[str, Any]]:
    return [
        {"id": f"call_{call_id}_{i}", "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for i, c in enumerate(reply.calls)
    ]


def completion(body: dict[str, Any], reply: Reply, gemini: bool = False) -> dict[str, Any]:
    cid = uuid.uuid4().hex[:24]
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None,
                               "annotations": []}
    if reply.calls:
        message["tool_calls"] = _tool_calls(reply, cid)
    if reply.thinking_tokens and not gemini:
        message["reasoning_content"] = reply.thinking
    return {
        "id": f"chatcmpl-{cid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "mock"),
        "system_fingerprint": "fp_trigate_mock",
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish, "logprobs": None}],
        "usage": usage_of(reply, gemini),
    }


async def stream(
    state: MockState, seen: SeenRequest, body: dict[str, Any], reply: Reply, fault: Fault | None,
    gemini: bool = False,
) -> AsyncIterator[bytes]:
    cid = uuid.uuid4().hex[:24]
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {"id": f"chatcmpl-{cid}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body.get("model", "mock"), "system_fingerprint": "fp_trigate_mock"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if include_usage:
            obj["usage"] = None
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    pieces = [chunk({"role": "assistant", "content": ""})]
    if not gemini:
        pieces += [chunk({"reasoning_content": t}) for t in reply.thinking_tokens]
    pieces += [chunk({"content": t}) for t in reply.text_tokens]
    for i, call in enumerate(_tool_calls(reply, cid)):
        args = call["function"]["arguments"]
        pieces.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        # Split arguments in fragments the way real models stream them.
        for j in range(0, len(args), 8):
            pieces.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args[j:j + 8]}}]}))
    pieces.append(chunk({}, reply.finish))
    if include_usage:
        pieces.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage_of(reply, gemini)}) + b"\n\n")
    pieces.append(b"data: [DONE]\n\n")

    delay = state.token_delay_ms / 1000
    try:
        for n, piece in enumerate(pieces):
            if fault and fault.drop_after is not None and n >= fault.drop_after:
                raise ConnectionAbortedError("mock: injected connection drop")
            if fault and fault.error_after is not None and n >= fault.error_after:
                yield b"data: " + error_body(500, fault.message, fault.error_type or "server_error") + b"\n\n"
                return
            if delay and n > 0:
                await trio.sleep(delay)
            yield piece
        seen.usage = usage_of(reply, gemini)
        seen.finished = time.monotonic()
    except trio.Cancelled:
        seen.disconnected = time.monotonic()
        raise
