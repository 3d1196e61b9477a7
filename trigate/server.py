"""Running the gateway: embedded mocks, the upstream pool, Hypercorn, signals and graceful shutdown."""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from attrs import define, field
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from trigate.app import create_app
from trigate.config import Config
from trigate.gateway import Gateway
from trigate.mock.run import serve_mock
from trigate.mock.state import MockState
from trigate.observability.telemetry import Telemetry
from trigate.policies.auth import KeyRing
from trigate.policies.balancer import Balancer
from trigate.policies.limits import make_limiter
from trigate.reload import watch
from trigate.routing import Router
from trigate.store.responses import open_response_store
from trigate.store.sql import Database
from trigate.upstream.client import make_client, make_transport
from trigate.upstream.providers import build_providers


class ReusePortConfig(HyperConfig):
    """Hypercorn's config, binding with SO_REUSEPORT so several worker processes share one port (the
    kernel spreads connections); Hypercorn itself only sets it when it runs the workers."""

    def create_sockets(self) -> Any:
        self.workers = 2
        try:
            return super().create_sockets()
        finally:
            self.workers = 1


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
        lines.append(f"  {route.name:<24} -> {route.provider}" + (f" ({route.model})" if route.model else ""))
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
        gw = Gateway(
            config=config,
            router=Router(config),
            providers=build_providers(config, mock_urls),
            http=make_client(config.server, transport),
            transport=transport,
            responses=open_response_store(config.store.responses_path),
            database=Database.open(config.database.url),
            keys=KeyRing(config.auth),
            limiter=make_limiter(config.limits.backend, config.limits.redis_url),
            balancer=Balancer(config.health),
            telemetry=Telemetry(config),
        )
        gw.services = nursery
        await nursery.start(gw.limiter.run)
        await nursery.start(gw.stream_watch.run)
        app = create_app(gw)

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
                        print(f"trigate: received {signal.Signals(signum).name}, draining "
                              f"(up to {config.server.graceful_timeout:g}s)", file=sys.stderr, flush=True)
                        stop.set()
                        return

            nursery.start_soon(on_signals)

        hc = ReusePortConfig() if reuse_port else HyperConfig()
        hc.bind = [f"{config.listen.host}:{config.listen.port}"]
        hc.accesslog = None  # trigate writes its own access log (telemetry.py)
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
                    await serve(gw.asgi(app), hc, shutdown_trigger=trigger,  # type: ignore[arg-type]
                                task_status=task_status)
            finally:
                gw.stream_watch.close()
                with trio.CancelScope(shield=True):
                    await gw.http.aclose()
                    await gw.responses.aclose()
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
            print(describe(gw, url), file=sys.stderr, flush=True)
        task_status.started(Running(url=url, gateway=gw, mocks=mocks, mock_urls=mock_urls))
