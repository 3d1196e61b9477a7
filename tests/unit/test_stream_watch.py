"""The stream watcher keeps idle and total deadlines for every relayed stream with one task: on a
virtual clock (trio's autojump clock), streams that wait too long are closed, others are left alone."""

from __future__ import annotations

import math

import trio

from trigate.upstream.stream_watch import StreamWatch, Watched


class Stream:
    def __init__(self, watch: StreamWatch, idle: float | None, total_at: float = math.inf) -> None:
        self.closed_at: float | None = None
        self.w: Watched = watch.watch(self.close, idle, total_at)

    async def close(self) -> None:
        self.closed_at = trio.current_time()


async def test_idle_counts_only_time_spent_waiting_for_the_upstream(autojump_clock: trio.abc.Clock) -> None:
    watch = StreamWatch()
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        start = trio.current_time()
        silent, chatty, busy = Stream(watch, idle=5), Stream(watch, idle=5), Stream(watch, idle=5)
        silent.w.waiting_since = start
        busy.w.waiting_since = None  # handing a chunk to a slow client: not waiting on the upstream
        for _ in range(10):  # a chunk every 2 s
            chatty.w.waiting_since = trio.current_time()
            await trio.sleep(2)
        assert silent.w.expired == "idle" and silent.closed_at == start + 5
        assert chatty.w.expired is None and chatty.closed_at is None
        assert busy.w.expired is None and busy.closed_at is None
        busy.w.waiting_since = trio.current_time()  # now it waits, and nothing comes
        await trio.sleep(6)
        assert busy.w.expired == "idle" and busy.closed_at == start + 20 + 5
        watch.unwatch(chatty.w)
        assert len(watch) == 0
        watch.close()


async def test_total_deadline_ends_a_stream_that_keeps_talking(autojump_clock: trio.abc.Clock) -> None:
    watch = StreamWatch()
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        s = Stream(watch, idle=5, total_at=trio.current_time() + 7)
        for _ in range(5):
            s.w.waiting_since = trio.current_time()
            await trio.sleep(2)
        assert s.w.expired == "total" and s.closed_at == 7
        watch.close()


async def test_a_new_stream_with_a_nearer_deadline_wakes_the_watcher(autojump_clock: trio.abc.Clock) -> None:
    watch = StreamWatch()
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        slow = Stream(watch, idle=1000)
        slow.w.waiting_since = trio.current_time()
        await trio.sleep(1)  # the watcher now sleeps until t=1000
        quick = Stream(watch, idle=0.5)
        quick.w.waiting_since = trio.current_time()
        await trio.sleep(1)
        assert quick.w.expired == "idle" and quick.closed_at == 1.5
        assert slow.w.expired is None
        watch.close()  # run returns: the nursery can end


async def test_a_failing_close_does_not_stop_the_watcher(autojump_clock: trio.abc.Clock) -> None:
    watch = StreamWatch()

    async def broken() -> None:
        raise OSError("already gone")

    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        bad = watch.watch(broken, 1, math.inf)
        bad.waiting_since = trio.current_time()
        good = Stream(watch, idle=2)
        good.w.waiting_since = trio.current_time()
        await trio.sleep(3)
        assert bad.expired == "idle" and good.w.expired == "idle" and good.closed_at == 2
        watch.close()
