"""Usage accounting on the same-format fast path, without translating the stream.

Events are looked at with a substring test first and JSON-parsed only when they can carry usage, so
the per-chunk cost stays a bytes search.
"""

from __future__ import annotations

from typing import Any

import orjson

from trigate.formats.bedrock_stream import usage_from_bedrock
from trigate.formats.gemini import usage_from_body as gemini_usage
from trigate.translate.ir import Usage
from trigate.wire.eventstream import EventStreamDecoder, EventStreamError
from trigate.wire.sse import SSEDecoder, encode_event


def _json_object(raw: bytes) -> dict[str, Any]:
    """The upstream's JSON body; ValueError when it is not a JSON object."""
    obj = orjson.loads(raw)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


class UsageSniffer:
    """Base: forward bytes untouched, read no usage."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.response_id: str | None = None  # the upstream's id for what it answered, when tracked
        self.response: dict[str, Any] | None = None  # the upstream's final response object, when tracked

    def prepare_request(self, body: dict[str, Any]) -> None:
        pass

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def close(self) -> bytes:
        return b""

    @staticmethod
    def whole_events_without(sse: SSEDecoder, chunk: bytes, markers: tuple[bytes, ...]) -> bool:
        """True when ``chunk`` is whole events (as a keep-alive upstream sends them, one read each)
        none of which can matter to the sniffer: then it passes through without being decoded.
        This is the common case, so the per-chunk cost is a few byte searches."""
        return (sse.at_boundary and chunk.endswith(b"\n\n") and b"\r" not in chunk
                and not any(m in chunk for m in markers))

    def usage_from_body(self, raw: bytes) -> Usage | None:
        """Usage of a non-streamed body; raises ValueError when the body is not a JSON object."""
        _json_object(raw)
        return None

    def client_body(self, raw: bytes) -> bytes:
        """The non-streamed body as the client gets it (after ``usage_from_body``)."""
        return raw


def _int(v: Any) -> int:
    return v if isinstance(v, int) else 0


def usage_from_openai(u: Any) -> Usage | None:
    """OpenAI Chat ``usage`` object -> IR usage (prompt includes cached, completion includes reasoning)."""
    if not isinstance(u, dict):
        return None
    pd = u.get("prompt_tokens_details") or {}
    cd = u.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=_int(u.get("prompt_tokens")),
        output_tokens=_int(u.get("completion_tokens")),
        cache_read_tokens=_int(pd.get("cached_tokens")),
        cache_write_tokens=_int(pd.get("cache_write_tokens")),
        reasoning_tokens=cd.get("reasoning_tokens"),
        input_audio_tokens=pd.get("audio_tokens"),
        output_audio_tokens=cd.get("audio_tokens"),
    ).fold_reported_total(u.get("total_tokens"))


class OpenAIChatSniffer(UsageSniffer):
    """Forces ``stream_options.include_usage`` upstream (the gateway needs usage to account for the
    request) and drops the extra usage chunk again when the client did not ask for it."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__()
        opts = body.get("stream_options")
        self.client_wants_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        self._sse = SSEDecoder()

    def prepare_request(self, body: dict[str, Any]) -> None:
        if body.get("stream") is True and not self.client_wants_usage:
            opts = body.get("stream_options")
            body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}

    def feed(self, chunk: bytes) -> bytes:
        if self.whole_events_without(self._sse, chunk, (b'"usage":{',)):
            return chunk
        return b"".join(self._event(ev.data) for ev in self._sse.feed(chunk))

    def close(self) -> bytes:
        return b"".join(self._event(ev.data) for ev in self._sse.close())

    def _event(self, data: str) -> bytes:
        if '"usage":{' in data:
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                return encode_event(data)
            self.usage = usage_from_openai(obj.get("usage")) or self.usage
            if not self.client_wants_usage and not obj.get("choices"):
                return b""
        return encode_event(data)

    def usage_from_body(self, raw: bytes) -> Usage | None:
        return usage_from_openai(_json_object(raw).get("usage"))


def usage_from_anthropic(u: Any, into: Usage | None = None) -> Usage | None:
    """Anthropic usage -> IR usage; the IR input total includes cache reads and writes."""
    if not isinstance(u, dict):
        return into
    out = into or Usage()
    if "input_tokens" in u or "cache_read_input_tokens" in u or "cache_creation_input_tokens" in u:
        read = _int(u.get("cache_read_input_tokens"))
        write = _int(u.get("cache_creation_input_tokens"))
        out.input_tokens = _int(u.get("input_tokens")) + read + write
        out.cache_read_tokens, out.cache_write_tokens = read, write
    if "output_tokens" in u:
        out.output_tokens = _int(u.get("output_tokens"))
    return out


class AnthropicSniffer(UsageSniffer):
    """Bytes pass through untouched; usage comes from message_start (input) and message_delta
    (cumulative output)."""

    def __init__(self) -> None:
        super().__init__()
        self._sse = SSEDecoder()

    def feed(self, chunk: bytes) -> bytes:
        if self.whole_events_without(self._sse, chunk, (b"message_start", b"message_delta")):
            return chunk
        for ev in self._sse.feed(chunk):
            if ev.event in ("message_start", "message_delta") and '"usage"' in ev.data:
                try:
                    obj = orjson.loads(ev.data)
                except orjson.JSONDecodeError:
                    continue
                u = (obj.get("message") or {}).get("usage") if ev.event == "message_start" else obj.get("usage")
                self.usage = usage_from_anthropic(u, self.usage)
        return chunk

    def usage_from_body(self, raw: bytes) -> Usage | None:
        return usage_from_anthropic(_json_object(raw).get("usage"))


