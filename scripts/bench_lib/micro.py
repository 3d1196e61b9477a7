"""Pure-core translation microbenchmark: recorded upstream SSE (rendered by trigate's own fake
upstream, so it is byte-for-byte what the mock sends) fed event by event through
SSEDecoder -> upstream codec's stream_decoder -> client codec's stream_encoder, exactly as
trigate/api/attempt.py's _relay_translated does, minus the sockets. Also the same-format fast path
(the usage sniffer) for reference.

Usage: python micro.py SECONDS -> one JSON object on stdout. Run it pinned to one core.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio

from trigate.formats import get_codec
from trigate.mock import anthropic as mock_anthropic
from trigate.mock import openai_chat as mock_openai
from trigate.mock.replies import Reply, split_tokens
from trigate.mock.state import MockState, SeenRequest
from trigate.upstream.sniff import sniffer_for
from trigate.wire.sse import SSEDecoder

WORDS = ("the quick brown fox jumps over a lazy dog while streaming tokens through a gateway "
         "that translates every chunk between wire formats ") * 20

OPENAI_BODY: dict[str, Any] = {"model": "bench", "stream": True, "stream_options": {"include_usage": True},
                               "messages": [{"role": "user", "content": "Say something long."}]}
ANTHROPIC_BODY: dict[str, Any] = {"model": "bench", "stream": True, "max_tokens": 4096,
                                  "messages": [{"role": "user", "content": "Say something long."}]}


def reply() -> Reply:
    tokens = split_tokens(WORDS.strip())
    return Reply(tokens, [], "stop", 12, len(tokens))


def openai_events() -> list[bytes]:
    async def collect() -> list[bytes]:
        seen = SeenRequest("/v1/chat/completions", {}, OPENAI_BODY, 0.0)
        return [p async for p in mock_openai.stream(MockState(), seen, OPENAI_BODY, reply(), None)]

    return trio.run(collect)


def anthropic_events() -> list[bytes]:
    return mock_anthropic.stream_events(ANTHROPIC_BODY, reply())


def translate_rate(upstream_fmt: str, client_fmt: str, client_body: dict[str, Any], events: list[bytes],
                   seconds: float) -> dict[str, Any]:
    up = get_codec(upstream_fmt)
    client = get_codec(client_fmt)
    ir_req = client.decode_request(client_body)
    out_bytes = 0
    n_events = 0
    streams = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        frames = SSEDecoder()
        dec = up.stream_decoder(ir_req)
        enc = client.stream_encoder(ir_req)
        for piece in events:
            for ev in frames.feed(piece):
                for irev in dec.feed(ev):
                    out_bytes += len(enc.encode(irev))
        for ev in frames.close():
            for irev in dec.feed(ev):
                out_bytes += len(enc.encode(irev))
        for irev in dec.close():
            out_bytes += len(enc.encode(irev))
        n_events += len(events)
        streams += 1
    dt = time.perf_counter() - t0
    return {"chunks_per_s": n_events / dt, "us_per_chunk": dt / n_events * 1e6, "streams": streams,
            "chunks_per_stream": len(events), "out_bytes_per_stream": out_bytes // max(streams, 1)}


def sniff_rate(fmt: str, body: dict[str, Any], events: list[bytes], seconds: float) -> dict[str, Any]:
    n_events = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        s = sniffer_for(fmt, dict(body))
        for piece in events:
            s.feed(piece)
        s.close()
        n_events += len(events)
    dt = time.perf_counter() - t0
    return {"chunks_per_s": n_events / dt, "us_per_chunk": dt / n_events * 1e6, "chunks_per_stream": len(events)}


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    oa, an = openai_events(), anthropic_events()
    out = {
        # OpenAI client <- Anthropic upstream
        "openai_from_anthropic": translate_rate("anthropic", "openai_chat", OPENAI_BODY, an, seconds),
        # Anthropic client <- OpenAI upstream
        "anthropic_from_openai": translate_rate("openai_chat", "anthropic", ANTHROPIC_BODY, oa, seconds),
        # same format, usage sniffing only (the fast path)
        "openai_sniff": sniff_rate("openai_chat", OPENAI_BODY, oa, seconds / 2),
        "anthropic_sniff": sniff_rate("anthropic", ANTHROPIC_BODY, an, seconds / 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
