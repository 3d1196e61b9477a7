"""OpenAI Realtime over WebSocket, relayed to the routed provider; and the ephemeral-key endpoints.

``GET /v1/realtime?model=`` (also Azure's ``/openai/realtime?api-version&deployment=`` and
``/openai/v1/realtime?model=``) is upgraded and relayed frame by frame to the provider's Realtime socket.

Handshake: everything the gateway can refuse by itself is refused before the upgrade, as an HTTP error
in OpenAI's shape, as OpenAI refuses its own handshakes (400 no model, 401/403 auth, 404 unknown
model, 429 too many sessions). The upstream socket is then opened *before* the client's is accepted,
so an upstream that refuses the handshake (401, 404, 429, ...) is answered with its own status and
body. An upstream that cannot be reached at all is reported after accepting, as a close with 1011
and a reason, because browsers see nothing of a refused handshake.

A session is one nursery with two pumps (client -> upstream, upstream -> client). Each pump awaits
the other side's send before reading again, so a slow reader slows its writer instead of filling a
queue: the only buffers are Quart-Trio's 10-message receive channel and trio-websocket's 1-message
queue. The first pump to end (a close, a limit, an error) decides the ``Ending`` and the relay closes
the other side with it.

The session body runs shielded, next to a watcher task that is not: when the client disconnects,
Quart-Trio cancels the handler, the watcher's cancellation stops the pumps, and the shielded body
still completes the upstream close handshake (bounded by ``close_timeout_seconds``) instead of being
torn down mid-close. Without the shield, the upstream socket's own reader task would be cancelled
with everything else and the upstream would see a dropped TCP connection.

The client's key never goes upstream and never reaches the log: the upstream gets the provider's
auth headers, and the subprotocol answered to a browser is ``realtime`` alone.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import trio
from attrs import define, field
from quart import Quart, Response, request, websocket
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from trigate.api.text import error_response, parse_body
from trigate.errors import GatewayError, invalid_request, kind_for_status
from trigate.formats import get_codec
from trigate.gateway import Gateway
from trigate.policies.auth import Principal, check_model, credential_from_headers
from trigate.realtime import closing
from trigate.realtime.closing import Ending
from trigate.realtime.hooks import HookChain, SessionModelPolicy, error_event
from trigate.realtime.settings import RealtimeSettings, realtime_settings
from trigate.realtime.subprotocols import client_credential, parse_offer, wants_beta
from trigate.realtime.usage import UsageMeter
from trigate.telemetry import Exchange, log_exchange
from trigate.upstream.client import transport_error
from trigate.upstream.providers import AzureProvider, OpenAIProvider, Provider

log = logging.getLogger("trigate.realtime")

SOCKET_PATHS = ("/v1/realtime", "/openai/realtime", "/openai/v1/realtime")
_OPENAI = get_codec("openai_chat")
# Upstream response headers worth passing on when the upstream refuses a handshake.
_PASS_HEADERS = ("retry-after", "retry-after-ms", "x-request-id", "apim-request-id")


@define
class RealtimeExchange(Exchange):
    """The access-log record of one session: the request line's fields plus what the session did."""

    beta: bool = False
    client_frames: int = 0  # frames received from the client
    upstream_frames: int = 0  # frames received from the upstream
    rejected_events: int = 0  # client events a hook answered with an error instead of forwarding
    closed_by: str | None = None
    close_cause: str | None = None
    close_code: int | None = None  # sent to the client (None: the client had gone)
    close_reason: str | None = None
    upstream_close_code: int | None = None  # on the upstream socket, whichever side sent it
    meter: UsageMeter | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        rec = super().record()
        rec["beta"] = self.beta
        if self.status != 101 and self.closed_by is None:
            return rec  # refused at the handshake: nothing was relayed
        rec.update(client_frames=self.client_frames, upstream_frames=self.upstream_frames,
                   closed_by=self.closed_by, close_cause=self.close_cause, close_code=self.close_code,
                   close_reason=self.close_reason, upstream_close_code=self.upstream_close_code)
        if self.rejected_events:
            rec["rejected_events"] = self.rejected_events
        if self.meter is not None:
            u = self.meter.usage
            rec.update(responses=u.responses, response_statuses=u.statuses,
                       responses_unfinished=self.meter.unfinished,
                       input_text_tokens=u.input_text_tokens, input_audio_tokens=u.input_audio_tokens,
                       output_text_tokens=u.output_text_tokens, output_audio_tokens=u.output_audio_tokens)
            if u.transcriptions:
                rec.update(transcriptions=u.transcriptions,
                           transcription_input_tokens=u.transcription_input_tokens,
                           transcription_output_tokens=u.transcription_output_tokens,
                           transcription_seconds=round(u.transcription_seconds, 3))
        return rec


