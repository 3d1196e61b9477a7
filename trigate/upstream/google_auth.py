"""Google OAuth access tokens for Vertex AI: a static token, a credentials file, or Application Default
Credentials (ADC).

Credentials files, by their ``type``: ``service_account`` (the JWT-bearer grant: an RS256 assertion signed
with ``cryptography``, exchanged at the account's ``token_uri``), ``authorized_user`` (the refresh-token
grant, what ``gcloud auth application-default login`` writes) and ``external_account`` (workload identity
federation: a subject token read from a file or URL, exchanged at the STS ``token_url``, then optionally
traded for a service account's token at ``service_account_impersonation_url``). ADC, with no file in the
config: ``GOOGLE_APPLICATION_CREDENTIALS``, else gcloud's well-known file, else the GCE/GKE metadata server
(``GCE_METADATA_HOST``, default ``metadata.google.internal``).

All of it is async httpx, so the event loop never blocks. Tokens are refreshed five minutes before
expiry; while a refresh runs, callers keep using the still-valid token instead of queueing behind it.
Token endpoints honour the environment's proxy variables (httpx's rules); the metadata server is always
reached directly.
"""

from __future__ import annotations

import base64
import json
import os
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
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


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


def read_credentials_file(path: str) -> dict[str, Any]:
    """The JSON object in a Google credentials file; ValueError with a one-line reason otherwise (so
    ``trigate check`` and a reload catch it, not the first request)."""
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
    return info


