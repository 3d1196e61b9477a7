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
        return json_response({"status": "ready", "providers": sorted(gw.providers)})
