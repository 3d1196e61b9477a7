"""``GET /metrics``: the gateway's Prometheus metrics (all workers' in multiprocess mode)."""

from __future__ import annotations

from quart import Quart, Response, request

from trigate.api.text import error_response, request_headers
from trigate.errors import GatewayError
from trigate.formats import get_codec
from trigate.gateway import Gateway
from trigate.policies.auth import credential_from_headers


def register(app: Quart, gw: Gateway) -> None:
    telemetry = gw.telemetry
    if telemetry is None:
        return
    telemetry.install(app)

    @app.get("/metrics")
    async def metrics() -> Response:
        telemetry.refresh()
        if not telemetry.metrics_enabled:
            return error_response(get_codec("openai_chat"), GatewayError("not_found", "metrics are disabled "
                                                                         "(observability.metrics)", status=404))
        if telemetry.metrics_require_admin:
            try:
                gw.keys.authenticate_admin(credential_from_headers(request_headers()))
            except GatewayError as err:
                return error_response(get_codec("openai_chat"), err)
        body, content_type = telemetry.metrics.exposition(request.headers.get("accept"))
        return Response(body, status=200, content_type=content_type)
