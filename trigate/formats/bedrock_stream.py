"""Bedrock ConverseStream (AWS event-stream messages) <-> IR stream events, plus the vocabulary shared with
``trigate.formats.bedrock``: stop reasons, usage and error types.

The decoder is fed ``trigate.wire.eventstream.Message`` objects (the shell does the framing); the encoder
emits complete event-stream frames.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from trigate.errors import DEFAULT_STATUS, GatewayError, kind_for_status
from trigate.translate import ir
from trigate.wire.eventstream import Message, encode_frame, encode_headers

# --------------------------------------------------------------------------------------------
# Stop reasons (protocols.md §11.9)
# --------------------------------------------------------------------------------------------

STOP_FROM_BEDROCK: dict[str, ir.StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "stop_sequence",
    "max_tokens": "max_tokens",
    "tool_use": "tool_use",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "model_context_window_exceeded": "context_window_exceeded",
    # The model broke its own output: the turn is over and nothing better describes it.
    "malformed_model_output": "end_turn",
    "malformed_tool_use": "end_turn",
}
STOP_TO_BEDROCK: dict[str, str] = {
    "end_turn": "end_turn",
    "stop_sequence": "stop_sequence",
    "max_tokens": "max_tokens",
    "tool_use": "tool_use",
    "content_filter": "content_filtered",
    "context_window_exceeded": "model_context_window_exceeded",
    # Bedrock has no server-tool pause; the turn simply ends for the client.
    "pause_turn": "end_turn",
}


def stop_from_bedrock(reason: Any) -> ir.StopReason | None:
    if reason is None:
        return None
    return STOP_FROM_BEDROCK.get(reason, "end_turn")


def stop_to_bedrock(reason: ir.StopReason | None) -> str:
    return STOP_TO_BEDROCK.get(reason or "end_turn", "end_turn")


# --------------------------------------------------------------------------------------------
# Usage (protocols.md §11.10)
# --------------------------------------------------------------------------------------------

USAGE_FIELDS = frozenset(
    {"inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens"}
)


def _count(v: Any) -> int:
    return v if type(v) is int and v > 0 else 0


def usage_from_bedrock(u: dict[str, Any]) -> ir.Usage:
    """Bedrock reports inputTokens apart from cache reads and writes; the IR input is the whole prompt."""
    read = _count(u.get("cacheReadInputTokens"))
    write = _count(u.get("cacheWriteInputTokens"))
    return ir.Usage(
        input_tokens=_count(u.get("inputTokens")) + read + write,
        output_tokens=_count(u.get("outputTokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


def usage_to_bedrock(u: ir.Usage) -> dict[str, Any]:
    uncached = max(u.input_tokens - u.cache_read_tokens - u.cache_write_tokens, 0)
    out: dict[str, Any] = {
        "inputTokens": uncached,
        "outputTokens": u.output_tokens,
        # Recomputed, not carried (§11.10): every token billed, cached or not.
        "totalTokens": u.input_tokens + u.output_tokens,
    }
    if u.cache_read_tokens or u.cache_write_tokens:
        out["cacheReadInputTokens"] = u.cache_read_tokens
        out["cacheWriteInputTokens"] = u.cache_write_tokens
    return out


# --------------------------------------------------------------------------------------------
# Errors (protocols.md §9.5, §11.12)
# --------------------------------------------------------------------------------------------

# Keyed by the lower-cased exception name: HTTP errors spell it ``ThrottlingException``, in-stream
# exceptions ``throttlingException``.
KIND_BY_EXCEPTION: dict[str, Any] = {
    "validationexception": "invalid_request",
    "conflictexception": "invalid_request",
    "accessdeniedexception": "permission",
    "unrecognizedclientexception": "authentication",
    "invalidsignatureexception": "authentication",
    "incompletesignatureexception": "authentication",
    "missingauthenticationtokenexception": "authentication",
    "expiredtokenexception": "authentication",
    "resourcenotfoundexception": "not_found",
    "modeltimeoutexception": "timeout",
    "modelerrorexception": "server_error",
    "modelstreamerrorexception": "server_error",
    "throttlingexception": "rate_limit",
    # Account quota (tokens per day and the like): retry later, like a rate limit.
    "servicequotaexceededexception": "rate_limit",
    "modelnotreadyexception": "overloaded",
    "internalserverexception": "server_error",
    "serviceunavailableexception": "overloaded",
}

# HTTP status of the exceptions whose status their kind does not imply (service model ``httpStatusCode``).
STATUS_BY_EXCEPTION: dict[str, int] = {
    "modelerrorexception": 424,
    "modelstreamerrorexception": 424,
    "modelnotreadyexception": 429,
    "accessdeniedexception": 403,
    "unrecognizedclientexception": 403,
    "invalidsignatureexception": 403,
    "servicequotaexceededexception": 400,
}

# kind -> (HTTP status, exception name) for errors rendered to Bedrock clients.
EXCEPTION_BY_KIND: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "ValidationException"),
    "request_too_large": (400, "ValidationException"),
    "authentication": (403, "UnrecognizedClientException"),
    "permission": (403, "AccessDeniedException"),
    "not_found": (404, "ResourceNotFoundException"),
    "rate_limit": (429, "ThrottlingException"),
    "billing": (400, "ServiceQuotaExceededException"),
    "overloaded": (503, "ServiceUnavailableException"),
    "timeout": (408, "ModelTimeoutException"),
    "server_error": (500, "InternalServerException"),
    "upstream_unavailable": (502, "InternalServerException"),
}

# Only these exceptions are members of ConverseStreamOutput; SDKs model no others mid-stream.
STREAM_EXCEPTION_BY_KIND: dict[str, str] = {
    "invalid_request": "validationException",
    "request_too_large": "validationException",
    "rate_limit": "throttlingException",
    "billing": "throttlingException",
    "overloaded": "serviceUnavailableException",
}


def exception_name(raw: str) -> str:
    """``com.amazon.coral.service#ThrottlingException`` / ``ThrottlingException:http://...`` -> the name."""
    return raw.rsplit("#", 1)[-1].split(":", 1)[0].strip()


