"""The ``Sec-WebSocket-Protocol`` offer of a Realtime client.

Browsers cannot set headers on a WebSocket handshake, so OpenAI's browser form carries the credential
and options as subprotocol values: ``realtime``, ``openai-insecure-api-key.<key>``, and optionally
``openai-beta.realtime-v1``, ``openai-organization.<org>``, ``openai-project.<project>``. The answer
must name one offered value (or the browser aborts) and must never be the key, so a relay answers
``realtime``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from attrs import define, field

from trigate.policies.auth import credential_from_headers

REALTIME = "realtime"
_KEY = "openai-insecure-api-key."
_BETA = "openai-beta.realtime-v1"
_ORG = "openai-organization."
_PROJECT = "openai-project."


@define(frozen=True)
class Offer:
    api_key: str | None = field(default=None, repr=False)
    beta: bool = False
    organization: str | None = None
    project: str | None = None
    realtime: bool = False  # "realtime" was offered

    @property
    def selected(self) -> str | None:
        """The value to answer with: only ever ``realtime``, and only when it was offered."""
        return REALTIME if self.realtime else None


def parse_offer(protocols: Iterable[str]) -> Offer:
    api_key = organization = project = None
    beta = realtime = False
    for raw in protocols:
        value = raw.strip()
        if value == REALTIME:
            realtime = True
        elif value == _BETA:
            beta = True
        elif value.startswith(_KEY):
            api_key = value[len(_KEY):] or api_key
        elif value.startswith(_ORG):
            organization = value[len(_ORG):] or None
        elif value.startswith(_PROJECT):
            project = value[len(_PROJECT):] or None
    return Offer(api_key=api_key, beta=beta, organization=organization, project=project, realtime=realtime)


def wants_beta(headers: Mapping[str, str], offer: Offer) -> bool:
    """The client asked for the beta interface: ``OpenAI-Beta: realtime=v1`` or the beta subprotocol."""
    if offer.beta:
        return True
    value = headers.get("openai-beta", "")
    return any(part.strip().lower() == "realtime=v1" for part in value.split(","))


def client_credential(headers: Mapping[str, str], offer: Offer) -> str | None:
    """The caller's own key: a bearer or api-key header (SDKs, Azure-style clients) or the browser's
    subprotocol form. Lower-cased header names expected."""
    return credential_from_headers(dict(headers)) or headers.get("api-key") or offer.api_key
