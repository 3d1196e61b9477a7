"""Runtime client keys through the admin API (admin keys only; errors in OpenAI's format).

``POST /admin/keys`` makes a key and answers 201 with its record and the ``key`` itself, shown this
once (only its SHA-256 is stored); ``GET /admin/keys[?team=]`` lists records, ``GET``/``PATCH``/
``DELETE /admin/keys/{id}`` read, change (fields given; null clears) and revoke one,
``POST /admin/keys/{id}/rotate`` replaces its secret (the old one works ``grace_seconds`` longer, 0 by
default) and ``POST /admin/keys/{id}/revoke`` revokes it. Settings are checked by the same rules as
config keys (``trigate.config.check_client_key``).
"""

from __future__ import annotations

import math
import re
import secrets
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from quart import Quart, Response, request

from trigate.api.admin import admin_answer
from trigate.api.text import parse_body
from trigate.config import ClientKey, ConfigError, check_client_key, structure_client_key
from trigate.errors import GatewayError, invalid_request
from trigate.gateway import Gateway
from trigate.policies.auth import RuntimeKeys, digest, key_store_unavailable
from trigate.store.keys import KeyExists, KeyRecord, KeyStore, new_secret

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_SETTINGS = ("models", "providers", "rpm", "tpm", "max_concurrent", "metadata", "budget")
_LIFE = ("expires_at", "ttl_seconds")
_CREATE_FIELDS = frozenset({"id", *_SETTINGS, *_LIFE})
_PATCH_FIELDS = frozenset({*_SETTINGS, *_LIFE})


def _runtime(gw: Gateway) -> RuntimeKeys:
    runtime = gw.keys.runtime
    if runtime is None:
        raise GatewayError("not_found", "runtime keys are not enabled on this gateway", status=404)
    return runtime


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_json_types(body: dict[str, Any], allowed: frozenset[str]) -> None:
    """JSON types first, strictly: the config's structuring would read "gpt-*" as a list of letters, or
    2.5 as 2."""
    for name in body:
        if name not in allowed:
            raise invalid_request(f"{name}: unknown field (known: {', '.join(sorted(allowed))})", param=name)
    for name in ("models", "providers"):
        v = body.get(name)
        if v is not None and not (isinstance(v, list) and all(isinstance(p, str) and p for p in v)):
            raise invalid_request(f"{name}: must be a list of name patterns (strings) or null", param=name)
    for name in ("rpm", "tpm", "max_concurrent"):
        v = body.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise invalid_request(f"{name}: must be a positive integer or null", param=name)
    metadata = body.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        raise invalid_request('metadata: must be an object of strings (e.g. {"team": "a"}) or null',
                              param="metadata")
    budget = body.get("budget")
    if budget is not None and not (isinstance(budget, dict) and _is_number(budget.get("usd"))
                                   and isinstance(budget.get("window", ""), str)):
        raise invalid_request('budget: must be {"usd": <number>, "window": "daily"|"monthly"|"total"} or null',
                              param="budget")
    if body.get("expires_at") is not None and body.get("ttl_seconds") is not None:
        raise invalid_request("expires_at: give expires_at or ttl_seconds, not both", param="expires_at")


