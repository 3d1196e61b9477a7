from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trigate.config import ConfigError, default_config, load_config, parse_config
from trigate.routing import Router

GOOD = """
listen: {host: 127.0.0.1, port: 4100}
auth: {open: true}
providers:
  openai: {kind: openai, api_key: "${OPENAI_KEY_FOR_TEST}"}
  local: {kind: openai, base_url: "http://127.0.0.1:8000/v1", api_key: "${LOCAL_KEY:-none}"}
models:
  - {name: gpt-4o, provider: openai}
  - {name: "openai/*", provider: openai}
  - {name: "gpt-*", provider: openai}
  - {name: small, provider: local, model: "qwen2.5-7b"}
  - {name: "local/*", provider: local, model: "org/*-instruct"}
"""


def problems(data: object) -> list[str]:
    if isinstance(data, dict):
        data = {"auth": {"open": True}, **data}
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    return info.value.problems


def test_good_config_with_env_and_defaults(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(GOOD)
    cfg = load_config(p, env={"OPENAI_KEY_FOR_TEST": "sk-1"})
    assert cfg.listen.port == 4100
    assert cfg.providers["openai"].api_key == "sk-1"
    assert cfg.providers["local"].api_key == "none"
    assert "sk-1" not in repr(cfg), "keys must not show in reprs (logs, tracebacks)"


def test_bad_field_paths_are_named() -> None:
    assert problems({"models": [{"name": "a", "provider": "x"}]}) == ["models[0].provider: unknown provider 'x'"]
    cfg = {"providers": {"openai": {"kind": "openai"}},
           "models": [{"name": "a", "provider": "openai"}, {"name": "b", "provider": "openai"},
                      {"name": "c", "provider": "opneai"}]}
    assert problems(cfg) == ["models[2].provider: unknown provider 'opneai'"]
    assert problems({"listen": {"port": "http"}}) == ["listen.port: invalid value for type, expected int"]
    assert problems({"providers": {"p": {"kind": "openai", "api_kye": "x"}}}) == [
        "providers.p: extra fields found (api_kye)"]
    assert problems({"providers": {"p": {"kind": "nope"}}})[0].startswith("providers.p.kind: unknown provider kind")
    assert problems({"providers": {"p": {"kind": "openai", "api_key": "${MISSING_VAR}"}}}) == [
        "providers.p.api_key: environment variable MISSING_VAR is not set"]
    assert problems({"models": [{"provider": "p"}]}) == ["models[0].name: required field missing"]
    assert problems([1]) == ["<root>: the config must be a mapping"]
    assert problems({"server": {"gc_thresholds": [700, -1, 10]}}) == [
        "server.gc_thresholds: [700, -1, 10] must not be negative"]
    assert problems({"server": {"upstream_keepalive": -3}}) == ["server.upstream_keepalive: -3 is negative"]
    assert parse_config({"auth": {"open": True}, "server": {"gc_thresholds": [1000, 5, 5]}},
                        env={}).server.gc_thresholds == (1000, 5, 5)


def test_routing_exact_wildcards_and_captures() -> None:
    cfg = parse_config(__import__("yaml").safe_load(GOOD), env={"OPENAI_KEY_FOR_TEST": "k"})
    r = Router(cfg)
    assert (r.resolve("gpt-4o").provider, r.resolve("gpt-4o").model) == ("openai", "gpt-4o")
    assert r.resolve("openai/o3").model == "o3"
    assert r.resolve("gpt-5-nano").model == "gpt-5-nano"
    assert (r.resolve("small").provider, r.resolve("small").model) == ("local", "qwen2.5-7b")
    assert r.resolve("local/llama") .model == "org/llama-instruct"
    assert r.resolve("claude-3") is None


def test_default_config_has_mock_and_env_providers() -> None:
    cfg = default_config(env={})
    assert list(cfg.providers) == ["mock"] and cfg.listen.host == "127.0.0.1" and cfg.listen.port == 4000
    cfg = default_config(env={"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-ant"})
    assert set(cfg.providers) == {"mock", "openai", "anthropic"}
    r = Router(cfg)
    assert r.resolve("mock-gpt").provider == "mock"
    assert r.resolve("claude-sonnet-4-5").provider == "anthropic"
    assert r.resolve("gpt-4o").provider == "openai"


def test_check_command(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("auth: {open: true}\nproviders: {a: {kind: openai, api_key: x}}\n"
                    "models: [{name: m, provider: a}]\n")
    bad.write_text("providers: {a: {kind: openai}}\nmodels:\n - {name: m, provider: a}\n - {name: n, provider: b}\n")
    ok = subprocess.run([sys.executable, "-m", "trigate.cli", "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok" in ok.stdout
    ko = subprocess.run([sys.executable, "-m", "trigate.cli", "check", str(bad)], capture_output=True, text=True)
    assert ko.returncode == 2
    assert "models[1].provider: unknown provider 'b'" in ko.stderr


def test_open_mode_must_be_explicit() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": {"a": {"kind": "openai"}}, "models": [{"name": "m", "provider": "a"}]}, env={})
    assert info.value.problems[0].startswith("auth: no client keys configured")
    cfg = parse_config({"auth": {"keys": [{"id": "team-a", "key": "${K}"}]}}, env={"K": "secret"})
    assert cfg.auth.keys[0].id == "team-a" and "secret" not in repr(cfg)
    # admin keys alone are enough: client keys are then created at runtime (POST /admin/keys)
    cfg = parse_config({"auth": {"admin_keys": [{"id": "ops", "key": "sk-admin"}]}}, env={})
    assert not cfg.auth.open and not cfg.auth.keys


def test_groups_and_fallbacks_are_checked() -> None:
    base = {"providers": {"a": {"kind": "openai"}, "b": {"kind": "anthropic"}}}
    ok = {**base, "models": [
        {"name": "smart", "targets": [{"provider": "a", "model": "gpt-4o", "weight": 3}, {"provider": "b"}],
         "strategy": "least_inflight", "fallbacks": ["claude-x"]},
        {"name": "claude-*", "provider": "b"}]}
    cfg = parse_config({"auth": {"open": True}, **ok}, env={})
    assert [t.provider for t in cfg.models[0].target_specs()] == ["a", "b"]
    assert problems({**base, "models": [{"name": "m", "targets": [{"provider": "zz"}], "fallbacks": ["nope"],
                                         "strategy": "random"}]}) == [
        "models[0].targets[0].provider: unknown provider 'zz'",
        "models[0].strategy: must be weighted, least_inflight or ordered",
        "models[0].fallbacks[0]: unknown model 'nope'"]
