"""Anthropic Messages streaming (named SSE events) <-> IR stream events, plus the vocabulary shared with
``trigate.formats.anthropic``: stop reasons, usage and error types.

Kept apart from the request/response codec so the hot stream path imports nothing it does not use.
"""

from __future__ import annotations

from typing import Any

import orjson

from trigate.errors import GatewayError, kind_for_status
from trigate.translate import ir
from trigate.wire.sse import SSEEvent, encode_event

# --------------------------------------------------------------------------------------------
# Stop reasons (protocols.md §11.9)
# --------------------------------------------------------------------------------------------

STOP_FROM_ANTHROPIC: dict[str, ir.StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "stop_sequence",
    "max_tokens": "max_tokens",
    "tool_use": "tool_use",
    "pause_turn": "pause_turn",
    "refusal": "content_filter",
    "model_context_window_exceeded": "context_window_exceeded",
}
STOP_TO_ANTHROPIC: dict[str, str] = {v: k for k, v in STOP_FROM_ANTHROPIC.items()}


def stop_from_anthropic(reason: Any) -> ir.StopReason | None:
    if reason is None:
        return None
    # A stop reason newer than this table still means the turn ended.
    return STOP_FROM_ANTHROPIC.get(reason, "end_turn") if isinstance(reason, str) else "end_turn"


def stop_to_anthropic(reason: ir.StopReason | None) -> str | None:
    if reason is None:
        return None
    return STOP_TO_ANTHROPIC.get(reason, "end_turn")


# --------------------------------------------------------------------------------------------
# Usage (protocols.md §11.10)
# --------------------------------------------------------------------------------------------


def _count(value: Any) -> int:
    # Compatible backends send null for cache fields they do not track.
    return value if type(value) is int and value > 0 else 0


def usage_from_anthropic(u: dict[str, Any]) -> ir.Usage:
    """Anthropic ``usage`` object -> IR usage (input_tokens becomes the whole prompt)."""
    cache_write = _count(u.get("cache_creation_input_tokens"))
    cache_read = _count(u.get("cache_read_input_tokens"))
    details = u.get("output_tokens_details")
    reasoning = details.get("thinking_tokens") if isinstance(details, dict) else None
    return ir.Usage(
        input_tokens=_count(u.get("input_tokens")) + cache_write + cache_read,
        output_tokens=_count(u.get("output_tokens")),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning if type(reasoning) is int else None,
    )


def usage_to_anthropic(u: ir.Usage) -> dict[str, Any]:
    """IR usage -> Anthropic ``usage`` fields (input_tokens is the uncached remainder)."""
    out: dict[str, Any] = {
        "input_tokens": max(u.input_tokens - u.cache_read_tokens - u.cache_write_tokens, 0),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }
    if u.reasoning_tokens is not None:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def _merge_delta_usage(base: ir.Usage | None, u: dict[str, Any]) -> ir.Usage:
    """message_delta usage is cumulative and may omit the input side; fields it omits keep the value
    message_start gave."""
    prev = base or ir.Usage()
    cw = u.get("cache_creation_input_tokens")
    cr = u.get("cache_read_input_tokens")
    inp = u.get("input_tokens")
    cache_write = _count(cw) if cw is not None else prev.cache_write_tokens
    cache_read = _count(cr) if cr is not None else prev.cache_read_tokens
    if inp is not None:
        input_total = _count(inp) + cache_write + cache_read
    else:
        input_total = prev.input_tokens - prev.cache_write_tokens - prev.cache_read_tokens + cache_write + cache_read
    details = u.get("output_tokens_details")
    reasoning = details.get("thinking_tokens") if isinstance(details, dict) else None
    out = u.get("output_tokens")
    return ir.Usage(
        input_tokens=input_total,
        output_tokens=_count(out) if out is not None else prev.output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning if type(reasoning) is int else prev.reasoning_tokens,
    )


