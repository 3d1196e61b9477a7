"""Who is calling: the client credential (never a provider key) -> a Principal.

Keys are configured as plaintext (hashed at load) or as SHA-256 digests; only digests are kept. A
presented key is hashed and looked up, then compared in constant time. Open mode (no keys) is an
explicit config choice; there every caller is the anonymous principal.
"""

from __future__ import annotations

import hashlib
import hmac
from fnmatch import fnmatchcase

from attrs import define, field

from trigate.config import AuthConfig, BudgetSpec, ClientKey
from trigate.errors import GatewayError


@define(frozen=True)
class Principal:
    key_id: str  # a name for the key, safe to log; never the key
    allowed_models: tuple[str, ...] | None = None  # None: every model
    allowed_providers: tuple[str, ...] | None = None  # for passthrough; None: every provider
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    metadata: dict[str, str] = field(factory=dict)
    budget: BudgetSpec | None = None  # this key's own USD budget

    @property
    def team(self) -> str | None:
        """The team the key belongs to (``metadata.team``): team budgets and usage reports use it."""
        return self.metadata.get("team")

    def may_use(self, model: str) -> bool:
        return _allows(self.allowed_models, model)

    def may_pass_through(self, provider: str) -> bool:
        return _allows(self.allowed_providers, provider)


def _allows(patterns: tuple[str, ...] | None, name: str) -> bool:
    return patterns is None or any(fnmatchcase(name, pattern) for pattern in patterns)


ANONYMOUS = Principal(key_id="anonymous")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _principal(k: ClientKey) -> Principal:
    models = tuple(k.models) if k.models is not None else None
    if k.providers is not None:
        providers: tuple[str, ...] | None = tuple(k.providers)
    else:
        # a key held to some models must not reach any model raw through passthrough
        providers = None if models is None else ()
    return Principal(key_id=k.id, allowed_models=models, allowed_providers=providers, rpm=k.rpm, tpm=k.tpm,
                     max_concurrent=k.max_concurrent, metadata=dict(k.metadata), budget=k.budget)


class KeyRing:
    def __init__(self, auth: AuthConfig) -> None:
        self.open = auth.open
        self._keys = {(k.key_sha256 or digest(k.key or "")): _principal(k) for k in auth.keys}
        self._admin = {(k.key_sha256 or digest(k.key or "")): _principal(k) for k in auth.admin_keys}

    @staticmethod
    def _find(table: dict[str, Principal], credential: str) -> Principal | None:
        presented = digest(credential)
        for known, principal in table.items():
            # every entry is compared, in constant time: no early exit leaks which digest matched
            if hmac.compare_digest(known, presented):
                return principal
        return None

    def authenticate(self, credential: str | None) -> Principal:
        if credential:
            found = self._find(self._keys, credential)
            if found is not None:
                return found
        if self.open:
            return ANONYMOUS
        if not credential:
            raise GatewayError("authentication", "missing API key: send it as 'Authorization: Bearer <key>' "
                               "or 'x-api-key: <key>'", code="missing_api_key")
        raise GatewayError("authentication", "invalid API key", code="invalid_api_key")

    def authenticate_admin(self, credential: str | None) -> Principal:
        found = self._find(self._admin, credential) if credential else None
        if found is None:
            raise GatewayError("authentication", "an admin key is required", code="invalid_api_key")
        return found


def credential_from_headers(headers: dict[str, str]) -> str | None:
    """The caller's own key: ``Authorization: Bearer``, ``x-api-key`` (Anthropic clients) or
    ``api-key`` (Azure-style clients)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or headers.get("api-key") or None


def check_model(principal: Principal, model: str) -> None:
    if not principal.may_use(model):
        raise GatewayError("permission", f"this key may not use model '{model}'", param="model",
                           code="model_not_allowed")


def check_provider(principal: Principal, provider: str) -> None:
    """Passthrough: may this key call ``provider``'s own API directly (``auth.keys[].providers``)?"""
    if not principal.may_pass_through(provider):
        raise GatewayError("permission", f"this key may not call provider '{provider}' directly",
                           code="provider_not_allowed")
