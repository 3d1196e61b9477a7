"""Rate and concurrency limits: requests per minute, tokens per minute and in-flight requests, per key,
per model and global.

Rates use a sliding-window approximation over one-minute windows (the current window's count plus the
previous one's, weighted by how much of it still overlaps the last 60 s): smooth at window edges,
two counters per limit, exact enough for quotas. Tokens are reserved from an estimate before the call
and settled from real usage after, so concurrent requests cannot overshoot by more than their
estimates. Two backends with one interface: in-process memory, and Redis (atomic Lua scripts) so
several gateway replicas share limits.

When the Redis backend cannot be reached the limiter raises BackendUnavailable (a 503) instead of
guessing; ``limits.on_backend_error`` decides whether the request is then refused (closed, the default)
or served without limits (open). An outage is logged once when it begins and once when it ends, and
while it lasts only one request a second waits on Redis: the others are answered at once.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

import trio
from attrs import define, field

from trigate.errors import GatewayError
from trigate.store.redis import REDIS_TIMEOUT, open_redis, redis_errors

log = logging.getLogger("trigate.limits")

T = TypeVar("T")

WINDOW = 60.0


@define(frozen=True)
class Rule:
    scope: str  # key:<id> | model:<name> | global
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None


@define
class Quota:
    """What the client may still do in the binding scope (for rate-limit response headers)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float = 0.0  # seconds
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float = 0.0


@define
class Lease:
    rules: list[Rule]
    window: int
    reserved: int
    request_id: str = field(factory=lambda: uuid.uuid4().hex)
    held_concurrency: list[str] = field(factory=list)
    quota: Quota | None = None


class RateLimited(GatewayError):
    """A limit said no; ``quota`` describes the exhausted scope for the rate-limit headers."""

    quota: Quota | None = None


class BackendUnavailable(GatewayError):
    """The limits backend could not be asked, so no limit can be checked."""


def backend_unavailable() -> BackendUnavailable:
    # server_error with 503 rather than "overloaded": the gateway itself cannot serve, and Anthropic clients
    # would otherwise get 529 (their model-overloaded status).
    return BackendUnavailable("server_error", "The gateway cannot check rate limits right now (its limits backend "
                              "is unavailable); retry shortly", status=503, code="limits_backend_unavailable",
                              retry_after=1.0)


def rate_limited(rule: Rule, metric: str, limit: int, retry_after: float) -> RateLimited:
    what = {"requests": "requests per minute", "tokens": "tokens per minute",
            "concurrent": "concurrent requests"}[metric]
    if math.isinf(retry_after):
        err = RateLimited("rate_limit", f"Request too large: it needs more {what} than the limit ({limit}) "
                          f"on {rule.scope} allows", code="rate_limit_exceeded")
    else:
        err = RateLimited("rate_limit", f"Rate limit reached for {what} ({limit}) on {rule.scope}; "
                          f"retry in {max(retry_after, 0.001):.1f}s", code="rate_limit_exceeded")
        err.retry_after = max(retry_after, 0.0)
    reset = 0.0 if math.isinf(retry_after) else retry_after
    if metric == "requests":
        err.quota = Quota(limit_requests=limit, remaining_requests=0, reset_requests=reset)
    elif metric == "tokens":
        err.quota = Quota(limit_tokens=limit, remaining_tokens=0, reset_tokens=reset)
    return err


def sliding_usage(cur: float, prev: float, frac: float) -> float:
    return cur + prev * (1.0 - frac)


def wait_for(cur: float, prev: float, amount: float, limit: float, frac: float) -> float:
    """Seconds until ``amount`` more fits under ``limit`` (math.inf if it never can)."""
    if amount > limit:
        return math.inf
    if cur + amount <= limit:
        # the previous window's weight must fall enough
        if prev <= 0:
            return 0.0
        needed = 1.0 - (limit - cur - amount) / prev
        return max(needed - frac, 0.0) * WINDOW
    # only after this window ends, when `cur` has become the decaying previous window
    needed_next = max(0.0, 1.0 - (limit - amount) / cur) if cur > 0 else 0.0
    return ((1.0 - frac) + needed_next) * WINDOW