def usage_from_event(event_name: str | None, data: dict[str, Any], acc: ir.Usage) -> None:
    """Fold the usage of one natively forwarded Anthropic stream event into ``acc`` (in place).

    For the shell when it relays an Anthropic stream unchanged and only needs the billing numbers.
    """
    kind = event_name or data.get("type")
    if kind == "message_start":
        msg = data.get("message")
        u = msg.get("usage") if isinstance(msg, dict) else None
        if isinstance(u, dict):
            new = usage_from_anthropic(u)
        else:
            return
    elif kind == "message_delta":
        u = data.get("usage")
        if not isinstance(u, dict):
            return
        new = _merge_delta_usage(acc, u)
    else:
        return
    acc.input_tokens = new.input_tokens
    acc.output_tokens = new.output_tokens
    acc.cache_read_tokens = new.cache_read_tokens
    acc.cache_write_tokens = new.cache_write_tokens
    acc.reasoning_tokens = new.reasoning_tokens


def usage_from_body(body: Any) -> ir.Usage | None:
    """Usage of a non-streamed Anthropic response body, or None when it has none."""
    if not isinstance(body, dict):
        return None
    u = body.get("usage")
    return usage_from_anthropic(u) if isinstance(u, dict) else None


# --------------------------------------------------------------------------------------------
# Errors (protocols.md §3.5, §11.12)
# --------------------------------------------------------------------------------------------

ERROR_TYPE_BY_KIND: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "billing": "billing_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
    "server_error": "api_error",
    "upstream_unavailable": "api_error",
}

KIND_BY_ERROR_TYPE: dict[str, Any] = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limit",
    "billing_error": "billing",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
    "api_error": "server_error",
}

OVERLOADED_STATUS = 529


def error_from_object(status: int, err: Any) -> GatewayError:
    """An Anthropic ``error`` object (``{"type", "message"}``) -> GatewayError.

    ``status`` 0 means "no HTTP status" (an in-stream error): the status then follows the error type, with
    Anthropic's own 529 for overloaded_error.
    """
    etype = err.get("type") if isinstance(err, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    kind = KIND_BY_ERROR_TYPE.get(etype) if isinstance(etype, str) else None
    if kind is None:
        kind = kind_for_status(status) if status else "server_error"
    if not status and kind == "overloaded":
        status = OVERLOADED_STATUS
    if not isinstance(message, str) or not message:
        message = etype if isinstance(etype, str) else "upstream error"
    return GatewayError(kind, message, status=status, from_gateway=False)


def error_payload(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPE_BY_KIND.get(err.kind, "api_error"), "message": err.message}}


def render_stream_error(err: GatewayError) -> bytes:
    return encode_event(orjson.dumps(error_payload(err)), "error")


# --------------------------------------------------------------------------------------------
# Stream decoder: Anthropic SSE events -> IR
# --------------------------------------------------------------------------------------------


def _malformed(detail: str) -> ir.StreamError:
    return ir.StreamError(GatewayError("upstream_unavailable", f"malformed Anthropic stream: {detail}"))


