"""Running the gateway: embedded mocks, the upstream pool, Hypercorn, signals and graceful shutdown."""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from attrs import define, field
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from trigate.app import create_app
from trigate.config import Config, TargetSpec
from trigate.gateway import Gateway
from trigate.keepalive import finish_responses
from trigate.mock.run import serve_mock
from trigate.mock.state import MockState
from trigate.observability.telemetry import Telemetry
from trigate.policies.auth import KeyRing, RuntimeKeys
from trigate.policies.balancer import Balancer
from trigate.policies.limits import make_limiter
from trigate.reload import watch
from trigate.routing import Router
from trigate.store.keys import KeyStore
from trigate.store.responses import open_response_store
from trigate.store.sql import Database
from trigate.store.usage import UsageStore, UsageWriter
from trigate.upstream.client import make_client, make_transport
from trigate.upstream.providers import build_providers

# What the operator reads on stderr (banner, signals); through logging so they queue with every other line.
log = logging.getLogger("trigate")


class ListenError(Exception):
    """The listen address cannot be bound (in use, not permitted, unknown host): one line for the operator."""


class ListenConfig(HyperConfig):
    """Hypercorn's config with the listening sockets bound up front by ``bind_now``, so a busy port is one
    clear error before anything else starts; with ``reuse_port`` they bind with SO_REUSEPORT, so several
    worker processes share one port (the kernel spreads connections), which Hypercorn itself only sets
    when it runs the workers."""

    reuse_port = False
    _bound: Any = None

    def bind_now(self) -> None:
        self.workers = 2 if self.reuse_port else 1
        try:
            self._bound = super().create_sockets()
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ListenError(f"cannot listen on {', '.join(self.bind)}: {reason}") from None
        finally:
            self.workers = 1

    def create_sockets(self) -> Any:
        if self._bound is None:
            self.bind_now()
        bound, self._bound = self._bound, None
        return bound


@define
class Running:
    """What a started gateway exposes to its owner (the CLI, or a test harness)."""

    url: str
    gateway: Gateway
    mocks: dict[str, MockState] = field(factory=dict)
    mock_urls: dict[str, str] = field(factory=dict)


def describe(gw: Gateway, url: str) -> str:
    lines = [f"trigate listening on {url}", "providers:"]
    for p in gw.providers.values():
        lines.append(f"  {p.name:<12} {p.kind:<10} {p.base_url}")
    lines.append("models:")
    for route in gw.config.models:
        targets = route.targets or [TargetSpec(provider=route.provider or "", model=route.model)]
        shown = ", ".join(t.provider + (f" ({t.model})" if t.model else "") for t in targets)
        if route.fallbacks:
            shown += f"; fallbacks: {', '.join(route.fallbacks)}"
        lines.append(f"  {route.name:<24} -> {shown}")
    return "\n".join(lines)


