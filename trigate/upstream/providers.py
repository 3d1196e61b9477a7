"""Runtime view of a configured provider: where it lives, which wire format it speaks for each API
type, and how the gateway authenticates to it. Keys stay here; nothing else formats them."""

from __future__ import annotations

from attrs import define, field

from trigate.config import Config, ProviderConfig

ANTHROPIC_VERSION = "2023-06-01"

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",  # Anthropic convention: no /v1 in the base URL
}

# API type -> (wire format, path under base_url) per provider kind.
_ENDPOINTS: dict[str, dict[str, tuple[str, str]]] = {
    "openai": {
        "chat": ("openai_chat", "/chat/completions"),
        "responses": ("openai_responses", "/responses"),
        "messages": ("openai_chat", "/chat/completions"),
    },
    "anthropic": {
        "chat": ("anthropic", "/v1/messages"),
        "responses": ("anthropic", "/v1/messages"),
        "messages": ("anthropic", "/v1/messages"),
    },
}
_ENDPOINTS["mock"] = _ENDPOINTS["openai"]


@define
class Provider:
    name: str
    kind: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    extra_headers: dict[str, str] = field(factory=dict, repr=False)

    def endpoint(self, api: str) -> tuple[str, str]:
        """(wire format, absolute URL) used for an API type."""
        fmt, path = _ENDPOINTS[self.kind][api]
        return fmt, self.base_url + path

    def auth_headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.kind == "anthropic":
            headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
            if self.api_key:
                headers["x-api-key"] = self.api_key
        elif self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers


def build_providers(config: Config, mock_urls: dict[str, str]) -> dict[str, Provider]:
    """``mock_urls`` maps mock provider names to the base URL of their running embedded mock."""
    out = {}
    for name, pc in config.providers.items():
        out[name] = _provider(name, pc, mock_urls.get(name))
    return out


def _provider(name: str, pc: ProviderConfig, mock_url: str | None) -> Provider:
    if pc.kind == "mock":
        base = pc.base_url or mock_url
        if base is None:
            raise ValueError(f"mock provider {name!r} has no running mock")
        base = base.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
    else:
        base = (pc.base_url or DEFAULT_BASE_URLS[pc.kind]).rstrip("/")
    return Provider(name=name, kind=pc.kind, base_url=base, api_key=pc.api_key, extra_headers=dict(pc.headers))
