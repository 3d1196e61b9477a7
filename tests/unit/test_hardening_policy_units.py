"""Issue 13, item 7 without servers: which providers a key may reach through passthrough, from config."""

from __future__ import annotations

import pytest

from trigate.config import ConfigError, parse_config
from trigate.policies.auth import KeyRing


def config(**key: object) -> dict[str, object]:
    return {"providers": {"openai": {"kind": "openai"}, "azure-east": {"kind": "azure", "base_url": "https://a.b"}},
            "auth": {"keys": [{"id": "k", "key": "sk-k", **key}]}}


@pytest.mark.parametrize(("key", "allowed"), [
    ({}, {"openai", "azure-east"}),  # neither list: full access, as before
    ({"models": ["gpt-*"]}, set()),  # held to some models: passthrough would bypass that
    ({"models": ["gpt-*"], "providers": ["openai"]}, {"openai"}),
    ({"providers": ["azure*"]}, {"azure-east"}),
    ({"providers": []}, set()),
])
async def test_passthrough_providers_of_a_key(key: dict[str, object], allowed: set[str]) -> None:
    principal = await KeyRing(parse_config(config(**key), env={}).auth).authenticate("sk-k")
    assert {p for p in ("openai", "azure-east") if principal.may_pass_through(p)} == allowed


def test_a_misspelt_provider_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(providers=["opneai", "azure*", "never-*"]), env={})
    assert info.value.problems == ["auth.keys[0].providers[0]: unknown provider 'opneai'"]
