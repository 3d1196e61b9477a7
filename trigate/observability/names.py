"""Names shared by metrics, traces and logs: GenAI operation and provider names, limit scopes."""

from __future__ import annotations

import re

# The gateway's API types -> gen_ai.operation.name (well-known values where one applies).
OPERATIONS = {"chat": "chat", "messages": "chat", "responses": "chat", "embeddings": "embeddings",
              "rerank": "rerank", "realtime": "realtime", "passthrough": "passthrough"}

# Provider kinds -> gen_ai.provider.name well-known values; other kinds are used as they are.
SEMCONV_PROVIDERS = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic",
                     "bedrock": "aws.bedrock", "gemini": "gcp.gemini", "vertex": "gcp.vertex_ai",
                     "cohere": "cohere", "groq": "groq", "mistral": "mistral_ai", "deepseek": "deepseek",
                     "xai": "x_ai", "perplexity": "perplexity", "mock": "trigate.mock"}

_SCOPE = re.compile(r" on (key|model|global)\b")


def operation_name(api: str) -> str:
    return OPERATIONS.get(api, api)


def semconv_provider(kind: str | None, name: str | None) -> str:
    if kind is None:
        return name or ""
    return SEMCONV_PROVIDERS.get(kind, kind)


def limit_scope(err: Exception) -> str:
    """key | model | global: which kind of limit refused a request (the limiter names the scope)."""
    m = _SCOPE.search(getattr(err, "message", "") or str(err))
    return m.group(1) if m else "unknown"


def api_for_path(path: str) -> str:
    """An API name for requests that have no Exchange of their own (their fallback log line)."""
    if path.endswith("/count_tokens"):
        return "count_tokens"
    if "/models" in path:
        return "models"
    if path.startswith("/admin/"):
        return "admin"
    return "http"
