"""OpenAI ``POST /v1/chat/completions``."""

from __future__ import annotations

from typing import Any

from quart import Quart, Response

from trigate.api.text import Hooks, handle_text
from trigate.errors import invalid_request
from trigate.gateway import Gateway

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def validate_chat(body: dict[str, Any]) -> None:
    """Structure every provider needs, checked even when the body is forwarded untranslated."""
    messages = body.get("messages")
    if messages is None:
        raise invalid_request("messages: field required", param="messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages: must be a non-empty array of messages", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise invalid_request(f"messages[{i}]: must be an object", param=f"messages[{i}]")
        role = m.get("role")
        if role is None:
            raise invalid_request(f"messages[{i}].role: field required", param=f"messages[{i}].role")
        if role not in _ROLES:
            raise invalid_request(f"messages[{i}].role: unknown role {role!r}", param=f"messages[{i}].role")


_HOOKS = Hooks(validate=validate_chat)


def register(app: Quart, gw: Gateway) -> None:
    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions() -> Response:
        return await handle_text(gw, "chat", "openai_chat", _HOOKS)
