"""Typed configuration: YAML with ``${ENV}`` references, structured by cattrs into frozen attrs classes.

A bad config fails at load with the path of the bad field and the reason, e.g.
``models[2].provider: unknown provider 'opneai'``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import cattrs
import yaml
from attrs import define, field

from trigate.observability.cost import Price
from trigate.realtime.settings import RealtimeSettings

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
    # How often the config file is checked for changes (reload without restart), seconds.
    reload_poll_seconds: float = 1.0
    # Idle keep-alive connections kept per upstream host (more are closed when their exchange ends).
    upstream_keepalive: int = 512
    # Outbound proxy for upstream calls (http://[user:pass@]host:port); unset: HTTPS_PROXY / HTTP_PROXY /
    # ALL_PROXY / NO_PROXY from the environment; "none": never a proxy. Read at start, not on reload.
    upstream_proxy: str | None = field(default=None, repr=False)
    # NO_PROXY list used with upstream_proxy (the environment's NO_PROXY applies only without it).
    upstream_no_proxy: str | None = None
    # CPython's cyclic GC thresholds for the serving process (gc.set_threshold; read at start, not on
    # reload). Python's defaults (700, 10, 10) run a full collection every few seconds under load, and a
    # full pass over thousands of live streams' objects takes hundreds of ms, felt by every stream at
    # once; see README, Benchmarks.
    gc_thresholds: tuple[int, int, int] = (20_000, 20, 10)


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
    # Bedrock without static keys: the shared-config profile botocore's chain starts from, and a role to
    # assume (STS AssumeRole) with the credentials it finds.
    profile: str | None = None
    role_arn: str | None = None
    # Mock providers only: latency and per-token delay of the embedded fake upstream.
    latency_ms: float = 0.0
    token_delay_ms: float = 0.0


@define(frozen=True)
class Timeouts:
    """Per-request deadlines, seconds (None: no limit). Each ends with a clear error in the client's format."""

    connect: float = 10.0  # TCP/TLS connect to the upstream
    first_token: float | None = 300.0  # request sent -> first streamed content (streams only)
    idle: float | None = 300.0  # longest silence between two stream chunks
    total: float | None = 1800.0  # the whole exchange, stream included


@define(frozen=True)
class RetryPolicy:
    # Tries per target (1 = no retry). Retries happen on connect errors, timeouts, 429 and 5xx,
    # only before any byte of the answer reached the client.
    attempts: int = 2
    backoff_base: float = 0.25  # seconds; doubles per retry, with full jitter
    backoff_max: float = 8.0
    # An upstream retry-after longer than this is passed to the client (whose SDK waits) instead.
    retry_after_max: float = 5.0


@define(frozen=True)
class TargetSpec:
    provider: str
    model: str | None = None  # upstream model; default: the requested name (or the route's wildcard capture)
    weight: float = 1.0


@define(frozen=True)
class ModelRoute:
    # Client-facing name; may contain '*' wildcards (e.g. 'gpt-*', 'openai/*').
    name: str
    # One target: provider (+ model). Several: `targets` (a group), balanced by `strategy`.
    provider: str | None = None
    # Upstream model name; '*' is replaced by what the wildcard matched. Default: the requested name
    # for exact routes, the wildcard capture for prefix routes like 'openai/*'.
    model: str | None = None
    # Wildcard routes: list the provider's own models matching the pattern in GET /v1/models.
    expand: bool = False
    targets: list[TargetSpec] = field(factory=list)
    strategy: str = "weighted"  # weighted | least_inflight | ordered
    # Other client-facing model names tried, in order, when every target of this one failed.
    fallbacks: list[str] = field(factory=list)
    # What moves a request on to the next target / fallback: error (5xx, 429, connect), timeout,
    # context_length (the prompt is too long for this model).
    fallback_on: list[str] = field(factory=lambda: ["error", "timeout", "context_length"])
    timeouts: Timeouts | None = None
    retry: RetryPolicy | None = None
    # Per-model limits (all callers together).
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    def target_specs(self) -> list[TargetSpec]:
        if self.targets:
            return list(self.targets)
        return [TargetSpec(provider=self.provider or "", model=self.model)]


