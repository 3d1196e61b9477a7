"""OpenAI Chat Completions streams: ``chat.completion.chunk`` SSE events <-> IR stream events.

Only choice index 0 is translated (the IR models one message); chunks for other choices are ignored.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from trigate.errors import GatewayError
from trigate.formats.openai_chat import (
    error_from_payload,
    finish_from_stop,
    is_legacy,
    render_stream_error,
    stop_from_finish,
    thought_signature,
    usage_from_dict,
    usage_to_dict,
)
from trigate.translate import ir
from trigate.translate.blocks import BlockNumbering
from trigate.wire.sse import encode_event

_DONE_FRAME = b"data: [DONE]\n\n"


def _upstream_error(message: str) -> ir.StreamError:
    return ir.StreamError(GatewayError("upstream_unavailable", message))


class ChatStreamDecoder(BlockNumbering):
    """Chat chunks -> IR events.

    Blocks are opened lazily as delta fields appear and closed when a different kind starts, so the IR
    sees contiguous blocks. The finish chunk closes the open block, but MessageEnd waits for the usage
    chunk that follows it (or ``[DONE]`` / EOF), because usage arrives after the finish reason.
    """

    __slots__ = (
        "_done",
        "_finish",
        "_id",
        "_saw_tool",
        "_started",
        "_tools",
        "_usage",
    )

    def __init__(self, req: ir.Request | None = None) -> None:
        self._started = False
        self._done = False
        self._id = ""
        super().__init__()
        self._tools: dict[int, int] = {}  # Chat tool_calls[].index -> IR block index
        self._finish: str | None = None
        self._usage: ir.Usage | None = None
        self._saw_tool = False

    def feed(self, event: Any) -> list[ir.StreamEvent]:
        if self._done:
            return []
        data = event.data if hasattr(event, "data") else event
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if data == "[DONE]":
            return self._end_on_done()
        if not data or data.isspace():
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._done = True
            return [_upstream_error("upstream sent a stream chunk that is not JSON")]
        if not isinstance(chunk, dict):
            self._done = True
            return [_upstream_error("upstream sent a stream chunk that is not a JSON object")]
        err = chunk.get("error")
        if err:
            self._done = True
            return [ir.StreamError(error_from_payload(err))]

        out: list[ir.StreamEvent] = []
        usage = chunk.get("usage")
        if usage and isinstance(usage, dict):
            self._usage = usage_from_dict(usage)
        choices = chunk.get("choices")
        choice = None
        if choices:
            for c in choices:
                if isinstance(c, dict) and c.get("index", 0) == 0:
                    choice = c
                    break
        if not self._started:
            if choice is None and not usage:
                return out  # Azure's prompt_filter_results chunk and the like: no message yet
            self._start(chunk, out)
        if choice is None:
            if usage and self._finish is not None:
                self._end(out)
            return out
        if self._finish is not None:
            return out

        delta = choice.get("delta")
        if delta:
            self._delta(delta, out)
        finish = choice.get("finish_reason")
        if finish:
            self._close_block(out)
            self._finish = finish
        return out

    def close(self) -> list[ir.StreamEvent]:
        if self._done:
            return []
        out: list[ir.StreamEvent] = []
        if self._finish is not None:
            # Finished, only the usage chunk or [DONE] went missing: the message itself is complete.
            self._end(out)
            return out
        self._done = True
        return [_upstream_error("upstream stream ended before the response was complete")]

    # -- internals ------------------------------------------------------------------------------

    def _start(self, chunk: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._started = True
        cid = chunk.get("id")
        self._id = cid if isinstance(cid, str) else ""
        model = chunk.get("model")
        created = chunk.get("created")
        out.append(
            ir.MessageStart(
                id=self._id,
                model=model if isinstance(model, str) else "",
                created=created if isinstance(created, int) and not isinstance(created, bool) else 0,
            )
        )

    def _delta(self, delta: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        # Thinking precedes the answer within a chunk too.
        r = delta.get("reasoning_content")
        if r is None:
            r = delta.get("reasoning")
        if r and isinstance(r, str):
            out.append(ir.ReasoningDelta(self._block("reasoning", out), r))
        sig = delta.get("reasoning_signature")
        if sig and isinstance(sig, str):
            out.append(ir.SignatureDelta(self._block("reasoning", out), sig))
        red = delta.get("reasoning_redacted")
        if red and isinstance(red, str):
            self._close_block(out)
            idx = self._next
            self._next += 1
            out.append(ir.BlockStart(idx, "redacted_reasoning", data=red))
            out.append(ir.BlockStop(idx))
        text = delta.get("content")
        if text and isinstance(text, str):
            out.append(ir.TextDelta(self._block("text", out), text))
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            out.append(ir.RefusalDelta(self._block("refusal", out), refusal))
        tcs = delta.get("tool_calls")
        if tcs:
            for pos, tc in enumerate(tcs):
                if isinstance(tc, dict):
                    self._tool_fragment(tc, pos, out)
        fc = delta.get("function_call")
        if fc and isinstance(fc, dict):
            self._tool_fragment({"index": 0, "function": fc}, 0, out)

    def _tool_fragment(self, tc: dict[str, Any], pos: int, out: list[ir.StreamEvent]) -> None:
        ci = tc.get("index")
        if not isinstance(ci, int):
            ci = pos
        fn = tc.get("function")
        frag_key = "arguments"
        if not isinstance(fn, dict):
            fn = tc.get("custom")
            frag_key = "input"
            if not isinstance(fn, dict):
                fn = {}
        blk = self._tools.get(ci)
        if blk is None:
            # The first fragment of a call carries id and name; later repeats of them are ignored.
            self._close_block(out)
            blk = self._next
            self._next += 1
            self._tools[ci] = blk
            self._saw_tool = True
            cid = tc.get("id")
            name = fn.get("name")
            out.append(
                ir.BlockStart(
                    blk,
                    "tool_call",
                    tool_id=cid if isinstance(cid, str) and cid else f"call_{self._id}_{ci}",
                    tool_name=name if isinstance(name, str) else "",
                    signature=thought_signature(tc),
                )
            )
            self._open = blk
            self._open_kind = "tool_call"
        frag = fn.get(frag_key)
        if frag and isinstance(frag, str):
            # A fragment for an earlier, already closed call (interleaving servers) keeps its own index.
            out.append(ir.ToolArgsDelta(blk, frag))

    def _end_on_done(self) -> list[ir.StreamEvent]:
        if not self._started:
            self._done = True
            return [_upstream_error("upstream stream ended without any response")]
        out: list[ir.StreamEvent] = []
        self._end(out)
        return out

    def _end(self, out: list[ir.StreamEvent]) -> None:
        self._close_block(out)
        if self._finish is not None:
            stop = stop_from_finish(self._finish)
        else:
            # [DONE] without a finish reason: some compatible servers omit it; the message is complete.
            stop = "tool_use" if self._saw_tool else "end_turn"
        out.append(ir.MessageEnd(stop_reason=stop, usage=self._usage))
        self._done = True


class ChatStreamEncoder:
    """IR events -> Chat chunk SSE frames.

    Every chunk shares one pre-serialised head (id/object/created/model), so a delta costs one small
    orjson.dumps. Tool calls are numbered by their own counter, as Chat clients index tool_calls by it.
    """

    __slots__ = (
        "_custom",
        "_custom_k",
        "_done",
        "_head",
        "_include_usage",
        "_legacy",
        "_model",
        "_saw_tool",
        "_tail",
        "_tool_k",
        "_with_args",
    )

    def __init__(self, req: ir.Request) -> None:
        self._include_usage = req.include_usage
        self._legacy = is_legacy(req)
        self._custom = frozenset(t.name for t in req.tools if t.kind == "custom")
        self._custom_k: set[int] = set()
        self._model = req.model
        self._head = b""  # b'{"id":..,"object":..,"created":..,"model":..,"choices":['
        self._tail = b'],"usage":null}' if req.include_usage else b"]}"
        self._tool_k: dict[int, int] = {}  # IR block index -> Chat tool_calls[].index
        self._with_args: set[int] = set()  # tool calls that streamed some arguments
        self._saw_tool = False
        self._done = False

    def encode(self, event: ir.StreamEvent) -> bytes:
        if self._done:
            return b""
        t = type(event)
        if t is ir.TextDelta:
            return self._chunk(b'{"content":' + orjson.dumps(event.text) + b"}")  # type: ignore[union-attr]
        if t is ir.ToolArgsDelta:
            return self._args(event)  # type: ignore[arg-type]
        if t is ir.ReasoningDelta:
            return self._chunk(b'{"reasoning_content":' + orjson.dumps(event.text) + b"}")  # type: ignore[union-attr]
        if t is ir.MessageStart:
            return self._start(event.id, event.model, event.created)  # type: ignore[union-attr]
        if t is ir.BlockStart:
            return self._block_start(event)  # type: ignore[arg-type]
        if t is ir.BlockStop:
            return self._block_stop(event.index) if self._tool_k else b""  # type: ignore[union-attr]
        if t is ir.SignatureDelta:
            return self._chunk(b'{"reasoning_signature":' + orjson.dumps(event.signature) + b"}")  # type: ignore[union-attr]
        if t is ir.RefusalDelta:
            return self._chunk(b'{"refusal":' + orjson.dumps(event.text) + b"}")  # type: ignore[union-attr]
        if t is ir.MessageEnd:
            return self._end(event)  # type: ignore[arg-type]
        if t is ir.StreamError:
            self._done = True
            err = event.error  # type: ignore[union-attr]
            if not isinstance(err, GatewayError):
                err = GatewayError("server_error", str(err))
            return render_stream_error(err)
        return b""

    # -- internals ------------------------------------------------------------------------------

    def _start(self, cid: str, model: str, created: int) -> bytes:
        head = orjson.dumps(
            {
                "id": cid or "chatcmpl-trigate",
                "object": "chat.completion.chunk",
                "created": created or int(time.time()),
                "model": model or self._model,
            }
        )
        self._head = head[:-1] + b',"choices":['
        return self._chunk(b'{"role":"assistant","content":""}')

    def _chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        prefix = b"" if self._head else self._start("", "", 0)
        return prefix + encode_event(
            self._head + b'{"index":0,"delta":' + delta + b',"finish_reason":' + finish + b"}" + self._tail
        )

    def _block_start(self, ev: ir.BlockStart) -> bytes:
        if ev.kind == "tool_call":
            k = len(self._tool_k)
            self._tool_k[ev.index] = k
            self._saw_tool = True
            name = ev.tool_name or ""
            if self._legacy:
                if k:
                    return b""  # the legacy API has one function_call per turn
                return self._chunk(orjson.dumps({"function_call": {"name": name, "arguments": ""}}))
            call: dict[str, Any] = {"index": k, "id": ev.tool_id or f"call_{k}"}
            if name in self._custom:
                self._custom_k.add(k)
                call["type"] = "custom"
                call["custom"] = {"name": name, "input": ""}
            else:
                call["type"] = "function"
                call["function"] = {"name": name, "arguments": ""}
            if ev.signature is not None:
                call["extra_content"] = {"google": {"thought_signature": ev.signature}}
            return self._chunk(orjson.dumps({"tool_calls": [call]}))
        if ev.kind == "redacted_reasoning" and ev.data:
            return self._chunk(b'{"reasoning_redacted":' + orjson.dumps(ev.data) + b"}")
        return b""

    def _block_stop(self, index: int) -> bytes:
        k = self._tool_k.get(index)
        if k is None or k in self._with_args or k in self._custom_k:
            return b""
        # A function call that streamed no arguments: Chat clients json-parse them, so send "{}".
        return self._args(ir.ToolArgsDelta(index, "{}"))

    def _args(self, ev: ir.ToolArgsDelta) -> bytes:
        k = self._tool_k.get(ev.index)
        if k is None or not ev.fragment:
            return b""
        self._with_args.add(k)
        frag = orjson.dumps(ev.fragment)
        if self._legacy:
            if k:
                return b""
            return self._chunk(b'{"function_call":{"arguments":' + frag + b"}}")
        inner = b'"custom":{"input":' if k in self._custom_k else b'"function":{"arguments":'
        return self._chunk(b'{"tool_calls":[{"index":' + str(k).encode() + b"," + inner + frag + b"}}]}")

    def _end(self, ev: ir.MessageEnd) -> bytes:
        finish = finish_from_stop(ev.stop_reason, self._saw_tool, self._legacy)
        out = self._chunk(b"{}", b'"' + finish.encode() + b'"')
        if self._include_usage:
            usage = usage_to_dict(ev.usage or ir.Usage())
            out += encode_event(self._head + b'],"usage":' + orjson.dumps(usage) + b"}")
        self._done = True
        return out + _DONE_FRAME
