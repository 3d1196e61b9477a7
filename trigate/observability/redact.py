"""Redaction for optional request/response body logging.

Bodies are logged only when ``observability.log_bodies`` is on. Even then no credential should reach
the log: values under secret-looking keys are replaced, strings that look like keys or bearer tokens
are masked wherever they appear (a user may paste a key into a prompt), and base64 blobs (images,
audio, PDFs) are cut to a stub that says how long they were.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

REDACTED = "[REDACTED]"
# Normalised key names (lowercase, '-' -> '_') whose values are secrets.
_SECRET_KEYS = frozenset({
    "api_key", "apikey", "x_api_key", "api_token", "secret", "client_secret", "password", "passwd",
    "authorization", "proxy_authorization", "auth", "bearer", "cookie", "set_cookie", "credential",
    "credentials", "private_key", "access_key", "secret_key", "access_token", "refresh_token", "id_token",
    "session_token", "aws_secret_access_key", "aws_session_token", "signature_key",
})
_SECRET_SUFFIXES = ("_api_key", "_secret", "_password", "_access_token", "_refresh_token", "_session_token",
                    "_private_key", "_secret_key")
# Credential shapes found inside arbitrary text.
_SECRET_VALUES = re.compile(
    r"(?:\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{16,}"  # OpenAI / Anthropic style keys (sk-..., sk-ant-...)
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bAIza[0-9A-Za-z_\-]{30,}"  # Google API keys
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"  # JWTs
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/\-]{8,}=*)"
)
_DATA_URL = re.compile(r"^data:([\w.+\-/]+)?;base64,", re.IGNORECASE)
_BASE64 = re.compile(r"^[A-Za-z0-9+/_\-]+={0,2}$")
BLOB_MIN = 256  # base64 strings at least this long are cut
BLOB_KEEP = 24


def _secret_key(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return k in _SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def redact_text(s: str, max_chars: int) -> str:
    if len(s) >= BLOB_MIN:
        m = _DATA_URL.match(s)
        if m is not None:
            return f"{s[:m.end() + BLOB_KEEP]}...[{len(s) - m.end()} chars of base64 omitted]"
        if _BASE64.match(s) is not None:
            return f"{s[:BLOB_KEEP]}...[{len(s)} chars of base64 omitted]"
    if "-" in s or "AKIA" in s or "AIza" in s or "gh" in s or "eyJ" in s or "earer" in s:
        s = _SECRET_VALUES.sub(REDACTED, s)
    if len(s) > max_chars:
        return f"{s[:max_chars]}...[{len(s) - max_chars} chars omitted]"
    return s


def redact(value: Any, max_chars: int = 4096) -> Any:
    """A copy of a decoded JSON value with secrets masked and long blobs cut."""
    if isinstance(value, str):
        return redact_text(value, max_chars)
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _secret_key(k) and v not in (None, "") else
                    redact(v, max_chars)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, max_chars) for v in value]
    return value


def redact_body(raw: bytes | str | None, max_bytes: int) -> Any:
    """A body for the log: redacted JSON when it parses, else redacted text; at most ``max_bytes`` of it."""
    if raw is None:
        return None
    try:
        value = redact(orjson.loads(raw), max_chars=max_bytes)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return redact_text(text, max_bytes)
    if len(orjson.dumps(value)) > max_bytes:
        # still too big once redacted: log a truncated rendering rather than the structure
        text = orjson.dumps(value).decode()
        return f"{text[:max_bytes]}...[{len(text) - max_bytes} chars omitted]"
    return value
