"""The I/O shell shared by the three text API types (chat completions, messages, responses).

One request: parse -> authenticate -> route -> reserve limits -> attempts (targets in balancer order,
each retried on transient errors, then fallback models) -> answer or stream back -> settle the token
reservation from real usage -> one access-log line. A stream is an async generator owned by the
request's task: when the client goes away Quart-Trio cancels it, and the ``finally`` closes the
upstream response, so the upstream sees the disconnect at once.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
import trio
from quart import Response, request

from trigate.api.attempt import NO_HOOKS, Attempt, Hooks, Result
from trigate.errors import GatewayError, invalid_request
from trigate.formats import client_format_for_path, get_codec
from trigate.formats.base import Codec
from trigate.gateway import Gateway
from trigate.policies.auth import Principal, check_model, credential_from_headers
from trigate.policies.budgets import Hold, budget_headers, refusal_headers, reserve_request, settle_request
from trigate.policies.headers import quota_headers
from trigate.policies.limits import BackendUnavailable, Lease, Limiter, Rule
from trigate.policies.retry import backoff, fallback_reason, is_retryable
from trigate.routing import Resolved, Target
from trigate.telemetry import Exchange, log_exchange
from trigate.upstream.providers import Provider

T = TypeVar("T")

__all__ = ["Hooks", "error_response", "handle_text", "json_response", "parse_body"]

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
# Client stream formats that are not SSE (Bedrock's ConverseStream is AWS event-stream framing).
STREAM_CONTENT_TYPES = {"bedrock": "application/vnd.amazon.eventstream"}
MAX_FALLBACK_DEPTH = 3


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status=status, content_type="application/json", headers=headers)


def error_response(codec: Codec, err: GatewayError, headers: dict[str, str] | None = None) -> Response:
    status, body = codec.render_error(err)
    out = dict(headers or {})
    if err.retry_after is not None:
        out["retry-after"] = str(max(1, math.ceil(err.retry_after))) if err.retry_after > 0 else "0"
    return json_response(body, status, out)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid_request("the request body must be a JSON object")
    return body


def request_headers() -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def request_credential() -> str | None:
    """The caller's key from its headers, or on Google paths from ``?key=``, where Google clients may put it."""
    found = credential_from_headers(request_headers())
    if found is None and client_format_for_path(request.path) == "gemini":
        found = request.args.get("key") or None
    return found


async def authenticate(gw: Gateway) -> Principal:
    return await gw.keys.authenticate(request_credential())


def limit_rules(gw: Gateway, principal: Principal, resolved: Resolved | None) -> list[Rule]:
    """Most specific first: the key's quota is the one reported in rate-limit headers. Without a route
    (passthrough) the key's and the global limits apply."""
    rules = []
    if principal.rpm or principal.tpm or principal.max_concurrent:
        rules.append(Rule(f"key:{principal.key_id}", principal.rpm, principal.tpm, principal.max_concurrent))
    r = resolved.route if resolved is not None else None
    if r is not None and (r.rpm or r.tpm or r.max_concurrent):
        rules.append(Rule(f"model:{r.name}", r.rpm, r.tpm, r.max_concurrent))
    g = gw.config.limits.global_limits
    if g.rpm or g.tpm or g.max_concurrent:
        rules.append(Rule("global", g.rpm, g.tpm, g.max_concurrent))
    return rules


async def end_lease(limiter: Limiter, lease: Lease, ex: Exchange) -> None:
    """The request is over: settle its token reservation from the usage seen and free its slots."""
    u = ex.usage
    with trio.CancelScope(shield=True):
        try:
            if u is not None:
                # unknown usage (a stream cut short) keeps the reservation: never under-count
                await limiter.settle(lease, u.input_tokens + u.output_tokens)
            await limiter.release(lease)
        except Exception as exc:  # the limiter's store failing must not fail the answer
            ex.error = ex.error or f"limiter: {type(exc).__name__}"


async def acquire_lease(gw: Gateway, limiter: Limiter, rules: list[Rule], tokens: int) -> Lease | None:
    """Reserve within every rule. While the limits backend is unavailable the request is refused with
    its 503, or with ``limits.on_backend_error: open`` let through without limits (and counted)."""
    try:
        return await limiter.acquire(rules, tokens)
    except BackendUnavailable:
        if gw.config.limits.on_backend_error != "open":
            raise
        if gw.telemetry is not None:
            gw.telemetry.metrics.limits_unenforced.inc()
        return None