def error_from_exception(
    etype: str | None, message: Any, status: int = 0, original_status: Any = None, original_message: Any = None
) -> GatewayError:
    """A Bedrock exception (HTTP or in-stream) -> GatewayError. ``status`` 0: none known (in-stream)."""
    name = exception_name(etype) if etype else ""
    lname = name.lower()
    kind = KIND_BY_EXCEPTION.get(lname)
    own_status = STATUS_BY_EXCEPTION.get(lname)
    if lname == "modelstreamerrorexception" and type(original_status) is int and original_status >= 400:
        # The model provider's own failure status says more (529 overloaded, 429 throttled) than the wrapper.
        kind = kind_for_status(original_status)
        own_status = None
    if kind is None:
        kind = kind_for_status(status) if status else "server_error"
    if not status:
        status = own_status or EXCEPTION_BY_KIND.get(kind, (DEFAULT_STATUS[kind], ""))[0]
    text = message if isinstance(message, str) and message else (name or f"upstream returned HTTP {status}")
    if isinstance(original_message, str) and original_message and original_message != text:
        # ModelStreamErrorException wraps the model provider's own error, which is the useful part.
        text = f"{text}: {original_message}"
    return GatewayError(kind, text, status=status, code=name or None, from_gateway=False)


def error_payload(err: GatewayError) -> dict[str, Any]:
    _, name = error_status(err)
    return {"message": err.message, "__type": name}


def error_status(err: GatewayError) -> tuple[int, str]:
    if err.kind == "server_error" and err.status == 424:
        return 424, "ModelErrorException"
    return EXCEPTION_BY_KIND.get(err.kind, (500, "InternalServerException"))


def stream_exception_type(err: GatewayError) -> str:
    if err.kind == "server_error" and err.status == 424:
        return "modelStreamErrorException"
    return STREAM_EXCEPTION_BY_KIND.get(err.kind, "internalServerException")


def render_stream_error(err: GatewayError) -> bytes:
    headers = {
        ":message-type": "exception",
        ":exception-type": stream_exception_type(err),
        ":content-type": "application/json",
    }
    return encode_frame(encode_headers(headers), orjson.dumps({"message": err.message}))


def _malformed(detail: str) -> ir.StreamError:
    return ir.StreamError(GatewayError("upstream_unavailable", f"malformed Bedrock stream: {detail}"))


