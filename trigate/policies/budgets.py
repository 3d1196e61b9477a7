"""USD spend budgets per key and per team, over a daily, monthly or total window.

A budget's counter is its spend in the current window: settled cost plus the reservations of requests
still running. Before a call the request's cost is estimated (input from the request size, output from
its max tokens, at the model's price) and reserved in every budget that applies (the key's, its
team's), capped at what the tightest has left; a budget with nothing left refuses. After the call the
reservation is replaced by the real cost the telemetry computed. So concurrent requests cannot reserve
more than a budget holds (once it is all reserved, the next ones wait for their refusal until calls
settle), a call whose worst case exceeds what is left still runs (a budget smaller than one call's
max_tokens would otherwise be unusable), and a request refused by its budget never reaches the upstream.

Counters live in process memory, or in Redis (the limits backend, with its connection, timeouts and
outage handling) so that replicas share them. A counter that does not exist yet (process start, Redis
flushed, a new window) starts from the durable usage table: the sum of ``cost_usd`` since the window
began or the budget was last reset, so spend survives restarts. Windows follow UTC: ``daily`` resets at
midnight, ``monthly`` on the 1st, ``total`` never (a manual reset starts a new window at any time; the
next calendar boundary still resets daily and monthly windows).

The pure parts (windows, the estimate, the fit check, headers, the refusal) come first; the I/O shell
(counters, the database tables, ``Budgets``) after.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import trio
from attrs import define

from trigate.config import BudgetSpec
from trigate.errors import GatewayError
from trigate.observability.cost import PER_TOKEN, Price
from trigate.policies.auth import Principal
from trigate.routing import Target
from trigate.store.sql import Cursor, Database, DatabaseError
from trigate.store.usage import UsageStore

log = logging.getLogger("trigate.budgets")

WINDOWS = ("daily", "monthly", "total")
# Relative slack in the fit check: a budget set to exactly N requests' cost must fit N of them despite
# floating-point sums.
_EPSILON = 1e-9


# -- windows --------------------------------------------------------------------------------------


def window_start(window: str, now: float) -> float:
    """Unix time the calendar window containing ``now`` began (UTC); 0 for ``total``."""
    t = datetime.fromtimestamp(now, UTC)
    if window == "daily":
        return t.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    if window == "monthly":
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    return 0.0


def window_end(window: str, now: float) -> float | None:
    """Unix time the window containing ``now`` resets by itself; None for ``total``."""
    start = datetime.fromtimestamp(window_start(window, now), UTC)
    if window == "daily":
        return start.timestamp() + 86400.0
    if window == "monthly":
        nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return nxt.timestamp()
    return None


def window_id(window: str, now: float) -> str:
    t = datetime.fromtimestamp(now, UTC)
    if window == "daily":
        return t.strftime("d%Y-%m-%d")
    if window == "monthly":
        return t.strftime("m%Y-%m")
    return "total"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- estimate and fit -----------------------------------------------------------------------------


def estimate_cost(price: Price | None, input_tokens: int, output_tokens: int) -> float:
    """USD reserved before a call. An unknown price reserves nothing: the call costs nothing known
    (cost.py leaves unpriced models out of the cost too), but an exhausted budget still refuses it."""
    if price is None:
        return 0.0
    return (max(input_tokens, 0) * price.input + max(output_tokens, 0) * price.output) * PER_TOKEN


def reservable(spent: float, amount: float, limit: float) -> float | None:
    """What may be reserved of ``amount``: all of it, or what is left when less is; None once nothing is
    left (even for a zero estimate). Float sums within a rounding error of the limit count as at it."""
    left = limit - spent
    if left <= limit * _EPSILON:
        return None
    return min(amount, left)


def settled_cost(reserved: float, cost_usd: float | None, usage_known: bool, failed: bool, cancelled: bool) -> float:
    """What a finished request really cost: the telemetry's cost; nothing for a known usage with no price
    or an error answered before any usage; the reservation itself when the usage is unknown (a stream cut
    short, an answer without usage): never under-count."""
    if cost_usd is not None:
        return cost_usd
    if usage_known:
        return 0.0
    if failed and not cancelled:
        return 0.0
    return reserved


@define(frozen=True)
class Scope:
    kind: str  # key | team
    name: str
    spec: BudgetSpec

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    def counter(self, now: float) -> str:
        return f"{self.id}:{window_id(self.spec.window, now)}"


@define
class BudgetStatus:
    """One budget after the request's reservation (or its settlement)."""

    scope: Scope
    spent: float  # settled + reserved, this window
    reset_at: float | None

    @property
    def limit(self) -> float:
        return self.scope.spec.usd

    @property
    def remaining(self) -> float:
        return max(self.limit - self.spent, 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"limit_usd": self.limit, "spend_usd": _round(max(self.spent, 0.0)),
                "remaining_usd": _round(self.remaining), "window": self.scope.spec.window,
                "resets_at": iso(self.reset_at) if self.reset_at is not None else None}


