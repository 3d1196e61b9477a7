"""Admin endpoints, for holders of an admin key (``auth.admin_keys``).

``GET /admin/usage[?since=&until=&key_id=&team=]``: per client key id, requests, errors, tokens (input,
output, cached, cache writes, reasoning) and estimated cost, in total and per served model, from the
``usage_events`` table (trigate/store/usage.py), so it covers every worker and replica writing to the same
database and survives restarts. ``since``/``until`` are ISO 8601 times, Unix seconds, or ages such as
``15m``, ``2h``, ``1d``; ``until`` is exclusive.

``GET /admin/usage/export?format=csv|json|ndjson&since=&until=&key_id=&team=``: the rows themselves,
streamed a page at a time: CSV with a header row, a JSON array of objects, or one JSON object per line.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from quart import Quart, Response, request

from trigate.api.text import error_response, json_response, request_headers
from trigate.errors import GatewayError, invalid_request
from trigate.formats import get_codec
from trigate.gateway import Gateway
from trigate.policies.auth import ANONYMOUS, credential_from_headers
from trigate.store.sql import DatabaseError
from trigate.store.usage import COLUMNS, Row, UsageFilter, UsageStore, report

log = logging.getLogger("trigate.admin")

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float | None = None, param: str = "since") -> float:
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
        raise invalid_request(f"{param}: expected an ISO 8601 time, Unix seconds or an age like 15m, 2h, 1d",
                              param=param) from None
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


async def admin_answer(gw: Gateway, work: Callable[[], Awaitable[Any]], status: int = 200, *,
                       unavailable: Callable[[], GatewayError]) -> Response:
    """One admin JSON endpoint: the admin check, then ``work()``'s result as JSON; errors in OpenAI's
    format, and a failing database as ``unavailable()`` (the 503 that says which state is down)."""
    codec = get_codec("openai_chat")
    try:
        await admin_principal(gw)
        return json_response(await work(), status)
    except DatabaseError:
        return error_response(codec, unavailable())
    except GatewayError as err:
        return error_response(codec, err)


def register(app: Quart, gw: Gateway) -> None:
    codec = get_codec("openai_chat")

    @app.get("/admin/usage")
    async def usage() -> Response:
        try:
            await admin_principal(gw)
            store, f = await _usage_query(gw)
            table = await store.table(f)
        except DatabaseError as exc:
            return error_response(codec, _unavailable(exc))
        except GatewayError as err:
            return error_response(codec, err)
        body = {"object": "usage", "generated_at": _iso(time.time()), "source": _source(gw),
                "since": _iso(f.since) if f.since is not None else None,
                "until": _iso(f.until) if f.until is not None else None, **report(table)}
        return json_response(body)

    @app.get("/admin/usage/export")
    async def usage_export() -> Response:
        try:
            await admin_principal(gw)
            fmt = request.args.get("format", "json")
            if fmt not in _EXPORT_TYPES:
                raise invalid_request("format: expected csv, json or ndjson", param="format")
            store, f = await _usage_query(gw)
            pages = store.pages(f)
            # the first page before the answer starts: a database that is down is still a clean 503
            first = await anext(pages, [])
        except DatabaseError as exc:
            return error_response(codec, _unavailable(exc))
        except GatewayError as err:
            return error_response(codec, err)
        return Response(_export(fmt, first, pages), content_type=_EXPORT_TYPES[fmt],
                        headers={"content-disposition": f'attachment; filename="usage.{fmt}"'})


_EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json", "ndjson": "application/x-ndjson"}
_EXPORT_COLUMNS = ("id", *COLUMNS)


async def _usage_query(gw: Gateway) -> tuple[UsageStore, UsageFilter]:
    """The store and the filter the query string asks for, once this process's finished requests are in."""
    if gw.usage is None:
        raise GatewayError("not_found", "usage accounting is not running", status=404)
    args = request.args
    since, until = args.get("since"), args.get("until")
    f = UsageFilter(since=parse_since(since) if since else None,
                    until=parse_since(until, param="until") if until else None,
                    key_id=args.get("key_id") or None, team=args.get("team") or None)
    # rows of requests this process finished are written within a flush interval; wait for them so a
    # report right after a request includes it (other processes' rows follow within the same interval)
    await gw.usage.flush()
    return gw.usage.store, f


def _source(gw: Gateway) -> str:
    if gw.telemetry.metrics.multiprocess is not None and gw.config.database.url == ":memory:":
        return "this_process"  # each worker has a private in-memory database
    return "database"


def _unavailable(exc: DatabaseError) -> GatewayError:
    log.warning("usage report: %s", exc)
    return GatewayError("overloaded", "the usage database is unavailable", status=503, code="database_unavailable")


async def _export(fmt: str, first: list[Row], rest: AsyncIterator[list[Row]]) -> AsyncIterator[bytes]:
    if fmt == "csv":
        yield _csv([_EXPORT_COLUMNS])
    elif fmt == "json":
        yield b"["
    sep = b""
    page: list[Row] | None = first
    try:
        while page:
            if fmt == "csv":
                yield _csv(page)
            else:
                objs = [orjson.dumps(dict(zip(_EXPORT_COLUMNS, r, strict=True))) for r in page]
                if fmt == "json":
                    yield sep + b",\n".join(objs)
                    sep = b",\n"
                else:
                    yield b"\n".join(objs) + b"\n"
            page = await anext(rest, None)
    except DatabaseError as exc:
        # the answer has started: the body ends early (an unterminated JSON array shows it)
        log.warning("usage export cut short: %s", exc)
        return
    if fmt == "json":
        yield b"]\n"


def _csv(rows: list[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