@define(eq=False)
class _Sessions:
    active: int = 0
    relays: set[Relay] = field(factory=set)


def _sessions(gw: Gateway) -> _Sessions:
    found = gw.extras.get("realtime.sessions")
    if not isinstance(found, _Sessions):
        found = gw.extras["realtime.sessions"] = _Sessions()
    return found


async def _authenticate(gw: Gateway, credential: str | None) -> Principal:
    return await gw.keys.authenticate(credential)


async def _close_on_drain(gw: Gateway, sessions: _Sessions, scope: trio.CancelScope) -> None:
    # Sessions never end by themselves: without this, a graceful shutdown would wait out its whole
    # grace period and then drop them. One task per gateway polls the flag, not one per session;
    # Gateway has no event for the start of draining to wait on instead.
    with scope:
        while not gw.draining:  # noqa: ASYNC110
            await trio.sleep(0.25)
        while True:  # again and again: a session still connecting upstream can only be ended once relaying
            for relay in list(sessions.relays):
                relay.shut_down()
            await trio.sleep(0.25)


def register(app: Quart, gw: Gateway) -> None:
    async def realtime_socket() -> Response | None:
        return await handle_socket(gw, websocket._get_current_object())

    drain_scope = trio.CancelScope()

    @app.before_serving
    async def watch_drain() -> None:
        app.nursery.start_soon(_close_on_drain, gw, _sessions(gw), drain_scope)  # type: ignore[attr-defined]

    @app.after_serving
    async def stop_watching_drain() -> None:
        drain_scope.cancel()

    for path in SOCKET_PATHS:
        app.add_websocket(path, "realtime_socket", realtime_socket)

    async def client_secrets() -> Response:
        return await mint_secret(gw, "client_secrets")

    async def sessions() -> Response:
        return await mint_secret(gw, "sessions")

    for path in ("/v1/realtime/client_secrets", "/openai/v1/realtime/client_secrets"):
        app.add_url_rule(path, "realtime_client_secrets", client_secrets, methods=["POST"])
    for path in ("/v1/realtime/sessions", "/openai/realtimeapi/sessions"):
        app.add_url_rule(path, "realtime_sessions", sessions, methods=["POST"])


# ---------------------------------------------------------------------------------------------
# The WebSocket relay


async def handle_socket(gw: Gateway, ws: Any) -> Response | None:
    """One Realtime session: refuse it with an HTTP error, or relay it until either side ends it."""
    settings = realtime_settings(gw.config)
    ex = RealtimeExchange(method="GET", path=ws.path, api="realtime", client_format="openai_realtime")
    headers = {k.lower(): v for k, v in ws.headers.items()}
    offer = parse_offer(ws.requested_subprotocols)
    ex.beta = wants_beta(headers, offer)
    sessions = _sessions(gw)
    try:
        model = ws.args.get("model") or ws.args.get("deployment")
        if not model:
            raise invalid_request("model: query parameter required (?model=...)", param="model")
        ex.model = model
        principal = await _authenticate(gw, client_credential(headers, offer))
        ex.key_id, ex.team = principal.key_id, principal.team
        check_model(principal, model)
        target = gw.router.resolve(model)
        if target is None:
            raise GatewayError("not_found", f"The model '{model}' does not exist or is not served by this gateway",
                               param="model", code="model_not_found")
        provider = gw.providers[target.provider]
        ex.provider, ex.upstream_model = provider.name, target.model
        upstream = provider.realtime(target.model)
        if gw.draining:
            raise GatewayError("overloaded", "the gateway is shutting down; connect again", status=503,
                               code="shutting_down", retry_after=1)
        if settings.max_sessions is not None and sessions.active >= settings.max_sessions:
            raise GatewayError("rate_limit", f"too many realtime sessions open on this gateway "
                               f"(limit {settings.max_sessions}); try again later", code="too_many_sessions",
                               retry_after=1)
        up_headers = {"openai-beta": "realtime=v1"} if ex.beta else {}
        up_headers.update(await provider.auth_headers("GET", upstream.url, up_headers, b""))
    except GatewayError as err:
        ex.status = err.status
        ex.fail(err)
        log_exchange(ex)
        return error_response(_OPENAI, err)

    hooks = HookChain([SessionModelPolicy(principal, gw.router.resolve, provider.name)]
                      if settings.enforce_session_model else [])
    relay = Relay(gw, ws, ex, settings, provider.name, upstream.url, up_headers, offer.selected, hooks)
    sessions.active += 1
    sessions.relays.add(relay)
    try:
        return await _serve(relay)
    finally:
        sessions.active -= 1
        sessions.relays.discard(relay)
        log_exchange(ex)