def output_reserve(gw: Gateway, body: dict[str, Any]) -> int:
    """Output tokens reserved before the call: the output cap asked for, else the configured default."""
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        v = body.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v or gw.config.limits.default_output_reserve
    return gw.config.limits.default_output_reserve


class RequestContext:
    """The state of one text request across its attempts, and its single end (settle, log)."""

    def __init__(self, gw: Gateway, api: str, client: Codec, hooks: Hooks) -> None:
        self.gw, self.api, self.client, self.hooks = gw, api, client, hooks
        self.ex = Exchange(method=request.method, path=request.path, api=api, client_format=client.name)
        self.lease: Lease | None = None
        self.hold: Hold | None = None  # the request's reservation in its spend budgets
        self.limiter = gw.limiter  # the one the lease came from, even if a reload swaps gw.limiter
        self.target: Target | None = None
        self._ended = False

    async def end(self, status: int) -> None:
        if self._ended:
            return
        self._ended = True
        if self.target is not None:
            self.gw.balancer.finished(self.target)
        if self.lease is not None:
            await end_lease(self.limiter, self.lease, self.ex)
        self.ex.status = status
        log_exchange(self.ex)
        if self.hold is not None:  # after the log line: the telemetry has priced the usage by then
            await settle_request(self.gw, self.hold, self.ex)

    def headers(self) -> dict[str, str]:
        out = budget_headers(self.hold.tightest()) if self.hold is not None else {}
        if self.lease is not None and self.lease.quota is not None:
            out.update(quota_headers(self.client.name, self.lease.quota))
        return out

    async def admit(self, body: dict[str, Any], reserve_tokens: int, output_tokens: int = 0) -> tuple[Resolved, float]:
        """What every model call does before its first attempt: the model name, the caller's key and
        its permission, the route, the limits, the spend budgets, and the total deadline.
        ``reserve_tokens`` counts input and output; ``output_tokens`` says how many of them are output
        (priced at the output rate for the budget estimate)."""
        gw, ex = self.gw, self.ex
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid_request("model: field required (a model name string)", param="model")
        ex.model = model
        principal = await authenticate(gw)
        ex.key_id, ex.team = principal.key_id, principal.team
        check_model(principal, model)
        resolved = gw.router.resolve_route(model)
        if resolved is None:
            raise GatewayError("not_found", f"The model '{model}' does not exist or is not served by this gateway",
                               param="model", code="model_not_found")
        rules = limit_rules(gw, principal, resolved)
        if rules:
            self.lease = await acquire_lease(gw, self.limiter, rules, reserve_tokens)
        self.hold = await reserve_request(gw, principal, resolved.targets, reserve_tokens - output_tokens,
                                          output_tokens, self.client.name)
        total = resolved.route.timeouts.total if resolved.route.timeouts else gw.config.timeouts.total
        return resolved, (trio.current_time() + total if total is not None else math.inf)

    def refuse(self, err: GatewayError) -> dict[str, str]:
        """The request ends with ``err``: account for it; returns the headers of the error answer."""
        self.ex.fail(err)
        headers = self.headers()
        quota = getattr(err, "quota", None)
        if quota is not None:
            headers.update(quota_headers(self.client.name, quota))
        headers.update(refusal_headers(err))
        return headers


