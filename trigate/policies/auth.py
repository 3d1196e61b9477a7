"""Who is calling: the client credential (never a provider key) -> a Principal.

This is the seam every API handler calls. Until client keys are configured the gateway runs in open
mode and every caller is the anonymous principal allowed every model.
"""

from __future__ import annotations

from attrs import define, field

from trigate.errors import GatewayError


@define(frozen=True)
class Principal:
    key_id: str  # a name for the key, safe to log; never the key
    allowed_models: tuple[str, ...] | None = None  # None: every model
    metadata: dict[str, str] = field(factory=dict)

    def may_use(self, model: str) -> bool:
        if self.allowed_models is None:
            return True
        from fnmatch import fnmatchcase

        return any(fnmatchcase(model, pattern) for pattern in self.allowed_models)


ANONYMOUS = Principal(key_id="anonymous")


def credential_from_headers(headers: dict[str, str]) -> str | None:
    """The caller's own key: ``Authorization: Bearer``, or ``x-api-key`` as Anthropic clients send."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


def authenticate(credential: str | None) -> Principal:
    """Open mode: everyone is anonymous. (Client keys replace this.)"""
    return ANONYMOUS


def check_model(principal: Principal, model: str) -> None:
    if not principal.may_use(model):
        raise GatewayError("permission", f"this key may not use model '{model}'", param="model",
                           code="model_not_allowed")
