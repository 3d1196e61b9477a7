"""Admin endpoints for spend budgets (``auth.admin_keys``), OpenAI-shaped errors like the other admin routes.

``GET /admin/teams/{team}``: the team's budget (``source``: config or admin), spend, limit, remaining,
window and ``resets_at``. ``PUT /admin/teams/{team}/budget`` with ``{"usd": 50, "window": "monthly"}``
sets it (over the config's), ``DELETE`` clears it (the config's too, until set again), and
``POST /admin/teams/{team}/budget/reset`` starts a new window now. ``GET /admin/keys/{id}/budget`` and
``POST /admin/keys/{id}/budget/reset`` do the same for a key's own budget (set with the key itself).
Spend is settled cost plus the reservations of requests still running; replicas share it through Redis.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from quart import Quart, Response, request

from trigate.api.admin import admin_answer
from trigate.api.text import parse_body
from trigate.config import BudgetSpec, ClientKey, check_budget
from trigate.errors import GatewayError, invalid_request
from trigate.gateway import Gateway
from trigate.policies.budgets import WINDOWS, BudgetStatus, Scope, budgets_of, budgets_unavailable


async def _key_spec(gw: Gateway, key_id: str) -> ClientKey:
    for k in gw.config.auth.keys:
        if k.id == key_id:
            return k
    runtime = getattr(gw.keys, "runtime", None)
    if runtime is not None:
        record = await runtime.store.get(key_id)
        if record is not None:
            return record.spec
    raise GatewayError("not_found", f"no key with id '{key_id}'", status=404, code="key_not_found")


def _budget_from(body: dict[str, Any]) -> BudgetSpec:
    unknown = sorted(set(body) - {"usd", "window"})
    if unknown:
        raise invalid_request(f"unknown field(s): {', '.join(unknown)} (expected usd, window)", param=unknown[0])
    usd = body.get("usd")
    if isinstance(usd, bool) or not isinstance(usd, int | float) or not math.isfinite(usd):
        raise invalid_request("usd: required, a positive number of USD", param="usd")
    window = body.get("window", "monthly")
    if window not in WINDOWS:
        raise invalid_request(f"window: must be one of {', '.join(WINDOWS)}", param="window")
    spec = BudgetSpec(float(usd), window)
    problems = check_budget("budget", spec)
    if problems:
        raise invalid_request(problems[0].removeprefix("budget."), param="usd")
    return spec


def _report(what: dict[str, Any], status: BudgetStatus | None) -> dict[str, Any]:
    if status is None:
        return {**what, "budget": None, "limit_usd": None, "spend_usd": None, "remaining_usd": None,
                "window": None, "resets_at": None}
    return {**what, "budget": {"usd": status.limit, "window": status.scope.spec.window}, **status.as_dict()}


def register(app: Quart, gw: Gateway) -> None:
    budgets = budgets_of(gw)

    answer = partial(admin_answer, gw, unavailable=lambda: budgets_unavailable("its database failed"))

    async def team_report(team: str) -> dict[str, Any]:
        rows = await budgets.store.team_budgets()
        source = "admin" if team in rows else "config"
        spec = await budgets.team_budget(team)
        status = await budgets.status(Scope("team", team, spec)) if spec is not None else None
        return _report({"object": "team", "team": team, "source": source if spec is not None else None}, status)

    @app.get("/admin/teams/<team>")
    async def get_team(team: str) -> Response:
        return await answer(lambda: team_report(team))

    @app.put("/admin/teams/<team>/budget")
    async def put_team_budget(team: str) -> Response:
        async def work() -> dict[str, Any]:
            spec = _budget_from(parse_body(await request.get_data()))
            await budgets.set_team(team, spec)
            return await team_report(team)

        return await answer(work)

    @app.delete("/admin/teams/<team>/budget")
    async def delete_team_budget(team: str) -> Response:
        async def work() -> dict[str, Any]:
            await budgets.set_team(team, None)
            return await team_report(team)

        return await answer(work)

    @app.post("/admin/teams/<team>/budget/reset")
    async def reset_team_budget(team: str) -> Response:
        async def work() -> dict[str, Any]:
            spec = await budgets.team_budget(team)
            if spec is None:
                raise GatewayError("not_found", f"team '{team}' has no budget", status=404, code="no_budget")
            await budgets.reset(Scope("team", team, spec))
            return await team_report(team)

        return await answer(work)

    async def key_report(key_id: str, reset: bool = False) -> dict[str, Any]:
        spec = await _key_spec(gw, key_id)
        what = {"object": "key.budget", "key_id": key_id, "team": spec.metadata.get("team")}
        if spec.budget is None:
            if reset:
                raise GatewayError("not_found", f"key '{key_id}' has no budget", status=404, code="no_budget")
            return _report(what, None)
        scope = Scope("key", key_id, spec.budget)
        return _report(what, await (budgets.reset(scope) if reset else budgets.status(scope)))

    @app.get("/admin/keys/<key_id>/budget")
    async def get_key_budget(key_id: str) -> Response:
        return await answer(lambda: key_report(key_id))

    @app.post("/admin/keys/<key_id>/budget/reset")
    async def reset_key_budget(key_id: str) -> Response:
        return await answer(lambda: key_report(key_id, reset=True))
