"""Google OAuth access tokens for Vertex AI, from a service-account JSON file or a static token.

Service accounts use the JWT-bearer grant: an RS256-signed assertion (signed with ``cryptography``)
exchanged at the account's ``token_uri`` over the gateway's async HTTP client, so the event loop
never blocks. Tokens are refreshed five minutes before expiry; while a refresh runs, callers keep
using the still-valid token instead of queueing behind it.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
import trio

from trigate.config import ProviderConfig
from trigate.errors import GatewayError

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_MARGIN = 300.0


class TokenSource(Protocol):
    async def token(self) -> str: ...

    async def aclose(self) -> None: ...


class StaticToken:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    async def aclose(self) -> None:
        pass


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_assertion(info: dict[str, Any], now: float) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    header = {"alg": "RS256", "typ": "JWT", "kid": info.get("private_key_id")}
    claims = {
        "iss": info["client_email"],
        "scope": SCOPE,
        "aud": info["token_uri"],
        "iat": int(now),
        "exp": int(now) + 3600,
    }
    signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(claims))}".encode()
    key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    return f"{signing_input.decode()}.{_b64url(signature)}"


def read_service_account(path: str) -> dict[str, Any]:
    """The service-account key file at ``path``, checked enough to mint tokens from; ValueError with a
    one-line reason otherwise (so ``trigate check`` and a reload catch it, not the first request)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise ValueError(f"{path} is not JSON (a service-account key file)") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} is not a service-account key file (not a JSON object)")
    missing = [key for key in ("client_email", "private_key", "token_uri") if not isinstance(info.get(key), str)]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (not a service-account key file)")
    try:
        serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(f"{path}: private_key is not an unencrypted PEM private key") from None
    return info


class ServiceAccountTokens:
    def __init__(self, info: dict[str, Any]) -> None:
        self._info = info
        self._token: str | None = None
        self._expires = 0.0
        self._lock = trio.Lock()
        # Made on first refresh: building a provider (check, a reload that is then refused) holds nothing.
        self._http: httpx.AsyncClient | None = None

    async def token(self) -> str:
        now = time.time()
        if self._token and now < self._expires - REFRESH_MARGIN:
            return self._token
        if self._token and now < self._expires - 10 and self._lock.locked():
            return self._token  # someone is refreshing; the current token is still good
        async with self._lock:
            if not (self._token and time.time() < self._expires - REFRESH_MARGIN):
                await self._refresh()
        assert self._token is not None
        return self._token

    async def _refresh(self) -> None:
        now = time.time()
        data = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": make_assertion(self._info, now),
        }
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30, trust_env=False)
        try:
            r = await self._http.post(self._info["token_uri"], data=data)
        except httpx.HTTPError as exc:
            raise GatewayError(
                "upstream_unavailable", f"cannot reach the Google token endpoint: {type(exc).__name__}", status=502
            ) from None
        if r.status_code != 200:
            raise GatewayError("authentication", f"Google token exchange failed with HTTP {r.status_code}", status=502)
        body = r.json()
        self._token = body["access_token"]
        self._expires = now + float(body.get("expires_in", 3600))

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def token_source(pc: ProviderConfig) -> TokenSource:
    """Raises ValueError (see ``read_service_account``) for an unusable credentials file."""
    if pc.access_token:
        return StaticToken(pc.access_token)
    assert pc.credentials_file is not None
    return ServiceAccountTokens(read_service_account(pc.credentials_file))
