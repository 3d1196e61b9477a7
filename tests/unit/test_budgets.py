"""The pure parts of spend budgets: windows, the estimate, the fit check, settling, headers, refusals, and
the in-memory counters' reserve/settle arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trigate.config import BudgetSpec, ConfigError, parse_config
from trigate.formats import get_codec
from trigate.formats.cohere_errors import render_cohere_error
from trigate.observability.cost import Price
from trigate.policies.budgets import (
    MISSING,
    REFUSED,
    RESERVED,
    BudgetStatus,
    MemoryCounters,
    Scope,
    budget_exceeded,
    budget_headers,
    counter_ttl,
    estimate_cost,
    refusal_headers,
    reservable,
    settled_cost,
    tightest,
    window_end,
    window_id,
    window_start,
)


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_daily_window_is_the_utc_day() -> None:
    now = ts(2026, 3, 14, 23, 59, 59)
    assert window_start("daily", now) == ts(2026, 3, 14)
    assert window_end("daily", now) == ts(2026, 3, 15)
    assert window_start("daily", ts(2026, 3, 15)) == ts(2026, 3, 15)  # midnight opens the next one
    assert window_id("daily", now) != window_id("daily", ts(2026, 3, 15))


def test_monthly_window_is_the_utc_month_including_december_and_february() -> None:
    assert window_start("monthly", ts(2026, 12, 31, 12)) == ts(2026, 12, 1)
    assert window_end("monthly", ts(2026, 12, 31, 12)) == ts(2027, 1, 1)
    assert window_end("monthly", ts(2028, 2, 29, 1)) == ts(2028, 3, 1)
    assert window_id("monthly", ts(2026, 12, 1)) == window_id("monthly", ts(2026, 12, 31, 23, 59))
    assert window_id("monthly", ts(2026, 12, 31, 23, 59)) != window_id("monthly", ts(2027, 1, 1))


def test_total_window_never_resets() -> None:
    assert window_start("total", ts(2030, 1, 1)) == 0.0
    assert window_end("total", ts(2030, 1, 1)) is None
    assert counter_ttl("total", ts(2030, 1, 1)) is None
    assert window_id("total", ts(2026, 1, 1)) == window_id("total", ts(2031, 7, 4))


def test_counters_outlive_their_window_for_late_settlements() -> None:
    now = ts(2026, 3, 14, 23)
    assert counter_ttl("daily", now) == pytest.approx(3600 + 86400)


def test_estimate_prices_input_and_output_tokens() -> None:
    price = Price(input=2.0, output=8.0)  # USD per million tokens
    assert estimate_cost(price, 1000, 500) == pytest.approx((1000 * 2 + 500 * 8) / 1e6)
    assert estimate_cost(price, -5, 0) == 0.0
    assert estimate_cost(None, 10**6, 10**6) == 0.0  # no price: nothing known to reserve


def test_reservations_are_capped_at_what_is_left_and_refused_once_nothing_is() -> None:
    assert reservable(0.0, 1.0, 1.0) == 1.0
    assert reservable(3 * 0.1, 0.1, 4 * 0.1) == pytest.approx(0.1)  # float sums: four calls' worth, four calls
    assert reservable(4 * 0.1, 0.1, 4 * 0.1) is None  # ... and not a fifth for a rounding error
    assert reservable(0.5, 0.6, 1.0) == pytest.approx(0.5)  # worst case above what is left: what is left
    assert reservable(0.0, 5.0, 0.05) == 0.05  # a budget below one call's worst case is still usable
    assert reservable(0.99, 0.0, 1.0) == 0.0  # unknown price: let through while something is left
    assert reservable(1.0, 0.0, 1.0) is None
    assert reservable(1.2, 0.0, 1.0) is None


def test_settled_cost_never_under_counts() -> None:
    assert settled_cost(0.5, 0.2, True, False, False) == 0.2  # the telemetry's real cost
    assert settled_cost(0.5, None, True, False, False) == 0.0  # usage known, model unpriced
    assert settled_cost(0.5, None, False, True, False) == 0.0  # failed before any answer
    assert settled_cost(0.5, None, False, False, True) == 0.5  # stream cut short: usage unknown
    assert settled_cost(0.5, None, False, True, True) == 0.5
    assert settled_cost(0.5, None, False, False, False) == 0.5  # an answer without usage


def _status(kind: str, usd: float, spent: float, window: str = "daily") -> BudgetStatus:
    return BudgetStatus(Scope(kind, "x", BudgetSpec(usd, window)), spent, window_end(window, ts(2026, 5, 5)))


def test_headers_name_the_tightest_budget() -> None:
    key, team = _status("key", 10.0, 2.0), _status("team", 5.0, 4.5, "monthly")
    assert tightest([key, team]) is team
    h = budget_headers(team)
    assert h == {"x-trigate-budget-limit-usd": "5", "x-trigate-budget-remaining-usd": "0.5",
                 "x-trigate-budget-reset": "2026-06-01T00:00:00Z"}
    assert "x-trigate-budget-reset" not in budget_headers(_status("key", 1.0, 0.25, "total"))
    assert budget_headers(_status("key", 1e-4, 4e-5))["x-trigate-budget-remaining-usd"] == "0.00006"
    assert budget_headers(_status("key", 1.0, 3.0))["x-trigate-budget-remaining-usd"] == "0"
    assert budget_headers(None) == {}


def test_refusal_in_each_callers_format() -> None:
    status = _status("key", 1.0, 1.0)
    code, body = get_codec("openai_chat").render_error(budget_exceeded("openai_chat", status))
    assert code == 429
    assert body["error"]["type"] == "insufficient_quota" and body["error"]["code"] == "budget_exceeded"
    code, body = get_codec("anthropic").render_error(budget_exceeded("anthropic", status))
    assert code == 429 and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    code, body = render_cohere_error(budget_exceeded("cohere", status))
    assert code == 429 and "Budget exceeded for key 'x'" in body["message"]
    err = budget_exceeded("openai_chat", status)
    assert err.retry_after is None  # nothing to wait for short of the window's end
    assert refusal_headers(err)["x-should-retry"] == "false"
    assert refusal_headers(err)["x-trigate-budget-remaining-usd"] == "0"


async def test_memory_counters_reserve_settle_arithmetic() -> None:
    c = MemoryCounters()
    assert await c.reserve(["k", "t"], [1.0, 0.5], 0.25) == (MISSING, 0, [])
    await c.create("k", 0.5, None)
    assert await c.reserve(["k", "t"], [1.0, 0.5], 0.25) == (MISSING, 1, [])
    await c.create("t", 0.0, None)
    await c.create("t", 99.0, None)  # another task got there first: kept
    assert await c.reserve(["k", "t"], [1.0, 0.5], 0.25) == (RESERVED, 0, [0.25, 0.75, 0.25])
    # the key has 0.25 left of the 0.5 asked: 0.25 is reserved in both
    assert await c.reserve(["k", "t"], [1.0, 0.5], 0.5) == (RESERVED, 0, [0.25, 1.0, 0.5])
    # now the key has nothing left: refused, nothing added anywhere
    assert await c.reserve(["k", "t"], [1.0, 0.5], 0.1) == (REFUSED, 0, [1.0])
    assert await c.get("t") == 0.5
    # settling: the second reservation of 0.25 cost 0.1 in the end
    assert await c.add(["k", "t"], 0.1 - 0.25) == [pytest.approx(0.85), pytest.approx(0.35)]
    assert await c.add(["gone"], 1.0) == [None]
    await c.put("k", 0.0, None)  # a manual reset
    assert (await c.reserve(["k"], [1.0], 1.0))[0] == RESERVED


def test_team_budgets_in_config_are_checked() -> None:
    cfg = parse_config({"auth": {"open": True, "teams": {"a": {"budget": {"usd": 25, "window": "daily"}}}}}, env={})
    assert cfg.auth.teams["a"].budget == BudgetSpec(25.0, "daily")
    with pytest.raises(ConfigError) as caught:
        parse_config({"auth": {"open": True, "teams": {"a": {"budget": {"usd": 0}},
                                                       "b": {"budget": {"usd": 1, "window": "weekly"}}}}}, env={})
    assert caught.value.problems == ["auth.teams.a.budget.usd: must be a positive number of USD, got 0.0",
                                     "auth.teams.b.budget.window: must be daily, monthly or total, got 'weekly'"]


def test_key_budgets_share_the_check() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"auth": {"keys": [{"id": "k", "key": "sk", "budget": {"usd": float("inf")}}]}}, env={})
    assert caught.value.problems == ["auth.keys[0].budget.usd: must be a positive number of USD, got inf"]