def _round(v: float) -> float:
    return round(v, 10)


def _usd(v: float) -> str:
    return f"{v:.10f}".rstrip("0").rstrip(".") or "0"


def tightest(statuses: Sequence[BudgetStatus]) -> BudgetStatus | None:
    return min(statuses, key=lambda s: s.remaining, default=None)


def budget_headers(status: BudgetStatus | None) -> dict[str, str]:
    if status is None:
        return {}
    out = {"x-trigate-budget-limit-usd": _usd(status.limit),
           "x-trigate-budget-remaining-usd": _usd(status.remaining)}
    if status.reset_at is not None:
        out["x-trigate-budget-reset"] = iso(status.reset_at)
    return out


class BudgetExceeded(GatewayError):
    """A budget cannot take this request; ``budget`` is the one that said no (for the headers)."""

    budget: BudgetStatus | None = None


def budget_exceeded(client_format: str, status: BudgetStatus) -> BudgetExceeded:
    """429 with code ``budget_exceeded``. OpenAI-format callers get OpenAI's own exhausted-quota type
    (``insufficient_quota``, which OpenAI answers with 429). Anthropic documents one type per status and
    429 is ``rate_limit_error`` (its ``billing_error`` is a 402 about payment details), so Anthropic
    callers get that. Cohere's shape is the status and a message. The answer carries
    ``x-should-retry: false``: retrying cannot help until the window resets."""
    scope = status.scope
    when = f"; it resets at {iso(status.reset_at)}" if status.reset_at is not None else ""
    message = (f"Budget exceeded for {scope.kind} '{scope.name}': {_usd(max(status.spent, 0.0))} of "
               f"{_usd(status.limit)} USD spent this {scope.spec.window} window{when}")
    kind = "rate_limit" if client_format == "anthropic" else "billing"
    err = BudgetExceeded(kind, message, status=429, code="budget_exceeded")
    err.budget = status
    return err


def refusal_headers(err: GatewayError) -> dict[str, str]:
    if isinstance(err, BudgetExceeded):
        return {**budget_headers(err.budget), "x-should-retry": "false"}
    return {}


# -- counters -------------------------------------------------------------------------------------


MISSING, REFUSED, RESERVED = -1, 0, 1


class Counters(Protocol):
    async def reserve(self, counters: list[str], limits: list[float], amount: float) -> tuple[int, int, list[float]]:
        """Add ``amount``, capped at what the tightest counter has left (reservable()), to every counter.
        (RESERVED, 0, [amount reserved, *values after]), (REFUSED, i, [value of i]) when counter i has
        nothing left, or (MISSING, i, []) when counter i does not exist yet."""
        ...

    async def create(self, counter: str, value: float, ttl: float | None) -> None:
        """Start a counter at ``value`` unless it exists (another task or replica got there first)."""
        ...

    async def add(self, counters: list[str], delta: float) -> list[float | None]:
        """Add to the counters that still exist; their values after."""
        ...

    async def get(self, counter: str) -> float | None: ...

    async def put(self, counter: str, value: float, ttl: float | None) -> None: ...


