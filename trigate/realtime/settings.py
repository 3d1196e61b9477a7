"""The ``realtime`` section of the config: limits for WebSocket sessions."""

from __future__ import annotations

from typing import Any

from attrs import define, field
from attrs.validators import ge, gt, optional


@define(frozen=True)
class RealtimeSettings:
    # A session is closed (1001, after a ``session_expired`` error event) once it has lasted this long;
    # OpenAI's own sessions end after 60 minutes.
    max_session_seconds: float = field(default=3600.0, validator=gt(0))
    # No frame in either direction for this long: the session is closed (1001).
    idle_timeout_seconds: float = field(default=900.0, validator=gt(0))
    # Largest single frame relayed either way, in bytes. Hypercorn's own WebSocket limit (16 MiB by
    # default) caps client frames before this does.
    max_frame_bytes: int = field(default=16 * 1024 * 1024, validator=gt(0))
    # Sessions open at once on this gateway process; the next handshake is answered 429. None: no cap.
    max_sessions: int | None = field(default=1000, validator=optional(ge(0)))
    # Opening handshake towards the upstream.
    connect_timeout_seconds: float = field(default=10.0, validator=gt(0))
    # How long each side's close handshake may take before its connection is dropped.
    close_timeout_seconds: float = field(default=2.0, validator=gt(0))
    # Reject a ``session.update`` naming a model the caller may not use or that this gateway would route
    # to another provider, and rewrite routed aliases to the upstream's model name.
    enforce_session_model: bool = True


def realtime_settings(config: Any) -> RealtimeSettings:
    """The config's realtime section."""
    return config.realtime