def _checks(rules: list[Rule], tokens: int) -> list[tuple[Rule, str, int, int]]:
    """(rule, metric, amount, limit) for every rate limit that applies."""
    out = []
    for r in rules:
        if r.rpm is not None:
            out.append((r, "requests", 1, r.rpm))
        if r.tpm is not None:
            out.append((r, "tokens", tokens, r.tpm))
    return out


def _quota(checks: list[tuple[Rule, str, int, int]], usages: list[float], frac: float) -> Quota | None:
    """The quota of the first (most specific: key) scope with limits, after this request."""
    if not checks:
        return None
    scope = checks[0][0].scope
    q = Quota()
    for (rule, metric, _, limit), used in zip(checks, usages, strict=True):
        if rule.scope != scope:
            continue
        remaining = max(int(limit - used), 0)
        reset = (1.0 - frac) * WINDOW
        if metric == "requests":
            q.limit_requests, q.remaining_requests, q.reset_requests = limit, remaining, reset
        else:
            q.limit_tokens, q.remaining_tokens, q.reset_tokens = limit, remaining, reset
    return q


class Limiter(Protocol):
    async def acquire(self, rules: list[Rule], tokens: int) -> Lease:
        """Reserve one request and ``tokens`` tokens in every rule, or raise RateLimited."""
        ...

    async def settle(self, lease: Lease, actual_tokens: int) -> None:
        """Replace the token reservation with what the request really used."""
        ...

    async def release(self, lease: Lease) -> None:
        """The request is over: free its concurrency slots."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the backend's connections for the limiter's lifetime (started in a long-lived nursery)."""
        ...

    async def unavailable(self) -> str | None:
        """Why the backend cannot be used right now, or None (cheap: checked at most once a second)."""
        ...

    async def aclose(self) -> None: ...


class MemoryLimiter:
    """Single-process limits. Trio runs one task at a time, so check-then-add needs no lock."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], float] = {}
        self._inflight: dict[str, int] = {}
        self._last_prune = 0

    def _prune(self, window: int) -> None:
        if window != self._last_prune:
            self._counts = {k: v for k, v in self._counts.items() if k[2] >= window - 1}
            self._last_prune = window

    async def acquire(self, rules: list[Rule], tokens: int) -> Lease:
        now = time.time()
        window, frac = int(now // WINDOW), (now % WINDOW) / WINDOW
        self._prune(window)
        for r in rules:
            if r.max_concurrent is not None and self._inflight.get(r.scope, 0) >= r.max_concurrent:
                raise rate_limited(r, "concurrent", r.max_concurrent, 1.0)
        checks = _checks(rules, tokens)
        usages = []
        for rule, metric, amount, limit in checks:
            cur = self._counts.get((rule.scope, metric, window), 0.0)
            prev = self._counts.get((rule.scope, metric, window - 1), 0.0)
            if sliding_usage(cur, prev, frac) + amount > limit:
                raise rate_limited(rule, metric, limit, wait_for(cur, prev, amount, limit, frac))
            usages.append(sliding_usage(cur, prev, frac) + amount)
        for rule, metric, amount, _ in checks:
            key = (rule.scope, metric, window)
            self._counts[key] = self._counts.get(key, 0.0) + amount
        held = [r.scope for r in rules if r.max_concurrent is not None]
        for scope in held:
            self._inflight[scope] = self._inflight.get(scope, 0) + 1
        return Lease(rules, window, tokens, held_concurrency=held, quota=_quota(checks, usages, frac))

    async def settle(self, lease: Lease, actual_tokens: int) -> None:
        delta = actual_tokens - lease.reserved
        if delta:
            for r in lease.rules:
                if r.tpm is not None:
                    key = (r.scope, "tokens", lease.window)
                    self._counts[key] = self._counts.get(key, 0.0) + delta
        lease.reserved = actual_tokens

    async def release(self, lease: Lease) -> None:
        for scope in lease.held_concurrency:
            self._inflight[scope] = max(self._inflight.get(scope, 1) - 1, 0)
        lease.held_concurrency = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def unavailable(self) -> str | None:
        return None

    async def aclose(self) -> None:
        pass


# KEYS: cur1, prev1, cur2, prev2, ...   ARGV: frac, ttl_ms, amount1, limit1, amount2, limit2, ...
# Checks every limit, and only if all pass adds the amounts. Returns {1, usage1, usage2, ...} or
# {0, index, cur, prev} for the first limit that would be exceeded.
_RATE_SCRIPT = """
local frac = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local n = #KEYS / 2
local usages = {}
for i = 1, n do
  local cur = tonumber(redis.call('GET', KEYS[2*i-1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2*i]) or '0')
  local amount = tonumber(ARGV[1 + 2*i])
  local limit = tonumber(ARGV[2 + 2*i])
  local used = cur + prev * (1 - frac)
  if used + amount > limit then
    return {0, i, tostring(cur), tostring(prev)}
  end
  usages[i] = tostring(used + amount)