def _expiry(body: dict[str, Any], now: float) -> float | None:
    """``expires_at`` (Unix seconds or an ISO 8601 time) or ``ttl_seconds`` from now; None: never."""
    ttl = body.get("ttl_seconds")
    if ttl is not None:
        if not _is_number(ttl) or ttl <= 0:
            raise invalid_request("ttl_seconds: must be a positive number of seconds", param="ttl_seconds")
        return now + float(ttl)
    v = body.get("expires_at")
    if v is None:
        return None
    if _is_number(v):
        at = float(v)
    elif isinstance(v, str):
        try:
            t = datetime.fromisoformat(v.strip())
        except ValueError:
            raise invalid_request("expires_at: expected Unix seconds or an ISO 8601 time", param="expires_at") from None
        at = (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()
    else:
        raise invalid_request("expires_at: expected Unix seconds or an ISO 8601 time", param="expires_at")
    if at <= now:
        raise invalid_request("expires_at: is in the past", param="expires_at")
    return at


def _spec(gw: Gateway, key_id: str, sha256: str, settings: dict[str, Any]) -> ClientKey:
    """The key's settings checked as a config key's would be; a 400 naming the first bad field."""
    data = {"id": key_id, "key_sha256": sha256, **{k: v for k, v in settings.items() if v is not None}}
    try:
        spec = structure_client_key(data)
        problems = check_client_key("", spec, gw.config.providers)
    except ConfigError as exc:
        problems = exc.problems
    if problems:
        first = problems[0].lstrip(".")
        raise invalid_request("; ".join(p.lstrip(".") for p in problems), param=first.split(":")[0].split(".")[0])
    return spec


def _settings_of(spec: ClientKey) -> dict[str, Any]:
    b = spec.budget
    return {"models": spec.models, "providers": spec.providers, "rpm": spec.rpm, "tpm": spec.tpm,
            "max_concurrent": spec.max_concurrent, "metadata": dict(spec.metadata),
            "budget": {"usd": b.usd, "window": b.window} if b is not None else None}


def _time(t: float | None) -> float | int | None:
    if t is None:
        return None
    return int(t) if t == int(t) else round(t, 3)


def public(record: KeyRecord, now: float | None = None) -> dict[str, Any]:
    """What the API shows of a key: never the key, nor its digest."""
    now = time.time() if now is None else now
    grace = record.previous_until if record.previous_sha256 and (record.previous_until or 0) > now else None
    return {"object": "gateway.key", "id": record.id, "status": record.status(now), **_settings_of(record.spec),
            "expires_at": _time(record.expires_at), "revoked_at": _time(record.revoked_at),
            "created_at": _time(record.created_at), "updated_at": _time(record.updated_at),
            "previous_key_valid_until": _time(grace)}


def register(app: Quart, gw: Gateway) -> None:

    def store() -> KeyStore:
        return _runtime(gw).store

    async def body_of(allowed: frozenset[str]) -> dict[str, Any]:
        raw = await request.get_data()
        body = parse_body(raw) if raw.strip() else {}
        _check_json_types(body, allowed)
        return body

    async def existing(key_id: str) -> KeyRecord:
        record = await store().get(key_id)
        if record is None:
            if key_id in gw.keys.config_ids:
                raise GatewayError("invalid_request", f"'{key_id}' is a config key (auth.keys): change it in the "
                                   "config file", status=409, code="config_key")
            raise GatewayError("not_found", f"no runtime key '{key_id}'", status=404, code="key_not_found")
        return record

    answer = partial(admin_answer, gw, unavailable=key_store_unavailable)

    def remember(record: KeyRecord | None) -> KeyRecord:
        if record is None:  # removed from the table between two statements: nothing of ours does that
            raise GatewayError("not_found", "the key is gone", status=404, code="key_not_found")
        _runtime(gw).put(record)  # this replica applies it at once; the others within a poll
        return record

    @app.post("/admin/keys")
    async def create_key() -> Response:
        async def work() -> dict[str, Any]:
            body = await body_of(_CREATE_FIELDS)
            key_id = body.get("id")
            if key_id is None:
                key_id = "key-" + secrets.token_hex(6)
            if not isinstance(key_id, str) or not _ID.fullmatch(key_id):
                raise invalid_request("id: 1-128 letters, digits or ._:@- (starting with a letter or digit)",
                                      param="id")
            if key_id in gw.keys.config_ids:
                raise GatewayError("invalid_request", f"id: '{key_id}' is already a config key's id", status=409,
                                   param="id", code="key_exists")
            secret = new_secret()
            spec = _spec(gw, key_id, digest(secret), {k: body.get(k) for k in _SETTINGS})
            try:
                record = await store().create(spec, expires_at=_expiry(body, time.time()))
            except KeyExists:
                raise GatewayError("invalid_request", f"id: a key '{key_id}' exists already", status=409,
                                   param="id", code="key_exists") from None
            return {**public(remember(record)), "key": secret}

        return await answer(work, 201)

    @app.get("/admin/keys")
    async def list_keys() -> Response:
        async def work() -> dict[str, Any]:
            now = time.time()
            records = await store().list(team=request.args.get("team"))
            return {"object": "list", "data": [public(r, now) for r in records]}

        return await answer(work)

    @app.get("/admin/keys/<key_id>")
    async def get_key(key_id: str) -> Response:
        async def work() -> dict[str, Any]:
            return public(await existing(key_id))

        return await answer(work)

    @app.patch("/admin/keys/<key_id>")
    async def update_key(key_id: str) -> Response:
        async def work() -> dict[str, Any]:
            body = await body_of(_PATCH_FIELDS)
            record = await existing(key_id)
            if record.revoked_at is not None:
                raise GatewayError("invalid_request", f"key '{key_id}' is revoked", status=409, code="key_revoked")
            settings = {**_settings_of(record.spec), **{k: body[k] for k in _SETTINGS if k in body}}
            spec = _spec(gw, key_id, record.key_sha256, settings)
            expires_at = _expiry(body, time.time()) if any(k in body for k in _LIFE) else record.expires_at
            return public(remember(await store().update(record, spec, expires_at=expires_at)))

        return await answer(work)

    @app.post("/admin/keys/<key_id>/rotate")
    async def rotate_key(key_id: str) -> Response:
        async def work() -> dict[str, Any]:
            body = await body_of(frozenset({"grace_seconds"}))
            grace = body.get("grace_seconds", 0)
            if not _is_number(grace) or grace < 0:
                raise invalid_request("grace_seconds: must be a number of seconds, 0 or more", param="grace_seconds")
            record = await existing(key_id)
            if record.revoked_at is not None:
                raise GatewayError("invalid_request", f"key '{key_id}' is revoked", status=409, code="key_revoked")
            secret = new_secret()
            rotated = remember(await store().rotate(key_id, digest(secret), float(grace)))
            return {**public(rotated), "key": secret}

        return await answer(work)

    async def revoke(key_id: str) -> Response:
        async def work() -> dict[str, Any]:
            await existing(key_id)
            return public(remember(await store().revoke(key_id)))

        return await answer(work)

    app.add_url_rule("/admin/keys/<key_id>/revoke", "revoke_key", revoke, methods=["POST"])
    app.add_url_rule("/admin/keys/<key_id>", "delete_key", revoke, methods=["DELETE"])