def usage_from_responses(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    idt = u.get("input_tokens_details") or {}
    odt = u.get("output_tokens_details") or {}
    return Usage(
        input_tokens=_int(u.get("input_tokens")),
        output_tokens=_int(u.get("output_tokens")),
        cache_read_tokens=_int(idt.get("cached_tokens")),
        cache_write_tokens=_int(idt.get("cache_write_tokens")),
        reasoning_tokens=odt.get("reasoning_tokens"),
    ).fold_reported_total(u.get("total_tokens"))


class ResponsesSniffer(UsageSniffer):
    """Bytes pass through; usage and the response object come from the response.* lifecycle events.

    ``echo``: response fields the gateway changed on the way upstream (a ``previous_response_id``
    it expanded into the full history), put back into every response object the client sees. Only
    then are the events re-encoded."""

    def __init__(self, echo: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._sse = SSEDecoder()
        self._echo = echo or {}

    _MARKERS = (b"response.created", b"response.completed", b"response.incomplete", b"response.failed")
    _LIFECYCLE = ("response.created", "response.completed", "response.incomplete", "response.failed")

    def feed(self, chunk: bytes) -> bytes:
        if not self._echo and self.whole_events_without(self._sse, chunk, self._MARKERS):
            return chunk
        events = self._sse.feed(chunk)
        for ev in events:
            if ev.event in self._LIFECYCLE:
                try:
                    resp = orjson.loads(ev.data).get("response") or {}
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                self.response_id = resp.get("id") or self.response_id
                self.response = {**resp, **self._echo}
                self.usage = usage_from_responses(resp.get("usage")) or self.usage
        if not self._echo:
            return chunk
        return b"".join(self._echoed(ev.data, ev.event) for ev in events)

    def close(self) -> bytes:
        if not self._echo:
            return b""
        return b"".join(self._echoed(ev.data, ev.event) for ev in self._sse.close())

    def _echoed(self, data: str, event: str | None) -> bytes:
        if '"response":{' in data:
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                return encode_event(data, event)
            if isinstance(obj.get("response"), dict):
                obj["response"].update(self._echo)
                return encode_event(orjson.dumps(obj), event)
        return encode_event(data, event)

    def usage_from_body(self, raw: bytes) -> Usage | None:
        body = _json_object(raw)
        self.response_id = body.get("id")
        self.response = {**body, **self._echo}
        return usage_from_responses(body.get("usage"))

    def client_body(self, raw: bytes) -> bytes:
        return orjson.dumps(self.response) if self._echo and self.response is not None else raw


class GeminiSniffer(UsageSniffer):
    """Bytes pass through; every chunk that carries ``usageMetadata`` has the running totals, the last wins."""

    def __init__(self) -> None:
        super().__init__()
        self._sse = SSEDecoder()

    def feed(self, chunk: bytes) -> bytes:
        if self.whole_events_without(self._sse, chunk, (b'"usageMetadata"',)):
            return chunk
        for ev in self._sse.feed(chunk):
            if '"usageMetadata"' in ev.data:
                try:
                    self.usage = gemini_usage(orjson.loads(ev.data)) or self.usage
                except orjson.JSONDecodeError:
                    continue
        return chunk

    def usage_from_body(self, raw: bytes) -> Usage | None:
        return gemini_usage(_json_object(raw))


class BedrockSniffer(UsageSniffer):
    """Event-stream frames pass through; usage comes from the closing ``metadata`` event."""

    def __init__(self) -> None:
        super().__init__()
        self._frames: EventStreamDecoder | None = EventStreamDecoder()

    def feed(self, chunk: bytes) -> bytes:
        if self._frames is None:
            return chunk
        # every chunk is framed (no substring shortcut): skipping one would lose the frame boundaries
        try:
            messages = self._frames.feed(chunk)
        except EventStreamError:
            self._frames = None  # the bytes still go to the client, whose decoder will say what broke
            return chunk
        for m in messages:
            if m.event_type == "metadata":
                try:
                    u = orjson.loads(m.payload).get("usage")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if isinstance(u, dict):
                    self.usage = usage_from_bedrock(u)
        return chunk

    def usage_from_body(self, raw: bytes) -> Usage | None:
        u = _json_object(raw).get("usage")
        return usage_from_bedrock(u) if isinstance(u, dict) else None


def sniffer_for(fmt: str, body: dict[str, Any], echo: dict[str, Any] | None = None) -> UsageSniffer:
    if fmt == "openai_chat":
        return OpenAIChatSniffer(body)
    if fmt == "anthropic":
        return AnthropicSniffer()
    if fmt == "openai_responses":
        return ResponsesSniffer(echo)
    if fmt == "gemini":
        return GeminiSniffer()
    if fmt == "bedrock":
        return BedrockSniffer()
    return UsageSniffer()
