"""The fake upstream's OpenAI Responses endpoints: create (plain and streamed, with sequence numbers),
stored responses with ``previous_response_id``, retrieve, delete and input_items — the native
behaviour the gateway forwards to for OpenAI providers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import trio

from trigate.mock.replies import Conversation, Reply
from trigate.mock.state import Fault, MockState, SeenRequest


class ResponseStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}

    def put(self, resp: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        with self._lock:
            self._items[resp["id"]] = (resp, input_items)
            if len(self._items) > 10_000:
                for key in list(self._items)[:5_000]:
                    del self._items[key]

    def get(self, rid: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        with self._lock:
            return self._items.get(rid)

    def delete(self, rid: str) -> bool:
        with self._lock:
            return self._items.pop(rid, None) is not None

    def history(self, rid: str) -> list[dict[str, Any]]:
        """Input and output items of a stored response and everything before it."""
        entry = self.get(rid)
        if entry is None:
            raise KeyError(rid)
        resp, inputs = entry
        return [*inputs, *resp["output"]]


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    inp = body.get("input")
    if isinstance(inp, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": inp}]}]
    out = []
    for item in inp or []:
        item = dict(item)
        item.setdefault("type", "message")
        if item["type"] == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        out.append(item)
    return out


def _text(item: dict[str, Any]) -> str:
    if item.get("type") == "message":
        return " ".join(p.get("text", "") for p in item.get("content") or [] if isinstance(p, dict))
    if item.get("type") == "function_call":
        return item.get("arguments", "")
    if item.get("type") == "function_call_output":
        out = item.get("output")
        return out if isinstance(out, str) else " ".join(p.get("text", "") for p in out or [])
    return ""


def conversation(body: dict[str, Any], history: list[dict[str, Any]]) -> Conversation:
    items = [*history, *_items(body)]
    conv = Conversation()
    if body.get("instructions"):
        conv.texts.append(body["instructions"])
    conv.texts += [_text(i) for i in items]
    conv.messages = len(items)
    tail = []
    for item in reversed(items):
        if item.get("type") != "function_call_output":
            break
        tail.append(_text(item))
    if tail:
        conv.last_role = "tool"
        conv.tool_results = list(reversed(tail))
    users = [i for i in items if i.get("type") == "message" and i.get("role") == "user"]
    if users:
        conv.last_user_text = _text(users[-1])
    conv.tools = [{"name": t["name"], "parameters": t.get("parameters")} for t in body.get("tools") or []
                  if t.get("type") == "function"]
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        conv.tool_choice, conv.forced_tool = "tool", choice.get("name")
    else:
        conv.tool_choice = choice
    conv.parallel = body.get("parallel_tool_calls", True) is not False
    conv.max_tokens = body.get("max_output_tokens")
    conv.thinking = bool((body.get("reasoning") or {}).get("effort"))
    return conv


def usage_of(reply: Reply) -> dict[str, Any]:
    # Every field current SDKs model: cache_write_tokens is required in ResponseUsage, its TTL split optional.
    return {"input_tokens": reply.prompt_tokens, "input_tokens_details": {
                "cached_tokens": 0, "cache_write_tokens": 0,
                "cache_write_tokens_details": {"ttl_30m_tokens": 0, "ttl_12h_tokens": 0}},
            "output_tokens": reply.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": len(reply.thinking_tokens)},
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


def response_object(body: dict[str, Any], reply: Reply, rid: str, status: str = "completed") -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if reply.thinking_tokens:
        output.append({"type": "reasoning", "id": f"rs_{rid[5:]}", "summary": [
            {"type": "summary_text", "text": reply.thinking}]})
    if reply.text_tokens:
        output.append({"type": "message", "id": f"msg_{rid[5:]}", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}]})
    for i, c in enumerate(reply.calls):
        output.append({"type": "function_call", "id": f"fc_{rid[5:]}{i}", "call_id": f"call_{rid[5:17]}{i}",
                       "name": c.name, "arguments": c.arguments, "status": "completed"})
    incomplete = reply.finish == "length"
    return {
        "id": rid, "object": "response", "created_at": int(time.time()),
        "status": "incomplete" if incomplete else status, "model": body.get("model"), "output": output,
        "error": None, "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "truncation": "disabled",
        "metadata": body.get("metadata") or {}, "usage": usage_of(reply),
    }


def new_id() -> str:
    return "resp_" + uuid.uuid4().hex


def stream_events(body: dict[str, Any], reply: Reply, rid: str) -> list[bytes]:
    final = response_object(body, reply, rid)
    seq = 0

    def ev(name: str, data: dict[str, Any]) -> bytes:
        nonlocal seq
        out = b"event: " + name.encode() + b"\ndata: " + orjson.dumps(
            {"type": name, "sequence_number": seq, **data}) + b"\n\n"
        seq += 1
        return out

    start = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    out = [ev("response.created", {"response": start}), ev("response.in_progress", {"response": start})]
    for oi, item in enumerate(final["output"]):
        if item["type"] == "reasoning":
            out.append(ev("response.output_item.added", {"output_index": oi, "item": {**item, "summary": []}}))
            part = {"type": "summary_text", "text": ""}
            out.append(ev("response.reasoning_summary_part.added", {"item_id": item["id"], "output_index": oi,
                                                                    "summary_index": 0, "part": part}))
            out += [ev("response.reasoning_summary_text.delta", {"item_id": item["id"], "output_index": oi,
                                                                 "summary_index": 0, "delta": t})
                    for t in reply.thinking_tokens]
            out.append(ev("response.reasoning_summary_text.done", {"item_id": item["id"], "output_index": oi,
                                                                   "summary_index": 0, "text": reply.thinking}))
            out.append(ev("response.reasoning_summary_part.done", {
                "item_id": item["id"], "output_index": oi, "summary_index": 0,
                "part": {"type": "summary_text", "text": reply.thinking}}))
        elif item["type"] == "message":
            out.append(ev("response.output_item.added", {"output_index": oi, "item": {
                **item, "status": "in_progress", "content": []}}))
            ids = {"item_id": item["id"], "output_index": oi, "content_index": 0}
            out.append(ev("response.content_part.added", {**ids, "part": {
                "type": "output_text", "text": "", "annotations": [], "logprobs": []}}))
            out += [ev("response.output_text.delta", {**ids, "delta": t, "logprobs": []}) for t in reply.text_tokens]
            out.append(ev("response.output_text.done", {**ids, "text": reply.text, "logprobs": []}))
            out.append(ev("response.content_part.done", {**ids, "part": item["content"][0]}))
        else:
            out.append(ev("response.output_item.added", {"output_index": oi, "item": {
                **item, "arguments": "", "status": "in_progress"}}))
            args = item["arguments"]
            out += [ev("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": oi,
                                                                  "delta": args[j:j + 8]})
                    for j in range(0, len(args), 8)]
            out.append(ev("response.function_call_arguments.done", {"item_id": item["id"], "output_index": oi,
                                                                    "arguments": args, "name": item["name"]}))
        out.append(ev("response.output_item.done", {"output_index": oi, "item": item}))
    terminal = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    out.append(ev(terminal, {"response": final}))
    return out


async def stream(state: MockState, seen: SeenRequest, events: list[bytes], usage: dict[str, Any],
                 fault: Fault | None) -> AsyncIterator[bytes]:
    delay = state.token_delay_ms / 1000
    try:
        for n, piece in enumerate(events):
            if fault and fault.drop_after is not None and n >= fault.drop_after:
                raise ConnectionAbortedError("mock: injected connection drop")
            if fault and fault.error_after is not None and n >= fault.error_after:
                yield b"event: error\ndata: " + orjson.dumps({
                    "type": "error", "code": fault.error_type or "server_error", "message": fault.message,
                    "param": None, "sequence_number": n}) + b"\n\n"
                return
            if delay and n > 0:
                await trio.sleep(delay)
            yield piece
        seen.usage = usage
        seen.finished = time.monotonic()
    except trio.Cancelled:
        seen.disconnected = time.monotonic()
        raise


input_items = _items
