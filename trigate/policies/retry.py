"""Which failures are worth another try, and how long to wait before it."""

from __future__ import annotations

import random
import re

from trigate.config import RetryPolicy
from trigate.errors import GatewayError

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# Provider messages saying the prompt does not fit the model's context window.
_CONTEXT = re.compile(r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long|"
                      r"input is too long|exceeds the (maximum|context)", re.I)


def is_retryable(err: GatewayError) -> bool:
    """Transient: worth retrying the same target (connect errors, timeouts, 429, 5xx)."""
    return err.status in RETRYABLE_STATUS or err.kind in ("timeout", "upstream_unavailable", "overloaded")


def is_context_length(err: GatewayError) -> bool:
    return err.kind == "invalid_request" and (err.code == "context_length_exceeded" or
                                              bool(_CONTEXT.search(err.message)))


def fallback_reason(err: GatewayError) -> str | None:
    """The ``fallback_on`` condition an error matches, if any."""
    if err.kind == "timeout":
        return "timeout"
    if is_context_length(err):
        return "context_length"
    if is_retryable(err):
        return "error"
    return None


def backoff(policy: RetryPolicy, attempt: int, retry_after: float | None, rng: random.Random = random._inst) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): the upstream's retry-after when
    given, else exponential backoff with full jitter."""
    if retry_after is not None:
        return max(retry_after, 0.0)
    cap = min(policy.backoff_max, policy.backoff_base * (2 ** (attempt - 1)))
    return rng.uniform(0, cap)
