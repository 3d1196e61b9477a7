"""The fake upstream's Realtime API: a scripted voice conversation over WebSocket, and the endpoints
that mint ephemeral keys.

Sockets: ``/v1/realtime?model=`` (OpenAI), ``/openai/v1/realtime?model=`` (Azure v1) and
``/openai/realtime?api-version=&deployment=`` (Azure's dated preview API, which speaks the beta
events). The beta event names are used when ``OpenAI-Beta: realtime=v1`` is sent or the
``openai-beta.realtime-v1`` subprotocol is offered.

The conversation (deterministic, so tests can check usage to the token):
- ``session.created`` on connect; ``session.update`` -> ``session.updated``;
- ``input_audio_buffer.append`` buffers base64 audio; ``commit`` turns it into a user item and, when
  input transcription is configured, a ``...input_audio_transcription.completed`` with usage
  (``tokens``, or ``duration`` for whisper models);
- ``conversation.item.create`` adds a text message or a function_call_output;
- ``response.create`` streams one audio delta and one transcript delta per word of the answer (text
  deltas only when the session's output modalities are text), ``state.token_delay_ms`` apart, then
  ``response.done`` with usage; ``response.cancel`` mid-response ends it ``cancelled`` with the usage
  of what was sent.

Token arithmetic: text = one token per word (``replies.count_tokens``); audio = one token per 2400
bytes (50 ms of 24 kHz PCM16); a response's input is the session instructions plus every item of the
conversation, its own answers included; from the second response on, the previous response's input
(rounded down to 16) is reported as cached.

Faults (``state.add_fault``, matched by path and model when the socket opens): ``status`` refuses the
handshake; ``latency_ms`` delays it; ``drop_after=N`` closes the socket with 1011 after N deltas of
the next response; ``error_after=N`` sends an ``error`` event after N deltas and ends that response
``failed``.

What the mock saw is kept per MockState in ``records(state)`` (MockState itself stays untouched).
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import threading
import time
import weakref
from typing import Any

import orjson
import trio
from attrs import define, field
from quart import Response, request, websocket
from quart_trio import QuartTrio

from trigate.mock.replies import count_tokens, split_tokens
from trigate.mock.state import Fault, MockState

AUDIO_BYTES_PER_TOKEN = 2400  # 50 ms of 24 kHz mono PCM16
AUDIO_BYTES_PER_SECOND = 48000
CACHE_BLOCK = 16
# Deterministic "PCM": each delta is a 2400-byte window of this pattern, offset by the delta's index.
_PCM = bytes(i % 256 for i in range(AUDIO_BYTES_PER_TOKEN + 256))


@define
class RealtimeSessionRecord:
    """One socket as the mock saw it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    subprotocols: list[str]
    model: str
    beta: bool
    opened: float  # time.monotonic()
    closed: float | None = None
    # The code the mock closed with; None when the peer closed first. (Hypercorn hands an app neither
    # the peer's close code nor its reason, so only who closed and when is known then.)
    close_code: int | None = None
    closed_by: str | None = None  # "peer" | "mock"
    events: list[str] = field(factory=list)  # client event types, in order
    audio_bytes: int = 0  # decoded audio appended
    usage: list[dict[str, Any]] = field(factory=list)  # the usage of every response.done sent
    statuses: list[str] = field(factory=list)  # status of every response.done sent
    transcription_usage: list[dict[str, Any]] = field(factory=list)


class RealtimeRecords:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sessions: list[RealtimeSessionRecord] = []

    def add(self, rec: RealtimeSessionRecord) -> None:
        with self._lock:
            self.sessions.append(rec)
            if len(self.sessions) > 5_000:
                del self.sessions[:2_500]

    def snapshot(self) -> list[RealtimeSessionRecord]:
        with self._lock:
            return list(self.sessions)

    def reset(self) -> None:
        with self._lock:
            self.sessions.clear()


