"""Server-side policies on client events (sans-IO).

A hook looks at one parsed client event of the types it declares and decides: forward it, forward a
rewritten event, or reject it. A rejected event is not sent upstream; the client gets a Realtime
``error`` event naming its ``event_id`` instead, and the session goes on, as the upstream itself does
for an invalid event.

Filtering is made safe before it is made cheap: the frames of a session are mostly
``input_audio_buffer.append`` (base64 audio), and a frame is parsed only if it contains one of the
watched type names literally, or any backslash. Without a backslash JSON strings are literal, so a
frame that does not spell a watched name cannot carry that type; a ``\\u``-escaped type name, which
would slip past a plain substring test, always contains a backslash and is parsed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson
from attrs import define

from trigate.policies.auth import Principal
from trigate.routing import Target


@define(frozen=True)
class Forward:
    pass


@define(frozen=True)
class Rewrite:
    event: dict[str, Any]


@define(frozen=True)
class Reject:
    code: str
    message: str
    param: str | None = None


Decision = Forward | Rewrite | Reject
FORWARD = Forward()


class ClientEventHook(Protocol):
    event_types: frozenset[str]

    def inspect(self, event: dict[str, Any]) -> Decision: ...


@define(frozen=True)
class Verdict:
    """What the relay does with one client frame."""

    frame: str | bytes | None  # what to send upstream (None: nothing)
    error: str | None = None  # an error event to send the client instead
    rewritten: bool = False


def error_event(code: str, message: str, param: str | None = None, client_event_id: str | None = None,
                error_type: str = "invalid_request_error") -> str:
    """A Realtime ``error`` server event, as the upstream itself would send it."""
    return orjson.dumps({
        "type": "error",
        "event_id": f"event_gw{secrets.token_hex(10)}",
        "error": {"type": error_type, "code": code, "message": message, "param": param,
                  "event_id": client_event_id},
    }).decode()


class HookChain:
    """Runs the hooks watching a client event's type, in order; a rewrite is seen by the next hook."""

    def __init__(self, hooks: Sequence[ClientEventHook]) -> None:
        self._by_type: dict[str, list[ClientEventHook]] = {}
        for hook in hooks:
            for name in hook.event_types:
                self._by_type.setdefault(name, []).append(hook)
        self._needles = tuple(self._by_type)
        self._needles_b = tuple(n.encode() for n in self._needles)

    def __bool__(self) -> bool:
        return bool(self._by_type)

    def _may_match(self, frame: str | bytes) -> bool:
        if isinstance(frame, str):
            return "\\" in frame or any(n in frame for n in self._needles)
        return b"\\" in frame or any(n in frame for n in self._needles_b)

    def inspect(self, frame: str | bytes) -> Verdict:
        if not self._by_type or not self._may_match(frame):
            return Verdict(frame)
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return Verdict(frame)  # the upstream answers malformed JSON itself
        kind = event.get("type") if isinstance(event, dict) else None
        hooks = self._by_type.get(kind) if isinstance(kind, str) else None
        if not hooks:
            return Verdict(frame)
        rewritten = False
        for hook in hooks:
            decision = hook.inspect(event)
            if isinstance(decision, Reject):
                client_id = event.get("event_id")
                return Verdict(None, error_event(decision.code, decision.message, decision.param,
                                                 client_id if isinstance(client_id, str) else None))
            if isinstance(decision, Rewrite):
                event, rewritten = decision.event, True
        if not rewritten:
            return Verdict(frame)
        out = orjson.dumps(event)
        return Verdict(out.decode() if isinstance(frame, str) else out, rewritten=True)


class SessionModelPolicy:
    """Keeps ``session.update`` within what the caller may use and what this session can reach.

    ``session.model``: rejected if the principal may not use it, if no route serves it, or if its
    route leads to another provider (a session cannot move to another upstream socket); a routed alias
    is rewritten to the upstream's model name. Transcription models (GA ``audio.input.transcription``,
    beta ``input_audio_transcription``) are the provider's own names: only the principal's allow-list
    applies to them.
    """

    event_types = frozenset({"session.update", "transcription_session.update"})

    def __init__(self, principal: Principal, resolve: Callable[[str], Target | None], provider: str) -> None:
        self._principal = principal
        self._resolve = resolve
        self._provider = provider

    def inspect(self, event: dict[str, Any]) -> Decision:
        session = event.get("session")
        if not isinstance(session, dict):
            return FORWARD
        for param, model in _transcription_models(session):
            if not self._principal.may_use(model):
                return Reject("model_not_allowed", f"this key may not use model '{model}'", param)
        model = session.get("model")
        if not isinstance(model, str):
            return FORWARD  # absent, or a type error the upstream reports in its own words
        if not self._principal.may_use(model):
            return Reject("model_not_allowed", f"this key may not use model '{model}'", "session.model")
        target = self._resolve(model)
        if target is None:
            return Reject("model_not_found",
                          f"The model '{model}' does not exist or is not served by this gateway", "session.model")
        if target.provider != self._provider:
            return Reject("model_not_available_in_session",
                          f"The model '{model}' is served by another provider; open a new session for it",
                          "session.model")
        if target.model == model:
            return FORWARD
        return Rewrite({**event, "session": {**session, "model": target.model}})


def _transcription_models(session: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    audio = session.get("audio")
    if isinstance(audio, dict):
        inp = audio.get("input")
        tr = inp.get("transcription") if isinstance(inp, dict) else None
        if isinstance(tr, dict) and isinstance(tr.get("model"), str):
            found.append(("session.audio.input.transcription.model", tr["model"]))
    tr = session.get("input_audio_transcription")
    if isinstance(tr, dict) and isinstance(tr.get("model"), str):
        found.append(("session.input_audio_transcription.model", tr["model"]))
    return found