async def run_gateway(
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    handle_signals: bool = False,
    announce: bool = False,
    config_path: str | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown_trigger`` returns or, with ``handle_signals``, SIGTERM/SIGINT arrives.
    In-flight requests then get ``server.graceful_timeout`` seconds to finish. With ``config_path``
    the config is reloaded when the file changes (and on SIGHUP with ``handle_signals``)."""
    hc = ListenConfig()
    hc.reuse_port = reuse_port
    hc.bind = [f"{config.listen.host}:{config.listen.port}"]
    hc.bind_now()
    async with trio.open_nursery() as nursery:
        mocks: dict[str, MockState] = {}
        mock_urls: dict[str, str] = {}
        mocks_done = trio.Event()
        for name, pc in config.providers.items():
            if pc.kind == "mock" and not pc.base_url:
                state = MockState(latency_ms=pc.latency_ms, token_delay_ms=pc.token_delay_ms)
                mocks[name] = state
                mock_urls[name] = await nursery.start(
                    lambda task_status, s=state: serve_mock(s, shutdown_trigger=mocks_done.wait,
                                                          task_status=task_status))

        transport = make_transport(config.server)
        database = Database.open(config.database.url)
        gw = Gateway(
            config=config,
            router=Router(config),
            providers=build_providers(config, mock_urls),
            http=make_client(config.server, transport),
            transport=transport,
            responses=open_response_store(config.store, database, config.limits.redis_url),
            database=database,
            keys=KeyRing(config.auth, RuntimeKeys(KeyStore(database))),
            limiter=make_limiter(config.limits.backend, config.limits.redis_url),
            balancer=Balancer(config.health),
            telemetry=Telemetry(config),
        )
        gw.services = nursery
        await nursery.start(gw.limiter.run)
        await nursery.start(gw.responses.run)
        await nursery.start(gw.stream_watch.run)
        if gw.keys.runtime is not None:
            await nursery.start(gw.keys.runtime.run)
        gw.usage = gw.telemetry.usage = UsageWriter(UsageStore(gw.database), metrics=gw.telemetry.metrics)
        await nursery.start(gw.usage.run)
        app = create_app(gw)
        asgi = finish_responses(gw.asgi(app), max_drain_bytes=config.server.max_body_bytes)

        stop = trio.Event()

        async def trigger() -> None:
            if shutdown_trigger is not None:
                async with trio.open_nursery() as n:

                    async def wait_external() -> None:
                        await shutdown_trigger()
                        n.cancel_scope.cancel()

                    async def wait_stop() -> None:
                        await stop.wait()
                        n.cancel_scope.cancel()

                    n.start_soon(wait_external)
                    n.start_soon(wait_stop)
            else:
                await stop.wait()
            gw.draining = True
            nursery.start_soon(drain)

        serve_scope = trio.CancelScope()

        async def drain() -> None:
            # Hypercorn keeps idle keep-alive connections open until its own grace period ends, so
            # the gateway ends serving itself once the requests it is counting are done.
            with trio.move_on_after(config.server.graceful_timeout):
                await gw.wait_idle()
            serve_scope.cancel()

        signal_scope = trio.CancelScope()
        watch_scope = trio.CancelScope()
        if config_path is not None:

            async def watch_config() -> None:
                with watch_scope:
                    await watch(gw, config_path, mock_urls, poll=config.server.reload_poll_seconds,
                                signals=handle_signals)

            nursery.start_soon(watch_config)
        if handle_signals:

            async def on_signals() -> None:
                with signal_scope, trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info(f"trigate: received {signal.Signals(signum).name}, draining "
                                 f"(up to {config.server.graceful_timeout:g}s)")
                        stop.set()
                        return

            nursery.start_soon(on_signals)

        hc.accesslog = None  # trigate writes its own access log (telemetry.py)
        # Hypercorn's own lines go through the gateway's logging like every other record; left to itself
        # it adds a second stderr handler (every line printed twice) whose format needs the process id.
        hc.errorlog = logging.getLogger("hypercorn.error")
        hc.graceful_timeout = config.server.graceful_timeout
        hc.keep_alive_timeout = 75
        hc.backlog = 4096

        if handle_signals:
            # This process is ours: move everything built so far (modules, config, providers, price
            # tables) out of the cyclic GC's reach, and collect less often. Every GC pause is felt by
            # every stream in flight as one late chunk. Measured (scripts/bench, slow streams): the
            # freeze took full passes under 200 streams from 44-59 ms to 4-6 ms; the thresholds took
            # 3000 streams from 11 full passes of 200-420 ms in a run to one of 95 ms, and their chunk
            # delay p99 from 126 to 21 ms.
            gc.collect()
            gc.freeze()
            gc.set_threshold(*config.server.gc_thresholds)

        async def serve_app(*, task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                with serve_scope:
                    await serve(asgi, hc, shutdown_trigger=trigger,  # type: ignore[arg-type]
                                task_status=task_status)
            finally:
                gw.stream_watch.close()
                if gw.keys.runtime is not None:
                    gw.keys.runtime.close()
                with trio.CancelScope(shield=True):
                    await gw.http.aclose()
                    await gw.responses.aclose()
                    await gw.usage.aclose()  # the rows it holds, before the database goes
                    await gw.database.aclose()
                    await gw.limiter.aclose()
                    for p in [*gw.providers.values(), *gw.retired_providers]:
                        await p.aclose()
                    for limiter in gw.retired_limiters:
                        await limiter.aclose()
                    await gw.telemetry.aclose()
                mocks_done.set()
                signal_scope.cancel()
                watch_scope.cancel()

        binds = await nursery.start(serve_app)
        url = binds[0]
        if announce:
            # through logging, as Hypercorn's lines are: one writer thread, so lines never interleave
            log.info(describe(gw, url))
        task_status.started(Running(url=url, gateway=gw, mocks=mocks, mock_urls=mock_urls))