@define(frozen=True)
class BudgetSpec:
    """A USD spend limit over a window: ``daily`` and ``monthly`` reset at the start of each UTC day or
    month, ``total`` never resets by itself."""

    usd: float
    window: str = "monthly"  # daily | monthly | total


@define(frozen=True)
class ClientKey:
    """A gateway API key. Give the key itself (usually `${ENV}`) or its SHA-256 hex digest; only the
    digest is kept in memory."""

    id: str  # safe to log
    key: str | None = field(default=None, repr=False)
    key_sha256: str | None = field(default=None, repr=False)
    models: list[str] | None = None  # allowed model name patterns; None: every model
    # Provider name patterns this key may reach raw through /{provider}/{path}. Unset: every provider,
    # unless `models` restricts the key (then none: passthrough would bypass that restriction).
    providers: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    metadata: dict[str, str] = field(factory=dict)  # e.g. team, user
    budget: BudgetSpec | None = None


@define(frozen=True)
class TeamConfig:
    """A team (the ``team`` metadata of its keys): its USD budget, shared by all of its keys. A budget set
    through the admin API (``PUT /admin/teams/{team}/budget``) takes precedence."""

    budget: BudgetSpec | None = None


@define(frozen=True)
class AuthConfig:
    # Serving without client keys must be asked for; the default listen address stays loopback.
    open: bool = False
    keys: list[ClientKey] = field(factory=list)
    # Keys for /admin endpoints (same forms as client keys: key or key_sha256).
    admin_keys: list[ClientKey] = field(factory=list)
    teams: dict[str, TeamConfig] = field(factory=dict)


@define(frozen=True)
class GlobalLimits:
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None


@define(frozen=True)
class LimitsConfig:
    backend: str = "memory"  # memory | redis
    redis_url: str | None = field(default=None, repr=False)
    # When the limits backend (Redis) is unreachable: closed refuses requests with a 503, open serves
    # them without limits (counted in trigate_limits_unenforced_requests).
    on_backend_error: str = "closed"  # closed | open
    # Output tokens reserved before a call that gives no max_tokens (settled from real usage after).
    default_output_reserve: int = 1024
    global_limits: GlobalLimits = field(factory=GlobalLimits)


@define(frozen=True)
class HealthConfig:
    # A target failing this many times in a row is ejected from balancing for `eject_seconds`
    # (doubling on repeated ejection, up to `eject_max_seconds`), then tried again.
    eject_after: int = 3
    eject_seconds: float = 30.0
    eject_max_seconds: float = 300.0


@define(frozen=True)
class StoreConfig:
    """Stored Responses (previous_response_id, GET/DELETE /v1/responses/{id})."""

    # database: the shared database.url (replicas on one PostgreSQL continue each other's chains);
    # redis: one key per response, expiring with the TTL; memory: this process only.
    backend: str = "database"  # database | redis | memory
    redis_url: str | None = field(default=None, repr=False)  # default: limits.redis_url
    ttl_seconds: float = 30 * 86400.0  # a stored response is forgotten this long after it was created
    # Older configs: an SQLite file of the store's own instead of database.url (':memory:': in memory).
    responses_path: str | None = None


@define(frozen=True)
class TracingConfig:
    """OpenTelemetry traces (needs the ``otel`` extra)."""

    enabled: bool = False
    # OTLP/HTTP collector, e.g. http://otel-collector:4318 (``/v1/traces`` is added to a bare base URL).
    # Unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, else spans are not exported.
    otlp_endpoint: str | None = None
    service_name: str = "trigate"
    # Share of new traces kept; a caller's sampled/unsampled traceparent decision is followed.
    sample_ratio: float = 1.0
    headers: dict[str, str] = field(factory=dict, repr=False)  # sent to the collector (e.g. auth)


@define(frozen=True)
class ObservabilityConfig:
    metrics: bool = True  # serve GET /metrics (Prometheus)
    metrics_require_admin: bool = False  # /metrics only with an admin key (auth.admin_keys)
    # Request/response bodies in the access log, redacted (keys, secrets, base64 blobs cut); off by default.
    log_bodies: bool = False
    log_body_max_bytes: int = 16384
    tracing: TracingConfig = field(factory=TracingConfig)
    # Model name -> price, over the shipped table (trigate/data/prices.toml); same name matching.
    prices: dict[str, Price] = field(factory=dict)


