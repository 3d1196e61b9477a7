"""OpenAI Responses: ``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items``.

With ``store`` (the default) the gateway keeps every turn, natively served or translated, so
``previous_response_id`` works whichever target of a group serves the next turn (see
``_StatefulHooks``). Natively served responses are still retrieved from and deleted at the provider
that owns them, which stays the authority on them.
"""

from __future__ import annotations

from typing import Any

import httpx
from quart import Quart, Response, request

from trigate.api.count_tokens import COUNT_HEADER, count_input, count_target, required_model
from trigate.api.text import Hooks, error_response, handle_text, json_response, parse_body
from trigate.errors import GatewayError, invalid_request
from trigate.formats import get_codec
from trigate.formats import openai_responses as fmt
from trigate.gateway import Gateway
from trigate.store.responses import StoredResponse, StoreUnavailable
from trigate.upstream.client import transport_error
from trigate.upstream.providers import Provider


def _not_found(rid: str) -> GatewayError:
    return GatewayError("not_found", f"Response with id '{rid}' not found.", param="response_id")


def _check_ir(req: Any) -> None:
    problems = fmt.unsupported_features(req)
    if problems:
        raise invalid_request(
            "not supported by this model's provider (OpenAI-only Responses features): " + ", ".join(problems),
            param="tools",
        )


class _StatefulHooks:
    """Per-request state between expanding previous_response_id and storing the answer.

    Every turn is stored whole (input items, the history before them, the response), whoever served
    it, so a chain continues on any target of a group: a translated target gets the history expanded;
    a native one keeps ``previous_response_id`` when it served that response itself (it has the state,
    and OpenAI's hidden reasoning state with it), and gets the history expanded otherwise."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.prev_id: str | None = None
        self.context: list[dict[str, Any]] = []
        self.current: list[dict[str, Any]] = []
        self.complete = True  # False: an earlier turn is known only by its id (stored by an older version)
        self.expanded = False  # this attempt sends the history instead of previous_response_id
        self.looked_up = False
        self.prev: StoredResponse | None = None

    async def admitted(self, body: dict[str, Any]) -> None:
        """The previous response, read once before any attempt: a store outage is a 503 of the
        gateway's own, not a failure of the targets (which would be retried and ejected)."""
        prev_id = body.get("previous_response_id")
        if prev_id is None:
            return
        if not isinstance(prev_id, str):
            raise invalid_request("previous_response_id: must be a string", param="previous_response_id")
        self.prev = await self.gw.responses.get(prev_id)
        self.looked_up = True

    async def prepare(self, body: dict[str, Any], provider: Provider, native: bool) -> dict[str, Any]:
        self.context, self.complete, self.expanded = [], True, False  # per attempt: targets differ
        self.current = fmt.input_items(body)
        prev_id = self.prev_id = body.get("previous_response_id")
        if prev_id is None:
            return body
        if not self.looked_up:
            await self.admitted(body)
        prev = self.prev
        if native and (prev is None or (prev.native and prev.provider == provider.name)):
            # The upstream holds this chain itself (or answers that it does not know the id).
            self.complete = prev is not None and prev.response is not None
            self.context = prev.conversation() if prev is not None and self.complete else []
            return body
        if prev is None or prev.response is None:
            raise GatewayError(
                "not_found", f"Previous response with id '{prev_id}' not found.", param="previous_response_id"
            )
        self.context = prev.conversation()
        if not native:
            return fmt.prepend_history(body, self.context, self.current)
        self.expanded = True
        return fmt.expand_for_native(body, self.context)

    def echo(self) -> dict[str, Any] | None:
        return {"previous_response_id": self.prev_id} if self.expanded else None

    async def completed(self, body: dict[str, Any], out: dict[str, Any], provider: Provider) -> None:
        if body.get("store", True) is not False:
            await self._store(StoredResponse(out["id"], provider.name, False, out, self.current, self.context))

    async def forwarded(self, body: dict[str, Any], resp: dict[str, Any] | None, provider: Provider) -> None:
        rid = resp.get("id") if resp is not None else None
        if not isinstance(rid, str) or body.get("store", True) is False:
            return
        if self.complete:
            await self._store(StoredResponse(rid, provider.name, True, resp, self.current, self.context))
        else:
            await self._store(StoredResponse(rid, provider.name, True))

    async def _store(self, rec: StoredResponse) -> None:
        # Best effort: the answer is paid for (and, streamed, already with the client), and ``store``
        # defaults to true, so a store outage must not fail every Responses request; only what needs
        # the store (previous_response_id, GET/DELETE by id) answers 503. The outage is logged once.
        try:
            await self.gw.responses.put(rec)
        except StoreUnavailable:
            pass

    def hooks(self) -> Hooks:
        return Hooks(check_ir=_check_ir, admitted=self.admitted, prepare=self.prepare, completed=self.completed,
                     forwarded=self.forwarded, echo=self.echo)


