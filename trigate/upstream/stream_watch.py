"""Idle and total deadlines of relayed upstream streams, kept by one task for the whole gateway.

A cancel scope around every upstream read costs more than it seems at scale: each one is a new entry in
trio's deadline heap, and with thousands of streams the stale entries (and the scopes they keep alive)
pile up between heap prunes and are promoted into the cyclic GC's oldest generation, whose full passes
then pause every stream at once. So a stream only notes, per read, when it started waiting; the
watcher sleeps until the earliest deadline any stream could have reached, and closes the upstream
response of a stream that reached one. The blocked read then fails, and the relay, seeing
``Watched.expired``, reports the timeout.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio


class Watched:
    """One stream's deadlines: ``waiting_since`` is set (trio time) while it waits for upstream data."""

    __slots__ = ("close", "expired", "idle", "total_at", "waiting_since")

    def __init__(self, close: Callable[[], Awaitable[None]], idle: float | None, total_at: float) -> None:
        self.close = close
        self.idle = idle
        self.total_at = total_at
        self.waiting_since: float | None = None
        self.expired: str | None = None  # "idle" | "total", once the watcher has ended the stream

    def deadline(self) -> float:
        if self.waiting_since is not None and self.idle is not None:
            return min(self.waiting_since + self.idle, self.total_at)
        return self.total_at


class StreamWatch:
    def __init__(self) -> None:
        self._streams: set[Watched] = set()
        self._wake_at = math.inf
        self._sleep: trio.CancelScope | None = None
        self._closed = False

    def watch(self, close: Callable[[], Awaitable[None]], idle: float | None, total_at: float) -> Watched:
        w = Watched(close, idle, total_at)
        self._streams.add(w)
        # The earliest this stream can expire: the watcher must be awake by then.
        soonest = min(trio.current_time() + idle, total_at) if idle is not None else total_at
        if soonest < self._wake_at:
            self._wake_at = soonest
            if self._sleep is not None:
                self._sleep.deadline = soonest
        return w

    def unwatch(self, w: Watched) -> None:
        self._streams.discard(w)

    def __len__(self) -> int:
        return len(self._streams)

    def close(self) -> None:
        """Stop watching (at shutdown): ``run`` returns."""
        self._closed = True
        if self._sleep is not None:
            self._sleep.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while not self._closed:
            now = trio.current_time()
            self._wake_at = soonest = math.inf  # streams watched during the scan lower _wake_at
            for w in list(self._streams):
                if w.expired is not None:
                    continue
                at = w.deadline()
                if at <= now:
                    w.expired = "total" if at >= w.total_at else "idle"
                    self._streams.discard(w)
                    try:
                        await w.close()
                    except Exception:  # the stream is over either way; keep watching the others
                        pass
                    continue
                # A stream not waiting now may start waiting at any moment: it can expire no sooner
                # than one idle period from now.
                if w.waiting_since is None and w.idle is not None:
                    at = min(at, now + w.idle)
                soonest = min(soonest, at)
            self._wake_at = soonest = min(soonest, self._wake_at)
            if self._closed:
                return
            with trio.CancelScope(deadline=soonest) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