def new_message_id() -> str:
    # Bedrock has no response id. A random one, not a hash of the content: identical answers to identical
    # prompts must still get distinct ids (the Responses store keys on them).
    return "msg_bdrk_" + uuid.uuid4().hex[:24]


# --------------------------------------------------------------------------------------------
# Stream decoder: event-stream messages -> IR
# --------------------------------------------------------------------------------------------

_NONE = -1


class BedrockStreamDecoder:
    """State machine over ConverseStream events.

    Bedrock sends blocks one after another, text and reasoning blocks usually without contentBlockStart;
    a block opens on its first delta. ``metadata`` (usage) comes after ``messageStop``, so MessageEnd waits
    for it; a stream that ends between the two still ends cleanly, without usage.
    """

    __slots__ = (
        "_done",
        "_id",
        "_model",
        "_next_index",
        "_open_index",
        "_open_kind",
        "_open_up",
        "_skipped",
        "_started",
        "_stop",
        "_stop_seen",
        "_stop_sequence",
        "_usage",
    )

    def __init__(self, model: str = "", message_id: str | None = None) -> None:
        self._model = model
        self._id = message_id or new_message_id()
        self._started = False
        self._done = False
        self._next_index = 0
        self._open_up = _NONE  # upstream contentBlockIndex of the open block
        self._open_index = _NONE  # its IR index
        self._open_kind = ""
        self._skipped: set[int] = set()  # upstream blocks the IR cannot carry (server tool results, images)
        self._stop: Any = None
        self._stop_seen = False
        self._stop_sequence: str | None = None
        self._usage: ir.Usage | None = None

    @property
    def message_id(self) -> str:
        return self._id

    def feed(self, event: Message) -> list[ir.StreamEvent]:
        if self._done:
            return []
        headers = event.headers
        mtype = headers.get(":message-type")
        if mtype == "event":
            etype = headers.get(":event-type")
            payload = event.payload
            try:
                data = orjson.loads(payload) if payload else {}
            except orjson.JSONDecodeError:
                self._done = True
                return [_malformed(f"{etype} payload is not JSON")]
            if type(data) is not dict:
                self._done = True
                return [_malformed(f"{etype} payload is not an object")]
            try:
                return self._dispatch(etype, data)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                self._done = True
                return [_malformed(f"{type(exc).__name__} in {etype!r} event")]
        self._done = True
        if mtype == "exception":
            try:
                data = orjson.loads(event.payload) if event.payload else {}
            except orjson.JSONDecodeError:
                data = {}
            if type(data) is not dict:
                data = {}
            etype = headers.get(":exception-type")
            return [
                ir.StreamError(
                    error_from_exception(
                        etype if isinstance(etype, str) else None,
                        data.get("message") or data.get("Message"),
                        original_status=data.get("originalStatusCode"),
                        original_message=data.get("originalMessage"),
                    )
                )
            ]
        if mtype == "error":
            code = headers.get(":error-code")
            message = headers.get(":error-message")
            return [ir.StreamError(error_from_exception(code if isinstance(code, str) else None, message))]
        return [_malformed(f"unknown :message-type {mtype!r}")]

    def close(self) -> list[ir.StreamEvent]:
        if self._done:
            return []
        self._done = True
        if self._stop_seen:
            # messageStop came but the metadata event did not: the answer is whole, only usage is unknown.
            return [ir.MessageEnd(stop_from_bedrock(self._stop), self._stop_sequence, self._usage)]
        return [ir.StreamError(GatewayError("upstream_unavailable", "the upstream stream ended before messageStop"))]

    # -- per event ------------------------------------------------------------------------------

    def _dispatch(self, etype: Any, data: dict[str, Any]) -> list[ir.StreamEvent]:
        out: list[ir.StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(ir.MessageStart(id=self._id, model=self._model))
        if etype == "contentBlockDelta":
            self._delta(data["contentBlockIndex"], data["delta"], out)
        elif etype == "contentBlockStart":
            self._block_start(data["contentBlockIndex"], data["start"], out)
        elif etype == "contentBlockStop":
            if data["contentBlockIndex"] == self._open_up:
                self._close(out)
        elif etype == "messageStop":
            self._close(out)
            self._stop = data["stopReason"]
            self._stop_seen = True
            fields = data.get("additionalModelResponseFields")
            if isinstance(fields, dict) and isinstance(fields.get("stop_sequence"), str):
                self._stop_sequence = fields["stop_sequence"]
            if self._usage is not None:
                self._end(out)
        elif etype == "metadata":
            u = data.get("usage")
            if isinstance(u, dict):
                self._usage = usage_from_bedrock(u)
            if self._stop_seen:
                self._end(out)
        # messageStart needs nothing more; unknown event types are newer than this code and skipped.
        return out

    def _end(self, out: list[ir.StreamEvent]) -> None:
        self._done = True
        out.append(ir.MessageEnd(stop_from_bedrock(self._stop), self._stop_sequence, self._usage))

    def _close(self, out: list[ir.StreamEvent]) -> None:
        if self._open_up != _NONE:
            out.append(ir.BlockStop(self._open_index))
            self._open_up = _NONE
            self._open_index = _NONE
            self._open_kind = ""

    def _open(self, up: int, kind: ir.BlockKind, out: list[ir.StreamEvent], **extra: Any) -> int:
        self._close(out)
        index = self._next_index
        self._next_index += 1
        self._open_up = up
        self._open_index = index
        self._open_kind = kind
        out.append(ir.BlockStart(index, kind, **extra))
        return index

    def _block_start(self, up: int, start: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        tool = start.get("toolUse")
        if isinstance(tool, dict):
            self._open(up, "tool_call", out, tool_id=tool["toolUseId"], tool_name=tool["name"])
        else:
            # toolResult / image blocks of server tools: no IR block kind carries them.
            self._close(out)
            self._skipped.add(up)

    def _delta(self, up: int, delta: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        if up != self._open_up and up in self._skipped:
            return
        text = delta.get("text")
        if text is not None:
            if up != self._open_up or self._open_kind != "text":
                self._open(up, "text", out)
            if text:
                out.append(ir.TextDelta(self._open_index, text))
            return
        tool = delta.get("toolUse")
        if tool is not None:
            if up == self._open_up and self._open_kind == "tool_call":
                fragment = tool["input"]
                if fragment:
                    out.append(ir.ToolArgsDelta(self._open_index, fragment))
            # Arguments without a toolUse start have no id or name to hang on: dropped.
            return
        rc = delta.get("reasoningContent")
        if rc is not None:
            redacted = rc.get("redactedContent")
            if redacted is not None:
                # Each redacted delta is one opaque blob, an IR block of its own.
                self._open(up, "redacted_reasoning", out, data=redacted)
                return
            if up != self._open_up or self._open_kind != "reasoning":
                self._open(up, "reasoning", out)
            if rc.get("text"):
                out.append(ir.ReasoningDelta(self._open_index, rc["text"]))
            if rc.get("signature"):
                out.append(ir.SignatureDelta(self._open_index, rc["signature"]))
        # citation / toolResult / image deltas: the IR stream has no place for them.


# --------------------------------------------------------------------------------------------
# Stream encoder: IR -> event-stream frames
# --------------------------------------------------------------------------------------------


def _event_headers(event_type: str) -> bytes:
    return encode_headers({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"})


_H_MESSAGE_START = _event_headers("messageStart")
_H_BLOCK_START = _event_headers("contentBlockStart")
_H_BLOCK_DELTA = _event_headers("contentBlockDelta")
_H_BLOCK_STOP = _event_headers("contentBlockStop")
_H_MESSAGE_STOP = _event_headers("messageStop")
_H_METADATA = _event_headers("metadata")

_MESSAGE_START = encode_frame(_H_MESSAGE_START, b'{"role":"assistant"}')


_TEXT_HEAD = b'{"text":'
_REASONING_HEAD = b'{"reasoningContent":{"text":'
_SIGNATURE_HEAD = b'{"reasoningContent":{"signature":'
_TOOL_HEAD = b'{"toolUse":{"input":'


def _stop_frame(index: int) -> bytes:
    return encode_frame(_H_BLOCK_STOP, b'{"contentBlockIndex":%d}' % index)


class BedrockStreamEncoder:
    """Renumbers blocks from 0 in the order they open; emits contentBlockStart only for tool calls (as
    Bedrock does), messageStop then metadata (usage and metrics are required members) at the end."""

    __slots__ = ("_done", "_map", "_next_index", "_started")

    def __init__(self) -> None:
        self._started = False
        self._done = False
        self._next_index = 0
        self._map: dict[int, int] = {}  # IR index -> Bedrock index, open blocks

    def encode(self, event: ir.StreamEvent) -> bytes:
        if self._done:
            return b""
        cls = type(event)
        if cls is ir.TextDelta or cls is ir.RefusalDelta:
            return self._delta(event.index, _TEXT_HEAD, event.text, b"}")  # type: ignore[union-attr]
        if cls is ir.ToolArgsDelta:
            return self._delta(event.index, _TOOL_HEAD, event.fragment, b"}}")  # type: ignore[union-attr]
        if cls is ir.ReasoningDelta:
            return self._delta(event.index, _REASONING_HEAD, event.text, b"}}")  # type: ignore[union-attr]
        if cls is ir.SignatureDelta:
            return self._delta(event.index, _SIGNATURE_HEAD, event.signature, b"}}")  # type: ignore[union-attr]
        if cls is ir.BlockStart:
            return self._block_start(event)  # type: ignore[arg-type]
        if cls is ir.BlockStop:
            index = self._map.pop(event.index, None)  # type: ignore[union-attr]
            return b"" if index is None else _stop_frame(index)
        if cls is ir.MessageStart:
            return self._ensure_started()
        if cls is ir.MessageEnd:
            return self._message_end(event)  # type: ignore[arg-type]
        if cls is ir.StreamError:
            self._done = True
            return render_stream_error(event.error)  # type: ignore[union-attr]
        return b""

    def _delta(self, ir_index: int, head: bytes, value: str, tail: bytes) -> bytes:
        index = self._map.get(ir_index)
        if index is None or not value:
            return b""
        # Built from pre-encoded pieces: this runs once per token.
        return encode_frame(
            _H_BLOCK_DELTA,
            b'{"contentBlockIndex":%d,"delta":%s%s%s}' % (index, head, orjson.dumps(value), tail),
        )

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return _MESSAGE_START

    def _close_open(self) -> bytes:
        if not self._map:
            return b""
        out = b"".join(_stop_frame(i) for i in self._map.values())
        self._map.clear()
        return out

    def _block_start(self, event: ir.BlockStart) -> bytes:
        head = self._ensure_started() + self._close_open()
        index = self._next_index
        self._next_index += 1
        self._map[event.index] = index
        kind = event.kind
        if kind == "tool_call":
            start = {"toolUse": {"toolUseId": event.tool_id or "", "name": event.tool_name or ""}}
            return head + encode_frame(_H_BLOCK_START, orjson.dumps({"contentBlockIndex": index, "start": start}))
        if kind == "redacted_reasoning":
            delta = {"reasoningContent": {"redactedContent": event.data or ""}}
            return head + encode_frame(_H_BLOCK_DELTA, orjson.dumps({"contentBlockIndex": index, "delta": delta}))
        # text / reasoning / refusal: Bedrock opens these with their first delta.
        return head

    def _message_end(self, event: ir.MessageEnd) -> bytes:
        self._done = True
        head = self._ensure_started() + self._close_open()
        stop = {"stopReason": stop_to_bedrock(event.stop_reason)}
        if event.stop_sequence is not None:
            stop["additionalModelResponseFields"] = {"stop_sequence": event.stop_sequence}  # type: ignore[assignment]
        metadata = {"usage": usage_to_bedrock(event.usage or ir.Usage()), "metrics": {"latencyMs": 0}}
        return (
            head + encode_frame(_H_MESSAGE_STOP, orjson.dumps(stop)) + encode_frame(_H_METADATA, orjson.dumps(metadata))
        )


__all__ = [
    "BedrockStreamDecoder",
    "BedrockStreamEncoder",
    "error_from_exception",
    "error_payload",
    "error_status",
    "new_message_id",
    "render_stream_error",
    "stop_from_bedrock",
    "stop_to_bedrock",
    "usage_from_bedrock",
    "usage_to_bedrock",
]