class MemoryCounters:
    """One process's counters. Trio runs one task at a time, so check-then-add needs no lock."""

    def __init__(self) -> None:
        self._values: dict[str, float] = {}
        self._expires: dict[str, float] = {}

    def _live(self, counter: str) -> float | None:
        exp = self._expires.get(counter)
        if exp is not None and time.time() >= exp:
            self._values.pop(counter, None)
            self._expires.pop(counter, None)
        return self._values.get(counter)

    async def reserve(self, counters: list[str], limits: list[float], amount: float) -> tuple[int, int, list[float]]:
        values = []
        for i, (c, limit) in enumerate(zip(counters, limits, strict=True)):
            v = self._live(c)
            if v is None:
                return MISSING, i, []
            capped = reservable(v, amount, limit)
            if capped is None:
                return REFUSED, i, [v]
            amount = capped
            values.append(v)
        for c in counters:
            self._values[c] += amount
        return RESERVED, 0, [amount, *(v + amount for v in values)]

    async def create(self, counter: str, value: float, ttl: float | None) -> None:
        if self._live(counter) is None:
            self._values[counter] = value
            if ttl is not None:
                self._expires[counter] = time.time() + ttl

    async def add(self, counters: list[str], delta: float) -> list[float | None]:
        out: list[float | None] = []
        for c in counters:
            v = self._live(c)
            if v is not None:
                v = self._values[c] = v + delta
            out.append(v)
        return out

    async def get(self, counter: str) -> float | None:
        return self._live(counter)

    async def put(self, counter: str, value: float, ttl: float | None) -> None:
        self._values[counter] = value
        self._expires.pop(counter, None)
        if ttl is not None:
            self._expires[counter] = time.time() + ttl


# KEYS: one counter per budget.  ARGV: amount, limit1, limit2, ...   The rule is reservable() above.
_RESERVE_SCRIPT = """
local amount = tonumber(ARGV[1])
local spent = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v then return {-1, i} end
  v = tonumber(v)
  local limit = tonumber(ARGV[1 + i])
  local left = limit - v
  if left <= limit * 1e-9 then
    return {0, i, tostring(v)}
  end
  if left < amount then amount = left end
end
for i = 1, #KEYS do
  spent[i] = redis.call('INCRBYFLOAT', KEYS[i], tostring(amount))
end
return {1, 0, tostring(amount), unpack(spent)}
"""

# KEYS: counters.  ARGV: delta.  A counter that is gone (its window expired) is left alone: '' for it.
_ADD_SCRIPT = """
local out = {}
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[i] = redis.call('INCRBYFLOAT', KEYS[i], ARGV[1])
  else
    out[i] = ''
  end
end
return out
"""


class RedisCounters:
    """Counters in the limits backend's Redis, shared by every replica; commands go through the
    limiter's ``ask`` (bounded in time, a 503 while Redis is down, one warning per outage)."""

    def __init__(self, limiter: Any, prefix: str = "trigate:budget:") -> None:
        self._limiter = limiter
        self._prefix = prefix
        self._reserve = limiter.register_script(_RESERVE_SCRIPT)
        self._add = limiter.register_script(_ADD_SCRIPT)

    def _key(self, counter: str) -> str:
        return self._prefix + counter

    async def reserve(self, counters: list[str], limits: list[float], amount: float) -> tuple[int, int, list[float]]:
        keys = [self._key(c) for c in counters]
        result = await self._limiter.ask(self._reserve(keys=keys, args=[amount, *limits]))
        outcome, index = int(result[0]), int(result[1])
        if outcome == MISSING:
            return MISSING, index - 1, []
        if outcome == REFUSED:
            return REFUSED, index - 1, [float(result[2])]
        return RESERVED, 0, [float(v) for v in result[2:]]

    async def create(self, counter: str, value: float, ttl: float | None) -> None:
        from coredis.tokens import PureToken

        redis = self._limiter.client
        px = None if ttl is None else max(int(ttl * 1000), 1)
        await self._limiter.ask(redis.set(self._key(counter), repr(value), px=px, condition=PureToken.NX))

    async def add(self, counters: list[str], delta: float) -> list[float | None]:
        result = await self._limiter.ask(self._add(keys=[self._key(c) for c in counters], args=[delta]))
        return [float(v) if v not in ("", None) else None for v in result]

    async def get(self, counter: str) -> float | None:
        v = await self._limiter.ask(self._limiter.client.get(self._key(counter)))
        return None if v is None else float(v)

    async def put(self, counter: str, value: float, ttl: float | None) -> None:
        px = None if ttl is None else max(int(ttl * 1000), 1)
        await self._limiter.ask(self._limiter.client.set(self._key(counter), repr(value), px=px))


