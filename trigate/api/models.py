"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models this gateway serves.

Names come from the config's exact routes, plus (for wildcard routes marked ``expand``) the provider's
own model list, cached. OpenAI's list shape by default; Anthropic's when the caller sends
``anthropic-version`` (the anthropic SDK always does). Only models the caller may use are shown.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import trio
from quart import Quart, Response, request

from trigate.api.text import error_response, json_response, request_headers
from trigate.errors import GatewayError, invalid_request
from trigate.formats import get_codec
from trigate.gateway import Gateway
from trigate.policies.auth import Principal, credential_from_headers
from trigate.upstream.providers import Provider


class ModelCatalog:
    """Provider model lists, fetched on demand and cached; a failing provider lists nothing."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._cache: dict[str, tuple[float, list[tuple[str, int]]]] = {}
        self._lock = trio.Lock()

    async def provider_models(self, provider: Provider) -> list[tuple[str, int]]:
        """[(upstream model id, created unix time)]."""
        ttl = self.gw.config.server.models_cache_seconds
        hit = self._cache.get(provider.name)
        if hit and time.monotonic() - hit[0] < ttl:
            return hit[1]
        async with self._lock:
            hit = self._cache.get(provider.name)
            if hit and time.monotonic() - hit[0] < ttl:
                return hit[1]
            models = await self._fetch(provider)
            self._cache[provider.name] = (time.monotonic(), models)
            return models

    async def _fetch(self, provider: Provider) -> list[tuple[str, int]]:
        up = provider.models_list()
        if up is None:
            return []
        try:
            with trio.fail_after(10):
                headers = await provider.auth_headers("GET", up.url, {}, b"")
                r = await self.gw.http.get(up.url, headers=headers)
            if r.status_code != 200:
                return []
            body = r.json()
        except (httpx.HTTPError, trio.TooSlowError, ValueError, GatewayError):
            return []
        data = body.get("data") if up.format != "gemini_models" else body.get("models")
        out = []
        for m in data or []:
            if up.format == "gemini_models":
                out.append((str(m.get("name", "")).removeprefix("models/"), 0))
            elif up.format == "anthropic_models":
                out.append((m.get("id", ""), _unix(m.get("created_at"))))
            else:
                out.append((m.get("id", ""), int(m.get("created") or 0)))
        return [(mid, created) for mid, created in out if mid]

    async def served(self, principal: Principal) -> list[tuple[str, str, int]]:
        """[(client-facing name, provider, created)] the principal may use, in config order."""
        seen: dict[str, tuple[str, str, int]] = {}
        for name, provider in self.gw.router.listed_models():
            seen.setdefault(name, (name, provider, 0))
        for route in self.gw.router.expanded_routes():
            provider = self.gw.providers.get(route.provider)
            if provider is None:
                continue
            for upstream_id, created in await self.provider_models(provider):
                name = self.gw.router.client_name(route, upstream_id)
                if name is not None:
                    seen.setdefault(name, (name, route.provider, created))
        return [m for m in seen.values() if principal.may_use(m[0])]


def _unix(value: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _openai_model(name: str, provider: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": provider}


def _anthropic_model(name: str, provider: str, created: int) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": _iso(created)}


def register(app: Quart, gw: Gateway) -> None:
    catalog = ModelCatalog(gw)
    gw.extras["models"] = catalog

    def anthropic_caller() -> bool:
        return "anthropic-version" in request.headers

    @app.get("/v1/models")
    async def list_models() -> Response:
        anthropic = anthropic_caller()
        codec = get_codec("anthropic" if anthropic else "openai_chat")
        try:
            principal = await gw.keys.authenticate(credential_from_headers(request_headers()))
            models = await catalog.served(principal)
            if not anthropic:
                return json_response({"object": "list", "data": [_openai_model(*m) for m in models]})
            return json_response(_anthropic_page([_anthropic_model(*m) for m in models]))
        except GatewayError as err:
            return error_response(codec, err)

    @app.get("/v1/models/<path:model_id>")
    async def get_model(model_id: str) -> Response:
        anthropic = anthropic_caller()
        codec = get_codec("anthropic" if anthropic else "openai_chat")
        try:
            principal = await gw.keys.authenticate(credential_from_headers(request_headers()))
            target = gw.router.resolve(model_id)
            if target is None or not principal.may_use(model_id):
                raise GatewayError("not_found", f"The model '{model_id}' does not exist or is not served by "
                                   "this gateway", param="model", code="model_not_found")
            created = next((m[2] for m in await catalog.served(principal) if m[0] == model_id), 0)
            make = _anthropic_model if anthropic else _openai_model
            return json_response(make(model_id, target.provider, created))
        except GatewayError as err:
            return error_response(codec, err)


def _anthropic_page(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Anthropic list pagination: limit (1-1000, default 20), after_id / before_id."""
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        raise invalid_request("limit: must be an integer", param="limit") from None
    if not 1 <= limit <= 1000:
        raise invalid_request("limit: must be between 1 and 1000", param="limit")
    ids = [m["id"] for m in items]
    after, before = request.args.get("after_id"), request.args.get("before_id")
    if after is not None:
        if after not in ids:
            raise invalid_request(f"after_id: unknown model '{after}'", param="after_id")
        items = items[ids.index(after) + 1:]
    if before is not None:
        if before not in ids:
            raise invalid_request(f"before_id: unknown model '{before}'", param="before_id")
        items = items[:ids.index(before)][-limit:]
    page = items[:limit]
    return {"data": page, "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit}
