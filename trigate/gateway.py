"""The running gateway's shared state: config, routes, providers and the upstream HTTP pool."""

from __future__ import annotations

from typing import Any

import httpx
import trio
from attrs import define, field

from trigate.config import Config
from trigate.policies.auth import KeyRing
from trigate.policies.balancer import Balancer
from trigate.policies.limits import Limiter
from trigate.routing import Router
from trigate.store.responses import ResponseStore
from trigate.store.sql import Database
from trigate.upstream.providers import Provider
from trigate.upstream.stream_watch import StreamWatch


@define
class Gateway:
    config: Config
    router: Router
    providers: dict[str, Provider]
    http: httpx.AsyncClient
    # The transport under ``http``: model calls go to it directly (see upstream/client.py, send).
    transport: httpx.AsyncBaseTransport
    responses: ResponseStore
    keys: KeyRing
    limiter: Limiter
    balancer: Balancer
    # Durable state (runtime keys, budgets, usage): SQLite by default, PostgreSQL for replicas.
    database: Database
    # Set when shutdown began: /ready answers 503 so load balancers stop sending traffic.
    draining: bool = False
    extras: dict[str, object] = field(factory=dict)
    # HTTP requests and WebSocket sessions being served, bodies and streams included.
    inflight: int = 0
    reloads: int = 0
    # Replaced by a reload but maybe still used by in-flight requests; closed at shutdown.
    retired_providers: list[Any] = field(factory=list)
    retired_limiters: list[Any] = field(factory=list)
    # The server's long-lived nursery, for services that outlive any request (limiter backends).
    services: Any = None
    # Metrics, traces, usage rows and access log (trigate.observability.Telemetry).
    telemetry: Any = None
    # Durable usage rows (trigate.store.usage.UsageWriter; its task runs in ``services``).
    usage: Any = None
    # Idle and total deadlines of relayed streams (its task runs in ``services``).
    stream_watch: StreamWatch = field(factory=StreamWatch)
    _idle: trio.Event = field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        if self.telemetry is not None:
            self.telemetry.bind(self)

    async def wait_idle(self) -> None:
        while self.inflight:
            self._idle = trio.Event()
            await self._idle.wait()

    def asgi(self, app: Any) -> Any:
        """Wrap an ASGI app so every request and session is counted until its last byte."""

        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                return await app(scope, receive, send)
            self.inflight += 1
            try:
                return await app(scope, receive, send)
            finally:
                self.inflight -= 1
                if not self.inflight:
                    self._idle.set()

        return self.telemetry.asgi(counted) if self.telemetry is not None else counted
