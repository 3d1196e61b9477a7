"""Cloud credentials the way production gets them, against the fake upstream's loopback credential endpoints
(trigate/mock/cloud_auth.py): AWS through botocore's chain (container credentials with a refresh during the
test, a shared-files profile, AssumeRole and web identity through a fake STS), Google through Application
Default Credentials (metadata server, authorized_user, external_account with and without impersonation).

The AWS and metadata-server gateways are real ``trigate serve`` processes: the chain reads the process's
environment, which must not be the test process's own."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.harness import AWS_CREDENTIALS, UPSTREAM_KEY, GatewayProcess, Servers, openai_config

AWS_ENV_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                 "AWS_BEARER_TOKEN_BEDROCK", "GOOGLE_APPLICATION_CREDENTIALS")


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str | None]:
    """No credentials of the machine's: no AWS_* keys, empty shared files, no instance metadata."""
    env: dict[str, str | None] = {name: None for name in AWS_ENV_NAMES}
    env |= {"AWS_CONFIG_FILE": str(tmp_path / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-creds"),
            "AWS_EC2_METADATA_DISABLED": "true", "CLOUDSDK_CONFIG": str(tmp_path / "no-gcloud")}
    return env | extra


def chat(url: str, model: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def signer(seen_headers: dict[str, str]) -> str:
    return seen_headers["authorization"].partition("Credential=")[2].split("/")[0]


@pytest.fixture
def upstream() -> Any:
    with Servers(openai_config, mock_key=UPSTREAM_KEY) as s:
        yield s


def gateway_config(mock_url: str, providers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"auth": {"open": True}, "database": {"url": ":memory:"}, "store": {"responses_path": ":memory:"},
            "retry": {"attempts": 1},
            "providers": {name: {"base_url": mock_url, **p} for name, p in providers.items()},
            "models": [{"name": f"{name}/*", "provider": name} for name in providers]}


def test_container_credentials_are_cached_then_refreshed_before_expiry(tmp_path: Path, upstream: Servers) -> None:
    cloud = upstream.mock.cloud
    # botocore refreshes from 15 minutes before expiry: these keys are fresh for ~4 s, then due
    cloud.aws_ttl = 15 * 60 + 4
    gw = GatewayProcess(gateway_config(upstream.mock_url, {"br": {"kind": "bedrock", "region": "us-east-1"}}),
                        tmp_path, env=isolated_env(
                            tmp_path, AWS_CONTAINER_CREDENTIALS_FULL_URI=f"{upstream.mock_url}/_mock/aws/credentials"))
    try:
        started = time.monotonic()
        for _ in range(3):
            r = chat(gw.url, "br/anthropic.claude-3-haiku")
            assert r.status_code == 200, r.text
        assert time.monotonic() - started < 3.5, "too slow to see the cache"
        assert cloud.aws_fetches == ["container"]  # fetched once, on a worker thread, then cached
        first = [q for q in upstream.mock.requests if q.path.endswith("/converse")]
        (key1,) = {signer(q.headers) for q in first}
        assert key1.startswith("ASIAMOCK") and first[-1].headers["x-amz-security-token"] == cloud.aws_secret(key1)[1]
        time.sleep(max(0.0, started + 4.5 - time.monotonic()))
        r = chat(gw.url, "br/anthropic.claude-3-haiku")
        assert r.status_code == 200, r.text
        assert cloud.aws_fetches == ["container", "container"]
        key2 = signer(upstream.mock.requests[-1].headers)
        assert key2 != key1 and key2.startswith("ASIAMOCK")
    finally:
        gw.stop()
    log = gw.log()
    for secret, token, _ in cloud.aws_issued.values():
        assert secret not in log and token not in log


def test_profiles_assume_role_and_web_identity(tmp_path: Path, upstream: Servers) -> None:
    cloud = upstream.mock.cloud
    (tmp_path / "token").write_text("eyJ.web-identity.token")
    (tmp_path / "credentials").write_text(
        f"[static]\naws_access_key_id = {AWS_CREDENTIALS[0]}\naws_secret_access_key = {AWS_CREDENTIALS[1]}\n")
    (tmp_path / "config").write_text(
        "[profile static]\nregion = us-east-1\n"
        "[profile wi]\nrole_arn = arn:aws:iam::123456789012:role/gw-web\n"
        f"web_identity_token_file = {tmp_path / 'token'}\nrole_session_name = gw-pod\n")
    providers = {
        "prof": {"kind": "bedrock", "region": "us-east-1", "profile": "static"},
        "role": {"kind": "bedrock", "region": "us-east-1", "profile": "static",
                 "role_arn": "arn:aws:iam::123456789012:role/gw-bedrock"},
        "wi": {"kind": "bedrock", "region": "us-east-1", "profile": "wi"},
    }
    env = isolated_env(tmp_path, AWS_CONFIG_FILE=str(tmp_path / "config"),
                       AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
                       AWS_ENDPOINT_URL_STS=f"{upstream.mock_url}/_mock/aws/sts")
    gw = GatewayProcess(gateway_config(upstream.mock_url, providers), tmp_path, env=env)
    try:
        assert chat(gw.url, "prof/amazon.nova-lite-v1:0").status_code == 200
        assert signer(upstream.mock.requests[-1].headers) == AWS_CREDENTIALS[0]
        assert cloud.aws_fetches == []

        r = chat(gw.url, "role/amazon.nova-lite-v1:0")
        assert r.status_code == 200, r.text
        assert cloud.aws_fetches == ["AssumeRole"]
        assumed = cloud.sts_params[-1]
        assert assumed["RoleArn"] == "arn:aws:iam::123456789012:role/gw-bedrock"
        assert assumed["signed_by"] == AWS_CREDENTIALS[0]  # STS was called with the profile's keys
        assert signer(upstream.mock.requests[-1].headers).startswith("ASIAMOCK")

        r = chat(gw.url, "wi/amazon.nova-lite-v1:0")
        assert r.status_code == 200, r.text
        assert cloud.aws_fetches == ["AssumeRole", "AssumeRoleWithWebIdentity"]
        web = cloud.sts_params[-1]
        assert (web["WebIdentityToken"], web["RoleArn"], web["RoleSessionName"]) == (
            "eyJ.web-identity.token", "arn:aws:iam::123456789012:role/gw-web", "gw-pod")
    finally:
        gw.stop()


def test_no_aws_credentials_anywhere_is_a_clear_error(tmp_path: Path, upstream: Servers) -> None:
    gw = GatewayProcess(gateway_config(upstream.mock_url, {"br": {"kind": "bedrock", "region": "us-east-1"}}),
                        tmp_path, env=isolated_env(tmp_path))
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="br/amazon.nova-lite-v1:0",
                                           messages=[{"role": "user", "content": "x"}])
        assert err.value.status_code == 500 and "found no AWS credentials" in err.value.message
    finally:
        gw.stop()


def test_vertex_on_the_metadata_server(tmp_path: Path, upstream: Servers) -> None:
    cloud = upstream.mock.cloud
    host = upstream.mock_url.removeprefix("http://")
    cfg = gateway_config(upstream.mock_url, {"vx": {"kind": "vertex", "project": "p", "region": "us-east5"}})
    gw = GatewayProcess(cfg, tmp_path, env=isolated_env(tmp_path, GCE_METADATA_HOST=host))
    try:
        for _ in range(2):
            r = chat(gw.url, "vx/gemini-2.5-flash")
            assert r.status_code == 200, r.text
        assert cloud.metadata_fetches == 1  # cached while valid
        assert upstream.mock.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    finally:
        gw.stop()


def test_the_metadata_server_wants_its_header(upstream: Servers) -> None:
    url = f"{upstream.mock_url}/computeMetadata/v1/instance/service-accounts/default/token"
    assert httpx.get(url).status_code == 403  # the fake is strict, so the test above proves the header is sent
    assert httpx.get(url, headers={"Metadata-Flavor": "Google"}).status_code == 200


def vertex_with(tmp_path: Path, info: dict[str, Any]) -> Any:
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(info))

    def cfg(mock_url: str) -> dict[str, Any]:
        c = openai_config(mock_url)
        c["providers"]["vx"] = {"kind": "vertex", "base_url": mock_url, "project": "p", "region": "us-east5",
                                "credentials_file": str(path)}
        c["models"].append({"name": "vx/*", "provider": "vx"})
        return c

    return cfg


