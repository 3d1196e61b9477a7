"""Gemini ``streamGenerateContent?alt=sse`` streams <-> IR stream events.

Each upstream SSE event is a whole ``GenerateContentResponse`` chunk; there are no event names and no
terminator. Only candidate 0 is translated (the IR models one message).
"""

from __future__ import annotations

from typing import Any

import orjson

from trigate.errors import GatewayError
from trigate.formats.gemini import (
    args_json,
    blocked_prompt_error,
    error_from_object,
    finish_from_stop,
    is_synthetic_id,
    parse_arguments,
    render_stream_error,
    stop_from_finish,
    synthetic_call_id,
    usage_from_gemini,
    usage_to_gemini,
)
from trigate.translate import ir
from trigate.translate.blocks import BlockNumbering
from trigate.wire.sse import encode_event


def _upstream_error(message: str) -> ir.StreamError:
    return ir.StreamError(GatewayError("upstream_unavailable", message))


class GeminiStreamDecoder(BlockNumbering):
    """Gemini chunks -> IR events.

    Text and thought parts continue the open block of their kind across chunks; a function call is a
    complete block at once. The finish reason closes the open block, but MessageEnd waits for EOF:
    usage may still come in a later chunk, and the stream has no terminator to wait for instead.
    """

    __slots__ = ("_calls", "_done", "_finish", "_id", "_started", "_usage")

    def __init__(self, req: ir.Request | None = None) -> None:
        self._started = False
        self._done = False
        self._id = ""
        super().__init__()
        self._calls = 0
        self._finish: str | None = None
        self._usage: ir.Usage | None = None

    def feed(self, event: Any) -> list[ir.StreamEvent]:
        if self._done:
            return []
        data = event.data if hasattr(event, "data") else event
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if not data or data.isspace():
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._done = True
            return [_upstream_error("upstream sent a Gemini stream chunk that is not JSON")]
        if type(chunk) is not dict:
            self._done = True
            return [_upstream_error("upstream sent a Gemini stream chunk that is not a JSON object")]
        if "error" in chunk:
            self._done = True
            return [ir.StreamError(error_from_object(0, chunk["error"]))]
        try:
            return self._chunk(chunk)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            self._done = True
            return [_upstream_error(f"malformed Gemini stream chunk ({type(exc).__name__})")]

    def close(self) -> list[ir.StreamEvent]:
        if self._done:
            return []
        self._done = True
        if self._finish is not None:
            out: list[ir.StreamEvent] = []
            self._close_block(out)
            out.append(ir.MessageEnd(stop_reason=stop_from_finish(self._finish, self._calls > 0), usage=self._usage))
            return out
        if not self._started:
            return [_upstream_error("the upstream Gemini stream ended without any response")]
        return [_upstream_error("the upstream Gemini stream ended before a finishReason")]

    # -- internals ------------------------------------------------------------------------------

    def _chunk(self, chunk: dict[str, Any]) -> list[ir.StreamEvent]:
        out: list[ir.StreamEvent] = []
        u = chunk.get("usageMetadata")
        if type(u) is dict:
            self._usage = usage_from_gemini(u)
        candidates = chunk.get("candidates")
        cand = None
        if candidates:
            for c in candidates:
                if type(c) is dict and c.get("index", 0) == 0:
                    cand = c
                    break
        if cand is None:
            feedback = chunk.get("promptFeedback")
            if type(feedback) is dict and feedback.get("blockReason"):
                self._done = True
                return [ir.StreamError(blocked_prompt_error(feedback))]
            if not self._started and u is None:
                return out
        if not self._started:
            self._started = True
            rid = chunk.get("responseId")
            self._id = rid if type(rid) is str else ""
            model = chunk.get("modelVersion")
            # Gemini repeats the prompt count on every chunk: clients that want input usage up front get it.
            start_usage = ir.Usage(input_tokens=self._usage.input_tokens) if self._usage is not None else None
            out.append(ir.MessageStart(id=self._id, model=model if type(model) is str else "", usage=start_usage))
        if cand is None or self._finish is not None:
            return out
        content = cand.get("content")
        if type(content) is dict:
            parts = content.get("parts")
            if parts:
                for part in parts:
                    if type(part) is dict:
                        self._part(part, out)
        finish = cand.get("finishReason")
        if finish and type(finish) is str:
            self._close_block(out)
            self._finish = finish
        return out

    def _part(self, part: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        sig = part.get("thoughtSignature")
        if type(sig) is not str or not sig:
            sig = None
        text = part.get("text")
        if type(text) is str:
            if part.get("thought") is True:
                idx = self._block("reasoning", out)
                if text:
                    out.append(ir.ReasoningDelta(idx, text))
                if sig is not None:
                    out.append(ir.SignatureDelta(idx, sig))
                return
            if text:
                out.append(ir.TextDelta(self._block("text", out), text))
            if sig is not None:
                # A signature on a text part: its own signature-only reasoning block right after the text,
                # as decode_response has it.
                self._close_block(out)
                self._signature_block(sig, out)
            return
        fc = part.get("functionCall")
        if type(fc) is dict:
            self._close_block(out)
            name = fc.get("name")
            name = name if type(name) is str else ""
            args = args_json(fc.get("args"))
            cid = fc.get("id")
            if type(cid) is not str or not cid:
                cid = synthetic_call_id(self._id, self._calls, name, args)
            self._calls += 1
            idx = self._next
            self._next += 1
            out.append(ir.BlockStart(idx, "tool_call", tool_id=cid, tool_name=name, signature=sig))
            out.append(ir.ToolArgsDelta(idx, args))
            out.append(ir.BlockStop(idx))
            return
        # inlineData / executableCode ...: the IR stream has no block kind for them.
        if sig is not None:
            self._close_block(out)
            self._signature_block(sig, out)

    def _signature_block(self, sig: str, out: list[ir.StreamEvent]) -> None:
        idx = self._next
        self._next += 1
        out.append(ir.BlockStart(idx, "reasoning"))
        out.append(ir.SignatureDelta(idx, sig))
        out.append(ir.BlockStop(idx))


_CAND_OPEN = b'{"candidates":[{"content":{"parts":['
_CAND_CLOSE = b'],"role":"model"},"index":0}]'


class GeminiStreamEncoder:
    """IR events -> Gemini SSE chunks, one chunk per delta.

    Every chunk shares a pre-serialised tail (modelVersion / responseId), so a text delta costs one small
    orjson.dumps. Tool calls are buffered until their block stops, because Gemini sends a function call as
    one complete part with its arguments as an object.
    """

    __slots__ = (
        "_after_text",
        "_block_kind",
        "_block_text",
        "_call",
        "_done",
        "_model",
        "_prev_kind",
        "_tail",
    )

    def __init__(self, req: ir.Request) -> None:
        self._model = req.model
        self._tail = b""
        self._call: list[Any] | None = None  # [id, name, signature, [fragments]]
        self._block_kind: str | None = None
        self._block_text = False  # the open reasoning block has had text
        self._prev_kind: str | None = None  # kind of the last closed block
        self._after_text = False
        self._done = False

    def encode(self, event: ir.StreamEvent) -> bytes:
        if self._done:
            return b""
        t = type(event)
        if t is ir.TextDelta:
            if not event.text:  # type: ignore[union-attr]
                return b""
            return self._chunk(b'{"text":' + orjson.dumps(event.text) + b"}")  # type: ignore[union-attr]
        if t is ir.ReasoningDelta:
            if not event.text:  # type: ignore[union-attr]
                return b""
            self._block_text = True
            return self._chunk(b'{"text":' + orjson.dumps(event.text) + b',"thought":true}')  # type: ignore[union-attr]
        if t is ir.ToolArgsDelta:
            if self._call is not None:
                self._call[3].append(event.fragment)  # type: ignore[union-attr]
            return b""
        if t is ir.BlockStart:
            return self._block_start(event)  # type: ignore[arg-type]
        if t is ir.BlockStop:
            return self._block_stop()
        if t is ir.SignatureDelta:
            return self._signature(event.signature)  # type: ignore[union-attr]
        if t is ir.RefusalDelta:
            if not event.text:  # type: ignore[union-attr]
                return b""
            return self._chunk(b'{"text":' + orjson.dumps(event.text) + b"}")  # type: ignore[union-attr]
        if t is ir.MessageStart:
            return self._start(event.id, event.model)  # type: ignore[union-attr]
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

    def _start(self, rid: str, model: str) -> bytes:
        tail: dict[str, Any] = {"modelVersion": model or self._model}
        if rid:
            tail["responseId"] = rid
        self._tail = b"," + orjson.dumps(tail)[1:]
        return b""

    def _chunk(self, part: bytes) -> bytes:
        if not self._tail:
            self._start("", "")
        return encode_event(_CAND_OPEN + part + _CAND_CLOSE + self._tail)

    def _block_start(self, ev: ir.BlockStart) -> bytes:
        self._after_text = self._prev_kind == "text"
        self._block_kind = ev.kind
        self._block_text = False
        if ev.kind == "tool_call":
            self._call = [ev.tool_id or "", ev.tool_name or "", ev.signature, []]
        return b""

    def _block_stop(self) -> bytes:
        self._prev_kind = self._block_kind
        self._block_kind = None
        call = self._call
        if call is None:
            return b""
        self._call = None
        fc: dict[str, Any] = {"name": call[1], "args": parse_arguments("".join(call[3]))}
        if not is_synthetic_id(call[0]):
            fc["id"] = call[0]
        part: dict[str, Any] = {"functionCall": fc}
        if call[2]:
            part["thoughtSignature"] = call[2]
        return self._chunk(orjson.dumps(part))

    def _signature(self, sig: str) -> bytes:
        if not sig:
            return b""
        if self._call is not None:
            self._call[2] = sig
            return b""
        if not self._block_text and self._after_text:
            # A signature-only block right after text: the signature of that text part (see the decoder).
            return self._chunk(b'{"text":"","thoughtSignature":' + orjson.dumps(sig) + b"}")
        return self._chunk(b'{"text":"","thought":true,"thoughtSignature":' + orjson.dumps(sig) + b"}")

    def _end(self, ev: ir.MessageEnd) -> bytes:
        self._done = True
        if not self._tail:
            self._start("", "")
        head = b'{"candidates":[{"finishReason":"' + finish_from_stop(ev.stop_reason).encode() + b'","index":0}]'
        if ev.usage is not None:
            head += b',"usageMetadata":' + orjson.dumps(usage_to_gemini(ev.usage))
        return encode_event(head + self._tail)
