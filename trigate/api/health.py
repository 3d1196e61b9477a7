"""Liveness and readiness."""

from __future__ import annotations

from quart import Quart, Response

from trigate.api.text import json_response
from trigate.gateway import Gateway


def register(app: Quart, gw: Gateway) -> None:
    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/ready")
    async def ready() -> Response:
        if gw.draining:
            return json_response({"status": "draining"}, 503)
        body: dict[str, object] = {"status": "ready", "providers": sorted(gw.providers)}
        reason = await gw.limiter.unavailable()
        if reason is not None:
            if gw.config.limits.on_backend_error != "open":
                return json_response({"status": "unavailable", "reason": reason}, 503)
            # Failing open the gateway still serves (without limits): taking every replica that shares
            # the backend out of rotation would turn a limits outage into a full one.
            body["degraded"] = f"{reason}; serving without limits (limits.on_backend_error: open)"
        return json_response(body)