def test_authorized_user_refresh_token(tmp_path: Path) -> None:
    holder: dict[str, str] = {}

    def cfg(mock_url: str) -> dict[str, Any]:
        holder["url"] = mock_url
        return vertex_with(tmp_path, {"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com",
                                      "client_secret": "csecret-123", "refresh_token": "1//refresh-abc",
                                      "token_uri": f"{mock_url}/_mock/google/token"})(mock_url)

    with Servers(cfg, mock_key=UPSTREAM_KEY) as s:
        s.mock.cloud.google_refresh = ("cid.apps.googleusercontent.com", "csecret-123", "1//refresh-abc")
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        for _ in range(2):
            assert client.chat.completions.create(model="vx/gemini-2.5-flash",
                                                  messages=[{"role": "user", "content": "hi"}]).choices
        assert s.mock.cloud.google_calls == ["refresh_token"]
        s.mock.cloud.google_refresh = ("cid.apps.googleusercontent.com", "csecret-123", "revoked")
        s.running.gateway.providers["vx"].tokens._expires = 0  # the next call must mint again
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="vx/gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
        assert err.value.status_code == 502 and "refresh-token grant failed with HTTP 400" in err.value.message
        assert "1//refresh-abc" not in err.value.message and "csecret" not in err.value.message


@pytest.mark.parametrize("source", ["file", "url"])
@pytest.mark.parametrize("impersonate", [False, True])
def test_external_account_workload_identity_federation(tmp_path: Path, source: str, impersonate: bool) -> None:
    subject = "eyJhbGciOi.oidc-subject.token"
    (tmp_path / "subject.json").write_text(json.dumps({"id_token": subject}))
    email = "gw@p.iam.gserviceaccount.com"

    def cfg(mock_url: str) -> dict[str, Any]:
        # a URL source: the fake metadata server's token route stands in for the OIDC token endpoint
        credential_source: dict[str, Any] = (
            {"file": str(tmp_path / "subject.json"), "format": {"type": "json", "subject_token_field_name": "id_token"}}
            if source == "file" else
            {"url": f"{mock_url}/computeMetadata/v1/instance/service-accounts/default/token",
             "headers": {"Metadata-Flavor": "Google"},
             "format": {"type": "json", "subject_token_field_name": "access_token"}})
        info: dict[str, Any] = {
            "type": "external_account", "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/gh",
            "token_url": f"{mock_url}/_mock/google/sts", "credential_source": credential_source}
        if impersonate:
            info["service_account_impersonation_url"] = (
                f"{mock_url}/_mock/google/iam/v1/projects/-/serviceAccounts/{email}:generateAccessToken")
        return vertex_with(tmp_path, info)(mock_url)

    with Servers(cfg, mock_key=UPSTREAM_KEY) as s:
        cloud = s.mock.cloud
        cloud.google_subject_token = subject if source == "file" else UPSTREAM_KEY  # what the URL hands out
        if not impersonate:
            cloud.federated_token = UPSTREAM_KEY  # the STS token itself is what Vertex accepts
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        for _ in range(2):
            assert client.chat.completions.create(model="vx/gemini-2.5-flash",
                                                  messages=[{"role": "user", "content": "hi"}]).choices
        expected = ["sts"] + ([f"impersonate {email}:generateAccessToken"] if impersonate else [])
        assert cloud.google_calls == expected  # minted once, then cached
        assert s.mock.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_unsupported_credentials_files_are_named_at_check(tmp_path: Path) -> None:
    from trigate.config import ConfigError, ProviderConfig
    from trigate.upstream.providers import make_provider

    cases = {
        "aws-source": ({"type": "external_account", "audience": "a", "subject_token_type": "t", "token_url": "u",
                        "credential_source": {"environment_id": "aws1"}}, "credential_source; only file and url"),
        "no-audience": ({"type": "external_account", "subject_token_type": "t", "token_url": "u",
                         "credential_source": {"file": "f"}}, "lacks audience"),
        "user": ({"type": "authorized_user", "client_id": "c"}, "lacks client_secret, refresh_token"),
        "other": ({"type": "impersonated_service_account"}, "is not supported"),
    }
    for name, (info, reason) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(info))
        with pytest.raises(ConfigError) as err:
            make_provider("vx", ProviderConfig(kind="vertex", project="p", region="global",
                                               credentials_file=str(path)))
        assert reason in err.value.problems[0] and err.value.problems[0].startswith("providers.vx.credentials_file:")