_RECORDS: weakref.WeakKeyDictionary[MockState, RealtimeRecords] = weakref.WeakKeyDictionary()
_RECORDS_LOCK = threading.Lock()


def records(state: MockState) -> RealtimeRecords:
    with _RECORDS_LOCK:
        found = _RECORDS.get(state)
        if found is None:
            found = _RECORDS[state] = RealtimeRecords()
        return found


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _error_body(status: int, message: str, etype: str | None = None, code: str | None = None) -> bytes:
    kind = etype or {401: "invalid_request_error", 403: "invalid_request_error", 404: "invalid_request_error",
                     429: "rate_limit_error"}.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def _http_error(status: int, message: str, etype: str | None = None, code: str | None = None,
                headers: dict[str, str] | None = None) -> Response:
    return Response(_error_body(status, message, etype, code), status=status, content_type="application/json",
                    headers=headers)


def _authorized(state: MockState, headers: dict[str, str], path: str, subprotocols: list[str]) -> bool:
    if state.api_key is None:
        return True
    if headers.get("authorization") == f"Bearer {state.api_key}":
        return True
    if path.startswith("/openai/") and headers.get("api-key") == state.api_key:
        return True
    return f"openai-insecure-api-key.{state.api_key}" in subprotocols


@define
class _Item:
    id: str
    text_tokens: int = 0
    audio_tokens: int = 0
    audio_bytes: int = 0
    role: str = "user"
    text: str = ""
    kind: str = "message"  # message | function_call_output


@define
class _Turn:
    """The response being streamed."""

    id: str
    cancelled: trio.Event = field(factory=trio.Event)


