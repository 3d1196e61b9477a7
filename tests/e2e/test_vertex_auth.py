"""Vertex AI with a service-account file: the gateway signs a JWT assertion, exchanges it at the
account's token_uri (the fake upstream verifies the signature with the account's public key), uses
the access token, and refreshes it before it expires."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness import UPSTREAM_KEY, Servers, openai_config


def service_account(tmp_path: Path, mock_url: str) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": "test-project", "private_key_id": "k1",
                                "private_key": pem, "client_email": "gw@test-project.iam.gserviceaccount.com",
                                "token_uri": f"{mock_url}/token"}))
    return path, public


def test_service_account_tokens_are_minted_used_and_refreshed(tmp_path: Path) -> None:
    holder: dict[str, Any] = {}

    def cfg(mock_url: str) -> dict[str, Any]:
        path, public = service_account(tmp_path, mock_url)
        holder["public"] = public
        c = openai_config(mock_url)
        c["providers"]["vertex-sa"] = {"kind": "vertex", "base_url": mock_url, "project": "test-project",
                                       "region": "europe-west4", "credentials_file": str(path)}
        c["models"].append({"name": "sa/*", "provider": "vertex-sa"})
        return c

    with Servers(cfg, mock_key=UPSTREAM_KEY) as s:
        s.mock.google_public_key = holder["public"]
        s.mock.google_token_ttl = 3600
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        for _ in range(3):
            r = client.chat.completions.create(model="sa/gemini-2.5-flash",
                                               messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content
        assert s.mock.google_tokens_issued == 1  # cached while valid
        seen = s.mock.requests[-1]
        assert "/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent" in seen.path
        assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        # a token about to expire (inside the refresh margin) is replaced before use
        s.mock.google_token_ttl = 200
        provider = s.running.gateway.providers["vertex-sa"]
        provider.tokens._expires = 0  # force the next call to fetch a short-lived token
        client.chat.completions.create(model="sa/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
        client.chat.completions.create(model="sa/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
        assert s.mock.google_tokens_issued == 3  # 200 s left is inside the 300 s margin: refreshed again


def test_a_bad_key_is_a_clear_error(tmp_path: Path) -> None:
    def cfg(mock_url: str) -> dict[str, Any]:
        path, _ = service_account(tmp_path, mock_url)
        c = openai_config(mock_url)
        c["providers"]["vertex-sa"] = {"kind": "vertex", "base_url": mock_url, "project": "p", "region": "global",
                                       "credentials_file": str(path)}
        c["models"].append({"name": "sa/*", "provider": "vertex-sa"})
        return c

    with Servers(cfg, mock_key=UPSTREAM_KEY) as s:
        other = tmp_path / "other"
        other.mkdir()
        _, other_public = service_account(other, s.mock_url)  # not the configured account's key
        s.mock.google_public_key = other_public
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        try:
            client.chat.completions.create(model="sa/gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
            raise AssertionError("expected an error")
        except openai.APIStatusError as err:
            assert err.status_code == 502 and "token exchange failed" in err.message
