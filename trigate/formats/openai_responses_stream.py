"""OpenAI Responses API streams <-> IR stream events (protocols.md §2.3, §11.11).

Decoder: named SSE events (``response.*``) -> IR events. One IR block per output_text / refusal content
part, per function (or custom tool) call, and per reasoning item (its summary parts and reasoning text
joined with blank lines). Tolerant of upstreams that skip deltas and only send ``*.done`` /
``output_item.done`` / a full ``response.completed``: whatever was not streamed is emitted from those.

Encoder: IR events -> the event sequence the OpenAI SDK accumulates: ``response.created`` and
``response.in_progress`` first, output items opened and closed in order, consecutive text/refusal
blocks gathered as content parts of one message item (as ``encode_response`` does), and a terminal
``response.completed`` / ``response.incomplete`` / ``response.failed`` carrying the full response
object. Item ids are derived from ``response_id`` and the output index, so they are the same in every
event and in the final object.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from trigate.errors import GatewayError
from trigate.formats import openai_responses as fmt
from trigate.translate import ir
from trigate.wire.sse import SSEEvent, encode_event

# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------

# Event types that must not open the message: they end the stream as errors.
_NO_START = frozenset({"error", "response.failed"})


class _InBlock:
    __slots__ = ("chunks", "closed", "index", "kind", "sub")

    def __init__(self, index: int, kind: ir.BlockKind) -> None:
        self.index = index
        self.kind = kind
        self.chunks: list[str] = []
        self.closed = False
        # reasoning: text sent per summary part / reasoning_text part, keyed ("s"|"c", index)
        self.sub: dict[tuple[str, int], list[str]] = {}


def _delta_event(kind: str, index: int, text: str) -> ir.StreamEvent:
    if kind == "text":
        return ir.TextDelta(index, text)
    if kind == "tool_call":
        return ir.ToolArgsDelta(index, text)
    if kind == "reasoning":
        return ir.ReasoningDelta(index, text)
    return ir.RefusalDelta(index, text)


class ResponsesStreamDecoder:
    """Upstream Responses SSE events -> IR events."""

    def __init__(self, req: ir.Request) -> None:
        self._started = False
        self._done = False
        self._next = 0
        # (output_index, content_index) for message parts, (output_index, -1) for calls and reasoning
        self._blocks: dict[tuple[int, int], _InBlock] = {}
        self._open: _InBlock | None = None
        self._finished_items: set[int] = set()
        self._has_calls = False
        self._handlers = {
            "response.created": _noop,
            "response.in_progress": _noop,
            "response.queued": _noop,
            "response.output_item.added": self._item_added,
            "response.content_part.added": self._part_added,
            "response.output_text.delta": self._text_delta,
            "response.output_text.done": self._text_done,
            "response.refusal.delta": self._refusal_delta,
            "response.refusal.done": self._refusal_done,
            "response.content_part.done": self._part_done,
            "response.function_call_arguments.delta": self._args_delta,
            "response.function_call_arguments.done": self._args_done,
            "response.custom_tool_call_input.delta": self._args_delta,
            "response.custom_tool_call_input.done": self._args_done,
            "response.reasoning_summary_text.delta": self._summary_delta,
            "response.reasoning_summary_text.done": self._summary_done,
            "response.reasoning_text.delta": self._rtext_delta,
            "response.reasoning_text.done": self._rtext_done,
            "response.output_item.done": self._item_done,
            "response.completed": self._completed,
            "response.incomplete": self._completed,
            "response.failed": self._failed,
            "error": self._error,
        }

    def feed(self, event: SSEEvent) -> list[ir.StreamEvent]:
        if self._done:
            return []
        data = event.data
        if not data or data == "[DONE]":
            return []
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._done = True
            return [ir.StreamError(GatewayError("upstream_unavailable", "upstream sent an event that is not JSON"))]
        if not isinstance(obj, dict):
            return []
        t = obj.get("type")
        handler = self._handlers.get(t if isinstance(t, str) else event.event or "")
        if handler is None:
            return []  # unknown events (web_search_call.*, audio, annotations, ...) are tolerated
        out: list[ir.StreamEvent] = []
        if not self._started and t not in _NO_START:
            self._start(out, obj.get("response"))
        handler(obj, out)
        return out

    def close(self) -> list[ir.StreamEvent]:
        if self._done:
            return []
        self._done = True
        return [
            ir.StreamError(GatewayError("upstream_unavailable", "upstream stream ended before the response completed"))
        ]

    # -- plumbing ------------------------------------------------------------------------------

    def _start(self, out: list[ir.StreamEvent], resp: Any) -> None:
        self._started = True
        resp = resp if isinstance(resp, dict) else {}
        rid, model, created = resp.get("id"), resp.get("model"), resp.get("created_at")
        out.append(
            ir.MessageStart(
                id=rid if isinstance(rid, str) else "",
                model=model if isinstance(model, str) else "",
                created=int(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else 0,
            )
        )

    def _start_block(
        self,
        out: list[ir.StreamEvent],
        key: tuple[int, int],
        kind: ir.BlockKind,
        tool_id: str | None = None,
        tool_name: str | None = None,
    ) -> _InBlock:
        # The IR has one open block at a time; an upstream that interleaves items gets the previous one
        # closed (its late deltas are then dropped; OpenAI itself never interleaves).
        if self._open is not None:
            self._stop(out, self._open)
        blk = _InBlock(self._next, kind)
        self._next += 1
        self._blocks[key] = blk
        self._open = blk
        out.append(ir.BlockStart(blk.index, kind, tool_id=tool_id, tool_name=tool_name))
        return blk

    def _delta(self, out: list[ir.StreamEvent], blk: _InBlock, text: Any) -> None:
        if blk.closed or not text or not isinstance(text, str):
            return
        blk.chunks.append(text)
        out.append(_delta_event(blk.kind, blk.index, text))

    def _finish(self, out: list[ir.StreamEvent], blk: _InBlock, full: Any) -> None:
        """Emit what a ``*.done`` text has beyond the deltas already sent (all of it if none were)."""
        if blk.closed or not isinstance(full, str):
            return
        sent = "".join(blk.chunks)
        if len(full) > len(sent) and full.startswith(sent):
            self._delta(out, blk, full[len(sent) :])

    def _sub_delta(self, out: list[ir.StreamEvent], blk: _InBlock, key: tuple[str, int], text: Any) -> None:
        if blk.closed or not text or not isinstance(text, str):
            return
        part = blk.sub.get(key)
        if part is None:
            if blk.chunks:
                self._delta(out, blk, "\n\n")  # summary parts are paragraphs; the IR block is one text
            part = blk.sub[key] = []
        part.append(text)
        self._delta(out, blk, text)

    def _sub_finish(self, out: list[ir.StreamEvent], blk: _InBlock, key: tuple[str, int], full: Any) -> None:
        if blk.closed or not isinstance(full, str):
            return
        sent = "".join(blk.sub.get(key, ()))
        if len(full) > len(sent) and full.startswith(sent):
            self._sub_delta(out, blk, key, full[len(sent) :])

    def _stop(self, out: list[ir.StreamEvent], blk: _InBlock) -> None:
        if not blk.closed:
            blk.closed = True
            out.append(ir.BlockStop(blk.index))
        if self._open is blk:
            self._open = None

    def _part_block(self, out: list[ir.StreamEvent], oi: int, ci: int, kind: ir.BlockKind) -> _InBlock:
        blk = self._blocks.get((oi, ci))
        return blk if blk is not None else self._start_block(out, (oi, ci), kind)

    def _call_block(self, out: list[ir.StreamEvent], oi: int, item: dict[str, Any]) -> _InBlock:
        blk = self._blocks.get((oi, -1))
        if blk is None:
            self._has_calls = True
            call_id, name, namespace = item.get("call_id"), item.get("name"), item.get("namespace")
            if isinstance(name, str) and isinstance(namespace, str):
                name = fmt.flat_tool_name(namespace, name)
            blk = self._start_block(
                out,
                (oi, -1),
                "tool_call",
                tool_id=call_id if isinstance(call_id, str) else "",
                tool_name=name if isinstance(name, str) else "",
            )
        return blk

    def _reasoning_block(self, out: list[ir.StreamEvent], oi: int) -> _InBlock:
        blk = self._blocks.get((oi, -1))
        return blk if blk is not None else self._start_block(out, (oi, -1), "reasoning")

    # -- handlers ------------------------------------------------------------------------------

    def _item_added(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi, item = obj.get("output_index"), obj.get("item")
        if not isinstance(oi, int) or not isinstance(item, dict):
            return
        t = item.get("type")
        if t in ("function_call", "custom_tool_call"):
            blk = self._call_block(out, oi, item)
            self._delta(out, blk, item.get("arguments" if t == "function_call" else "input"))
        elif t == "reasoning":
            self._reasoning_block(out, oi)
        # message items open their blocks per content part; other item types have no IR form

    def _part_added(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi, ci, part = obj.get("output_index"), obj.get("content_index"), obj.get("part")
        if not isinstance(oi, int) or not isinstance(ci, int) or not isinstance(part, dict):
            return
        pt = part.get("type")
        if pt == "output_text":
            self._part_block(out, oi, ci, "text")
        elif pt == "refusal":
            self._part_block(out, oi, ci, "refusal")

    def _text_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi, ci = obj.get("output_index"), obj.get("content_index")
        if isinstance(oi, int) and isinstance(ci, int):
            self._delta(out, self._part_block(out, oi, ci, "text"), obj.get("delta"))

    def _text_done(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi, ci = obj.get("output_index"), obj.get("content_index")
        if isinstance(oi, int) and isinstance(ci, int):
            self._finish(out, self._part_block(out, oi, ci, "text"), obj.get("text"))

    def _refusal_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi, ci = obj.get("output_index"), obj.get("content_index")
        if isinstance(oi, int) and isinstance(ci, int):
            self._delta(out, self._part_block(out, oi, ci, "refusal"), obj.get("delta"))

    def _refusal_done(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi, ci = obj.get("output_index"), obj.get("content_index")
        if isinstance(oi, int) and isinstance(ci, int):
            self._finish(out, self._part_block(out, oi, ci, "refusal"), obj.get("refusal"))

    def _part_done(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi, ci, part = obj.get("output_index"), obj.get("content_index"), obj.get("part")
        if not isinstance(oi, int) or not isinstance(ci, int) or not isinstance(part, dict):
            return
        self._message_part(out, oi, ci, part)

    def _message_part(self, out: list[ir.StreamEvent], oi: int, ci: int, part: dict[str, Any]) -> None:
        pt = part.get("type")
        if pt == "output_text":
            blk = self._part_block(out, oi, ci, "text")
            self._finish(out, blk, part.get("text"))
        elif pt == "refusal":
            blk = self._part_block(out, oi, ci, "refusal")
            self._finish(out, blk, part.get("refusal"))
        else:
            return
        self._stop(out, blk)

    def _args_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi = obj.get("output_index")
        blk = self._blocks.get((oi, -1)) if isinstance(oi, int) else None
        if blk is not None and blk.kind == "tool_call":
            self._delta(out, blk, obj.get("delta"))

    def _args_done(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi = obj.get("output_index")
        blk = self._blocks.get((oi, -1)) if isinstance(oi, int) else None
        if blk is not None and blk.kind == "tool_call":
            full = obj.get("arguments")
            self._finish(out, blk, full if full is not None else obj.get("input"))

    def _reasoning_event(self, obj: dict[str, Any], out: list[ir.StreamEvent], kind: str, done: bool) -> None:
        oi = obj.get("output_index")
        k = obj.get("summary_index" if kind == "s" else "content_index", 0)
        if not isinstance(oi, int) or not isinstance(k, int):
            return
        blk = self._reasoning_block(out, oi)
        if blk.kind != "reasoning":
            return
        if done:
            self._sub_finish(out, blk, (kind, k), obj.get("text"))
        else:
            self._sub_delta(out, blk, (kind, k), obj.get("delta"))

    def _summary_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._reasoning_event(obj, out, "s", False)

    def _summary_done(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._reasoning_event(obj, out, "s", True)

    def _rtext_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._reasoning_event(obj, out, "c", False)

    def _rtext_done(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._reasoning_event(obj, out, "c", True)

    def _item_done(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        oi, item = obj.get("output_index"), obj.get("item")
        if isinstance(oi, int) and isinstance(item, dict):
            self._complete_item(out, oi, item)

    def _complete_item(self, out: list[ir.StreamEvent], oi: int, item: dict[str, Any]) -> None:
        """A finished item: emit whatever of it was not streamed, then close its blocks."""
        if oi in self._finished_items:
            return
        self._finished_items.add(oi)
        t = item.get("type")
        if t == "message":
            content = item.get("content")
            for ci, part in enumerate(content if isinstance(content, list) else ()):
                if isinstance(part, dict):
                    self._message_part(out, oi, ci, part)
        elif t in ("function_call", "custom_tool_call"):
            blk = self._call_block(out, oi, item)
            self._finish(out, blk, item.get("arguments" if t == "function_call" else "input"))
            self._stop(out, blk)
        elif t == "reasoning":
            blk = self._reasoning_block(out, oi)
            for key, parts in (("s", item.get("summary")), ("c", item.get("content"))):
                for k, p in enumerate(parts if isinstance(parts, list) else ()):
                    if isinstance(p, dict):
                        self._sub_finish(out, blk, (key, k), p.get("text"))
            enc, item_id = item.get("encrypted_content"), item.get("id")
            enc = enc if isinstance(enc, str) and enc else None
            item_id = item_id if isinstance(item_id, str) and item_id else None
            if (enc or item_id) and not blk.closed:
                # IR streams have no slot for a reasoning item's id and encrypted_content; the signature is
                # the one every encoder keeps with the reasoning block and clients send back.
                out.append(ir.SignatureDelta(blk.index, fmt.openai_reasoning_signature(item_id, enc)))
            self._stop(out, blk)

    def _completed(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        resp = obj.get("response")
        resp = resp if isinstance(resp, dict) else {}
        output = resp.get("output")
        has_calls = self._has_calls
        for oi, item in enumerate(output if isinstance(output, list) else ()):
            if isinstance(item, dict):
                if item.get("type") in ("function_call", "custom_tool_call"):
                    has_calls = True
                self._complete_item(out, oi, item)
        if self._open is not None:
            self._stop(out, self._open)
        status = resp.get("status")
        if not isinstance(status, str):
            status = "incomplete" if obj.get("type") == "response.incomplete" else "completed"
        stop = fmt.stop_reason_for(status, resp.get("incomplete_details"), has_calls)
        out.append(ir.MessageEnd(stop, usage=fmt.usage_from_dict(resp.get("usage"))))
        self._done = True

    def _failed(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        resp = obj.get("response")
        err = resp.get("error") if isinstance(resp, dict) else None
        out.append(ir.StreamError(fmt.error_from_response_error(err)))
        self._done = True

    def _error(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        nested = obj.get("error")
        out.append(ir.StreamError(fmt.error_from_response_error(nested if isinstance(nested, dict) else obj)))
        self._done = True


def _noop(obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
    return None


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------

_TEXT_DELTA = b"response.output_text.delta"
_REFUSAL_DELTA = b"response.refusal.delta"
_ARGS_DELTA = b"response.function_call_arguments.delta"
_INPUT_DELTA = b"response.custom_tool_call_input.delta"
_SUMMARY_DELTA = b"response.reasoning_summary_text.delta"


def _prefix(event: bytes, fields: dict[str, Any]) -> bytes:
    """The constant head of a delta frame; the hot path appends the delta and sequence number."""
    head = orjson.dumps({"type": event.decode(), **fields})[:-1]
    return b"event: " + event + b"\ndata: " + head + b',"delta":'


class _MessageItem:
    __slots__ = ("item_id", "output_index", "parts")

    def __init__(self, output_index: int, item_id: str) -> None:
        self.output_index = output_index
        self.item_id = item_id
        self.parts: list[dict[str, Any] | None] = []


class _OutBlock:
    __slots__ = (
        "call_id", "chunks", "closed", "content_index", "custom", "item_id", "kind", "msg", "name",
        "output_index", "prefix", "redacted", "signature", "slot", "summary_open",
    )  # fmt: skip

    def __init__(self, kind: str, output_index: int, item_id: str, slot: int) -> None:
        self.kind = kind
        self.output_index = output_index
        self.item_id = item_id
        self.slot = slot  # position of this block's part in the IR content
        self.chunks: list[str] = []
        self.closed = False
        self.content_index = 0
        self.msg: _MessageItem | None = None
        self.prefix = b""
        self.call_id = ""
        self.name = ""
        self.custom = False
        self.signature: str | None = None
        self.redacted: str | None = None
        self.summary_open = False


class ResponsesStreamEncoder:
    """IR events -> Responses SSE frames.

    ``response_id`` is set at construction; the shell may overwrite it before the first event.
    ``final_response()`` is the terminal response object (completed, incomplete or failed) once the
    stream has ended, for the shell to store; None before.
    """

    def __init__(self, req: ir.Request) -> None:
        self.response_id = fmt.new_response_id()
        self._req = req
        self._seq = 0
        self._started = False
        self._done = False
        self._silent = False
        self._incomplete = False  # the response ends incomplete: the message still open was cut short
        self._final: dict[str, Any] | None = None
        self._model = req.model
        self._created = 0
        self._start_usage: ir.Usage | None = None
        self._output: list[dict[str, Any]] = []
        self._parts: list[ir.Part | None] = []
        self._message_ids: list[str] = []
        self._blocks: dict[int, _OutBlock] = {}
        self._current: _OutBlock | None = None
        self._msg: _MessageItem | None = None
        self._custom = frozenset(t.name for t in req.tools if t.kind == "custom")
        self._namespaced = fmt.tool_namespaces(req)
        self._dispatch = {
            ir.MessageStart: self._on_start,
            ir.BlockStart: self._on_block_start,
            ir.TextDelta: self._on_text,
            ir.RefusalDelta: self._on_refusal,
            ir.ReasoningDelta: self._on_reasoning,
            ir.SignatureDelta: self._on_signature,
            ir.ToolArgsDelta: self._on_args,
            ir.BlockStop: self._on_block_stop,
            ir.MessageEnd: self._on_end,
            ir.StreamError: self._on_error,
        }

    def final_response(self) -> dict[str, Any] | None:
        return self._final

    def encode(self, event: ir.StreamEvent) -> bytes:
        if self._done:
            return b""
        handler = self._dispatch.get(type(event))
        return handler(event) if handler is not None else b""  # type: ignore[operator]

    # -- framing -------------------------------------------------------------------------------

    def _frame(self, event: str, payload: dict[str, Any]) -> bytes:
        if self._silent:
            return b""
        payload["sequence_number"] = self._seq
        self._seq += 1
        return encode_event(orjson.dumps(payload), event)

    def _delta_frame(self, prefix: bytes, text: str) -> bytes:
        seq = self._seq
        self._seq = seq + 1
        return prefix + orjson.dumps(text) + b',"sequence_number":' + str(seq).encode() + b"}\n\n"

    def _snapshot(self, status: str) -> dict[str, Any]:
        resp = ir.Response(id=self.response_id, model=self._model, created=self._created)
        return fmt.response_object(resp, self._req, self.response_id, status=status, output=[])

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        if not self._created:
            self._created = int(time.time())
        snap = self._snapshot("in_progress")
        return self._frame("response.created", {"type": "response.created", "response": snap}) + self._frame(
            "response.in_progress", {"type": "response.in_progress", "response": snap}
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def _on_start(self, ev: ir.MessageStart) -> bytes:
        if self._started:
            return b""
        self._model = ev.model or self._model
        self._created = ev.created
        self._start_usage = ev.usage
        return self._ensure_started()

    def _on_block_start(self, ev: ir.BlockStart) -> bytes:
        out = self._ensure_started()
        if ev.index in self._blocks:
            return out
        if self._current is not None:
            out += self._close_block(self._current)
        kind = ev.kind
        if kind in ("text", "refusal"):
            return out + self._open_part(ev.index, kind)
        out += self._close_message()
        oi = len(self._output)
        slot = len(self._parts)
        self._parts.append(None)
        if kind == "tool_call":
            name = ev.tool_name or ""
            custom = name in self._custom
            item_id = fmt.derived_item_id(self.response_id, "ctc" if custom else "fc", oi)
            blk = _OutBlock(kind, oi, item_id, slot)
            blk.name = name
            blk.custom = custom
            blk.call_id = ev.tool_id or fmt.derived_item_id(self.response_id, "call", oi)
            namespace, shown = self._namespaced.get(name, (None, name))
            if custom:
                item = {"id": item_id, "type": "custom_tool_call", "call_id": blk.call_id, "name": shown, "input": ""}
                blk.prefix = _prefix(_INPUT_DELTA, {"item_id": item_id, "output_index": oi})
            else:
                item = {
                    "id": item_id,
                    "type": "function_call",
                    "status": "in_progress",
                    "arguments": "",
                    "call_id": blk.call_id,
                    "name": shown,
                }
                blk.prefix = _prefix(_ARGS_DELTA, {"item_id": item_id, "output_index": oi})
            if namespace is not None:
                item["namespace"] = namespace
        elif kind in ("reasoning", "redacted_reasoning"):
            item_id = fmt.derived_item_id(self.response_id, "rs", oi)
            blk = _OutBlock(kind, oi, item_id, slot)
            blk.redacted = ev.data if kind == "redacted_reasoning" else None
            item = {"id": item_id, "type": "reasoning", "summary": []}
            blk.prefix = _prefix(_SUMMARY_DELTA, {"item_id": item_id, "output_index": oi, "summary_index": 0})
        else:
            self._parts.pop()
            return out
        self._blocks[ev.index] = blk
        self._current = blk
        self._output.append(item)
        return out + self._frame(
            "response.output_item.added", {"type": "response.output_item.added", "output_index": oi, "item": item}
        )

    def _open_part(self, index: int, kind: str) -> bytes:
        out = b""
        msg = self._msg
        if msg is None:
            oi = len(self._output)
            msg = self._msg = _MessageItem(oi, fmt.derived_item_id(self.response_id, "msg", oi))
            self._message_ids.append(msg.item_id)
            item = {"id": msg.item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
            self._output.append(item)
            out = self._frame(
                "response.output_item.added", {"type": "response.output_item.added", "output_index": oi, "item": item}
            )
        blk = _OutBlock(kind, msg.output_index, msg.item_id, len(self._parts))
        self._parts.append(None)
        blk.msg = msg
        blk.content_index = len(msg.parts)
        msg.parts.append(None)
        ids = {"item_id": msg.item_id, "output_index": msg.output_index, "content_index": blk.content_index}
        if kind == "text":
            part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            blk.prefix = _prefix(_TEXT_DELTA, {**ids, "logprobs": []})
        else:
            part = {"type": "refusal", "refusal": ""}
            blk.prefix = _prefix(_REFUSAL_DELTA, ids)
        self._blocks[index] = blk
        self._current = blk
        return out + self._frame(
            "response.content_part.added", {"type": "response.content_part.added", **ids, "part": part}
        )

    # -- deltas (the hot path) -----------------------------------------------------------------

    def _block_for(self, index: int, kind: str) -> tuple[bytes, _OutBlock | None]:
        blk = self._blocks.get(index)
        if blk is None:
            # A delta without its BlockStart: open the block rather than lose the text.
            out = self._on_block_start(ir.BlockStart(index, kind))  # type: ignore[arg-type]
            blk = self._blocks.get(index)
            return out, blk
        return b"", blk

    def _on_text(self, ev: ir.TextDelta) -> bytes:
        blk = self._blocks.get(ev.index)
        if blk is not None and blk.kind == "text" and not blk.closed:
            if not ev.text:
                return b""
            blk.chunks.append(ev.text)
            return self._delta_frame(blk.prefix, ev.text)
        out, blk = self._block_for(ev.index, "text")
        if blk is None or blk.kind != "text" or blk.closed or not ev.text:
            return out
        blk.chunks.append(ev.text)
        return out + self._delta_frame(blk.prefix, ev.text)

    def _on_refusal(self, ev: ir.RefusalDelta) -> bytes:
        out, blk = self._block_for(ev.index, "refusal")
        if blk is None or blk.kind != "refusal" or blk.closed or not ev.text:
            return out
        blk.chunks.append(ev.text)
        return out + self._delta_frame(blk.prefix, ev.text)

    def _on_args(self, ev: ir.ToolArgsDelta) -> bytes:
        blk = self._blocks.get(ev.index)
        if blk is None or blk.kind != "tool_call" or blk.closed or not ev.fragment:
            return b""
        blk.chunks.append(ev.fragment)
        return self._delta_frame(blk.prefix, ev.fragment)

    def _on_reasoning(self, ev: ir.ReasoningDelta) -> bytes:
        out, blk = self._block_for(ev.index, "reasoning")
        if blk is None or blk.kind != "reasoning" or blk.closed or not ev.text:
            return out
        if not blk.summary_open:
            blk.summary_open = True
            out += self._frame(
                "response.reasoning_summary_part.added",
                {
                    "type": "response.reasoning_summary_part.added",
                    "item_id": blk.item_id,
                    "output_index": blk.output_index,
                    "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                },
            )
        blk.chunks.append(ev.text)
        return out + self._delta_frame(blk.prefix, ev.text)

    def _on_signature(self, ev: ir.SignatureDelta) -> bytes:
        blk = self._blocks.get(ev.index)
        if blk is not None and blk.kind in ("reasoning", "redacted_reasoning") and not blk.closed:
            blk.signature = (blk.signature or "") + ev.signature
        return b""

    # -- closing -------------------------------------------------------------------------------

    def _on_block_stop(self, ev: ir.BlockStop) -> bytes:
        blk = self._blocks.get(ev.index)
        if blk is None or blk.closed:
            return b""
        return self._close_block(blk)

    def _close_block(self, blk: _OutBlock) -> bytes:
        blk.closed = True
        if self._current is blk:
            self._current = None
        text = "".join(blk.chunks)
        oi, item_id = blk.output_index, blk.item_id
        if blk.kind in ("text", "refusal"):
            ids = {"item_id": item_id, "output_index": oi, "content_index": blk.content_index}
            if blk.kind == "text":
                part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                out = self._frame(
                    "response.output_text.done",
                    {"type": "response.output_text.done", **ids, "text": text, "logprobs": []},
                )
                self._parts[blk.slot] = ir.Text(text)
            else:
                part = {"type": "refusal", "refusal": text}
                out = self._frame("response.refusal.done", {"type": "response.refusal.done", **ids, "refusal": text})
                self._parts[blk.slot] = ir.Refusal(text)
            if blk.msg is not None:
                blk.msg.parts[blk.content_index] = part
            return out + self._frame(
                "response.content_part.done", {"type": "response.content_part.done", **ids, "part": part}
            )
        if blk.kind == "tool_call":
            call = ir.ToolCall(blk.call_id, blk.name, text, "custom" if blk.custom else "function", item_id=item_id)
            self._parts[blk.slot] = call
            item = fmt.encode_output(ir.Response("", "", [call]), self.response_id, namespaced=self._namespaced)[0]
            if self._silent:
                item["status"] = "incomplete"
            if blk.custom:
                out = self._frame(
                    "response.custom_tool_call_input.done",
                    {
                        "type": "response.custom_tool_call_input.done",
                        "item_id": item_id,
                        "output_index": oi,
                        "input": text,
                    },
                )
            else:
                out = self._frame(
                    "response.function_call_arguments.done",
                    {
                        "type": "response.function_call_arguments.done",
                        "item_id": item_id,
                        "output_index": oi,
                        "name": item["name"],
                        "arguments": text,
                    },
                )
        else:
            r = ir.Reasoning(text=text, signature=blk.signature, redacted=blk.redacted, id=item_id)
            self._parts[blk.slot] = r
            item = fmt.reasoning_item(r, item_id)
            out = b""
            if blk.summary_open:
                ids = {"item_id": item_id, "output_index": oi, "summary_index": 0}
                out = self._frame(
                    "response.reasoning_summary_text.done",
                    {"type": "response.reasoning_summary_text.done", **ids, "text": text},
                ) + self._frame(
                    "response.reasoning_summary_part.done",
                    {
                        "type": "response.reasoning_summary_part.done",
                        **ids,
                        "part": {"type": "summary_text", "text": text},
                    },
                )
        self._output[oi] = item
        return out + self._frame(
            "response.output_item.done", {"type": "response.output_item.done", "output_index": oi, "item": item}
        )

    def _close_message(self) -> bytes:
        msg = self._msg
        if msg is None:
            return b""
        out = b""
        if self._current is not None and self._current.msg is msg:
            out = self._close_block(self._current)
        self._msg = None
        item = {
            "id": msg.item_id,
            "type": "message",
            "status": "incomplete" if self._silent or self._incomplete else "completed",
            "content": [p for p in msg.parts if p is not None],
            "role": "assistant",
        }
        self._output[msg.output_index] = item
        return out + self._frame(
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": msg.output_index, "item": item},
        )

    def _close_all(self) -> bytes:
        out = b""
        if self._current is not None:
            out += self._close_block(self._current)
        return out + self._close_message()

    def _ir_response(self, stop: ir.StopReason | None, usage: ir.Usage | None) -> ir.Response:
        return ir.Response(
            id=self.response_id,
            model=self._model,
            content=[p for p in self._parts if p is not None],
            stop_reason=stop,
            usage=usage,
            created=self._created,
            extras={fmt.FORMAT: {"messages": [{"id": mid} for mid in self._message_ids]}},
        )

    def _on_end(self, ev: ir.MessageEnd) -> bytes:
        self._incomplete = fmt.status_for(ev.stop_reason)[0] == "incomplete"
        out = self._ensure_started() + self._close_all()
        usage = ev.usage if ev.usage is not None else self._start_usage
        resp = self._ir_response(ev.stop_reason, usage)
        obj = fmt.response_object(resp, self._req, self.response_id, output=list(self._output))
        t = "response.completed" if obj["status"] == "completed" else "response.incomplete"
        self._final = obj
        self._done = True
        return out + self._frame(t, {"type": t, "response": obj})

    def _on_error(self, ev: ir.StreamError) -> bytes:
        err = ev.error
        if not isinstance(err, GatewayError):
            err = GatewayError("server_error", str(err) or "upstream stream failed")
        out = self._ensure_started()
        # Items still open end as they are, without their own done events, in the failed response.
        self._silent = True
        self._close_all()
        self._silent = False
        resp = self._ir_response(None, None)
        obj = fmt.response_object(resp, self._req, self.response_id, status="failed", output=list(self._output))
        obj["error"] = fmt.response_error(err)
        self._final = obj
        self._done = True
        error = {
            "type": "error",
            "code": fmt.stream_error_code(err),
            "message": err.message,
            "param": err.param,
        }
        return (
            out
            + self._frame("error", error)
            + self._frame("response.failed", {"type": "response.failed", "response": obj})
        )