@define(frozen=True)
class DatabaseConfig:
    """Durable state: runtime keys, budgets, usage. An SQLite file (embedded, the default), or a
    ``postgresql://`` URL when several replicas share it; ':memory:' keeps it for the process only."""

    url: str = field(default="trigate.sqlite3", repr=False)  # may carry a password


@define(frozen=True)
class Config:
    listen: Listen = field(factory=Listen)
    server: ServerSettings = field(factory=ServerSettings)
    auth: AuthConfig = field(factory=AuthConfig)
    providers: dict[str, ProviderConfig] = field(factory=dict)
    models: list[ModelRoute] = field(factory=list)
    limits: LimitsConfig = field(factory=LimitsConfig)
    timeouts: Timeouts = field(factory=Timeouts)
    retry: RetryPolicy = field(factory=RetryPolicy)
    health: HealthConfig = field(factory=HealthConfig)
    store: StoreConfig = field(factory=StoreConfig)
    realtime: RealtimeSettings = field(factory=RealtimeSettings)
    observability: ObservabilityConfig = field(factory=ObservabilityConfig)
    database: DatabaseConfig = field(factory=DatabaseConfig)


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
    if any(t < 0 for t in cfg.server.gc_thresholds):
        problems.append(f"server.gc_thresholds: {list(cfg.server.gc_thresholds)} must not be negative")
    if cfg.server.upstream_keepalive < 0:
        problems.append(f"server.upstream_keepalive: {cfg.server.upstream_keepalive} is negative")
    from trigate.upstream.proxy import ProxyRules

    try:  # the environment's proxy variables too: serve would fail on them at start
        ProxyRules.from_settings(cfg.server.upstream_proxy, cfg.server.upstream_no_proxy)
    except ValueError as exc:
        problems.append(str(exc))
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
        if p.kind == "bedrock" and not p.region and not p.base_url:
            problems.append(f"{where}.region: required for bedrock")
        if p.auth is not None and p.auth not in ("bearer", "api-key", "none") and not p.auth.startswith("header:"):
            problems.append(f"{where}.auth: must be bearer, api-key, none or header:<name>")
    names = {m.name for m in cfg.models}
    for i, m in enumerate(cfg.models):
        where = f"models[{i}]"
        if not m.name:
            problems.append(f"{where}.name: must not be empty")
        if m.targets and m.provider:
            problems.append(f"{where}: give either provider or targets, not both")
        elif not m.targets and not m.provider:
            problems.append(f"{where}.provider: required (or targets)")
        elif m.provider and m.provider not in cfg.providers:
            problems.append(f"{where}.provider: unknown provider {m.provider!r}")
        for j, t in enumerate(m.targets):
            if t.provider not in cfg.providers:
                problems.append(f"{where}.targets[{j}].provider: unknown provider {t.provider!r}")
            if t.weight <= 0:
                problems.append(f"{where}.targets[{j}].weight: must be positive")
        if m.strategy not in ("weighted", "least_inflight", "ordered"):
            problems.append(f"{where}.strategy: must be weighted, least_inflight or ordered")
        for j, fb in enumerate(m.fallbacks):
            if fb not in names and not any("*" in n and fnmatchcase(fb, n) for n in names):
                problems.append(f"{where}.fallbacks[{j}]: unknown model {fb!r}")
        bad = set(m.fallback_on) - {"error", "timeout", "context_length"}
        if bad:
            problems.append(f"{where}.fallback_on: unknown condition(s) {', '.join(sorted(bad))}")
    # With admin keys, client keys can be created at runtime (POST /admin/keys), so none in the file is fine.
    if not cfg.auth.open and not cfg.auth.keys and not cfg.auth.admin_keys:
        problems.append("auth: no client keys configured; add auth.keys (or auth.admin_keys, to create keys at "
                        "runtime), or set auth.open: true to serve without keys (keep the listen address on "
                        "loopback then)")
    seen_ids: set[str] = set()
    labelled = [(f"auth.keys[{i}]", k) for i, k in enumerate(cfg.auth.keys)]
    labelled += [(f"auth.admin_keys[{i}]", k) for i, k in enumerate(cfg.auth.admin_keys)]
    for where, k in labelled:
        if k.id in seen_ids:
            problems.append(f"{where}.id: duplicate key id {k.id!r}")
        seen_ids.add(k.id)
        problems += check_client_key(where, k, cfg.providers)
    for team, t in cfg.auth.teams.items():
        if t.budget is not None:
            problems += check_budget(f"auth.teams.{team}.budget", t.budget)
    problems += _check_observability(cfg.observability)
    problems += _check_numbers(cfg)
    if cfg.limits.backend not in ("memory", "redis"):
        problems.append("limits.backend: must be memory or redis")
    if cfg.limits.on_backend_error not in ("closed", "open"):
        problems.append("limits.on_backend_error: must be closed or open")
    if cfg.limits.backend == "redis" and not cfg.limits.redis_url:
        problems.append("limits.redis_url: required for the redis backend (redis://host:port/db)")
    problems += _check_store(cfg)
    return problems


