"""Wire formats. ``get_codec(name)`` returns the Codec of a format module (see formats/base.py)."""

from __future__ import annotations

import importlib

from trigate.formats.base import Codec

_MODULES = {
    "openai_chat": "trigate.formats.openai_chat",
    "anthropic": "trigate.formats.anthropic",
    "openai_responses": "trigate.formats.openai_responses",
    "gemini": "trigate.formats.gemini",
    "bedrock": "trigate.formats.bedrock",
}
_cache: dict[str, Codec] = {}
# Gemini's model methods; under /v1/models/ they tell a Google caller from an OpenAI one (whose model
# ids may hold colons too: ft:gpt-4o:...).
GEMINI_METHODS = (":generateContent", ":streamGenerateContent", ":countTokens")


def get_codec(name: str) -> Codec:
    codec = _cache.get(name)
    if codec is None:
        codec = importlib.import_module(_MODULES[name]).CODEC
        _cache[name] = codec
    return codec


def client_format_for_path(path: str) -> str:
    """The error/response format a caller of ``path`` expects, for errors raised before routing."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1/responses"):
        return "openai_responses"
    if path.startswith("/v1beta/") or (path.startswith("/v1/models/") and path.endswith(GEMINI_METHODS)):
        return "gemini"
    if path.startswith("/model/"):
        return "bedrock"
    return "openai_chat"