async def handle_text(gw: Gateway, api: str, client_format: str, hooks: Hooks | None = None, *,
                      url_model: str | None = None, url_stream: bool | None = None) -> Response:
    """``url_model`` / ``url_stream``: for formats whose URL says them (Gemini, Bedrock), not the body."""
    client = get_codec(client_format)
    req = RequestContext(gw, api, client, hooks or NO_HOOKS)
    ex = req.ex
    try:
        raw = await request.get_data()
        body = parse_body(raw)
        if url_model is not None:
            body["model"] = url_model  # where the pipeline reads the model; never forwarded (attempt.py)
        ex.note_request(body, raw)
        stream = body.get("stream") is True if url_stream is None else url_stream
        ex.stream = stream
        if req.hooks.validate and isinstance(body.get("model"), str):
            req.hooks.validate(body)
        out_tokens = output_reserve(gw, body)  # input: ~4 bytes of JSON per token
        resolved, total_deadline = await req.admit(body, len(raw) // 4 + out_tokens, out_tokens)
        if req.hooks.admitted is not None:
            await req.hooks.admitted(body)

        async def one(route: Resolved, target: Target, provider: Provider) -> Result:
            attempt = Attempt(gw, ex, api, client, req.hooks, route.route.timeouts or gw.config.timeouts,
                              total_deadline)
            return await attempt.run(provider, target.model, body, stream)

        result = await run_attempts(req, resolved, one, total_deadline)
    except GatewayError as err:
        headers = req.refuse(err)
        await req.end(err.status)
        return error_response(client, err, headers)
    if result.rest is None:
        ex.note_response(result.body)
        await req.end(200)
        return Response(result.body, status=200, content_type=result.content_type, headers=req.headers())
    ex.mark_first_byte()
    return Response(_stream_body(req, result), status=200,
                    content_type=STREAM_CONTENT_TYPES.get(client.name, "text/event-stream"),
                    headers={**SSE_HEADERS, **req.headers()})


async def _stream_body(req: RequestContext, result: Result) -> AsyncIterator[bytes]:
    assert result.rest is not None
    status = 200
    try:
        if result.first:
            yield result.first
        async for chunk in req.ex.tap_stream(result.rest):
            yield chunk
    except trio.Cancelled:
        req.ex.cancelled = True
        status = 499  # client closed the request
        raise
    finally:
        with trio.CancelScope(shield=True):
            await result.rest.aclose()  # type: ignore[attr-defined]
        req.ex.usage = getattr(result.usage_source, "usage", None) or req.ex.usage
        await req.end(status)


def _plan(gw: Gateway, resolved: Resolved) -> list[tuple[Resolved, Target]]:
    """Every (route, target) to try, in order: this model's targets, then its fallbacks' (recursively,
    each model once)."""
    out: list[tuple[Resolved, Target]] = []
    seen = set()
    queue = [(resolved, 0)]
    while queue:
        r, depth = queue.pop(0)
        if r.name in seen:
            continue
        seen.add(r.name)
        out += [(r, t) for t in gw.balancer.order(r.targets, r.route.strategy)]
        if depth < MAX_FALLBACK_DEPTH:
            for name in r.route.fallbacks:
                fb = gw.router.resolve_route(name)
                if fb is not None:
                    queue.append((fb, depth + 1))
    return out


async def run_attempts(req: RequestContext, resolved: Resolved,
                       one: Callable[[Resolved, Target, Provider], Awaitable[T]], total_deadline: float) -> T:
    """Try ``one`` on each (route, target) of the plan: transient errors are retried on the same
    target with backoff, then the request moves on to the next target or fallback model when the
    route's ``fallback_on`` allows. Used by every API type that calls a model."""
    gw, ex = req.gw, req.ex
    last: GatewayError | None = None
    plan = _plan(gw, resolved)
    for i, (route, target) in enumerate(plan):
        provider = gw.providers.get(target.provider)
        if provider is None:
            continue
        policy = route.route.retry or gw.config.retry
        for n in range(1, max(policy.attempts, 1) + 1):
            ex.attempts += 1
            ex.provider, ex.upstream_model = provider.name, target.model
            upstream_try = ex.begin_try(provider.name, provider.kind, target.model)
            gw.balancer.started(target)
            try:
                result = await one(route, target, provider)
            except GatewayError as err:
                ex.end_try(upstream_try, err.kind)
                gw.balancer.finished(target)
                last = err
                if is_retryable(err) or err.kind == "timeout":
                    gw.balancer.failure(target)
                if not is_retryable(err) or n >= policy.attempts or trio.current_time() >= total_deadline:
                    break
                wait = backoff(policy, n, err.retry_after)
                if wait > policy.retry_after_max or trio.current_time() + wait >= total_deadline:
                    break  # waiting that long is worse than moving on
                ex.retries += 1
                await trio.sleep(wait)
                continue
            gw.balancer.success(target)
            req.target = target
            return result
        assert last is not None
        reason = fallback_reason(last)
        if reason is None or reason not in route.route.fallback_on or i + 1 >= len(plan):
            raise last
        if trio.current_time() >= total_deadline:
            raise last
    if last is None:
        raise GatewayError("server_error", f"no provider is configured for model '{resolved.name}'", status=500)
    raise last
