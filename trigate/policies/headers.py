"""Rate-limit response headers in the style the client's SDK expects."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from trigate.policies.limits import Quota


def _duration(seconds: float) -> str:
    """OpenAI's reset format: '1s', '6m0s', '1.5s'."""
    if seconds >= 60:
        m, s = divmod(round(seconds), 60)
        return f"{m}m{s}s"
    return f"{seconds:.3g}s"


def _instant(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quota_headers(client_format: str, q: Quota) -> dict[str, str]:
    out: dict[str, str] = {}
    anthropic = client_format == "anthropic"
    for metric, limit, remaining, reset in (("requests", q.limit_requests, q.remaining_requests, q.reset_requests),
                                            ("tokens", q.limit_tokens, q.remaining_tokens, q.reset_tokens)):
        if limit is None:
            continue
        if anthropic:
            out[f"anthropic-ratelimit-{metric}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{metric}-remaining"] = str(remaining)
            out[f"anthropic-ratelimit-{metric}-reset"] = _instant(reset)
        else:
            out[f"x-ratelimit-limit-{metric}"] = str(limit)
            out[f"x-ratelimit-remaining-{metric}"] = str(remaining)
            out[f"x-ratelimit-reset-{metric}"] = _duration(reset)
    return out
