"""Admin endpoints, for holders of an admin key (``auth.admin_keys``).

``GET /admin/usage[?since=]``: per client key id, requests, errors, tokens (input, output, cached,
cache writes, reasoning) and estimated cost, in total and per served model. ``since`` is an ISO 8601
time, Unix seconds, or an age such as ``15m``, ``2h``, ``1d``. The numbers come from the same
finished requests as /metrics and the access log.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from quart import Quart, Response, request

from trigate.api.text import error_response, json_response, request_headers
from trigate.errors import GatewayError, invalid_request
from trigate.formats import get_codec
from trigate.gateway import Gateway
from trigate.observability.ledger import report
from trigate.policies.auth import ANONYMOUS, credential_from_headers

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float | None = None) -> float:
    """Unix time from an ISO 8601 time, Unix seconds, or an age (``90s``, ``15m``, ``2h``, ``7d``)."""
    now = time.time() if now is None else now
    v = value.strip()
    m = _AGE.match(v)
    if m is not None:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(v)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00") if v.endswith("Z") else v)
    except ValueError:
        raise invalid_request("since: expected an ISO 8601 time, Unix seconds or an age like 15m, 2h, 1d",
                              param="since") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


async def admin_principal(gw: Gateway) -> None:
    """401 without a valid key, 403 with a client (non-admin) key."""
    credential = credential_from_headers(request_headers())
    try:
        gw.keys.authenticate_admin(credential)
        return
    except GatewayError:
        pass
    if credential:
        try:
            principal = await gw.keys.authenticate(credential)
        except GatewayError:
            principal = None
        if principal is not None and principal is not ANONYMOUS:
            raise GatewayError("permission", "this key is not an admin key (auth.admin_keys)", code="not_admin")
    raise GatewayError("authentication", "an admin key is required (auth.admin_keys)", code="invalid_api_key")


def register(app: Quart, gw: Gateway) -> None:
    codec = get_codec("openai_chat")

    @app.get("/admin/usage")
    async def usage() -> Response:
        try:
            await admin_principal(gw)
            telemetry = gw.telemetry
            if telemetry is None:
                raise GatewayError("not_found", "usage accounting is not running", status=404)
            raw = request.args.get("since")
            since = parse_since(raw) if raw else None
            table, source = telemetry.usage(since)
        except GatewayError as err:
            return error_response(codec, err)
        body = {"object": "usage", "generated_at": _iso(time.time()), "source": source,
                "since": _iso(since) if since is not None else None, **report(table)}
        if since is not None and since < telemetry.ledger.oldest():
            body["complete_since"] = _iso(telemetry.ledger.oldest())  # older minutes are no longer kept
        return json_response(body)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
