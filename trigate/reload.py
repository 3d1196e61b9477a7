"""Config reload without dropping in-flight requests.

A reload builds the new routing, providers, keys and limits off to the side and swaps them into the
Gateway in one step between two awaits (trio runs one task at a time, so no request sees a mix).
Requests already running keep the provider and route objects they resolved. A config that fails to
load, validate or build (anything going wrong before the swap) is reported in one log line and the
running one stays. Listen address, response store and embedded mocks need a restart; a change to them
is reported, not applied (a reload adding an embedded mock is refused).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import trio

from trigate.config import Config, ConfigError, load_config
from trigate.gateway import Gateway
from trigate.policies.auth import KeyRing
from trigate.policies.limits import make_limiter
from trigate.routing import Router
from trigate.upstream.providers import build_providers

log = logging.getLogger("trigate.reload")


async def apply(gw: Gateway, new: Config, mock_urls: dict[str, str]) -> list[str]:
    """Swap ``new`` in; returns what could not be applied without a restart."""
    old = gw.config
    notes = []
    if new.listen != old.listen:
        notes.append("listen address changed: restart to apply")
    if new.store != old.store:
        notes.append("store changed: restart to apply")
    if new.database != old.database:
        notes.append("database changed: restart to apply")
    providers, router, keys = build_providers(new, mock_urls), Router(new), KeyRing(new.auth, gw.keys.runtime)
    limiter = gw.limiter
    if (new.limits.backend, new.limits.redis_url) != (old.limits.backend, old.limits.redis_url):
        limiter = make_limiter(new.limits.backend, new.limits.redis_url)
        await gw.services.start(limiter.run)
    old_providers, old_limiter = gw.providers, gw.limiter
    # the swap: no await between these assignments
    gw.config, gw.router, gw.providers, gw.keys, gw.limiter = new, router, providers, keys, limiter
    gw.balancer.health = new.health
    gw.reloads += 1
    # Old providers may still serve in-flight requests; their resources (token refreshers) are small
    # and closed at shutdown with the rest.
    gw.retired_providers.extend(p for name, p in old_providers.items() if providers.get(name) is not p)
    if old_limiter is not limiter:
        gw.retired_limiters.append(old_limiter)
    return notes


async def reload_from(gw: Gateway, path: str, mock_urls: dict[str, str]) -> bool:
    try:
        new = load_config(path)
        notes = await apply(gw, new, mock_urls)
    except ConfigError as exc:
        log.error("config reload failed, keeping the running config: %s", "; ".join(exc.problems))
        return False
    except Exception as exc:  # whatever it was, a reload must never take the gateway down
        log.error("config reload failed, keeping the running config: %s: %s", type(exc).__name__,
                  " ".join(str(exc).split()))
        return False
    for note in notes:
        log.warning("config reload: %s", note)
    log.info("config reloaded from %s (%d providers, %d model routes)", path, len(new.providers), len(new.models))
    return True


async def watch(gw: Gateway, path: str, mock_urls: dict[str, str], *, poll: float = 1.0,
                signals: bool = False) -> None:
    """Reload on SIGHUP (when ``signals``) and when the file's mtime/size changes. Runs until cancelled."""

    def stamp() -> tuple[float, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    last = stamp()
    async with trio.open_nursery() as nursery:
        if signals:

            async def on_hup() -> None:
                with trio.open_signal_receiver(signal.SIGHUP) as hups:
                    async for _ in hups:
                        await reload_from(gw, path, mock_urls)

            nursery.start_soon(on_hup)
        while True:
            await trio.sleep(poll)
            now = stamp()
            if now is not None and now != last:
                last = now
                await reload_from(gw, str(Path(path)), mock_urls)
