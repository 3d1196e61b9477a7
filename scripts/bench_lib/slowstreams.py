"""Many concurrent slow streams, measured by a deliberately light client: one process, one epoll
loop over raw non-blocking sockets, no HTTP library. Per receive it only takes a timestamp, counts
SSE events ("\\n\\n") and looks for the end of the chunked body, so one core can follow thousands of
streams.

Chunk delay = (gap between two consecutive receives on a stream) - nominal token interval, clipped at
0. Reported over the whole run and over the *full-concurrency window*: from the moment every stream
has its first byte to the moment the first stream ends.

Usage: python slowstreams.py SPEC.json -> one JSON object on stdout.
SPEC: {"host", "port", "request_file", "n", "ramp_s", "nominal_ms", "timeout_s"}
"""

from __future__ import annotations

import errno
import json
import select
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_lib.stats import Histogram

_END = b"0\r\n\r\n"


class S:
    __slots__ = ("events", "first", "last", "sock", "start", "tail", "writing")

    def __init__(self, sock: socket.socket, start: float) -> None:
        self.sock = sock
        self.start = start
        self.first = 0.0
        self.last = 0.0
        self.events = 0
        self.tail = b""
        self.writing = True


def run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], int(spec["port"])
    data = Path(spec["request_file"]).read_bytes()
    n = int(spec["n"])
    ramp = float(spec["ramp_s"])
    nominal = float(spec["nominal_ms"])
    timeout = float(spec["timeout_s"])

    ep = select.epoll()
    live: dict[int, S] = {}
    gaps = Histogram(0.25, 120_000)
    gaps_window = Histogram(0.25, 120_000)
    ttfb = Histogram(0.25, 120_000)
    opened = completed = failed = firsts = 0
    events_done: list[int] = []
    fail_kinds: dict[str, int] = {}
    t_all_first: float | None = None
    t_first_done: float | None = None
    peak = 0
    streaming = peak_streaming = 0  # streams between their first byte and their end
    max_gap = 0.0

    def fail(fd: int, why: str) -> None:
        nonlocal failed, streaming
        st = live.pop(fd, None)
        if st is None:
            return
        failed += 1
        if st.first:
            streaming -= 1
        fail_kinds[why] = fail_kinds.get(why, 0) + 1
        try:
            ep.unregister(fd)
        except OSError:
            pass
        st.sock.close()

    t0 = time.monotonic()
    deadline = t0 + timeout
    while opened < n or live:
        now = time.monotonic()
        if now > deadline:
            for fd in list(live):
                fail(fd, "timeout")
            break
        due = n if ramp <= 0 else min(n, int((now - t0) / ramp * n) + 1)
        while opened < due:
            opened += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                failed += 1
                why = f"connect:{errno.errorcode.get(rc, rc)}"
                fail_kinds[why] = fail_kinds.get(why, 0) + 1
                s.close()
                continue
            live[s.fileno()] = S(s, now)
            ep.register(s.fileno(), select.EPOLLOUT)
        peak = max(peak, len(live))
        for fd, _ev in ep.poll(0.002 if opened < n else 0.2):
            st = live.get(fd)
            if st is None:
                continue
            if st.writing:
                err = st.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(fd, f"connect:{errno.errorcode.get(err, err)}")
                    continue
                try:
                    st.sock.send(data)  # small: fits the socket buffer in one go
                except OSError as exc:
                    fail(fd, f"send:{type(exc).__name__}")
                    continue
                st.writing = False
                ep.modify(fd, select.EPOLLIN)
                continue
            try:
                chunk = st.sock.recv(262144)
            except OSError as exc:
                fail(fd, f"recv:{type(exc).__name__}")
                continue
            t = time.monotonic()
            if not chunk:
                fail(fd, "closed early")
                continue
            if st.last:
                gap = (t - st.last) * 1000
                if gap > max_gap:
                    max_gap = gap
                excess = gap - nominal
                if excess < 0:
                    excess = 0.0
                gaps.add(excess)
                if t_all_first is not None and t_first_done is None:
                    gaps_window.add(excess)
            else:
                if not chunk.startswith(b"HTTP/1.1 200"):
                    fail(fd, "status " + chunk[9:12].decode("latin-1"))
                    continue
                st.first = t
                ttfb.add((t - st.start) * 1000)
                firsts += 1
                streaming += 1
                if streaming > peak_streaming:
                    peak_streaming = streaming
            st.last = t
            st.events += chunk.count(b"\n\n")
            tail = st.tail + chunk[-8:] if len(chunk) < 8 else chunk[-8:]
            st.tail = tail[-8:]
            if t_all_first is None and firsts + failed >= n:
                t_all_first = t
            if st.tail.endswith(_END):
                completed += 1
                streaming -= 1
                events_done.append(st.events)
                if t_first_done is None:
                    t_first_done = t
                del live[fd]
                ep.unregister(fd)
                st.sock.close()
    wall = time.monotonic() - t0
    ep.close()
    events_done.sort()
    window = (t_first_done - t_all_first) if (t_all_first and t_first_done and t_first_done > t_all_first) else 0.0
    return {
        "n": n, "opened": opened, "completed": completed, "failed": failed, "fail_kinds": fail_kinds,
        "peak_connections": peak, "peak_streaming": peak_streaming, "wall_s": wall,
        "events_total": sum(events_done),
        "events_per_stream_p50": events_done[len(events_done) // 2] if events_done else None,
        "chunks_per_s": sum(events_done) / wall if wall else None,
        "delay_ms": {"p50": gaps.percentile(50), "p99": gaps.percentile(99), "p999": gaps.percentile(99.9),
                     "n": gaps.total},
        "delay_window_ms": {"p50": gaps_window.percentile(50), "p99": gaps_window.percentile(99),
                            "n": gaps_window.total, "window_s": window},
        "max_gap_ms": max_gap,
        "ttfb_ms": {"p50": ttfb.percentile(50), "p99": ttfb.percentile(99)},
        "all_streaming_at_s": (t_all_first - t0) if t_all_first else None,
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(run(spec)))


if __name__ == "__main__":
    main()