async def _serve(relay: Relay) -> Response | None:
    result: Response | None = None
    async with trio.open_nursery() as guard:
        guard.start_soon(_watch_client, relay)
        with trio.CancelScope(shield=True):
            try:
                result = await relay.run()
            finally:
                guard.cancel_scope.cancel()
    return result


async def _watch_client(relay: Relay) -> None:
    # Cancelled in one of two ways: by Quart-Trio when the client disconnects (or the server stops),
    # or by _serve once the session is over; relay.client_gone tells them apart by the relay's phase.
    try:
        await trio.sleep_forever()
    finally:
        relay.client_gone()


def _frame_size(frame: str | bytes, limit: int) -> int:
    if isinstance(frame, bytes):
        return len(frame)
    # UTF-8 takes 1 to 4 bytes a character: encode only when the character count cannot decide.
    n = len(frame)
    return n if n > limit or 4 * n <= limit else len(frame.encode())


class Relay:
    def __init__(self, gw: Gateway, ws: Any, ex: RealtimeExchange, settings: RealtimeSettings, provider: str,
                 url: str, headers: dict[str, str], subprotocol: str | None, hooks: HookChain) -> None:
        self.gw = gw
        self.ws = ws
        self.ex = ex
        self.settings = settings
        self.provider = provider
        self.url = url
        self.headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        self.subprotocol = subprotocol
        self.hooks = hooks
        self.meter = ex.meter = UsageMeter()
        self._phase = "connecting"  # connecting -> relaying -> done
        self._client_gone = False
        self._connect_scope = trio.CancelScope()
        self._relay_scope = trio.CancelScope()
        self._idle: trio.CancelScope | None = None
        self._ending: Ending | None = None

    def shut_down(self) -> None:
        """The gateway is draining: end the session now, telling both sides."""
        if self._phase == "relaying":
            self._end(closing.shutting_down())

    def client_gone(self) -> None:
        if self._phase == "done":
            return
        self._client_gone = True
        if self._phase == "connecting":
            self._connect_scope.cancel()
        else:
            self._relay_scope.cancel()

    async def run(self) -> Response | None:
        s = self.settings
        try:
            with self._connect_scope:
                async with open_websocket_url(self.url, extra_headers=self.headers, max_message_size=s.max_frame_bytes,
                                              connect_timeout=s.connect_timeout_seconds,
                                              disconnect_timeout=s.close_timeout_seconds) as up:
                    self._phase = "relaying"
                    await self._relay(up)
        except ConnectionRejected as exc:
            return self._rejected(exc)
        except (HandshakeError, OSError, trio.BrokenResourceError) as exc:
            if self._phase == "connecting":
                await self._unreachable(exc)
            else:
                log.debug("realtime upstream close did not complete: %r", exc)
        finally:
            self._phase = "done"
        return None

    def _rejected(self, exc: ConnectionRejected) -> Response:
        # Passed on as the upstream said it, as the text APIs pass on upstream errors.
        status = exc.status_code if 400 <= exc.status_code < 600 else 502
        self.ex.status, self.ex.error = status, kind_for_status(status)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in exc.headers or ()}
        passed = {k: headers[k] for k in _PASS_HEADERS if k in headers}
        body = exc.body or b""
        try:
            valid = isinstance(orjson.loads(body), dict)
        except orjson.JSONDecodeError:
            valid = False
        if not valid:
            err = GatewayError(kind_for_status(status), f"upstream provider '{self.provider}' refused the realtime "
                               f"connection (HTTP {exc.status_code})", status=status)
            return error_response(_OPENAI, err)
        return Response(body, status=status, content_type="application/json", headers=passed)

    async def _unreachable(self, exc: BaseException) -> None:
        detail = "connection timed out" if isinstance(exc, ConnectionTimeout) else "connection failed"
        ending = closing.upstream_unreachable(f"provider '{self.provider}' ({detail})")
        self.ex.status, self.ex.error = 502, "upstream_unavailable"
        self.ex.closed_by, self.ex.close_cause = ending.closed_by, ending.cause
        if self._client_gone:
            return
        with trio.move_on_after(self.settings.close_timeout_seconds):
            await self.ws.accept(subprotocol=self.subprotocol)
            await self.ws.close(ending.client_code, ending.client_reason)
            self.ex.close_code, self.ex.close_reason = ending.client_code, ending.client_reason

    async def _relay(self, up: WebSocketConnection) -> None:
        s = self.settings
        await self.ws.accept(subprotocol=self.subprotocol)
        self.ex.status = 101
        start = trio.current_time()
        with self._relay_scope:
            with trio.CancelScope(deadline=start + s.max_session_seconds) as life:
                with trio.CancelScope(deadline=start + s.idle_timeout_seconds) as idle:
                    self._idle = idle
                    async with trio.open_nursery() as pumps:
                        pumps.start_soon(self._client_to_upstream, up)
                        pumps.start_soon(self._upstream_to_client, up)
        ending = self._ending
        if self._client_gone:
            ending = closing.client_closed(self.gw.draining) if ending is None else ending
        elif ending is None:
            if life.cancelled_caught:
                ending = closing.session_expired(s.max_session_seconds)
            elif idle.cancelled_caught:
                ending = closing.idle_timeout(s.idle_timeout_seconds)
            else:
                ending = closing.gateway_error()
        await self._close(up, ending)

    def _end(self, ending: Ending) -> None:
        if self._ending is None:
            self._ending = ending
        self._relay_scope.cancel()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.deadline = trio.current_time() + self.settings.idle_timeout_seconds

    async def _client_to_upstream(self, up: WebSocketConnection) -> None:
        ws, ex, hooks, limit = self.ws, self.ex, self.hooks, self.settings.max_frame_bytes
        try:
            while True:
                frame = await ws.receive()
                if frame is None:  # Quart-Trio hands an empty binary message over as None
                    frame = b""
                self._touch()
                ex.client_frames += 1
                size = _frame_size(frame, limit)
                if size > limit:
                    self._end(closing.frame_too_big(size, limit))
                    return
                if hooks:
                    verdict = hooks.inspect(frame)
                    if verdict.error is not None:
                        ex.rejected_events += 1
                        await ws.send(verdict.error)
                        continue
                    frame = verdict.frame
                await up.send_message(frame)
        except ConnectionClosed as exc:
            self._upstream_closed(exc)
        except Exception:
            log.exception("realtime relay (client -> upstream) failed")
            self._end(closing.gateway_error())

    async def _upstream_to_client(self, up: WebSocketConnection) -> None:
        ws, ex, meter = self.ws, self.ex, self.meter
        try:
            while True:
                frame = await up.get_message()
                self._touch()
                ex.upstream_frames += 1
                meter.feed(frame)
                await ws.send(frame)
        except ConnectionClosed as exc:
            self._upstream_closed(exc)
        except Exception:
            log.exception("realtime relay (upstream -> client) failed")
            self._end(closing.gateway_error())

    def _upstream_closed(self, exc: ConnectionClosed) -> None:
        reason = exc.reason
        code = reason.code if reason is not None else None
        self.ex.upstream_close_code = code
        self._end(closing.upstream_closed(code, reason.reason if reason is not None else None))

    async def _close(self, up: WebSocketConnection, ending: Ending) -> None:
        ex, timeout = self.ex, self.settings.close_timeout_seconds
        ex.closed_by, ex.close_cause = ending.closed_by, ending.cause
        usage = self.meter.usage
        ex.usage = usage.to_ir() if usage.responses else None
        if ending.client_code is not None and not self._client_gone:
            with trio.move_on_after(timeout):
                if ending.notice is not None:
                    await self.ws.send(error_event(*ending.notice))
                await self.ws.close(ending.client_code, ending.client_reason)
            ex.close_code, ex.close_reason = ending.client_code, ending.client_reason
        if ending.upstream_code is not None:
            ex.upstream_close_code = ending.upstream_code
            with trio.move_on_after(timeout):
                await up.aclose(ending.upstream_code, ending.upstream_reason)