def counter_ttl(window: str, now: float) -> float | None:
    """Counters outlive their window by a day, for requests that settle after the boundary."""
    end = window_end(window, now)
    return None if end is None else end - now + 86400.0


# -- durable state --------------------------------------------------------------------------------


class BudgetStore:
    """The budgets' own tables (runtime team budgets, manual resets), and the settled spend from the
    durable usage rows (trigate/store/usage.py)."""

    def __init__(self, db: Database, usage: UsageStore | None = None) -> None:
        self.db = db
        self.usage = usage or UsageStore(db)
        self._ready = False

    async def ensure_schema(self) -> None:
        if self._ready:
            return
        real = self.db.real

        def body(cur: Cursor) -> None:
            # budget_window, not window: WINDOW is a reserved word in PostgreSQL
            cur.execute("create table if not exists team_budgets (team text primary key, usd "
                        f"{real}, budget_window text, updated_at {real} not null)")
            cur.execute(f"create table if not exists budget_resets (scope text primary key, reset_at {real} not null)")

        try:
            await self.db.run(body)
        except DatabaseError:
            # replicas creating the same table at once: PostgreSQL fails all but one; it is there now
            await self.db.run(body)
        self._ready = True

    async def spend_since(self, scope: Scope, since: float) -> float:
        return await self.usage.spend_since(scope.kind, scope.name, since)

    async def reset_at(self, scope_id: str) -> float:
        await self.ensure_schema()
        rows = await self.db.fetchall("select reset_at from budget_resets where scope = ?", (scope_id,))
        return float(rows[0][0]) if rows else 0.0

    async def set_reset(self, scope_id: str, at: float) -> None:
        await self.ensure_schema()

        def body(cur: Cursor) -> None:
            cur.execute(self.db.sql("delete from budget_resets where scope = ?"), (scope_id,))
            cur.execute(self.db.sql("insert into budget_resets (scope, reset_at) values (?, ?)"), (scope_id, at))

        await self.db.run(body)

    async def team_budgets(self) -> dict[str, BudgetSpec | None]:
        """Budgets set through the admin API; None: cleared (overrides the config's)."""
        await self.ensure_schema()
        rows = await self.db.fetchall("select team, usd, budget_window from team_budgets")
        return {team: (BudgetSpec(float(usd), window) if usd is not None else None) for team, usd, window in rows}

    async def put_team(self, team: str, spec: BudgetSpec | None) -> None:
        await self.ensure_schema()
        usd, window = (spec.usd, spec.window) if spec is not None else (None, None)

        def body(cur: Cursor) -> None:
            cur.execute(self.db.sql("delete from team_budgets where team = ?"), (team,))
            cur.execute(self.db.sql("insert into team_budgets (team, usd, budget_window, updated_at) "
                                    "values (?, ?, ?, ?)"), (team, usd, window, time.time()))

        await self.db.run(body)


# -- the shell ------------------------------------------------------------------------------------


def budgets_unavailable(what: str) -> GatewayError:
    from trigate.policies.limits import BackendUnavailable

    return BackendUnavailable("server_error", f"The gateway cannot check spend budgets right now ({what}); "
                              "retry shortly", status=503, code="budget_backend_unavailable", retry_after=1.0)


@define
class Hold:
    """One request's reservation in its budgets."""

    counters: list[str]
    amount: float
    statuses: list[BudgetStatus]
    settled: bool = False

    def tightest(self) -> BudgetStatus | None:
        return tightest(self.statuses)


@define
class _TeamCache:
    rows: dict[str, BudgetSpec | None] | None = None
    loaded: float = -math.inf
    loading: trio.Event | None = None