def _check_store(cfg: Config) -> list[str]:
    store = cfg.store
    problems = _positive("store.ttl_seconds", store.ttl_seconds)
    if store.backend not in ("database", "redis", "memory"):
        problems.append("store.backend: must be database, redis or memory")
    if store.backend == "redis" and not (store.redis_url or cfg.limits.redis_url):
        problems.append("store.redis_url: required for the redis backend (redis://host:port/db), unless "
                        "limits.redis_url is set")
    if store.responses_path and store.backend == "redis":
        problems.append("store.responses_path: an SQLite file of its own, not used with store.backend: redis")
    return problems


def _positive_int(where: str, value: int | None) -> list[str]:
    return [] if value is None or value > 0 else [f"{where}: must be a positive integer, got {value}"]


def _positive(where: str, value: float | None) -> list[str]:
    # written so that NaN (YAML .nan), for which every comparison is false, is refused too
    return [] if value is None or value > 0 else [f"{where}: must be positive, got {value}"]


def _not_negative(where: str, value: float) -> list[str]:
    return [] if value >= 0 else [f"{where}: must not be negative, got {value}"]


def check_budget(where: str, b: BudgetSpec) -> list[str]:
    """A USD budget: a positive amount (NaN and infinity refused) over a known window."""
    problems = [] if 0 < b.usd < float("inf") else [f"{where}.usd: must be a positive number of USD, got {b.usd}"]
    if b.window not in ("daily", "monthly", "total"):
        problems.append(f"{where}.window: must be daily, monthly or total, got {b.window!r}")
    return problems


def check_client_key(where: str, k: ClientKey, providers: Iterable[str]) -> list[str]:
    """What is wrong with one client key (config ``auth.keys`` and runtime keys of the admin API alike)."""
    providers = set(providers)
    problems = _check_rates(where, k)
    for j, pattern in enumerate(k.providers or ()):
        # a misspelt name would silently refuse passthrough; patterns may match no provider yet
        if not any(c in pattern for c in "*?[") and pattern not in providers:
            problems.append(f"{where}.providers[{j}]: unknown provider {pattern!r}")
    if k.budget is not None:
        problems += check_budget(f"{where}.budget", k.budget)
    if bool(k.key) == bool(k.key_sha256):
        problems.append(f"auth key {k.id!r}: give exactly one of key or key_sha256")
    elif k.key_sha256 and not re.fullmatch(r"[0-9a-f]{64}", k.key_sha256):
        problems.append(f"auth key {k.id!r}.key_sha256: must be 64 lowercase hex digits")
    return problems


def structure_client_key(data: dict[str, Any]) -> ClientKey:
    """A ClientKey from plain data, with the config's type rules; ConfigError names each bad field."""
    try:
        return _converter.structure(data, ClientKey)
    except Exception as exc:  # cattrs raises ClassValidationError / ExceptionGroups
        raise ConfigError(_cattrs_problems(exc)) from None