class AnthropicStreamDecoder:
    """State machine over the upstream's events.

    Anthropic numbers every block, including server-tool blocks the IR cannot carry; those are skipped and
    the rest renumbered so IR indexes stay consecutive from 0.
    """

    __slots__ = (
        "_done",
        "_next_index",
        "_open",
        "_pending_input",
        "_start_usage",
        "_started",
        "_stop_reason",
        "_stop_sequence",
        "_usage",
    )

    def __init__(self) -> None:
        self._started = False
        self._done = False
        self._next_index = 0
        # upstream index -> (IR index, IR block kind), for the open blocks the IR carries
        self._open: dict[int, tuple[int, str]] = {}
        # tool_use blocks whose start carried a non-empty input (some compatible backends send it whole
        # there and no deltas); emitted at block stop only if no delta came.
        self._pending_input: dict[int, str] = {}
        self._start_usage: ir.Usage | None = None
        self._usage: ir.Usage | None = None
        self._stop_reason: Any = None
        self._stop_sequence: str | None = None

    def feed(self, event: SSEEvent) -> list[ir.StreamEvent]:
        if self._done:
            return []
        raw = event.data
        if not raw:
            return []
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._done = True
            return [_malformed("event data is not JSON")]
        if type(data) is not dict:
            self._done = True
            return [_malformed("event data is not an object")]
        try:
            return self._dispatch(data.get("type") or event.event, data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            self._done = True
            return [_malformed(f"{type(exc).__name__} in {data.get('type')!r} event")]

    def close(self) -> list[ir.StreamEvent]:
        if self._done:
            return []
        self._done = True
        return [ir.StreamError(GatewayError("upstream_unavailable", "the upstream stream ended before message_stop"))]

    # -- per event ------------------------------------------------------------------------------

    def _dispatch(self, etype: Any, data: dict[str, Any]) -> list[ir.StreamEvent]:
        if etype == "content_block_delta":
            return self._delta(data)
        if etype == "ping":
            return []
        out: list[ir.StreamEvent] = []
        if not self._started and etype in ("content_block_start", "message_delta", "message_stop"):
            # Tolerate a backend that skips message_start: the IR grammar still needs one.
            self._started = True
            out.append(ir.MessageStart(id="msg_unknown", model=""))
        if etype == "content_block_start":
            self._block_start(data, out)
        elif etype == "content_block_stop":
            self._block_stop(data["index"], out)
        elif etype == "message_start":
            self._message_start(data, out)
        elif etype == "message_delta":
            delta = data.get("delta") or {}
            if "stop_reason" in delta:
                self._stop_reason = delta["stop_reason"]
            if "stop_sequence" in delta:
                self._stop_sequence = delta["stop_sequence"]
            u = data.get("usage")
            if isinstance(u, dict):
                self._usage = _merge_delta_usage(self._usage or self._start_usage, u)
        elif etype == "message_stop":
            for up in list(self._open):
                self._block_stop(up, out)
            self._done = True
            out.append(
                ir.MessageEnd(
                    stop_reason=stop_from_anthropic(self._stop_reason),
                    stop_sequence=self._stop_sequence,
                    usage=self._usage or self._start_usage,
                )
            )
        elif etype == "error":
            self._done = True
            out.append(ir.StreamError(error_from_object(0, data.get("error"))))
        return out

    def _message_start(self, data: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        if self._started:
            return
        self._started = True
        msg = data["message"]
        u = msg.get("usage")
        self._start_usage = usage_from_anthropic(u) if isinstance(u, dict) else None
        out.append(
            ir.MessageStart(id=msg.get("id") or "msg_unknown", model=msg.get("model") or "", usage=self._start_usage)
        )

    def _block_start(self, data: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        up = data["index"]
        block = data["content_block"]
        btype = block["type"]
        if self._open:
            # Anthropic never interleaves blocks, but the IR grammar forbids it outright: a backend that
            # does gets its earlier block closed here.
            for prev in list(self._open):
                self._block_stop(prev, out)
        if btype == "text":
            kind = "text"
        elif btype == "thinking":
            kind = "reasoning"
        elif btype == "tool_use":
            kind = "tool_call"
        elif btype == "redacted_thinking":
            kind = "redacted_reasoning"
        else:
            # server_tool_use, web_search_tool_result, ...: no IR block kind carries them.
            return
        index = self._next_index
        self._next_index += 1
        self._open[up] = (index, kind)
        if kind == "tool_call":
            out.append(ir.BlockStart(index, kind, tool_id=block["id"], tool_name=block["name"]))
            placeholder = block.get("input")
            if placeholder:
                self._pending_input[up] = orjson.dumps(placeholder).decode()
        elif kind == "redacted_reasoning":
            out.append(ir.BlockStart(index, kind, data=block.get("data")))
        else:
            out.append(ir.BlockStart(index, kind))
            # Start blocks are normally empty; a backend that front-loads content still gets it through.
            if kind == "text":
                text = block.get("text")
                if text and isinstance(text, str):
                    out.append(ir.TextDelta(index, text))
            else:
                text = block.get("thinking")
                if text and isinstance(text, str):
                    out.append(ir.ReasoningDelta(index, text))
                sig = block.get("signature")
                if sig and isinstance(sig, str):
                    out.append(ir.SignatureDelta(index, sig))

    def _delta(self, data: dict[str, Any]) -> list[ir.StreamEvent]:
        entry = self._open.get(data["index"])
        if entry is None:
            return []
        index, kind = entry
        delta = data["delta"]
        dtype = delta["type"]
        # A delta that does not fit its block's kind is dropped rather than breaking the IR grammar.
        if dtype == "text_delta":
            text = delta["text"]
            if kind == "text" and text.__class__ is str:
                return [ir.TextDelta(index, text)]
        elif dtype == "input_json_delta":
            fragment = delta["partial_json"]
            if kind == "tool_call" and fragment and fragment.__class__ is str:
                if self._pending_input:
                    self._pending_input.pop(data["index"], None)
                return [ir.ToolArgsDelta(index, fragment)]
        elif dtype == "thinking_delta":
            text = delta["thinking"]
            if kind == "reasoning" and text.__class__ is str:
                return [ir.ReasoningDelta(index, text)]
        elif dtype == "signature_delta":
            sig = delta["signature"]
            if kind == "reasoning" and sig.__class__ is str:
                return [ir.SignatureDelta(index, sig)]
        # citations_delta and future delta types: the IR stream has no place for them.
        return []

    def _block_stop(self, up: int, out: list[ir.StreamEvent]) -> None:
        entry = self._open.pop(up, None)
        if entry is None:
            return
        index = entry[0]
        if self._pending_input:
            pending = self._pending_input.pop(up, None)
            if pending is not None:
                out.append(ir.ToolArgsDelta(index, pending))
        out.append(ir.BlockStop(index))


# --------------------------------------------------------------------------------------------
# Stream encoder: IR -> Anthropic SSE events
# --------------------------------------------------------------------------------------------


def _ev(name: str, payload: dict[str, Any]) -> bytes:
    return encode_event(orjson.dumps(payload), name)


def _delta_frame(index: int, delta_head: bytes, value: str) -> bytes:
    # Built from pre-encoded pieces: this runs once per token, and a dict + full dumps costs ~2x.
    return encode_event(
        b'{"type":"content_block_delta","index":%d,"delta":{"type":%s%s}}' % (index, delta_head, orjson.dumps(value)),
        "content_block_delta",
    )


_TEXT_HEAD = b'"text_delta","text":'
_THINKING_HEAD = b'"thinking_delta","thinking":'
_SIGNATURE_HEAD = b'"signature_delta","signature":'
_JSON_HEAD = b'"input_json_delta","partial_json":'
_THINKING_BLOCK: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}


def message_id(raw: str) -> str:
    """Anthropic clients expect ``msg_`` ids; foreign ids keep their text behind the prefix."""
    return raw if raw.startswith("msg_") else "msg_" + raw


class AnthropicStreamEncoder:
    """Renumbers blocks from 0 in the order they open and keeps the event order Anthropic clients expect
    (one block open at a time, message_delta then message_stop), whatever decoder produced the IR.

    ``thinking`` False (the caller did not ask for thinking): a reasoning block is held back until it has
    text, and dropped if it never does, so a bare signature (Gemini 3 signs text parts unasked) does not
    show up as an empty thinking block."""

    __slots__ = ("_done", "_held", "_held_sig", "_map", "_next_index", "_start_usage", "_started", "_thinking")

    def __init__(self, thinking: bool = True) -> None:
        self._started = False
        self._done = False
        self._next_index = 0
        self._map: dict[int, int] = {}  # IR index -> Anthropic index, open blocks only
        self._start_usage: ir.Usage | None = None
        self._thinking = thinking
        self._held: int | None = None  # IR index of the reasoning block held back, if any
        self._held_sig = ""

    def encode(self, event: ir.StreamEvent) -> bytes:
        if self._done:
            return b""
        cls = type(event)
        if self._held is not None and cls is not ir.BlockStart and getattr(event, "index", None) == self._held:
            return self._held_event(event)
        if cls is ir.TextDelta or cls is ir.RefusalDelta:
            return self._delta(event.index, _TEXT_HEAD, event.text)  # type: ignore[union-attr]
        if cls is ir.ToolArgsDelta:
            return self._delta(event.index, _JSON_HEAD, event.fragment)  # type: ignore[union-attr]
        if cls is ir.ReasoningDelta:
            return self._delta(event.index, _THINKING_HEAD, event.text)  # type: ignore[union-attr]
        if cls is ir.SignatureDelta:
            return self._delta(event.index, _SIGNATURE_HEAD, event.signature)  # type: ignore[union-attr]
        if cls is ir.BlockStart:
            return self._block_start(event)  # type: ignore[arg-type]
        if cls is ir.BlockStop:
            anth = self._map.pop(event.index, None)  # type: ignore[union-attr]
            if anth is None:
                return b""
            return _ev("content_block_stop", {"type": "content_block_stop", "index": anth})
        if cls is ir.MessageStart:
            return self._message_start(event)  # type: ignore[arg-type]
        if cls is ir.MessageEnd:
            return self._message_end(event)  # type: ignore[arg-type]
        if cls is ir.StreamError:
            self._done = True
            return render_stream_error(event.error)  # type: ignore[union-attr]
        return b""

    def _delta(self, index: int, head: bytes, value: str) -> bytes:
        anth = self._map.get(index)
        if anth is None or not value:
            return b""
        return _delta_frame(anth, head, value)

    def _message_start(self, event: ir.MessageStart) -> bytes:
        if self._started:
            return b""
        self._started = True
        self._start_usage = event.usage
        return _ev("message_start", self._start_payload(event.id, event.model, event.usage))

    @staticmethod
    def _start_payload(msg_id: str, model: str, usage: ir.Usage | None) -> dict[str, Any]:
        u = usage_to_anthropic(usage) if usage is not None else usage_to_anthropic(ir.Usage())
        return {
            "type": "message_start",
            "message": {
                "id": message_id(msg_id),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": u,
            },
        }

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return _ev("message_start", self._start_payload("msg_gateway", "", None))

    def _close_open(self) -> bytes:
        if not self._map:
            return b""
        parts = [_ev("content_block_stop", {"type": "content_block_stop", "index": a}) for a in self._map.values()]
        self._map.clear()
        return b"".join(parts)

    def _block_start(self, event: ir.BlockStart) -> bytes:
        head = self._ensure_started() + self._close_open()
        self._held = None
        kind = event.kind
        block: dict[str, Any]
        if kind == "text" or kind == "refusal":
            block = {"type": "text", "text": ""}
        elif kind == "tool_call":
            block = {"type": "tool_use", "id": event.tool_id or "", "name": event.tool_name or "", "input": {}}
        elif kind == "reasoning":
            if not self._thinking:
                self._held, self._held_sig = event.index, ""
                return head
            block = _THINKING_BLOCK
        elif kind == "redacted_reasoning":
            block = {"type": "redacted_thinking", "data": event.data or ""}
        else:
            return head
        return head + self._open(event.index, block)

    def _open(self, index: int, block: dict[str, Any]) -> bytes:
        anth = self._next_index
        self._next_index += 1
        self._map[index] = anth
        return _ev("content_block_start", {"type": "content_block_start", "index": anth, "content_block": block})

    def _held_event(self, event: ir.StreamEvent) -> bytes:
        """An event of the held-back reasoning block: opened by its first text, dropped at its stop without."""
        cls = type(event)
        if cls is ir.SignatureDelta:
            self._held_sig = event.signature  # type: ignore[union-attr]
            return b""
        if cls is ir.BlockStop:
            self._held = None
            return b""
        if cls is ir.ReasoningDelta and event.text:  # type: ignore[union-attr]
            index: int = self._held  # type: ignore[assignment]
            self._held = None
            out = self._open(index, _THINKING_BLOCK) + self._delta(index, _THINKING_HEAD, event.text)  # type: ignore[union-attr]
            if self._held_sig:
                out += self._delta(index, _SIGNATURE_HEAD, self._held_sig)
            return out
        return b""

    def _message_end(self, event: ir.MessageEnd) -> bytes:
        self._done = True
        head = self._ensure_started() + self._close_open()
        if event.usage is not None:
            usage = usage_to_anthropic(event.usage)
        else:
            # Nothing better known: clients need output_tokens; the input side already went out in
            # message_start and survives in their accumulators when omitted here.
            usage = {"output_tokens": self._start_usage.output_tokens if self._start_usage else 0}
        delta = {
            "stop_reason": stop_to_anthropic(event.stop_reason) or "end_turn",
            "stop_sequence": event.stop_sequence,
        }
        return (
            head
            + _ev("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
            + _ev("message_stop", {"type": "message_stop"})
        )