def read_service_account(path: str, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The service-account key file at ``path``, checked enough to mint tokens from; ValueError otherwise."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    info = read_credentials_file(path) if info is None else info
    missing = [key for key in ("client_email", "private_key", "token_uri") if not isinstance(info.get(key), str)]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (not a service-account key file)")
    try:
        serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(f"{path}: private_key is not an unencrypted PEM private key") from None
    return info


class RefreshingToken:
    """A cached access token, minted again ``REFRESH_MARGIN`` before it expires, one refresh at a time."""

    trust_env = True  # token endpoints may sit behind the egress proxy; the metadata server does not

    def __init__(self) -> None:
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
                if self._http is None:
                    self._http = httpx.AsyncClient(timeout=30, trust_env=self.trust_env)
                now = time.time()
                self._token, lifetime = await self._mint(self._http, now)
                self._expires = now + lifetime
        assert self._token is not None
        return self._token

    async def _mint(self, http: httpx.AsyncClient, now: float) -> tuple[str, float]:
        """A new token and its lifetime in seconds."""
        raise NotImplementedError

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


async def _call(http: httpx.AsyncClient, what: str, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    """One token-endpoint call; GatewayError 502 naming ``what`` (never a secret) when it fails."""
    try:
        r = await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise GatewayError("upstream_unavailable", f"cannot reach the {what}: {type(exc).__name__}",
                           status=502) from None
    if r.status_code != 200:
        raise GatewayError("authentication", f"{what} failed with HTTP {r.status_code}", status=502)
    try:
        body = r.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GatewayError("authentication", f"{what} answered something that is not a JSON object", status=502)
    return body


def _access_token(body: dict[str, Any], what: str, field: str = "access_token") -> str:
    token = body.get(field)
    if not isinstance(token, str) or not token:
        raise GatewayError("authentication", f"{what} answered without {field}", status=502)
    return token


class ServiceAccountTokens(RefreshingToken):
    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__()
        self._info = info

    async def _mint(self, http: httpx.AsyncClient, now: float) -> tuple[str, float]:
        data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": make_assertion(self._info, now)}
        body = await _call(http, "Google token exchange", "POST", self._info["token_uri"], data=data)
        return _access_token(body, "Google token exchange"), float(body.get("expires_in", 3600))


class AuthorizedUserTokens(RefreshingToken):
    """A user's refresh token (``gcloud auth application-default login``)."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__()
        self._info = info

    async def _mint(self, http: httpx.AsyncClient, now: float) -> tuple[str, float]:
        data = {"grant_type": "refresh_token", "refresh_token": self._info["refresh_token"],
                "client_id": self._info["client_id"], "client_secret": self._info["client_secret"]}
        uri = self._info.get("token_uri") or GOOGLE_TOKEN_URI
        body = await _call(http, "Google refresh-token grant", "POST", uri, data=data)
        return _access_token(body, "Google refresh-token grant"), float(body.get("expires_in", 3600))


class MetadataServerTokens(RefreshingToken):
    """The default service account of a GCE VM, GKE pod (workload identity) or Cloud Run service."""

    trust_env = False

    def __init__(self, host: str) -> None:
        super().__init__()
        self._url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token"

    async def _mint(self, http: httpx.AsyncClient, now: float) -> tuple[str, float]:
        body = await _call(http, "GCE metadata server", "GET", self._url, headers={"Metadata-Flavor": "Google"})
        return _access_token(body, "GCE metadata server"), float(body.get("expires_in", 3600))


class ExternalAccountTokens(RefreshingToken):
    """Workload identity federation: a third-party token (file or URL) exchanged at Google's STS, then
    (with ``service_account_impersonation_url``) traded for a service account's token."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__()
        self._info = info
        self._source: dict[str, Any] = info["credential_source"]

    async def _subject_token(self, http: httpx.AsyncClient) -> str:
        fmt = self._source.get("format") or {}
        if "file" in self._source:
            try:
                raw = await trio.Path(self._source["file"]).read_text()
            except OSError as exc:
                raise GatewayError("authentication", f"cannot read the external_account subject token file: "
                                   f"{exc.strerror}", status=502) from None
        else:
            try:
                r = await http.get(self._source["url"], headers=self._source.get("headers") or {})
            except httpx.HTTPError as exc:
                raise GatewayError("upstream_unavailable", f"cannot reach the external_account subject token URL: "
                                   f"{type(exc).__name__}", status=502) from None
            if r.status_code != 200:
                raise GatewayError("authentication", f"the external_account subject token URL answered HTTP "
                                   f"{r.status_code}", status=502)
            raw = r.text
        if fmt.get("type") == "json":
            try:
                token = json.loads(raw).get(fmt.get("subject_token_field_name", ""))
            except (ValueError, AttributeError):
                token = None
            if not isinstance(token, str) or not token:
                raise GatewayError("authentication", "the external_account subject token is not in the JSON field "
                                   "credential_source.format names", status=502)
            return token
        return raw.strip()

    async def _mint(self, http: httpx.AsyncClient, now: float) -> tuple[str, float]:
        info = self._info
        data = {"grant_type": TOKEN_EXCHANGE, "audience": info["audience"], "scope": SCOPE,
                "requested_token_type": ACCESS_TOKEN_TYPE, "subject_token_type": info["subject_token_type"],
                "subject_token": await self._subject_token(http)}
        auth = (info["client_id"], info.get("client_secret", "")) if info.get("client_id") else None
        body = await _call(http, "Google STS token exchange", "POST", info["token_url"], data=data,
                           **({"auth": auth} if auth else {}))
        federated = _access_token(body, "Google STS token exchange")
        lifetime = float(body.get("expires_in", 3600))
        url = info.get("service_account_impersonation_url")
        if not url:
            return federated, lifetime
        seconds = (info.get("service_account_impersonation") or {}).get("token_lifetime_seconds", 3600)
        body = await _call(http, "service account impersonation", "POST", url,
                           headers={"authorization": f"Bearer {federated}"},
                           json={"scope": [SCOPE], "lifetime": f"{int(seconds)}s"})
        token = _access_token(body, "service account impersonation", "accessToken")
        return token, _seconds_until(body.get("expireTime"), now, float(seconds))


def _seconds_until(rfc3339: Any, now: float, default: float) -> float:
    import datetime

    try:
        when = datetime.datetime.fromisoformat(str(rfc3339).replace("Z", "+00:00"))
    except ValueError:
        return default
    return when.timestamp() - now


def _external_account(path: str, info: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in ("audience", "subject_token_type", "token_url") if not isinstance(info.get(k), str)]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (not an external_account credentials file)")
    source = info.get("credential_source")
    if not isinstance(source, dict) or not ({"file", "url"} & source.keys()):
        kind = "an AWS or executable" if isinstance(source, dict) else "no"
        raise ValueError(f"{path}: {kind} credential_source; only file and url sources are supported")
    return info


def _from_file(path: str) -> TokenSource:
    info = read_credentials_file(path)
    kind = info.get("type", "service_account")
    if kind == "authorized_user":
        missing = [k for k in ("client_id", "client_secret", "refresh_token") if not isinstance(info.get(k), str)]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)} (not an authorized_user credentials file)")
        return AuthorizedUserTokens(info)
    if kind == "external_account":
        return ExternalAccountTokens(_external_account(path, info))
    if kind != "service_account":
        raise ValueError(f"{path}: credentials type {kind!r} is not supported (service_account, authorized_user, "
                         "external_account)")
    return ServiceAccountTokens(read_service_account(path, info))


def application_default(environ: Any = os.environ) -> TokenSource:
    """ADC, in google-auth's order: GOOGLE_APPLICATION_CREDENTIALS, gcloud's file, the metadata server."""
    path = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        return _from_file(path)
    config_dir = environ.get("CLOUDSDK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config", "gcloud")
    well_known = os.path.join(config_dir, "application_default_credentials.json")
    if os.path.exists(well_known):
        return _from_file(well_known)
    return MetadataServerTokens(environ.get("GCE_METADATA_HOST") or "metadata.google.internal")


def token_source(pc: ProviderConfig) -> TokenSource:
    """Raises ValueError (one line, naming the file) for an unusable credentials file."""
    if pc.access_token:
        return StaticToken(pc.access_token)
    if pc.credentials_file:
        return _from_file(pc.credentials_file)
    return application_default()