async def _native(gw: Gateway, rec: StoredResponse, method: str, suffix: str) -> Response:
    """Send a GET/DELETE for a natively stored response to the provider that owns it."""
    provider = gw.providers.get(rec.provider)
    if provider is None:
        raise _not_found(rec.id)
    url = provider.stored_response_url(rec.id, suffix)
    try:
        headers = await provider.auth_headers(method, url, {}, b"")
        resp = await gw.http.request(method, url, params=dict(request.args), headers=headers)
    except httpx.HTTPError as exc:
        raise transport_error(exc, provider.name) from None
    if resp.status_code >= 400:
        raise get_codec("openai_responses").parse_error(resp.status_code, resp.content)
    if method == "DELETE":
        await gw.responses.delete(rec.id)
    return Response(resp.content, status=resp.status_code, content_type="application/json")


def _page(items: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenAI list pagination over stored input items: after, limit (1-100, default 20), order."""
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_request("order: must be 'asc' or 'desc'", param="order")
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        raise invalid_request("limit: must be an integer", param="limit") from None
    if not 1 <= limit <= 100:
        raise invalid_request("limit: must be between 1 and 100", param="limit")
    seq = items if order == "asc" else list(reversed(items))
    after = request.args.get("after")
    if after:
        ids = [it.get("id") for it in seq]
        if after not in ids:
            raise invalid_request(f"after: no item with id '{after}'", param="after")
        seq = seq[ids.index(after) + 1 :]
    data = seq[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(seq) > limit,
    }


def register(app: Quart, gw: Gateway) -> None:
    codec = get_codec("openai_responses")

    @app.post("/v1/responses")
    @app.post("/responses")
    async def create() -> Response:
        return await handle_text(gw, "responses", "openai_responses", _StatefulHooks(gw).hooks())

    @app.post("/v1/responses/input_tokens")
    @app.post("/responses/input_tokens")
    async def input_tokens() -> Response:
        """OpenAI's input token count: forwarded to OpenAI-format counters (previous_response_id
        handled as for create), counted by the provider or estimated through the IR elsewhere."""
        try:
            body = parse_body(await request.get_data())
            target, provider = await count_target(gw, required_model(body))
            up = provider.count_tokens(target.model)
            native = up is not None and up.format == "openai_responses"
            body = await _StatefulHooks(gw).prepare(body, provider, native)
            req = codec.decode_request(body)
            if not native:
                _check_ir(req)
            n, kind = await count_input(gw, provider, target.model, "openai_responses", req, body)
            return json_response({"object": "response.input_tokens", "input_tokens": n}, headers={COUNT_HEADER: kind})
        except GatewayError as err:
            return error_response(codec, err)

    async def lookup(rid: str) -> StoredResponse:
        rec = await gw.responses.get(rid)
        if rec is None:
            raise _not_found(rid)
        return rec

    @app.get("/v1/responses/<rid>")
    async def retrieve(rid: str) -> Response:
        try:
            rec = await lookup(rid)
            if rec.native:
                return await _native(gw, rec, "GET", "")
            return json_response(rec.response)
        except GatewayError as err:
            return error_response(codec, err)

    @app.delete("/v1/responses/<rid>")
    async def delete(rid: str) -> Response:
        try:
            rec = await lookup(rid)
            if rec.native:
                return await _native(gw, rec, "DELETE", "")
            await gw.responses.delete(rid)
            return json_response({"id": rid, "object": "response", "deleted": True})
        except GatewayError as err:
            return error_response(codec, err)

    @app.get("/v1/responses/<rid>/input_items")
    async def input_items(rid: str) -> Response:
        try:
            rec = await lookup(rid)
            if rec.native:
                return await _native(gw, rec, "GET", "/input_items")
            return json_response(_page([*rec.context, *rec.input_items]))
        except GatewayError as err:
            return error_response(codec, err)
