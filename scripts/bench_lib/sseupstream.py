"""A lean fake upstream for the many-slow-streams workload: OpenAI chat completion chunks over SSE,
one every ``--token-ms`` per stream, ``--chunks`` per answer, from one epoll loop with a timer heap.

Why not ``trigate mock --token-delay-ms 50``: on a 2-core machine the fake upstream shares a core with
the load generator, and the mock (Quart/Hypercorn, one coroutine per stream) saturates at a few
thousand chunks/s, far below the 20,000 chunks/s that 1,000 streams at 50 ms need; the upstream, not
the gateway, would then be what the benchmark measures. This server writes pre-rendered chunks at a
few microseconds each. Its wire format is the one trigate's mock sends (same chunk objects, usage
chunk when ``stream_options.include_usage``, ``data: [DONE]``), over HTTP/1.1 chunked keep-alive.

Usage: python sseupstream.py --port P --token-ms 50 --chunks 600
"""

from __future__ import annotations

import argparse
import heapq
import json
import select
import socket
import time

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n")


def frame(payload: bytes) -> bytes:
    return b"%x\r\n" % len(payload) + payload + b"\r\n"


def sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def render(model: str, chunks: int, include_usage: bool) -> list[bytes]:
    base = {"id": "chatcmpl-benchslow0000000000000", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_trigate_bench"}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        obj = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if include_usage:
            obj["usage"] = None
        return frame(sse(obj))

    words = ["lorem ", "ipsum ", "dolor ", "sit ", "amet, ", "consectetur ", "adipiscing ", "elit "]
    out = [HEAD + chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": words[i % len(words)]}) for i in range(chunks - 2)]
    tail = chunk({}, "stop")
    if include_usage:
        usage = {"prompt_tokens": 5, "completion_tokens": chunks - 2, "total_tokens": chunks + 3}
        tail += frame(sse({**base, "choices": [], "usage": usage}))
    tail += frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    out.append(tail)
    return out


class Conn:
    __slots__ = ("buf", "i", "out", "pieces", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.pieces: list[bytes] | None = None  # the answer being streamed
        self.i = 0
        self.out = b""  # unsent bytes (socket buffer full)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token-ms", type=float, default=50.0)
    p.add_argument("--chunks", type=int, default=600)
    a = p.parse_args()
    interval = a.token_ms / 1000
    cache: dict[tuple[str, bool], list[bytes]] = {}

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(4096)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns: dict[int, Conn] = {}
    timers: list[tuple[float, int, int]] = []  # (due, seq, fd)
    seq = 0

    def close(fd: int) -> None:
        c = conns.pop(fd, None)
        if c is not None:
            try:
                ep.unregister(fd)
            except OSError:
                pass
            c.sock.close()

    def send(fd: int, c: Conn, data: bytes) -> None:
        if c.out:
            c.out += data
            return
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            close(fd)
            return
        if n < len(data):
            c.out = data[n:]
            ep.modify(fd, select.EPOLLIN | select.EPOLLOUT)

    def on_request(fd: int, c: Conn) -> None:
        nonlocal seq
        while c.pieces is None:
            i = c.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = c.buf[:i].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            if len(c.buf) < i + 4 + length:
                return
            body, c.buf = c.buf[i + 4:i + 4 + length], c.buf[i + 4 + length:]
            if not head.startswith("POST "):
                send(fd, c, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok")
                continue
            try:
                req = json.loads(body)
            except ValueError:
                req = {}
            key = (str(req.get("model", "bench")), bool((req.get("stream_options") or {}).get("include_usage")))
            if key not in cache:
                cache[key] = render(key[0], a.chunks, key[1])
            c.pieces, c.i = cache[key], 0
            send(fd, c, c.pieces[0])
            c.i = 1
            seq += 1
            heapq.heappush(timers, (time.monotonic() + interval, seq, fd))

    while True:
        timeout = max(0.0, timers[0][0] - time.monotonic()) if timers else 1.0
        for fd, ev in ep.poll(timeout):
            if fd == ls.fileno():
                while True:
                    try:
                        s, _ = ls.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[s.fileno()] = Conn(s)
                    ep.register(s.fileno(), select.EPOLLIN)
                continue
            c = conns.get(fd)
            if c is None:
                continue
            if ev & select.EPOLLOUT and c.out:
                data, c.out = c.out, b""
                ep.modify(fd, select.EPOLLIN)
                send(fd, c, data)
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    close(fd)
                    continue
                if not data:
                    close(fd)
                    continue
                c.buf += data
                on_request(fd, c)
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            due, _, fd = heapq.heappop(timers)
            c = conns.get(fd)
            if c is None or c.pieces is None:
                continue
            send(fd, c, c.pieces[c.i])
            c.i += 1
            if c.i >= len(c.pieces):
                c.pieces = None
                on_request(fd, c)  # a pipelined next request, if any
            else:
                seq += 1
                # the schedule follows the previous due time, so a late tick does not push the rest back
                heapq.heappush(timers, (max(due + interval, now), seq, fd))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
