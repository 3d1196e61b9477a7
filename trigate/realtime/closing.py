"""How a relayed session ends: the close code and reason each side gets (sans-IO).

One ``Ending`` is chosen by whichever side or limit ends the session first; the relay then closes the
other side(s) with it. Codes follow RFC 6455 §7.4: 1005, 1006 and 1015 are reported locally and may
never be sent in a close frame, so an upstream that vanished (1006) reaches the client as 1011 with a
reason saying so, and a close without a status (1005) as a normal closure.
"""

from __future__ import annotations

from attrs import define

NORMAL = 1000
GOING_AWAY = 1001
POLICY = 1008
TOO_BIG = 1009
INTERNAL_ERROR = 1011
_LOCAL_ONLY = (1005, 1006, 1015)
# What a close frame can carry after its 2-byte code.
MAX_REASON_BYTES = 123


def clip_reason(reason: str) -> str:
    raw = reason.encode()
    if len(raw) <= MAX_REASON_BYTES:
        return reason
    return raw[:MAX_REASON_BYTES].decode(errors="ignore")


@define(frozen=True)
class Ending:
    closed_by: str  # client | upstream | gateway
    cause: str  # a short word for the access log: upstream_closed, client_closed, idle_timeout, ...
    client_code: int | None  # None: the client is already gone
    client_reason: str = ""
    upstream_code: int | None = None  # None: the upstream is already closed
    upstream_reason: str = ""
    # A Realtime ``error`` event (code, message) sent to the client before its close frame.
    notice: tuple[str, str] | None = None


def upstream_closed(code: int | None, reason: str | None) -> Ending:
    """The upstream ended the session: the client gets the same code and reason where it can."""
    if code is None or code == 1005:
        return Ending("upstream", "upstream_closed", NORMAL, clip_reason(reason or "upstream closed the session"))
    if code in _LOCAL_ONLY:
        return Ending("upstream", "upstream_lost", INTERNAL_ERROR, "upstream connection lost")
    if code == 1010:  # a client-only code: from the gateway towards its client it would be meaningless
        return Ending("upstream", "upstream_closed", INTERNAL_ERROR, clip_reason(reason or "upstream closed (1010)"))
    return Ending("upstream", "upstream_closed", code, clip_reason(reason or f"upstream closed the session ({code})"))


def shutting_down() -> Ending:
    reason = "gateway shutting down"
    return Ending("gateway", "shutdown", GOING_AWAY, reason, GOING_AWAY, reason)


def client_closed(draining: bool = False) -> Ending:
    """The client went away. Hypercorn does not pass the client's own close code to the app (it reports
    1000 or 1006 from its own state), so the upstream gets a normal closure naming the cause."""
    if draining:
        return Ending("gateway", "shutdown", None, upstream_code=GOING_AWAY, upstream_reason="gateway shutting down")
    return Ending("client", "client_closed", None, upstream_code=NORMAL, upstream_reason="client closed the session")


def idle_timeout(seconds: float) -> Ending:
    reason = f"idle timeout: no frames for {seconds:g}s"
    return Ending("gateway", "idle_timeout", GOING_AWAY, reason, NORMAL, reason,
                  notice=("session_idle_timeout", f"The session was closed after {seconds:g} seconds without "
                                                  "activity."))


def session_expired(seconds: float) -> Ending:
    # Worded as OpenAI words its own session limit, so clients that handle one handle both.
    message = f"Your session hit the maximum duration of {seconds:g} seconds."
    return Ending("gateway", "max_duration", GOING_AWAY, clip_reason(message), NORMAL, "session maximum duration",
                  notice=("session_expired", message))


def frame_too_big(size: int, limit: int) -> Ending:
    return Ending("gateway", "frame_too_big", TOO_BIG, f"frame of {size} bytes exceeds the limit of {limit} bytes",
                  NORMAL, "client frame too big")


def gateway_error() -> Ending:
    return Ending("gateway", "gateway_error", INTERNAL_ERROR, "gateway error", INTERNAL_ERROR, "gateway error")


def upstream_unreachable(detail: str) -> Ending:
    # 1011, not 1014 (bad gateway): wsproto, under trio-websocket and Hypercorn alike, does not know 1014
    # and fails such a close as a protocol error (1002), losing the reason.
    return Ending("gateway", "upstream_unreachable", INTERNAL_ERROR, clip_reason(f"upstream unreachable: {detail}"))
