"""The Quart-Trio application: mounts one handler module per API type on a Gateway."""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from trigate.api import admin, chat, count_tokens, embeddings, health, messages, models, passthrough, rerank, responses
from trigate.api import admin_budgets as admin_budgets_api
from trigate.api import admin_keys as admin_keys_api
from trigate.api import converse_ingress as converse_api
from trigate.api import gemini_ingress as gemini_api
from trigate.api import metrics as metrics_api
from trigate.api import realtime as realtime_api
from trigate.api.text import error_response
from trigate.errors import GatewayError, kind_for_status
from trigate.formats import client_format_for_path, get_codec
from trigate.gateway import Gateway


def create_app(gw: Gateway) -> QuartTrio:
    app = QuartTrio("trigate")
    # Streams last as long as the model talks; deadlines are enforced per request, not by Quart.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = 120
    app.config["MAX_CONTENT_LENGTH"] = gw.config.server.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True

    health.register(app, gw)
    chat.register(app, gw)
    messages.register(app, gw)
    responses.register(app, gw)
    count_tokens.register(app, gw)
    gemini_api.register(app, gw)
    converse_api.register(app, gw)
    embeddings.register(app, gw)
    rerank.register(app, gw)
    models.register(app, gw)
    realtime_api.register(app, gw)
    metrics_api.register(app, gw)  # also puts x-request-id on every answer
    admin.register(app, gw)
    admin_keys_api.register(app, gw)
    admin_budgets_api.register(app, gw)
    # last: its /<provider>/<path> pattern must not shadow the API routes above
    passthrough.register(app, gw)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        # Routing and body-size errors, rendered in the format the caller of this path speaks.
        status = exc.code or 500
        message = {404: f"no such endpoint: {request.method} {request.path}",
                   405: f"method {request.method} not allowed on {request.path}",
                   413: "request body too large"}.get(status, exc.description or exc.name)
        err = GatewayError(kind_for_status(status), message, status=status)
        return error_response(get_codec(client_format_for_path(request.path)), err)

    return app