def _check_rates(where: str, limits: ClientKey | ModelRoute | GlobalLimits) -> list[str]:
    # Zero is refused too: a limit of 0 would reject every request; remove the key or route instead.
    problems = []
    for name in ("rpm", "tpm", "max_concurrent"):
        problems += _positive_int(f"{where}.{name}", getattr(limits, name))
    return problems


def _check_timeouts(where: str, t: Timeouts | None) -> list[str]:
    if t is None:
        return []
    problems = []
    for name in ("connect", "first_token", "idle", "total"):
        problems += _positive(f"{where}.{name}", getattr(t, name))
    return problems


def _check_retry(where: str, r: RetryPolicy | None) -> list[str]:
    if r is None:
        return []
    problems = _positive_int(f"{where}.attempts", r.attempts)
    for name in ("backoff_base", "backoff_max", "retry_after_max"):
        problems += _not_negative(f"{where}.{name}", getattr(r, name))
    return problems


def _check_numbers(cfg: Config) -> list[str]:
    """Counts, limits and durations that would make no sense (or hang or refuse everything) when negative
    or zero; auth keys are checked with the rest of auth."""
    s = cfg.server
    problems = _not_negative("server.graceful_timeout", s.graceful_timeout)
    problems += _positive_int("server.max_body_bytes", s.max_body_bytes)
    for name in ("connect_timeout", "read_timeout", "reload_poll_seconds"):
        problems += _positive(f"server.{name}", getattr(s, name))
    problems += _not_negative("server.models_cache_seconds", s.models_cache_seconds)
    for name, p in cfg.providers.items():
        problems += _not_negative(f"providers.{name}.latency_ms", p.latency_ms)
        problems += _not_negative(f"providers.{name}.token_delay_ms", p.token_delay_ms)
    for i, m in enumerate(cfg.models):
        problems += _check_rates(f"models[{i}]", m)
        problems += _check_timeouts(f"models[{i}].timeouts", m.timeouts)
        problems += _check_retry(f"models[{i}].retry", m.retry)
    problems += _check_rates("limits.global_limits", cfg.limits.global_limits)
    problems += _not_negative("limits.default_output_reserve", cfg.limits.default_output_reserve)
    problems += _check_timeouts("timeouts", cfg.timeouts)
    problems += _check_retry("retry", cfg.retry)
    problems += _positive_int("health.eject_after", cfg.health.eject_after)
    problems += _positive("health.eject_seconds", cfg.health.eject_seconds)
    problems += _positive("health.eject_max_seconds", cfg.health.eject_max_seconds)
    return problems


def _check_observability(o: ObservabilityConfig) -> list[str]:
    problems = []
    t = o.tracing
    if not 0.0 <= t.sample_ratio <= 1.0:
        problems.append("observability.tracing.sample_ratio: must be between 0 and 1")
    if t.otlp_endpoint and not re.match(r"^https?://", t.otlp_endpoint):
        problems.append("observability.tracing.otlp_endpoint: must start with http:// or https:// (OTLP/HTTP)")
    if o.log_body_max_bytes <= 0:
        problems.append("observability.log_body_max_bytes: must be positive")
    for model, p in o.prices.items():
        for name in ("input", "output", "cached_input", "cache_write", "audio_input", "audio_output"):
            v = getattr(p, name)
            if v is not None and v < 0:
                problems.append(f"observability.prices.{model}.{name}: must not be negative")
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


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line (its own spans several, with the file name and a caret)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark, what = exc.problem_mark, ": ".join(p for p in (exc.context, exc.problem) if p)
        return f"<file>: invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return "<file>: invalid YAML: " + " ".join(str(exc).split())


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"<file>: cannot read {path}: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"<file>: {path} is not UTF-8 text (byte {exc.start})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc)]) from None
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
    # mock-* is expanded so that /v1/models lists the mock's own models on the embedded default.
    models = [ModelRoute(name="mock/*", provider="mock"), ModelRoute(name="mock-*", provider="mock", expand=True)]
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
    return Config(providers=providers, models=models, store=StoreConfig(responses_path=":memory:"),
                  database=DatabaseConfig(url=":memory:"),
                  auth=AuthConfig(open=True))