# ---------------------------------------------------------------------------------------------
# Ephemeral keys: POST /v1/realtime/client_secrets (GA) and /v1/realtime/sessions (beta)


def secrets_url(provider: Provider, kind: str) -> str:
    """Where a provider mints Realtime client secrets (``client_secrets``) or beta sessions (``sessions``)."""
    if isinstance(provider, AzureProvider):
        if kind == "client_secrets":
            return f"{provider.base_url}/openai/v1/realtime/client_secrets"
        if provider.api_version:
            return f"{provider.base_url}/openai/realtimeapi/sessions?api-version={provider.api_version}"
        raise GatewayError("invalid_request", f"provider '{provider.name}' (Azure v1 API) mints realtime keys at "
                           "/v1/realtime/client_secrets, not /v1/realtime/sessions", status=400)
    if isinstance(provider, OpenAIProvider):
        return f"{provider.base_url}/realtime/{kind}"
    raise GatewayError("invalid_request", f"provider '{provider.name}' does not serve the realtime API", status=400)


async def mint_secret(gw: Gateway, kind: str) -> Response:
    """Proxy a client-secret request to the provider the session's model routes to."""
    ex = Exchange(method="POST", path=request.path, api=f"realtime_{kind}", client_format="openai_chat")
    try:
        body = parse_body(await request.get_data())
        if kind == "client_secrets":
            session = body.get("session")
            if not isinstance(session, dict):
                raise invalid_request("session: field required (an object naming the session's model)",
                                      param="session")
            model, param = session.get("model"), "session.model"
        else:
            session, model, param = None, body.get("model"), "model"
        if not isinstance(model, str) or not model:
            raise invalid_request(f"{param}: field required (a model name string)", param=param)
        ex.model = model
        headers = {k.lower(): v for k, v in request.headers.items()}
        principal = await _authenticate(gw, credential_from_headers(headers) or headers.get("api-key"))
        check_model(principal, model)
        target = gw.router.resolve(model)
        if target is None:
            raise GatewayError("not_found", f"The model '{model}' does not exist or is not served by this gateway",
                               param=param, code="model_not_found")
        provider = gw.providers[target.provider]
        ex.provider, ex.upstream_model = provider.name, target.model
        url = secrets_url(provider, kind)
        if session is not None:
            body = {**body, "session": {**session, "model": target.model}}
        else:
            body = {**body, "model": target.model}
        payload = orjson.dumps(body)
        out = {"content-type": "application/json"}
        if headers.get("openai-beta"):
            out["openai-beta"] = headers["openai-beta"]
        out.update(await provider.auth_headers("POST", url, out, payload))
        try:
            resp = await gw.http.post(url, content=payload, headers=out)
        except httpx.HTTPError as exc:
            raise transport_error(exc, provider.name) from None
        if "json" not in resp.headers.get("content-type", ""):
            failed = resp.status_code >= 400
            raise GatewayError(kind_for_status(resp.status_code) if failed else "upstream_unavailable",
                               f"upstream provider '{provider.name}' answered HTTP {resp.status_code} without a "
                               "JSON body", status=resp.status_code if failed else 502)
    except GatewayError as err:
        ex.status, ex.error = err.status, err.kind
        log_exchange(ex)
        return error_response(_OPENAI, err)
    ex.status = resp.status_code
    if resp.status_code >= 400:
        ex.error = kind_for_status(resp.status_code)
    log_exchange(ex)
    # Upstream errors are already in OpenAI's shape (OpenAI and Azure both speak it): passed on as they are.
    return Response(resp.content, status=resp.status_code, content_type="application/json")
