"""Anthropic ``POST /v1/messages``: native to Anthropic providers, translated for the others."""

from __future__ import annotations

from typing import Any

from quart import Quart, Response

from trigate.api.text import Hooks, handle_text
from trigate.errors import invalid_request
from trigate.gateway import Gateway


def validate_messages(body: dict[str, Any]) -> None:
    """What every provider needs, checked even when the body is forwarded untranslated."""
    if not isinstance(body.get("max_tokens"), int) or isinstance(body.get("max_tokens"), bool):
        raise invalid_request("max_tokens: field required (an integer)", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages: field required (a non-empty array)", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise invalid_request(f"messages.{i}: must be an object", param=f"messages.{i}")
        # "system" turns inside messages are what Claude Code sends (beta mid-conversation-system).
        if m.get("role") not in ("user", "assistant", "system"):
            raise invalid_request(f"messages.{i}.role: must be 'user', 'assistant' or 'system'",
                                  param=f"messages.{i}.role")
        if "content" not in m:
            raise invalid_request(f"messages.{i}.content: field required", param=f"messages.{i}.content")


_HOOKS = Hooks(validate=validate_messages)


def register(app: Quart, gw: Gateway) -> None:
    @app.post("/v1/messages")
    async def messages() -> Response:
        return await handle_text(gw, "messages", "anthropic", _HOOKS)
