"""Config hardening: numbers that make no sense are refused with their field path, and ``trigate check``
builds providers exactly as serving does, so a file it passes cannot crash ``serve``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from trigate.cli import main
from trigate.config import ConfigError, parse_config
from trigate.upstream.providers import check_providers

README = Path(__file__).resolve().parents[2] / "README.md"
README_ENV = {name: "x" for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AZURE_OPENAI_KEY",
                                     "TEAM_A_KEY")}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"auth": {"open": True}, **data}, env={})
    return info.value.problems


ROUTE = {"providers": {"p": {"kind": "openai"}}}


@pytest.mark.parametrize(("data", "expected"), [
    ({"auth": {"keys": [{"id": "a", "key": "k", "rpm": -5}]}}, "auth.keys[0].rpm: must be a positive integer, got -5"),
    ({"auth": {"keys": [{"id": "a", "key": "k"}, {"id": "b", "key": "k2", "tpm": 0}]}},
     "auth.keys[1].tpm: must be a positive integer, got 0"),
    ({"auth": {"open": True, "admin_keys": [{"id": "ops", "key": "k", "max_concurrent": -1}]}},
     "auth.admin_keys[0].max_concurrent: must be a positive integer, got -1"),
    ({**ROUTE, "models": [{"name": "m", "provider": "p", "max_concurrent": 0}]},
     "models[0].max_concurrent: must be a positive integer, got 0"),
    ({**ROUTE, "models": [{"name": "m", "provider": "p", "timeouts": {"idle": -1}}]},
     "models[0].timeouts.idle: must be positive, got -1.0"),
    ({**ROUTE, "models": [{"name": "m", "provider": "p", "retry": {"attempts": 0}}]},
     "models[0].retry.attempts: must be a positive integer, got 0"),
    ({"limits": {"global_limits": {"tpm": -100}}}, "limits.global_limits.tpm: must be a positive integer, got -100"),
    ({"limits": {"default_output_reserve": -1}}, "limits.default_output_reserve: must not be negative, got -1"),
    ({"timeouts": {"connect": 0}}, "timeouts.connect: must be positive, got 0.0"),
    ({"timeouts": {"total": float("nan")}}, "timeouts.total: must be positive, got nan"),
    ({"retry": {"backoff_base": -0.5}}, "retry.backoff_base: must not be negative, got -0.5"),
    ({"retry": {"attempts": -2}}, "retry.attempts: must be a positive integer, got -2"),
    ({"health": {"eject_after": 0}}, "health.eject_after: must be a positive integer, got 0"),
    ({"health": {"eject_seconds": -30}}, "health.eject_seconds: must be positive, got -30.0"),
    ({"server": {"reload_poll_seconds": 0}}, "server.reload_poll_seconds: must be positive, got 0.0"),
    ({"server": {"max_body_bytes": -1}}, "server.max_body_bytes: must be a positive integer, got -1"),
    ({"server": {"graceful_timeout": -1}}, "server.graceful_timeout: must not be negative, got -1.0"),
    ({"providers": {"m": {"kind": "mock", "token_delay_ms": -20}}},
     "providers.m.token_delay_ms: must not be negative, got -20.0"),
])
def test_meaningless_numbers_are_refused_with_the_field_path(data: dict[str, Any], expected: str) -> None:
    assert problems(data) == [expected]


def test_sensible_numbers_and_unset_limits_still_pass() -> None:
    cfg = parse_config({"auth": {"keys": [{"id": "a", "key": "k", "rpm": 1, "tpm": 10, "max_concurrent": 1}]},
                        **ROUTE, "models": [{"name": "m", "provider": "p", "timeouts": {"first_token": None},
                                             "retry": {"attempts": 1, "backoff_base": 0}}],
                        "server": {"graceful_timeout": 0, "models_cache_seconds": 0},
                        "limits": {"default_output_reserve": 0}}, env={})
    assert cfg.auth.keys[0].rpm == 1 and cfg.models[0].retry is not None and cfg.models[0].retry.attempts == 1


def write_service_account(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "private_key": pem, "client_email": "gw@p.iam",
                                "token_uri": "https://oauth2.googleapis.com/token"}))
    return path


def readme_main_config() -> dict[str, Any]:
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S) if "credentials_file" in b)
    return yaml.safe_load(block)


def test_the_readme_config_is_checked_like_serve_builds_it(tmp_path: Path) -> None:
    data = readme_main_config()
    cfg = parse_config(data, env=README_ENV)  # valid as written...
    with pytest.raises(ConfigError) as info:  # ...but this machine has no /etc/trigate/sa.json
        check_providers(cfg)
    assert info.value.problems == [
        "providers.vertex.credentials_file: cannot read /etc/trigate/sa.json: No such file or directory"]
    # with a real service-account file in its place, every provider of the example builds
    data["providers"]["vertex"]["credentials_file"] = str(write_service_account(tmp_path / "sa.json"))
    check_providers(parse_config(data, env=README_ENV))


def vertex_config(credentials_file: Path) -> str:
    vertex = {"kind": "vertex", "project": "p", "region": "us-east5", "credentials_file": str(credentials_file)}
    return yaml.safe_dump({"auth": {"open": True}, "providers": {"vertex": vertex},
                           "models": [{"name": "gemini-*", "provider": "vertex"}]})


@pytest.mark.parametrize(("content", "reason"), [
    (None, "cannot read {path}: No such file or directory"),
    ("{not json", "{path} is not JSON (a service-account key file)"),
    ('{"client_email": "a@b", "token_uri": "https://t"}', "{path} lacks private_key (not a service-account key file)"),
    ('{"client_email": "a@b", "token_uri": "https://t", "private_key": "nope"}',
     "{path}: private_key is not an unencrypted PEM private key"),
])
def test_check_names_an_unusable_credentials_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  content: str | None, reason: str) -> None:
    sa = tmp_path / "sa.json"
    if content is not None:
        sa.write_text(content)
    path = tmp_path / "vertex.yaml"
    path.write_text(vertex_config(sa))
    assert main(["check", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert f"  providers.vertex.credentials_file: {reason.format(path=sa)}\n" in out.err


def test_check_passes_a_usable_credentials_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "vertex.yaml"
    path.write_text(vertex_config(write_service_account(tmp_path / "sa.json")))
    assert main(["check", str(path)]) == 0
    assert "ok (1 providers, 1 model routes)" in capsys.readouterr().out


def test_check_accepts_embedded_mocks_though_none_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mock.yaml"
    path.write_text("auth: {open: true}\nproviders: {mock: {kind: mock}}\nmodels: [{name: 'mock-*', provider: mock}]\n")
    assert main(["check", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "expected"), [
    (b"models: [{name: m\n", "<file>: invalid YAML at line 2, column 1: while parsing a flow mapping: "
                             "expected ',' or '}', but got '<stream end>'"),
    (b"auth: {open: true}\nx: \xff\n", "<file>: {path} is not UTF-8 text (byte 22)"),
    (b"a: \"\x07\"\n", "<file>: invalid YAML: unacceptable character #x0007: special characters are not allowed "
                     'in "<unicode string>", position 4'),
])
def test_an_unreadable_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                                             expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert main(["check", str(path)]) == 2
    expected = expected.replace("{path}", str(path))
    assert capsys.readouterr().err.splitlines() == ["trigate: invalid config:", f"  {expected}"]