end
for i = 1, n do
  redis.call('INCRBYFLOAT', KEYS[2*i-1], ARGV[1 + 2*i])
  redis.call('PEXPIRE', KEYS[2*i-1], ttl)
end
return {1, unpack(usages)}
"""

# KEYS: zset per scope.  ARGV: now, expires_at, request_id, limit1, limit2, ...
_CONCURRENCY_SCRIPT = """
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i]) then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[i], math.floor((tonumber(ARGV[2]) - tonumber(ARGV[1])) * 1000) + 1000)
end
return 0
"""


class RedisLimiter:
    """Limits shared by every gateway replica using the same Redis (coredis, trio via anyio)."""

    # A crashed replica's concurrency slots expire after this long.
    LEASE_SECONDS = 3600.0
    TIMEOUT = REDIS_TIMEOUT
    # While the backend is down, requests are refused (or let through) without asking it, except one
    # probe per this many seconds; /ready is answered from the last outcome when it is this recent.
    RECHECK_SECONDS = 1.0

    def __init__(self, url: str, prefix: str = "trigate:limits:") -> None:
        self._redis: Any = open_redis(url)
        self._backend_errors = redis_errors()
        self._prefix = prefix
        self._rate = self._redis.register_script(_RATE_SCRIPT)
        self._concurrency = self._redis.register_script(_CONCURRENCY_SCRIPT)
        self._ready = trio.Event()
        self._closed = trio.Event()
        self._down_since: float | None = None  # trio clock, while the backend is unreachable
        self._checked = -math.inf  # when the backend was last asked (or a probe of it began)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # coredis keeps its connection pool's background tasks in the task that enters the client,
        # so a long-lived task owns it rather than whichever request came first.
        async with self._redis:
            self._ready.set()
            task_status.started()
            await self._closed.wait()

    async def _client(self) -> Any:
        if not self._ready.is_set():
            raise GatewayError("server_error", "rate limiter backend is not running", status=500)
        return self._redis

    async def _ask(self, command: Awaitable[T]) -> T:
        """One Redis command, bounded in time; a failure marks the backend down and becomes a 503."""
        self._checked = trio.current_time()
        try:
            # coredis's own timeouts bound each connect and reply; this bounds the whole, retry included.
            with trio.fail_after(3 * self.TIMEOUT):
                result = await command
        except self._backend_errors as exc:
            self._checked = trio.current_time()
            if self._down_since is None:
                self._down_since = self._checked
                log.warning("limits backend (Redis) unreachable: %s: %s; until it is back, requests follow "
                            "limits.on_backend_error (closed: refused with 503, open: served without limits)",
                            type(exc).__name__, exc)
            raise backend_unavailable() from None
        self._checked = trio.current_time()
        if self._down_since is not None:
            log.warning("limits backend (Redis) reachable again after %.1fs; limits are enforced",
                        self._checked - self._down_since)
            self._down_since = None
        return result

    def register_script(self, source: str) -> Any:
        """A Lua script on this limiter's Redis, for other shared counters (spend budgets)."""
        return self._redis.register_script(source)

    @property
    def client(self) -> Any:
        return self._redis

    async def ask(self, command: Awaitable[T]) -> T:
        """One command of another shared counter, with the limiter's deadlines and outage handling: while
        Redis is down it raises BackendUnavailable at once, as the limiter's own checks do."""
        if not self._ready.is_set() or self._recently_down():
            close = getattr(command, "close", None)
            if close is not None:
                close()  # never awaited: say so to Python rather than warn
            await self._client()
            raise backend_unavailable()
        return await self._ask(command)

    def _recently_down(self) -> bool:
        return self._down_since is not None and trio.current_time() - self._checked < self.RECHECK_SECONDS

    async def unavailable(self) -> str | None:
        if not self._ready.is_set():
            return "limits backend not started"
        if trio.current_time() - self._checked >= self.RECHECK_SECONDS:
            try:
                await self._ask(self._redis.ping())
            except BackendUnavailable:
                pass
        return "limits backend (Redis) unreachable" if self._down_since is not None else None

    def _key(self, scope: str, metric: str, window: int) -> str:
        return f"{self._prefix}{scope}:{metric}:{window}"

    async def acquire(self, rules: list[Rule], tokens: int) -> Lease:
        await self._client()
        if self._recently_down():
            raise backend_unavailable()
        now = time.time()
        window, frac = int(now // WINDOW), (now % WINDOW) / WINDOW
        lease = Lease(rules, window, tokens)
        held = [r for r in rules if r.max_concurrent is not None]
        if held:
            keys = [f"{self._prefix}{r.scope}:inflight" for r in held]
            args = [now, now + self.LEASE_SECONDS, lease.request_id, *[r.max_concurrent for r in held]]
            denied = int(await self._ask(self._concurrency(keys=keys, args=args)))
            if denied:
                r = held[denied - 1]
                raise rate_limited(r, "concurrent", r.max_concurrent or 0, 1.0)
            lease.held_concurrency = [r.scope for r in held]
        checks = _checks(rules, tokens)
        if checks:
            keys, args = [], [frac, int(2 * WINDOW * 1000) + 5000]
            for rule, metric, amount, limit in checks:
                keys += [self._key(rule.scope, metric, window), self._key(rule.scope, metric, window - 1)]
                args += [amount, limit]
            try:
                result = await self._ask(self._rate(keys=keys, args=args))
            except BackendUnavailable:
                await self._release_quietly(lease)
                raise
            if int(result[0]) == 0:
                await self.release(lease)
                rule, metric, amount, limit = checks[int(result[1]) - 1]
                cur, prev = float(result[2]), float(result[3])
                raise rate_limited(rule, metric, limit, wait_for(cur, prev, amount, limit, frac))
            lease.quota = _quota(checks, [float(x) for x in result[1:]], frac)
        return lease

    async def settle(self, lease: Lease, actual_tokens: int) -> None:
        delta = actual_tokens - lease.reserved
        if delta:
            redis = await self._client()
            for r in lease.rules:
                if r.tpm is not None:
                    await self._ask(redis.incrbyfloat(self._key(r.scope, "tokens", lease.window), delta))
        lease.reserved = actual_tokens

    async def release(self, lease: Lease) -> None:
        if lease.held_concurrency:
            redis = await self._client()
            for scope in lease.held_concurrency:
                await self._ask(redis.zrem(f"{self._prefix}{scope}:inflight", [lease.request_id]))
            lease.held_concurrency = []

    async def _release_quietly(self, lease: Lease) -> None:
        try:
            await self.release(lease)
        except BackendUnavailable:
            pass  # the slots expire with LEASE_SECONDS

    async def aclose(self) -> None:
        self._closed.set()


def make_limiter(backend: str, redis_url: str | None) -> Limiter:
    if backend == "redis":
        assert redis_url
        return RedisLimiter(redis_url)
    return MemoryLimiter()