class Budgets:
    """The gateway's budgets: which apply to a caller, reserve, settle, report, reset."""

    # Replicas see a team budget changed through another replica's admin API within this many seconds.
    TEAM_REFRESH_SECONDS = 2.0

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.store = BudgetStore(gw.database)
        self._memory = MemoryCounters()
        self._redis: RedisCounters | None = None
        self._teams = _TeamCache()

    def counters(self) -> Counters:
        limiter = self.gw.limiter
        if self.gw.config.limits.backend == "redis" and hasattr(limiter, "register_script"):
            if self._redis is None or self._redis._limiter is not limiter:
                self._redis = RedisCounters(limiter)
            return self._redis
        return self._memory

    async def team_budget(self, team: str) -> BudgetSpec | None:
        rows = await self._team_rows()
        if team in rows:
            return rows[team]
        configured = self.gw.config.auth.teams.get(team)
        return configured.budget if configured is not None else None

    async def _team_rows(self) -> dict[str, BudgetSpec | None]:
        c = self._teams
        if c.rows is not None and trio.current_time() - c.loaded < self.TEAM_REFRESH_SECONDS:
            return c.rows
        if c.loading is not None:  # one task asks the database; the others use what is known
            if c.rows is None:
                await c.loading.wait()
            return c.rows or {}
        c.loading = trio.Event()
        try:
            c.rows = await self.store.team_budgets()
            c.loaded = trio.current_time()
        except DatabaseError:
            if c.rows is None:
                raise
            log.warning("team budgets could not be refreshed from the database; using the last known ones")
            c.loaded = trio.current_time()
        finally:
            c.loading.set()
            c.loading = None
        return c.rows

    async def scopes(self, key_id: str, key_budget: BudgetSpec | None, team: str | None) -> list[Scope]:
        out = []
        if key_budget is not None:
            out.append(Scope("key", key_id, key_budget))
        if team:
            spec = await self.team_budget(team)
            if spec is not None:
                out.append(Scope("team", team, spec))
        return out

    async def _start(self, counters: Counters, scope: Scope, now: float) -> None:
        """A counter that does not exist starts from the durable spend since its window began."""
        since = max(window_start(scope.spec.window, now), await self.store.reset_at(scope.id))
        writer = self.gw.usage
        if writer is not None:
            # this process's last rows are written within a flush interval: count them too
            self.store.usage = writer.store
            await writer.flush()
        base = await self.store.spend_since(scope, since)
        await counters.create(scope.counter(now), base, counter_ttl(scope.spec.window, now))

    async def reserve(self, scopes: list[Scope], amount: float, client_format: str) -> Hold:
        """Reserve ``amount`` in every budget, or raise BudgetExceeded (nothing reserved then)."""
        now = time.time()
        counters = self.counters()
        names = [s.counter(now) for s in scopes]
        limits = [s.spec.usd for s in scopes]
        for _ in range(len(scopes) + 1):
            outcome, i, values = await counters.reserve(names, limits, amount)
            if outcome != MISSING:
                break
            await self._start(counters, scopes[i], now)
        else:
            raise budgets_unavailable("a budget counter could not be created")
        if outcome == REFUSED:
            raise budget_exceeded(client_format, BudgetStatus(scopes[i], values[0], window_end(scopes[i].spec.window,
                                                                                                  now)))
        reserved, values = values[0], values[1:]
        statuses = [BudgetStatus(s, v, window_end(s.spec.window, now)) for s, v in zip(scopes, values, strict=True)]
        return Hold(names, reserved, statuses)

    def settle_now(self, hold: Hold, cost: float) -> float:
        """The request's own view at once (its answer's headers): the change the counters still need."""
        if hold.settled:
            return 0.0
        hold.settled = True
        delta = cost - hold.amount
        for status in hold.statuses:
            status.spent += delta
        return delta

    async def settle(self, hold: Hold, cost: float) -> None:
        delta = self.settle_now(hold, cost)
        if delta:
            values = await self.counters().add(hold.counters, delta)
            for status, v in zip(hold.statuses, values, strict=True):
                if v is not None:
                    status.spent = v

    async def status(self, scope: Scope) -> BudgetStatus:
        now = time.time()
        counters = self.counters()
        v = await counters.get(scope.counter(now))
        if v is None:
            await self._start(counters, scope, now)
            v = await counters.get(scope.counter(now)) or 0.0
        return BudgetStatus(scope, v, window_end(scope.spec.window, now))

    async def reset(self, scope: Scope) -> BudgetStatus:
        """Start a new window now: spend from here on counts (the next calendar boundary resets again)."""
        now = time.time()
        await self.store.set_reset(scope.id, now)
        await self.counters().put(scope.counter(now), 0.0, counter_ttl(scope.spec.window, now))
        return BudgetStatus(scope, 0.0, window_end(scope.spec.window, now))

    async def set_team(self, team: str, spec: BudgetSpec | None) -> None:
        await self.store.put_team(team, spec)
        self._teams.loaded = -math.inf  # this replica sees it at once; others within TEAM_REFRESH_SECONDS


