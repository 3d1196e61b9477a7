"""Typed configuration: YAML with ``${ENV}`` references, structured by cattrs into frozen attrs classes.

A bad config fails at load with the path of the bad field and the reason, e.g.
``models[2].provider: unknown provider 'opneai'``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cattrs
import yaml
from attrs import define, field

# Kinds with their own code; OpenAI-compatible profiles in providers/*.toml add more (see profiles.py).
BUILTIN_KINDS = ("openai", "anthropic", "mock", "azure", "gemini", "vertex", "bedrock", "cohere")


class ConfigError(ValueError):
    """One or more problems, each ``<field path>: <reason>``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@define(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 4000


@define(frozen=True)
class ServerSettings:
    # Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    graceful_timeout: float = 30.0
    access_log: bool = True
    # Largest request body accepted, in bytes (Anthropic's own limit is 32 MB).
    max_body_bytes: int = 32 * 1024 * 1024
    # Connect / read timeouts towards upstreams, seconds.
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    # How long a provider's own model list (for expanded wildcard routes) is cached, seconds.
    models_cache_seconds: float = 300.0


@define(frozen=True)
class ProviderConfig:
    kind: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    # Extra static headers sent upstream (e.g. OpenAI-Organization).
    headers: dict[str, str] = field(factory=dict, repr=False)
    # How the key is sent when the kind allows several: bearer | api-key | none | header:<name>.
    auth: str | None = None
    # Azure OpenAI: set for the dated deployments API (`/openai/deployments/{model}/...?api-version=`);
    # unset means the v1 API (`/openai/v1/...`).
    api_version: str | None = None
    # Bedrock region; Vertex location (e.g. us-east5, global).
    region: str | None = None
    # Vertex: GCP project, and either a service-account JSON file or a ready access token.
    project: str | None = None
    credentials_file: str | None = None
    access_token: str | None = field(default=None, repr=False)
    # Bedrock SigV4 credentials (default: the usual AWS_* environment variables).
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    # Mock providers only: latency and per-token delay of the embedded fake upstream.
    latency_ms: float = 0.0
    token_delay_ms: float = 0.0


@define(frozen=True)
class ModelRoute:
    # Client-facing name; may contain '*' wildcards (e.g. 'gpt-*', 'openai/*').
    name: str
    provider: str
    # Upstream model name; '*' is replaced by what the wildcard matched. Default: the requested name
    # for exact routes, the wildcard capture for prefix routes like 'openai/*'.
    model: str | None = None
    # Wildcard routes: list the provider's own models matching the pattern in GET /v1/models.
    expand: bool = False


@define(frozen=True)
class StoreConfig:
    # SQLite file for stored Responses (previous_response_id); ':memory:' keeps them in memory.
    responses_path: str = "trigate-responses.sqlite3"


@define(frozen=True)
class Config:
    listen: Listen = field(factory=Listen)
    server: ServerSettings = field(factory=ServerSettings)
    providers: dict[str, ProviderConfig] = field(factory=dict)
    models: list[ModelRoute] = field(factory=list)
    store: StoreConfig = field(factory=StoreConfig)


_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, path: str, env: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(value)]
    return value


def _cattrs_problems(exc: BaseException) -> list[str]:
    out = []
    for line in cattrs.transform_error(exc, path="$"):
        msg, _, where = line.rpartition(" @ ")
        where = where.removeprefix("$").removeprefix(".")
        where = re.sub(r"\['([^']*)'\]", r".\1", where).lstrip(".")
        out.append(f"{where or '<root>'}: {msg}")
    return out


def _check(cfg: Config) -> list[str]:
    problems = []
    if not 0 <= cfg.listen.port <= 65535:
        problems.append(f"listen.port: {cfg.listen.port} is not a TCP port")
    from trigate.upstream.profiles import load_profiles

    kinds = (*BUILTIN_KINDS, *sorted(load_profiles()))
    for name, p in cfg.providers.items():
        where = f"providers.{name}"
        if p.kind not in kinds:
            problems.append(f"{where}.kind: unknown provider kind {p.kind!r} (known: {', '.join(kinds)})")
        if p.base_url and not re.match(r"^https?://", p.base_url):
            problems.append(f"{where}.base_url: must start with http:// or https://")
        if p.kind == "azure" and not p.base_url:
            problems.append(f"{where}.base_url: required for azure (https://<resource>.openai.azure.com)")
        if p.kind == "vertex":
            if not p.project:
                problems.append(f"{where}.project: required for vertex")
            if not p.region:
                problems.append(f"{where}.region: required for vertex (a location such as us-east5 or global)")
            if not (p.credentials_file or p.access_token):
                problems.append(f"{where}: vertex needs credentials_file (service account JSON) or access_token")
        if p.kind == "bedrock" and not p.region and not p.base_url:
            problems.append(f"{where}.region: required for bedrock")
        if p.auth is not None and p.auth not in ("bearer", "api-key", "none") and not p.auth.startswith("header:"):
            problems.append(f"{where}.auth: must be bearer, api-key, none or header:<name>")
    for i, m in enumerate(cfg.models):
        if m.provider not in cfg.providers:
            problems.append(f"models[{i}].provider: unknown provider {m.provider!r}")
        if not m.name:
            problems.append(f"models[{i}].name: must not be empty")
    return problems


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Structure already-loaded YAML data into a Config, or raise ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["<root>: the config must be a mapping"])
    problems: list[str] = []
    data = _interpolate(data, "", os.environ if env is None else env, problems)
    if problems:
        raise ConfigError(problems)
    try:
        cfg = _converter.structure(data, Config)
    except Exception as exc:  # cattrs raises ClassValidationError / ExceptionGroups
        raise ConfigError(_cattrs_problems(exc)) from None
    problems = _check(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"<file>: cannot read {path}: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"<file>: invalid YAML: {exc}"]) from None
    return parse_config(data, env)


# Providers found from the usual environment variables when no config file is given:
# name: (kind, env var, model patterns routed to it). Profiles with an api_key_env join them.
ENV_PROVIDERS: dict[str, tuple[str, str, list[str]]] = {
    "openai": ("openai", "OPENAI_API_KEY", ["openai/*", "gpt-*", "o1*", "o3*", "o4*", "text-embedding-*"]),
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY", ["anthropic/*", "claude-*"]),
    "gemini": ("gemini", "GEMINI_API_KEY", ["gemini/*", "gemini-*"]),
    "cohere": ("cohere", "COHERE_API_KEY", ["cohere/*", "rerank-*", "embed-*"]),
}


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """The embedded default: loopback, the built-in mock provider, plus providers with keys in env."""
    env = os.environ if env is None else env
    providers: dict[str, ProviderConfig] = {"mock": ProviderConfig(kind="mock")}
    models = [ModelRoute(name="mock/*", provider="mock"), ModelRoute(name="mock-*", provider="mock")]
    from trigate.upstream.profiles import load_profiles

    found = dict(ENV_PROVIDERS)
    for pname, prof in load_profiles().items():
        if prof.api_key_env and pname not in found:
            found[pname] = (pname, prof.api_key_env, [f"{pname}/*"])
    for name, (kind, var, patterns) in found.items():
        key = env.get(var)
        if key:
            providers[name] = ProviderConfig(kind=kind, api_key=key)
            models.extend(ModelRoute(name=p, provider=name) for p in patterns)
    return Config(providers=providers, models=models, store=StoreConfig(responses_path=":memory:"))
