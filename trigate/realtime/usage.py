"""Token accounting for a Realtime session, tapped from the server's events (sans-IO).

The relay feeds every upstream frame to ``UsageMeter.feed``. Almost all of them are audio and text
deltas, so a frame is parsed only when it can be one of the three events that matter:

- ``response.created``: a response is in flight (if the socket dies before its ``response.done``, its
  usage never arrives and is reported as unknown, not guessed as zero);
- ``response.done``: the response's ``usage``, also for ``cancelled``/``incomplete``/``failed``
  responses, which still consumed tokens; summed once per ``response.id``;
- ``conversation.item.input_audio_transcription.completed``: input transcription, billed separately
  by tokens or by duration, so it is kept apart from the response totals.

The check: OpenAI writes ``type`` first, so an anchored match of ``{"type":"<name>"`` decides from the
first few dozen characters. A frame not shaped that way falls back to a substring search for the three
names (cheap: base64 audio cannot contain them) before parsing.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from attrs import define, field

from trigate.translate.ir import Usage

RESPONSE_CREATED = "response.created"
RESPONSE_DONE = "response.done"
TRANSCRIPTION_COMPLETED = "conversation.item.input_audio_transcription.completed"
_TAPPED = (RESPONSE_CREATED, RESPONSE_DONE, TRANSCRIPTION_COMPLETED)
_TAPPED_BYTES = tuple(t.encode() for t in _TAPPED)
_LEADING_TYPE = re.compile(r'\{\s*"type"\s*:\s*"([^"\\]*)"')
_LEADING_TYPE_BYTES = re.compile(rb'\{\s*"type"\s*:\s*"([^"\\]*)"')


def _int(obj: Any, *path: str) -> int:
    for key in path:
        if not isinstance(obj, dict):
            return 0
        obj = obj.get(key)
    return obj if isinstance(obj, int) and not isinstance(obj, bool) and obj > 0 else 0


@define
class RealtimeUsage:
    """Sums over one session. Response totals follow the response ``usage`` object's own fields."""

    responses: int = 0  # response.done events counted
    statuses: dict[str, int] = field(factory=dict)  # completed / cancelled / incomplete / failed
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    cached_audio_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0
    transcriptions: int = 0
    transcription_input_tokens: int = 0
    transcription_output_tokens: int = 0
    transcription_seconds: float = 0.0

    def to_ir(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cached_tokens,
            input_audio_tokens=self.input_audio_tokens,
            output_audio_tokens=self.output_audio_tokens,
        )


def tapped_type(frame: str | bytes) -> str | None:
    """The event type of a frame that may carry usage, else None; parses nothing."""
    if isinstance(frame, str):
        m = _LEADING_TYPE.match(frame)
        if m is not None:
            name = m.group(1)
            return name if name in _TAPPED else None
        return next((t for t in _TAPPED if t in frame), None)
    m = _LEADING_TYPE_BYTES.match(frame)
    if m is not None:
        name_b = m.group(1)
        return name_b.decode() if name_b in _TAPPED_BYTES else None
    return next((t for t, tb in zip(_TAPPED, _TAPPED_BYTES, strict=True) if tb in frame), None)


class UsageMeter:
    def __init__(self) -> None:
        self.usage = RealtimeUsage()
        self._in_flight: set[str] = set()
        self._counted: set[str] = set()

    @property
    def unfinished(self) -> int:
        """Responses started but never done: their usage is unknown."""
        return len(self._in_flight)

    def feed(self, frame: str | bytes) -> None:
        if tapped_type(frame) is None:
            return
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return
        if isinstance(event, dict):
            self.feed_event(event)

    def feed_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == RESPONSE_DONE:
            self._response_done(event.get("response"))
        elif kind == RESPONSE_CREATED:
            response = event.get("response")
            rid = response.get("id") if isinstance(response, dict) else None
            if isinstance(rid, str) and rid not in self._counted:
                self._in_flight.add(rid)
        elif kind == TRANSCRIPTION_COMPLETED:
            self._transcription(event.get("usage"))

    def _response_done(self, response: Any) -> None:
        if not isinstance(response, dict):
            return
        rid = response.get("id")
        if isinstance(rid, str):
            if rid in self._counted:
                return  # a repeated response.done must not be billed twice
            self._counted.add(rid)
            self._in_flight.discard(rid)
        u = self.usage
        u.responses += 1
        status = response.get("status")
        status = status if isinstance(status, str) else "unknown"
        u.statuses[status] = u.statuses.get(status, 0) + 1
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return
        u.input_tokens += _int(usage, "input_tokens")
        u.output_tokens += _int(usage, "output_tokens")
        u.cached_tokens += _int(usage, "input_token_details", "cached_tokens")
        u.input_text_tokens += _int(usage, "input_token_details", "text_tokens")
        u.input_audio_tokens += _int(usage, "input_token_details", "audio_tokens")
        u.input_image_tokens += _int(usage, "input_token_details", "image_tokens")
        u.cached_audio_tokens += _int(usage, "input_token_details", "cached_tokens_details", "audio_tokens")
        u.output_text_tokens += _int(usage, "output_token_details", "text_tokens")
        u.output_audio_tokens += _int(usage, "output_token_details", "audio_tokens")

    def _transcription(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        u = self.usage
        u.transcriptions += 1
        if usage.get("type") == "duration":
            seconds = usage.get("seconds")
            if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
                u.transcription_seconds += float(seconds)
            return
        u.transcription_input_tokens += _int(usage, "input_tokens")
        u.transcription_output_tokens += _int(usage, "output_tokens")