def budgets_of(gw: Any) -> Budgets:
    """The gateway's Budgets, made on first use (it lives as long as the gateway, across reloads)."""
    found = gw.extras.get("budgets")
    if found is None:
        found = gw.extras["budgets"] = Budgets(gw)
    return found


async def reserve_request(gw: Any, principal: Principal, targets: Sequence[Target], input_tokens: int,
                          output_tokens: int, client_format: str) -> Hold | None:
    """Before a model call: reserve its estimated cost in the caller's key and team budgets (None when no
    budget applies). Raises BudgetExceeded, or a 503 while the budget state cannot be read (served without
    budgets instead with ``limits.on_backend_error: open``)."""
    if principal.budget is None and not principal.team:
        return None
    from trigate.policies.limits import BackendUnavailable

    budgets = budgets_of(gw)
    try:
        scopes = await budgets.scopes(principal.key_id, principal.budget, principal.team)
        if not scopes:
            return None
        amount = max((estimate_cost(_price(gw, t), input_tokens, output_tokens) for t in targets), default=0.0)
        return await budgets.reserve(scopes, amount, client_format)
    except (BackendUnavailable, DatabaseError) as exc:
        if isinstance(exc, DatabaseError):
            log.warning("spend budgets: database error: %s", exc)
        if gw.config.limits.on_backend_error != "open":
            what = "its database failed" if isinstance(exc, DatabaseError) else "the limits backend is unreachable"
            raise budgets_unavailable(what) from None
        if gw.telemetry is not None:
            gw.telemetry.metrics.limits_unenforced.inc()
        return None


def _price(gw: Any, target: Target) -> Price | None:
    tel = gw.telemetry
    if tel is None:
        return None
    provider = gw.providers.get(target.provider)
    return tel.prices.lookup(target.model, getattr(provider, "kind", None))


async def settle_request(gw: Any, hold: Hold, ex: Any) -> None:
    """After the call (and after the telemetry priced it): the reservation becomes the real cost. With
    Redis the counters are told off the request's path (one round trip less before the answer; until then
    they hold the reservation, which errs on the safe side); in memory at once."""
    cost = settled_cost(hold.amount, ex.cost_usd, ex.usage is not None, ex.status >= 400 or ex.error is not None,
                        ex.cancelled)
    budgets = budgets_of(gw)
    counters = budgets.counters()
    if isinstance(counters, RedisCounters) and gw.services is not None:
        delta = budgets.settle_now(hold, cost)
        if delta:
            gw.services.start_soon(_add_quietly, counters, hold.counters, delta)
        return
    with trio.CancelScope(shield=True):
        try:
            await budgets.settle(hold, cost)
        except Exception as exc:  # the budget store failing must not fail the answer
            log.warning("spend budgets: settling failed: %s: %s", type(exc).__name__, exc)


async def _add_quietly(counters: Counters, names: list[str], delta: float) -> None:
    try:
        await counters.add(names, delta)
    except Exception as exc:  # Redis down: the counter keeps the reservation (never under-counts)
        log.warning("spend budgets: settling failed: %s: %s", type(exc).__name__, exc)