class _Conversation:
    """One mock session's protocol state and its replies."""

    def __init__(self, state: MockState, ws: Any, rec: RealtimeSessionRecord, fault: Fault | None) -> None:
        self.state = state
        self.ws = ws
        self.rec = rec
        self.beta = rec.beta
        self.fault = fault
        self.session: dict[str, Any] = self._initial_session(rec.model)
        self.items: list[_Item] = []
        self.buffer = bytearray()
        self.turn: _Turn | None = None
        self.previous_input = 0
        self.nursery: trio.Nursery | None = None
        self.closed = False

    def _initial_session(self, model: str) -> dict[str, Any]:
        common = {"id": _id("sess"), "object": "realtime.session", "model": model, "instructions": "",
                  "tools": [], "tool_choice": "auto", "expires_at": int(time.time()) + 3600}
        if self.beta:
            return {**common, "modalities": ["audio", "text"], "voice": "alloy", "input_audio_format": "pcm16",
                    "output_audio_format": "pcm16", "input_audio_transcription": None,
                    "turn_detection": None, "max_response_output_tokens": "inf"}
        return {**common, "type": "realtime", "output_modalities": ["audio"], "max_output_tokens": "inf",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                                    "turn_detection": None},
                          "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}}}

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", _id("event"))
        await self.ws.send(orjson.dumps(event).decode())

    async def error(self, message: str, code: str | None = None, client_event: dict[str, Any] | None = None,
                    etype: str = "invalid_request_error") -> None:
        client_id = client_event.get("event_id") if isinstance(client_event, dict) else None
        await self.send({"type": "error", "error": {"type": etype, "code": code, "message": message,
                                                    "param": None, "event_id": client_id}})

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.rec.close_code, self.rec.closed_by, self.rec.closed = code, "mock", time.monotonic()
        await self.ws.close(code, reason)
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            await self.send({"type": "session.created", "session": self.session})
            while True:
                raw = await self.ws.receive()
                try:
                    event = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    await self.error("The server could not parse the event as JSON.", "invalid_json")
                    continue
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    await self.error("Missing required parameter: 'type'.", "missing_required_parameter", event)
                    continue
                self.rec.events.append(event["type"])
                await self.handle(event)

    # -- client events --------------------------------------------------------------------------

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        handler = {
            "session.update": self.session_update,
            "input_audio_buffer.append": self.append,
            "input_audio_buffer.commit": self.commit,
            "input_audio_buffer.clear": self.clear,
            "conversation.item.create": self.item_create,
            "response.create": self.response_create,
            "response.cancel": self.response_cancel,
        }.get(kind)
        if handler is None:
            await self.error(f"Invalid value: '{kind}'. This mock does not implement that event.",
                             "invalid_value", event)
            return
        await handler(event)

    async def session_update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            await self.error("Missing required parameter: 'session'.", "missing_required_parameter", event)
            return
        if not self.beta and update.get("type") not in (None, "realtime", "transcription"):
            await self.error("Invalid value for 'session.type'.", "invalid_value", event)
            return
        for key, value in update.items():
            if key == "audio" and isinstance(value, dict) and isinstance(self.session.get("audio"), dict):
                audio = self.session["audio"]
                for side in ("input", "output"):
                    if isinstance(value.get(side), dict):
                        audio[side] = {**audio.get(side, {}), **value[side]}
            else:
                self.session[key] = value
        await self.send({"type": "session.updated", "session": self.session})

    async def append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        try:
            data = base64.b64decode(audio, validate=True) if isinstance(audio, str) else None
        except (binascii.Error, ValueError):
            data = None
        if data is None:
            await self.error("Invalid 'audio'. Expected base64-encoded audio bytes.", "invalid_value", event)
            return
        self.buffer += data
        self.rec.audio_bytes += len(data)

    async def clear(self, event: dict[str, Any]) -> None:
        self.buffer.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    def _transcription_model(self) -> str | None:
        if self.beta:
            tr = self.session.get("input_audio_transcription")
        else:
            audio = self.session.get("audio")
            inp = audio.get("input") if isinstance(audio, dict) else None
            tr = inp.get("transcription") if isinstance(inp, dict) else None
        model = tr.get("model") if isinstance(tr, dict) else None
        return model if isinstance(model, str) and model else None

    async def _item_added(self, item: dict[str, Any], previous: str | None) -> None:
        if self.beta:
            await self.send({"type": "conversation.item.created", "previous_item_id": previous, "item": item})
        else:
            await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
            await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    async def commit(self, event: dict[str, Any]) -> None:
        if not self.buffer:
            await self.error("Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                             "audio, but buffer only has 0.00ms of audio.", "input_audio_buffer_commit_empty",
                             event)
            return
        size = len(self.buffer)
        self.buffer.clear()
        previous = self.items[-1].id if self.items else None
        item = _Item(_id("item"), audio_tokens=math.ceil(size / AUDIO_BYTES_PER_TOKEN), audio_bytes=size)
        self.items.append(item)
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item.id})
        await self._item_added({"id": item.id, "object": "realtime.item", "type": "message", "status": "completed",
                                "role": "user", "content": [{"type": "input_audio", "transcript": None}]}, previous)
        model = self._transcription_model()
        if model is None:
            return
        transcript = f"mock transcript of {size} audio bytes"
        item.text = transcript
        if "whisper" in model:
            usage: dict[str, Any] = {"type": "duration", "seconds": round(size / AUDIO_BYTES_PER_SECOND, 3)}
        else:
            out = count_tokens(transcript)
            usage = {"type": "tokens", "input_tokens": item.audio_tokens, "output_tokens": out,
                     "total_tokens": item.audio_tokens + out,
                     "input_token_details": {"text_tokens": 0, "audio_tokens": item.audio_tokens}}
        self.rec.transcription_usage.append(usage)
        await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item.id,
                         "content_index": 0, "transcript": transcript, "usage": usage})

    async def item_create(self, event: dict[str, Any]) -> None:
        raw = event.get("item")
        if not isinstance(raw, dict):
            await self.error("Missing required parameter: 'item'.", "missing_required_parameter", event)
            return
        previous = self.items[-1].id if self.items else None
        kind = raw.get("type", "message")
        if kind == "function_call_output":
            output = raw.get("output")
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            item = _Item(raw.get("id") or _id("item"), text_tokens=count_tokens(text), role="tool", text=text,
                         kind=kind)
        elif kind == "message":
            parts = raw.get("content") if isinstance(raw.get("content"), list) else []
            text = " ".join(p.get("text", "") for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
            item = _Item(raw.get("id") or _id("item"), text_tokens=count_tokens(text), role=raw.get("role", "user"),
                         text=text)
        else:
            await self.error(f"Invalid value: '{kind}'. This mock accepts message and function_call_output items.",
                             "invalid_value", event)
            return
        self.items.append(item)
        await self._item_added({**raw, "id": item.id, "object": "realtime.item", "status": "completed"}, previous)

    async def response_create(self, event: dict[str, Any]) -> None:
        if self.turn is not None:
            await self.error("Conversation already has an active response in progress.",
                             "conversation_already_has_active_response", event)
            return
        assert self.nursery is not None
        options = event.get("response") if isinstance(event.get("response"), dict) else {}
        self.turn = _Turn(_id("resp"))
        self.nursery.start_soon(self._respond, self.turn, options)

    async def response_cancel(self, event: dict[str, Any]) -> None:
        turn = self.turn
        if turn is None:
            await self.error("Cancellation failed: no active response found", "response_cancel_not_active", event)
            return
        # Cooperative: the answer stops between two deltas, never in the middle of sending one.
        turn.cancelled.set()

    # -- the answer -------------------------------------------------------------------------------

    def _answer(self) -> str:
        last = self.items[-1] if self.items else None
        if last is None:
            return "Hello from the trigate mock realtime."
        if last.kind == "function_call_output":
            return f"The tool said: {last.text}"
        if last.audio_bytes:
            return f"Hello from the trigate mock realtime. I heard {last.audio_bytes} bytes of audio."
        return f"Hello from the trigate mock realtime. You said: {last.text}"

    def _audio_out(self, options: dict[str, Any]) -> bool:
        key = "modalities" if self.beta else "output_modalities"
        modalities = options.get(key) or self.session.get(key) or ["audio"]
        return "audio" in modalities

    def _limit(self, options: dict[str, Any]) -> int | None:
        key = "max_response_output_tokens" if self.beta else "max_output_tokens"
        value = options.get(key, self.session.get(key))
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    def _usage(self, words: int, audio: bool) -> dict[str, Any]:
        text_in = count_tokens(str(self.session.get("instructions") or ""))
        text_in += sum(i.text_tokens for i in self.items)
        audio_in = sum(i.audio_tokens for i in self.items)
        total_in = text_in + audio_in
        cached = (min(self.previous_input, total_in) // CACHE_BLOCK) * CACHE_BLOCK
        cached_text = min(cached, text_in)
        text_out, audio_out = words, (words if audio else 0)
        return {
            "total_tokens": total_in + text_out + audio_out,
            "input_tokens": total_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0,
                                    "cached_tokens": cached,
                                    "cached_tokens_details": {"text_tokens": cached_text,
                                                              "audio_tokens": cached - cached_text,
                                                              "image_tokens": 0}},
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def _names(self, audio: bool) -> tuple[str, str, str]:
        """(content part type, delta event, transcript delta event) for this session's dialect."""
        if audio:
            if self.beta:
                return "audio", "response.audio.delta", "response.audio_transcript.delta"
            return "output_audio", "response.output_audio.delta", "response.output_audio_transcript.delta"
        if self.beta:
            return "text", "", "response.text.delta"
        return "output_text", "", "response.output_text.delta"

    async def _respond(self, turn: _Turn, options: dict[str, Any]) -> None:
        audio = self._audio_out(options)
        words = split_tokens(self._answer())
        limit = self._limit(options)
        status, details = "completed", None
        if limit is not None and len(words) * (2 if audio else 1) > limit:
            words = words[: max(1, limit // (2 if audio else 1))]
            status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        part_type, audio_event, text_event = self._names(audio)
        item_id = _id("item")
        base = {"response_id": turn.id, "item_id": item_id, "output_index": 0, "content_index": 0}
        response = {"id": turn.id, "object": "realtime.response", "status": "in_progress", "status_details": None,
                    "output": [], "conversation_id": "conv_mock", "usage": None,
                    ("modalities" if self.beta else "output_modalities"): ["audio"] if audio else ["text"]}
        await self.send({"type": "response.created", "response": response})
        item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "in_progress",
                "role": "assistant", "content": []}
        await self.send({"type": "response.output_item.added", "response_id": turn.id, "output_index": 0,
                         "item": item})
        await self.send({"type": "response.content_part.added", **base,
                         "part": {"type": part_type, "transcript": ""} if audio else {"type": part_type, "text": ""}})
        delay = self.state.token_delay_ms / 1000
        fault = self.fault
        sent: list[str] = []
        failed = False
        for n, word in enumerate(words):
            if fault is not None and fault.drop_after is not None and n >= fault.drop_after:
                self.fault = None
                await self.close(1011, fault.message)
                return
            if fault is not None and fault.error_after is not None and n >= fault.error_after:
                self.fault = None
                await self.error(fault.message, fault.error_type or "server_error", etype="server_error")
                failed = True
                break
            if delay and n:
                with trio.move_on_after(delay):
                    await turn.cancelled.wait()
            if turn.cancelled.is_set():
                break
            if audio:
                offset = (n * 7) % 256
                pcm = _PCM[offset:offset + AUDIO_BYTES_PER_TOKEN]
                await self.send({"type": audio_event, **base, "delta": base64.b64encode(pcm).decode()})
            await self.send({"type": text_event, **base, "delta": word})
            sent.append(word)
        text = "".join(sent)
        if failed:
            status, details = "failed", {"type": "failed", "error": {"type": "server_error",
                                                                     "code": fault.error_type if fault else None}}
        elif turn.cancelled.is_set():
            status, details = "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
        if audio:
            done_audio = "response.audio.done" if self.beta else "response.output_audio.done"
            done_text = "response.audio_transcript.done" if self.beta else "response.output_audio_transcript.done"
            await self.send({"type": done_audio, **base})
            await self.send({"type": done_text, **base, "transcript": text})
            part = {"type": part_type, "transcript": text}
        else:
            await self.send({"type": "response.text.done" if self.beta else "response.output_text.done", **base,
                             "text": text})
            part = {"type": part_type, "text": text}
        await self.send({"type": "response.content_part.done", **base, "part": part})
        item = {**item, "status": "completed" if status == "completed" else "incomplete", "content": [part]}
        await self.send({"type": "response.output_item.done", "response_id": turn.id, "output_index": 0, "item": item})
        usage = self._usage(len(sent), audio)
        self.previous_input = usage["input_tokens"]
        self.items.append(_Item(item_id, text_tokens=len(sent), audio_tokens=len(sent) if audio else 0,
                                role="assistant", text=text))
        self.rec.usage.append(usage)
        self.rec.statuses.append(status)
        self.turn = None
        await self.send({"type": "response.done", "response": {**response, "status": status,
                                                               "status_details": details, "output": [item],
                                                               "usage": usage}})


def register(app: QuartTrio, state: MockState) -> None:
    """Add the Realtime socket and the ephemeral-key endpoints to the fake upstream's app."""
    recs = records(state)

    async def realtime_socket() -> Response | None:
        ws = websocket._get_current_object()
        path = ws.path
        headers = {k.lower(): v for k, v in ws.headers.items()}
        subprotocols = list(ws.requested_subprotocols)
        dated = path == "/openai/realtime"
        if dated and not ws.args.get("api-version"):
            return _http_error(404, "Resource not found (missing api-version)", code="404")
        model = ws.args.get("deployment") if dated else ws.args.get("model")
        if not model:
            return _http_error(400, "Missing required parameter: 'model'.", code="missing_required_parameter")
        if not _authorized(state, headers, path, subprotocols):
            return _http_error(401, "Incorrect API key provided.", code="invalid_api_key")
        fault = state.take_fault(path, model)
        if fault is not None and fault.latency_ms:
            await trio.sleep(fault.latency_ms / 1000)
        if fault is not None and fault.status:
            return _http_error(fault.status, fault.message, fault.error_type, headers=fault.headers)
        beta = (dated or "openai-beta.realtime-v1" in subprotocols
                or "realtime=v1" in headers.get("openai-beta", "").replace(" ", ""))
        rec = RealtimeSessionRecord(path=path, query=dict(ws.args.items()), headers=headers,
                                    subprotocols=subprotocols, model=model, beta=beta, opened=time.monotonic())
        recs.add(rec)
        await ws.accept(subprotocol="realtime" if "realtime" in subprotocols else None)
        conv = _Conversation(state, ws, rec, fault)
        try:
            await conv.run()
        finally:
            if rec.closed is None:
                # The handler is cancelled the moment the peer's close (or a dropped connection) arrives.
                rec.closed, rec.closed_by = time.monotonic(), "peer"
        return None

    for path in ("/v1/realtime", "/openai/realtime", "/openai/v1/realtime"):
        app.add_websocket(path, "mock_realtime", realtime_socket)

    async def mint(kind: str) -> Response:
        raw = await request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = None
        seen = state.record(request.path, headers, body)
        if not _authorized(state, headers, request.path, []):
            return _http_error(401, "Incorrect API key provided.", code="invalid_api_key")
        if not isinstance(body, dict):
            return _http_error(400, "We could not parse the JSON body of your request.")
        holder = body.get("session") if kind == "client_secrets" else body
        model = holder.get("model") if isinstance(holder, dict) else None
        fault = state.take_fault(request.path, model if isinstance(model, str) else None)
        if fault is not None and fault.status:
            return _http_error(fault.status, fault.message, fault.error_type, headers=fault.headers)
        secret = f"ek_{secrets.token_hex(16)}"
        expires_at = int(time.time()) + 600
        seen.finished = time.monotonic()
        if kind == "client_secrets":
            session = body.get("session")
            if not isinstance(session, dict):
                return _http_error(400, "Missing required parameter: 'session'.", code="missing_required_parameter")
            after = body.get("expires_after")
            if isinstance(after, dict) and isinstance(after.get("seconds"), int):
                expires_at = int(time.time()) + after["seconds"]
            return Response(orjson.dumps({"value": secret, "expires_at": expires_at, "session": {
                "type": "realtime", "object": "realtime.session", "id": _id("sess"), **session,
                "model": session.get("model") or "gpt-realtime", "expires_at": 0}}), content_type="application/json")
        return Response(orjson.dumps({"id": _id("sess"), "object": "realtime.session", **body,
                                      "model": body.get("model") or "gpt-4o-realtime-preview",
                                      "client_secret": {"value": secret, "expires_at": expires_at}}),
                        content_type="application/json")

    async def client_secrets() -> Response:
        return await mint("client_secrets")

    async def sessions() -> Response:
        return await mint("sessions")

    for path in ("/v1/realtime/client_secrets", "/openai/v1/realtime/client_secrets"):
        app.add_url_rule(path, "mock_realtime_client_secrets", client_secrets, methods=["POST"])
    for path in ("/v1/realtime/sessions", "/openai/realtimeapi/sessions"):
        app.add_url_rule(path, "mock_realtime_sessions", sessions, methods=["POST"])
