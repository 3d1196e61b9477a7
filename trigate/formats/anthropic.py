"""Anthropic Messages API (``POST /v1/messages``) <-> IR.

Round trip (Anthropic -> IR -> Anthropic) is lossless up to these canonical forms:
- a content list / system list / tool_result content holding one plain text block is written as a string;
- consecutive same-role messages are merged (the API merges them itself);
- ``stream: false``, ``is_error: false``, ``disable_parallel_tool_use: false``, empty ``stop_sequences`` and
  empty text blocks are omitted; ``type: "custom"`` on tools is omitted;
- unknown keys inside blocks, messages and tools are not kept (unknown keys of a tool are, by tool name).

Choices where protocols.md leaves one open:
- System/developer messages anywhere in the IR are hoisted, in order, into the top-level ``system``
  (joined with a blank line). Rendering a mid-conversation one as a user ``<system>`` block would keep its
  position but make the model read operator instructions as user words, which is the worse distortion.
- ``temperature`` above 1 (OpenAI's 0-2 scale) is clamped to 1 rather than halved, so the common values
  0-1 keep their meaning.
- ``json_object`` output has no Anthropic switch: an instruction is appended to the system prompt.
- Server-tool blocks (``server_tool_use``, ``*_tool_result``, ``search_result``, ...) are kept as an empty
  ``ir.Text`` whose ``citations`` hold the block under ``OPAQUE_MARKER``; other encoders drop empty text, this
  one restores the block.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from trigate.errors import GatewayError, kind_for_status
from trigate.formats.anthropic_stream import (
    OVERLOADED_STATUS,
    AnthropicStreamDecoder,
    AnthropicStreamEncoder,
    error_from_object,
    error_payload,
    message_id,
    stop_from_anthropic,
    stop_to_anthropic,
    usage_from_anthropic,
    usage_from_body,
    usage_from_event,
    usage_to_anthropic,
)
from trigate.formats.anthropic_stream import render_stream_error as _render_stream_error
from trigate.formats.base import FunctionCodec
from trigate.translate import ir
from trigate.translate.media import image_type
from trigate.translate.reasoning import budget_for_effort, default_max_tokens, fit_thinking, thinking_requested

__all__ = ["CODEC", "OPAQUE_MARKER", "server_tools", "usage_from_body", "usage_from_event"]

NAME = "anthropic"

OPAQUE_MARKER = "anthropic_block"

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_KNOWN_REQUEST_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "metadata",
        "service_tier",
    }
)
_KNOWN_RESPONSE_FIELDS = frozenset({"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"})
_USAGE_FIELDS = frozenset(
    {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens_details"}
)
_TOOL_FIELDS = frozenset({"name", "description", "input_schema", "strict", "cache_control", "type"})

# Blocks the IR has no part for but an Anthropic round trip must not lose (server tools, search results,
# context compaction). Anything else unknown is a client error.
_OPAQUE_BLOCK_TYPES = frozenset(
    {
        "server_tool_use",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
        "search_result",
        "tool_reference",
        "compaction",
    }
)
_CITATION_TYPES = frozenset(
    {
        "char_location",
        "page_location",
        "content_block_location",
        "web_search_result_location",
        "search_result_location",
    }
)
_THINKING_TYPES = frozenset({"enabled", "adaptive", "disabled", "between_tools"})
_ANTHROPIC_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
_SERVICE_TIERS = {"auto": "auto", "standard_only": "standard_only", "default": "standard_only"}

_TOOL_ID_RE = re.compile(r"[a-zA-Z0-9_-]+")
_DATA_URL_RE = re.compile(r"data:([\w.+/-]+);base64,(.*)", re.DOTALL)

# Sent as the first user turn when the history has none (assistant-first or system-only histories):
# Anthropic needs a user turn before any assistant turn.
PLACEHOLDER_USER_TEXT = "(continue)"

JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."


def _bad(message: str, param: str | None) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_num(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and v == v


def _opt_dict(d: dict[str, Any], key: str, param: str) -> dict[str, Any] | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _bad(f"{param}.{key} must be an object", f"{param}.{key}")
    return v


def _opt_str(d: dict[str, Any], key: str, param: str) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise _bad(f"{param}.{key} must be a string", f"{param}.{key}")
    return v


def _req_str(d: dict[str, Any], key: str, param: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise _bad(f"{param}.{key} is required and must be a string", f"{param}.{key}")
    return v


def opaque_part(block: dict[str, Any]) -> ir.Text:
    return ir.Text("", citations=[{"type": OPAQUE_MARKER, "block": block}])


def opaque_block(part: ir.Text) -> dict[str, Any] | None:
    """The Anthropic block an ``opaque_part`` carries, or None for an ordinary text part."""
    c = part.citations
    if c and not part.text and len(c) == 1 and isinstance(c[0], dict) and c[0].get("type") == OPAQUE_MARKER:
        return c[0].get("block")
    return None


def server_tools(req: ir.Request) -> list[dict[str, Any]]:
    """The typed Anthropic server tools (web_search_..., bash_..., ...) a request carries in its extras.

    For other encoders and the shell: they have no equivalent elsewhere, so a request routed to another
    provider should be rejected (or the tools knowingly stripped) when this is not empty.
    """
    extras = req.extras.get(NAME) or {}
    return [tool for _, tool in extras.get("_server_tools") or ()]


def _is_opaque_type(btype: str) -> bool:
    return btype in _OPAQUE_BLOCK_TYPES or btype.endswith("_tool_result")


# --------------------------------------------------------------------------------------------
# Request: Anthropic -> IR
# --------------------------------------------------------------------------------------------


def _decode_text(b: dict[str, Any], p: str) -> ir.Text:
    citations = b.get("citations")
    if citations is not None and not isinstance(citations, list):
        raise _bad(f"{p}.citations must be an array", f"{p}.citations")
    return ir.Text(_req_str(b, "text", p), cache_control=_opt_dict(b, "cache_control", p), citations=citations)


def _decode_image(b: dict[str, Any], p: str) -> ir.Image:
    src = _opt_dict(b, "source", p)
    if src is None:
        raise _bad(f"{p}.source is required", f"{p}.source")
    sp = f"{p}.source"
    stype = src.get("type")
    cc = _opt_dict(b, "cache_control", p)
    if stype == "base64":
        mt = _req_str(src, "media_type", sp)
        return ir.Image(media_type=mt, data=_req_str(src, "data", sp), cache_control=cc)
    if stype == "url":
        return ir.Image(url=_req_str(src, "url", sp), cache_control=cc)
    if stype == "file":
        return ir.Image(file_id=_req_str(src, "file_id", sp), cache_control=cc)
    raise _bad(f"{sp}.type must be one of base64, url, file", f"{sp}.type")


def _decode_document(b: dict[str, Any], p: str) -> ir.Document | ir.Text:
    src = _opt_dict(b, "source", p)
    if src is None:
        raise _bad(f"{p}.source is required", f"{p}.source")
    sp = f"{p}.source"
    stype = src.get("type")
    doc = ir.Document(
        title=_opt_str(b, "title", p),
        context=_opt_str(b, "context", p),
        citations=_opt_dict(b, "citations", p),
        cache_control=_opt_dict(b, "cache_control", p),
    )
    if stype == "base64":
        doc.media_type = _req_str(src, "media_type", sp)
        doc.data = _req_str(src, "data", sp)
    elif stype == "text":
        doc.media_type = "text/plain"
        doc.data = _req_str(src, "data", sp)
    elif stype == "url":
        doc.url = _req_str(src, "url", sp)
    elif stype == "file":
        doc.file_id = _req_str(src, "file_id", sp)
    elif stype == "content":
        # A document made of content blocks has no IR shape; kept whole for Anthropic.
        return opaque_part(b)
    else:
        raise _bad(f"{sp}.type must be one of base64, text, url, file, content", f"{sp}.type")
    return doc


def _decode_tool_result(b: dict[str, Any], p: str) -> ir.ToolResult:
    content = b.get("content")
    parts: list[ir.Part] = []
    if isinstance(content, str):
        parts.append(ir.Text(content))
    elif isinstance(content, list):
        for j, c in enumerate(content):
            cp = f"{p}.content[{j}]"
            if not isinstance(c, dict):
                raise _bad(f"{cp} must be an object", cp)
            ctype = c.get("type")
            if ctype == "text":
                parts.append(_decode_text(c, cp))
            elif ctype == "image":
                parts.append(_decode_image(c, cp))
            elif ctype == "document":
                parts.append(_decode_document(c, cp))
            elif isinstance(ctype, str) and _is_opaque_type(ctype):
                parts.append(opaque_part(c))
            else:
                raise _bad(f"{cp}.type {ctype!r} is not supported in tool_result content", f"{cp}.type")
    elif content is not None:
        raise _bad(f"{p}.content must be a string or an array of blocks", f"{p}.content")
    is_error = b.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise _bad(f"{p}.is_error must be a boolean", f"{p}.is_error")
    return ir.ToolResult(
        call_id=_req_str(b, "tool_use_id", p),
        content=parts,
        is_error=bool(is_error),
        cache_control=_opt_dict(b, "cache_control", p),
    )


def _decode_block(b: Any, p: str, role: str) -> ir.Part:
    if not isinstance(b, dict):
        raise _bad(f"{p} must be an object", p)
    btype = b.get("type")
    if btype == "text":
        return _decode_text(b, p)
    if btype == "image":
        return _decode_image(b, p)
    if btype == "document":
        return _decode_document(b, p)
    if btype == "tool_use":
        if role != "assistant":
            raise _bad(f"{p}: tool_use blocks belong in assistant messages", f"{p}.type")
        inp = b.get("input")
        if not isinstance(inp, dict):
            raise _bad(f"{p}.input must be an object", f"{p}.input")
        return ir.ToolCall(
            id=_req_str(b, "id", p),
            name=_req_str(b, "name", p),
            arguments=orjson.dumps(inp).decode(),
            cache_control=_opt_dict(b, "cache_control", p),
        )
    if btype == "tool_result":
        if role != "user":
            raise _bad(f"{p}: tool_result blocks belong in user messages", f"{p}.type")
        return _decode_tool_result(b, p)
    if btype == "thinking":
        if role != "assistant":
            raise _bad(f"{p}: thinking blocks belong in assistant messages", f"{p}.type")
        return ir.Reasoning(text=_req_str(b, "thinking", p), signature=_opt_str(b, "signature", p))
    if btype == "redacted_thinking":
        if role != "assistant":
            raise _bad(f"{p}: redacted_thinking blocks belong in assistant messages", f"{p}.type")
        return ir.Reasoning(redacted=_req_str(b, "data", p))
    if isinstance(btype, str) and _is_opaque_type(btype):
        return opaque_part(b)
    raise _bad(f"{p}.type {btype!r} is not a supported content block type", f"{p}.type")


def _decode_content(content: Any, p: str, role: str) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)]
    if not isinstance(content, list):
        raise _bad(f"{p} must be a string or an array of content blocks", p)
    return [_decode_block(b, f"{p}[{j}]", role) for j, b in enumerate(content)]


def _decode_messages(raw: Any) -> list[ir.Message]:
    if not isinstance(raw, list):
        raise _bad("messages is required and must be an array", "messages")
    out: list[ir.Message] = []
    for i, m in enumerate(raw):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{p} must be an object", p)
        role = m.get("role")
        if role not in ("user", "assistant", "system"):
            raise _bad(f"{p}.role must be user or assistant", f"{p}.role")
        if "content" not in m:
            raise _bad(f"{p}.content is required", f"{p}.content")
        if role == "system":
            # Newer SDKs allow system turns inside messages; they must hold text only.
            out.append(ir.Message("system", _decode_system(m["content"], f"{p}.content")))
            continue
        parts = _decode_content(m["content"], f"{p}.content", role)
        if role == "user" and any(type(x) is ir.ToolResult for x in parts):
            results = [x for x in parts if type(x) is ir.ToolResult]
            rest = [x for x in parts if type(x) is not ir.ToolResult]
            out.append(ir.Message("tool", results))
            if rest:
                out.append(ir.Message("user", rest))
        else:
            out.append(ir.Message(role, parts))
    return out


def _decode_system(raw: Any, p: str) -> list[ir.Part]:
    if isinstance(raw, str):
        return [ir.Text(raw)] if raw else []
    if not isinstance(raw, list):
        raise _bad(f"{p} must be a string or an array of text blocks", p)
    parts: list[ir.Part] = []
    for j, b in enumerate(raw):
        bp = f"{p}[{j}]"
        if not isinstance(b, dict) or b.get("type") != "text":
            raise _bad(f"{bp} must be a text block", bp)
        parts.append(_decode_text(b, bp))
    return parts


def _decode_tools(raw: Any, extras: dict[str, Any]) -> list[ir.Tool]:
    if not isinstance(raw, list):
        raise _bad("tools must be an array", "tools")
    tools: list[ir.Tool] = []
    server: list[list[Any]] = []
    tool_extras: dict[str, dict[str, Any]] = {}
    for i, t in enumerate(raw):
        p = f"tools[{i}]"
        if not isinstance(t, dict):
            raise _bad(f"{p} must be an object", p)
        ttype = t.get("type")
        if ttype not in (None, "custom"):
            if not isinstance(ttype, str):
                raise _bad(f"{p}.type must be a string", f"{p}.type")
            # Typed server tools (web_search_20250305, bash_20250124, ...): Anthropic-only, kept with their
            # position so a round trip preserves tool order (it is part of the prompt-cache prefix).
            server.append([i, t])
            continue
        name = _req_str(t, "name", p)
        schema = t.get("input_schema")
        if not isinstance(schema, dict):
            raise _bad(f"{p}.input_schema is required and must be an object", f"{p}.input_schema")
        strict = t.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise _bad(f"{p}.strict must be a boolean", f"{p}.strict")
        tools.append(
            ir.Tool(
                name=name,
                description=_opt_str(t, "description", p),
                parameters=schema,
                strict=strict,
                cache_control=_opt_dict(t, "cache_control", p),
            )
        )
        rest = {k: v for k, v in t.items() if k not in _TOOL_FIELDS}
        if rest:
            tool_extras[name] = rest
    if server:
        extras["_server_tools"] = server
    if tool_extras:
        extras["_tool_extras"] = tool_extras
    return tools


def _decode_tool_choice(raw: Any, req: ir.Request) -> None:
    if not isinstance(raw, dict):
        raise _bad("tool_choice must be an object", "tool_choice")
    ttype = raw.get("type")
    if ttype == "auto":
        req.tool_choice = ir.ToolChoice("auto")
    elif ttype == "any":
        req.tool_choice = ir.ToolChoice("required")
    elif ttype == "none":
        req.tool_choice = ir.ToolChoice("none")
    elif ttype == "tool":
        req.tool_choice = ir.ToolChoice("tool", name=_req_str(raw, "name", "tool_choice"))
    else:
        raise _bad("tool_choice.type must be one of auto, any, tool, none", "tool_choice.type")
    dp = raw.get("disable_parallel_tool_use")
    if dp is not None:
        if not isinstance(dp, bool):
            raise _bad(
                "tool_choice.disable_parallel_tool_use must be a boolean", "tool_choice.disable_parallel_tool_use"
            )
        req.parallel_tool_calls = not dp


def _decode_thinking(raw: Any) -> ir.ReasoningConfig:
    if not isinstance(raw, dict):
        raise _bad("thinking must be an object", "thinking")
    ttype = raw.get("type")
    if not isinstance(ttype, str) or ttype not in _THINKING_TYPES:
        raise _bad("thinking.type must be one of enabled, adaptive, disabled, between_tools", "thinking.type")
    cfg = ir.ReasoningConfig(mode=ttype, display=_opt_str(raw, "display", "thinking"))
    budget = raw.get("budget_tokens")
    if budget is not None:
        if not _is_int(budget) or budget < 0:
            raise _bad("thinking.budget_tokens must be a non-negative integer", "thinking.budget_tokens")
        cfg.budget_tokens = budget
    elif ttype == "enabled":
        raise _bad("thinking.budget_tokens is required when thinking is enabled", "thinking.budget_tokens")
    return cfg


def _decode_output_config(raw: Any, req: ir.Request, extras: dict[str, Any]) -> None:
    if not isinstance(raw, dict):
        raise _bad("output_config must be an object", "output_config")
    rest = dict(raw)
    effort = rest.get("effort")
    if effort is not None:
        if not isinstance(effort, str):
            raise _bad("output_config.effort must be a string", "output_config.effort")
        if req.reasoning is None:
            req.reasoning = ir.ReasoningConfig()
        req.reasoning.effort = effort
        req.reasoning.effort_is_hint = True
    fmt = rest.pop("format", None)
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
            raise _bad("output_config.format.type must be json_schema", "output_config.format.type")
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _bad("output_config.format.schema must be an object", "output_config.format.schema")
        req.response_format = ir.ResponseFormat("json_schema", schema=schema)
    # The rest of output_config (including effort, which marks the effort as Anthropic-native so the
    # encoder does not turn it into a thinking budget) comes back verbatim.
    if rest:
        extras["_output_config"] = rest


def decode_request(body: dict[str, Any]) -> ir.Request:
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model is required and must be a string", "model")
    max_tokens = body.get("max_tokens")
    if not _is_int(max_tokens) or max_tokens < 0:
        raise _bad("max_tokens is required and must be a non-negative integer", "max_tokens")
    extras: dict[str, Any] = {k: v for k, v in body.items() if k not in _KNOWN_REQUEST_FIELDS}
    req = ir.Request(model=model, max_tokens=max_tokens)
    messages = _decode_messages(body.get("messages"))
    system = body.get("system")
    if system is not None:
        parts = _decode_system(system, "system")
        if parts:
            messages.insert(0, ir.Message("system", parts))
    req.messages = messages

    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _bad("stop_sequences must be an array of strings", "stop_sequences")
        req.stop = stop
    for key in ("temperature", "top_p"):
        v = body.get(key)
        if v is not None:
            if not _is_num(v):
                raise _bad(f"{key} must be a number", key)
            setattr(req, key, v)
    top_k = body.get("top_k")
    if top_k is not None:
        if not _is_int(top_k):
            raise _bad("top_k must be an integer", "top_k")
        req.top_k = top_k
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise _bad("stream must be a boolean", "stream")
        req.stream = stream
        # Anthropic streams always carry usage.
        req.include_usage = stream

    if body.get("tools") is not None:
        req.tools = _decode_tools(body["tools"], extras)
    if body.get("tool_choice") is not None:
        _decode_tool_choice(body["tool_choice"], req)
    if body.get("thinking") is not None:
        req.reasoning = _decode_thinking(body["thinking"])
    if body.get("output_config") is not None:
        _decode_output_config(body["output_config"], req, extras)

    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("metadata must be an object", "metadata")
        user = metadata.get("user_id")
        if user is not None:
            if not isinstance(user, str):
                raise _bad("metadata.user_id must be a string", "metadata.user_id")
            req.user = user
        rest = {k: v for k, v in metadata.items() if k != "user_id"}
        if rest:
            extras["_metadata"] = rest
    tier = body.get("service_tier")
    if tier is not None:
        if not isinstance(tier, str):
            raise _bad("service_tier must be a string", "service_tier")
        req.service_tier = tier
    if extras:
        req.extras[NAME] = extras
    return req


# --------------------------------------------------------------------------------------------
# Request: IR -> Anthropic
# --------------------------------------------------------------------------------------------


def tool_id(raw: str) -> str:
    """A tool-use id Anthropic accepts: legal ids pass through; others get a deterministic stand-in,
    applied identically to the call and its result so the pair still matches without server state."""
    if _TOOL_ID_RE.fullmatch(raw):
        return raw
    return "toolu_gw_" + hashlib.sha1(raw.encode()).hexdigest()[:24]




def _text_block(t: ir.Text) -> dict[str, Any] | None:
    opaque = opaque_block(t)
    if opaque is not None:
        return opaque
    if not t.text:
        return None
    b: dict[str, Any] = {"type": "text", "text": t.text}
    if t.cache_control is not None:
        b["cache_control"] = t.cache_control
    if t.citations:
        # Only Anthropic citation objects: OpenAI annotations have other shapes the API rejects.
        cites = [c for c in t.citations if isinstance(c, dict) and c.get("type") in _CITATION_TYPES]
        if cites:
            b["citations"] = cites
    return b


def _file_id(fid: str, p: str) -> str:
    # Anthropic Files API ids are file_...; another provider's (OpenAI file-...) would fail upstream with a
    # confusing not-found, so the caller hears it here.
    if not fid.startswith("file_"):
        raise _bad(f"{p}: file id {fid!r} is not an Anthropic file id", p)
    return fid


def _image_block(img: ir.Image, p: str) -> dict[str, Any]:
    data, media_type = img.data, img.media_type
    if data is None and img.url and img.url.startswith("data:"):
        m = _DATA_URL_RE.fullmatch(img.url)
        if m is None:
            raise _bad(f"{p}: malformed data URL", p)
        media_type, data = media_type or m.group(1), m.group(2)
    if data is not None:
        mt = image_type(media_type, data)
        if mt not in IMAGE_MEDIA_TYPES:
            raise _bad(f"{p}: image type {mt!r} is not supported by Anthropic (jpeg, png, gif, webp)", p)
        src: dict[str, Any] = {"type": "base64", "media_type": mt, "data": data}
    elif img.url:
        if not img.url.startswith(("http://", "https://")):
            raise _bad(f"{p}: image URL must be http(s) or a data URL", p)
        src = {"type": "url", "url": img.url}
    elif img.file_id:
        src = {"type": "file", "file_id": _file_id(img.file_id, p)}
    else:
        raise _bad(f"{p}: image has no data, URL or file id", p)
    b: dict[str, Any] = {"type": "image", "source": src}
    if img.cache_control is not None:
        b["cache_control"] = img.cache_control
    return b


def _document_block(d: ir.Document, p: str) -> dict[str, Any]:
    data, media_type = d.data, d.media_type
    if data is None and d.url and d.url.startswith("data:"):
        m = _DATA_URL_RE.fullmatch(d.url)
        if m is None:
            raise _bad(f"{p}: malformed data URL", p)
        media_type, data = media_type or m.group(1), m.group(2)
    if data is not None:
        mt = media_type or "application/pdf"
        if mt == "application/pdf":
            src: dict[str, Any] = {"type": "base64", "media_type": mt, "data": data}
        elif mt == "text/plain":
            src = {"type": "text", "media_type": mt, "data": data}
        else:
            raise _bad(f"{p}: document type {mt!r} is not supported by Anthropic (application/pdf, text/plain)", p)
    elif d.url:
        src = {"type": "url", "url": d.url}
    elif d.file_id:
        src = {"type": "file", "file_id": _file_id(d.file_id, p)}
    else:
        raise _bad(f"{p}: document has no data, URL or file id", p)
    b: dict[str, Any] = {"type": "document", "source": src}
    title = d.title or d.filename
    if title is not None:
        b["title"] = title
    if d.context is not None:
        b["context"] = d.context
    if d.citations is not None:
        b["citations"] = d.citations
    if d.cache_control is not None:
        b["cache_control"] = d.cache_control
    return b


def _media_block(part: ir.Part, p: str) -> dict[str, Any] | None:
    """Blocks allowed in user turns and tool results; None for parts that send nothing."""
    if isinstance(part, ir.Text):
        return _text_block(part)
    if isinstance(part, ir.Image):
        return _image_block(part, p)
    if isinstance(part, ir.Document):
        return _document_block(part, p)
    if isinstance(part, ir.Refusal):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ir.Audio):
        raise _bad(f"{p}: Anthropic models take no audio input", p)
    return None


def _tool_result_block(r: ir.ToolResult, p: str) -> dict[str, Any]:
    blocks = []
    for j, part in enumerate(r.content):
        if isinstance(part, (ir.ToolCall, ir.ToolResult)):
            raise _bad(f"{p}.content[{j}]: a tool result cannot contain tool calls or results", f"{p}.content[{j}]")
        b = _media_block(part, f"{p}.content[{j}]")
        if b is not None:
            blocks.append(b)
    out: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(r.call_id)}
    if blocks:
        out["content"] = _compact_content(blocks)
    if r.is_error:
        out["is_error"] = True
    if r.cache_control is not None:
        out["cache_control"] = r.cache_control
    return out


def _compact_content(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
        return blocks[0]["text"]
    return blocks


def _tool_input(call: ir.ToolCall, p: str) -> dict[str, Any]:
    raw = call.arguments
    if not raw or raw.isspace():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _bad(f"{p}: arguments of tool call {call.id!r} are not valid JSON", p) from None
    if not isinstance(value, dict):
        raise _bad(f"{p}: arguments of tool call {call.id!r} must be a JSON object", p)
    return value


def _assistant_blocks(m: ir.Message, i: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, part in enumerate(m.content):
        p = f"messages[{i}].content[{j}]"
        if isinstance(part, ir.ToolCall):
            if part.kind != "function":
                raise _bad(f"{p}: Anthropic has no custom (free-form) tools", p)
            b: dict[str, Any] = {
                "type": "tool_use",
                "id": tool_id(part.id),
                "name": part.name,
                "input": _tool_input(part, p),
            }
            if part.cache_control is not None:
                b["cache_control"] = part.cache_control
            out.append(b)
        elif isinstance(part, ir.Reasoning):
            # Only signed thinking is accepted back by the API; unsigned reasoning from other providers
            # (summaries, reasoning_content) would be rejected, so it stays out of the history.
            if part.redacted:
                out.append({"type": "redacted_thinking", "data": part.redacted})
            elif part.signature:
                out.append({"type": "thinking", "thinking": part.text, "signature": part.signature})
        elif isinstance(part, ir.ToolResult):
            raise _bad(f"{p}: tool results cannot appear in an assistant message", p)
        else:
            media = _media_block(part, p)
            if media is not None:
                out.append(media)
    return out


def _user_blocks(m: ir.Message, i: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, part in enumerate(m.content):
        p = f"messages[{i}].content[{j}]"
        if isinstance(part, ir.ToolResult):
            out.append(_tool_result_block(part, p))
        elif m.role == "tool":
            raise _bad(f"{p}: a tool message must hold tool results", p)
        elif isinstance(part, ir.ToolCall):
            raise _bad(f"{p}: tool calls can only appear in assistant messages", p)
        elif not isinstance(part, ir.Reasoning):
            b = _media_block(part, p)
            if b is not None:
                out.append(b)
    return out


def _encode_system(req: ir.Request) -> tuple[list[dict[str, Any]], int]:
    blocks: list[dict[str, Any]] = []
    n_messages = 0
    for i, m in enumerate(req.messages):
        if m.role != "system" and m.role != "developer":
            continue
        n_messages += 1
        for j, part in enumerate(m.content):
            if not isinstance(part, ir.Text):
                raise _bad(
                    f"messages[{i}].content[{j}]: system messages can only hold text for Anthropic",
                    f"messages[{i}].content[{j}]",
                )
            b = _text_block(part)
            if b is not None and b["type"] == "text":
                blocks.append(b)
    return blocks, n_messages


def _system_value(blocks: list[dict[str, Any]], n_messages: int) -> str | list[dict[str, Any]] | None:
    if not blocks:
        return None
    plain = all(len(b) == 2 for b in blocks)
    if plain and (len(blocks) == 1 or n_messages > 1):
        # Several plain system messages (Chat style) read as one prompt: one string, blank-line joined.
        return "\n\n".join(b["text"] for b in blocks)
    return blocks


def _encode_messages(req: ir.Request) -> list[dict[str, Any]]:
    turns: list[list[Any]] = []  # [role, blocks]
    for i, m in enumerate(req.messages):
        role = m.role
        if role == "system" or role == "developer":
            continue
        if role == "assistant":
            blocks = _assistant_blocks(m, i)
            arole = "assistant"
        else:
            blocks = _user_blocks(m, i)
            arole = "user"
        if not blocks:
            continue
        if turns and turns[-1][0] == arole:
            turns[-1][1].extend(blocks)
        else:
            turns.append([arole, blocks])
    if not turns or turns[0][0] == "assistant":
        turns.insert(0, ["user", [{"type": "text", "text": PLACEHOLDER_USER_TEXT}]])
    out = []
    for role, blocks in turns:
        if role == "user" and len(blocks) > 1:
            # tool_result blocks must open the user turn that answers the tool calls.
            results = [b for b in blocks if b["type"] == "tool_result"]
            if results and len(results) < len(blocks):
                blocks = results + [b for b in blocks if b["type"] != "tool_result"]
        out.append({"role": role, "content": _compact_content(blocks)})
    return out


def _encode_tools(req: ir.Request, extras: dict[str, Any]) -> list[dict[str, Any]]:
    tool_extras = extras.get("_tool_extras") or {}
    tools: list[dict[str, Any]] = []
    for i, t in enumerate(req.tools):
        if t.kind != "function":
            raise _bad(f"tools[{i}]: Anthropic has no custom (free-form) tools", f"tools[{i}]")
        d: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            d["description"] = t.description
        schema = t.parameters
        if not schema:
            schema = {"type": "object", "properties": {}}
        elif "type" not in schema:
            schema = {"type": "object", **schema}
        d["input_schema"] = schema
        if t.strict is not None:
            d["strict"] = t.strict
        if t.cache_control is not None:
            d["cache_control"] = t.cache_control
        more = tool_extras.get(t.name)
        if more:
            for k, v in more.items():
                d.setdefault(k, v)
        tools.append(d)
    for pos, tool in extras.get("_server_tools") or ():
        tools.insert(min(pos, len(tools)), tool)
    return tools


def _encode_tool_choice(req: ir.Request) -> dict[str, Any] | None:
    tc = req.tool_choice
    choice: dict[str, Any] | None = None
    if tc is not None:
        if tc.mode == "auto":
            choice = {"type": "auto"}
        elif tc.mode == "required":
            choice = {"type": "any"}
        elif tc.mode == "none":
            choice = {"type": "none"}
        elif tc.mode == "tool":
            if not tc.name:
                raise _bad("tool_choice names no tool", "tool_choice")
            choice = {"type": "tool", "name": tc.name}
    if req.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
        choice = choice or {"type": "auto"}
        choice["disable_parallel_tool_use"] = True
    return choice


def _anthropic_effort(effort: str | None) -> str | None:
    if effort in _ANTHROPIC_EFFORTS:
        return effort
    if effort == "minimal":
        return "low"
    return None


def _encode_thinking(
    req: ir.Request, max_tokens: int, native_effort: bool
) -> tuple[dict[str, Any] | None, str | None, int]:
    """-> (thinking, output_config.effort, max_tokens)."""
    r = req.reasoning
    if r is None:
        return None, None, max_tokens
    mode = r.mode
    effort = _anthropic_effort(r.effort) if (mode is not None or native_effort) else None
    thinking: dict[str, Any] | None = None
    if mode == "disabled":
        thinking = {"type": "disabled"}
    elif mode == "adaptive" or mode == "between_tools":
        thinking = {"type": mode}
    elif mode == "enabled" or (mode is None and not native_effort):
        # A foreign effort (OpenAI) or budget (Gemini) turns manual thinking on: it works on every
        # thinking-capable Claude, while adaptive + effort only on the newest.
        budget = r.budget_tokens
        if mode is None and (r.effort == "none" or budget == 0 or (budget is None and r.effort is None)):
            return None, None, max_tokens
        tc = req.tool_choice
        if mode is None and tc is not None and tc.mode in ("required", "tool") and req.tools:
            # Anthropic refuses thinking with a forced tool choice; the caller's forced tool is a hard
            # requirement, their effort only a preference, so thinking gives way.
            return None, None, max_tokens
        if budget is None or budget < 0:
            budget = budget_for_effort(r.effort)
        budget, max_tokens = fit_thinking(budget, max_tokens)
        thinking = {"type": "enabled", "budget_tokens": budget}
    if thinking is not None and r.display is not None and thinking["type"] != "disabled":
        thinking["display"] = r.display
    return thinking, effort, max_tokens


def encode_request(req: ir.Request, model: str) -> dict[str, Any]:
    if req.n is not None and req.n > 1:
        raise _bad("n > 1 is not supported by Anthropic models", "n")
    extras = req.extras.get(NAME) or {}
    body: dict[str, Any] = {"model": model}

    max_tokens = req.max_tokens if req.max_tokens is not None else default_max_tokens(model)
    output_config: dict[str, Any] = dict(extras.get("_output_config") or {})
    # An output effort (this format's own, or Bedrock's) stays one; only a foreign reasoning effort turns
    # thinking on.
    native_effort = "effort" in output_config or (req.reasoning is not None and req.reasoning.effort_is_hint)
    output_config.pop("effort", None)
    thinking, effort, max_tokens = _encode_thinking(req, max_tokens, native_effort)
    body["max_tokens"] = max_tokens

    sys_blocks, n_sys = _encode_system(req)
    rf = req.response_format
    if rf is not None and (rf.type == "json_object" or (rf.type == "json_schema" and rf.schema is None)):
        sys_blocks.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
        n_sys += 1
    system = _system_value(sys_blocks, n_sys)
    if system is not None:
        body["system"] = system
    body["messages"] = _encode_messages(req)

    if req.stop:
        body["stop_sequences"] = list(req.stop)
    thinking_on = thinking is not None and thinking["type"] != "disabled"
    if req.temperature is not None and (not thinking_on or req.temperature == 1):
        # Anthropic's range is 0-1; see the module docstring for clamping rather than scaling.
        body["temperature"] = min(max(req.temperature, 0), 1)
    if req.top_p is not None and (not thinking_on or 0.95 <= req.top_p <= 1):
        body["top_p"] = req.top_p
    if req.top_k is not None and not thinking_on:
        body["top_k"] = req.top_k
    if req.stream:
        body["stream"] = True

    if req.tools or extras.get("_server_tools"):
        body["tools"] = _encode_tools(req, extras)
        choice = _encode_tool_choice(req)
        if choice is not None:
            body["tool_choice"] = choice
    if thinking is not None:
        body["thinking"] = thinking
    if effort is not None:
        output_config["effort"] = effort
    if rf is not None and rf.type == "json_schema" and rf.schema is not None:
        output_config["format"] = {"type": "json_schema", "schema": rf.schema}
    if output_config:
        body["output_config"] = output_config

    metadata = dict(extras.get("_metadata") or {})
    if req.user is not None:
        metadata["user_id"] = req.user
    if metadata:
        body["metadata"] = metadata
    if req.service_tier is not None:
        tier = _SERVICE_TIERS.get(req.service_tier)
        if tier is not None:
            body["service_tier"] = tier
    for k, v in extras.items():
        if not k.startswith("_"):
            body.setdefault(k, v)
    return body


# --------------------------------------------------------------------------------------------
# Response
# --------------------------------------------------------------------------------------------


def _decode_response_block(b: Any, p: str) -> ir.Part:
    if not isinstance(b, dict):
        raise GatewayError("upstream_unavailable", f"malformed Anthropic response: {p} is not an object")
    btype = b.get("type")
    if btype == "text":
        citations = b.get("citations")
        return ir.Text(str(b.get("text") or ""), citations=citations if isinstance(citations, list) else None)
    if btype == "thinking":
        sig = b.get("signature")
        return ir.Reasoning(text=str(b.get("thinking") or ""), signature=sig if isinstance(sig, str) else None)
    if btype == "redacted_thinking":
        return ir.Reasoning(redacted=str(b.get("data") or ""))
    if btype == "tool_use":
        inp = b.get("input")
        return ir.ToolCall(
            id=str(b.get("id") or ""),
            name=str(b.get("name") or ""),
            arguments=orjson.dumps(inp if inp is not None else {}).decode(),
        )
    # Server-tool blocks and anything newer: carried opaquely for Anthropic clients.
    return opaque_part(b)


def decode_response(body: dict[str, Any]) -> ir.Response:
    if not isinstance(body, dict):
        raise GatewayError("upstream_unavailable", "malformed Anthropic response: body is not an object")
    content = body.get("content")
    if not isinstance(content, list):
        raise GatewayError("upstream_unavailable", "malformed Anthropic response: content is not an array")
    stop_sequence = body.get("stop_sequence")
    resp = ir.Response(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=[_decode_response_block(b, f"content[{j}]") for j, b in enumerate(content)],
        stop_reason=stop_from_anthropic(body.get("stop_reason")),
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
    )
    extras = {k: v for k, v in body.items() if k not in _KNOWN_RESPONSE_FIELDS}
    usage = body.get("usage")
    if isinstance(usage, dict):
        resp.usage = usage_from_anthropic(usage)
        rest = {k: v for k, v in usage.items() if k not in _USAGE_FIELDS}
        if rest:
            extras["_usage"] = rest
    if extras:
        resp.extras[NAME] = extras
    return resp


def _response_block(part: ir.Part, thinking: bool = True) -> dict[str, Any] | None:
    if isinstance(part, ir.Text):
        opaque = opaque_block(part)
        if opaque is not None:
            return opaque
        b: dict[str, Any] = {"type": "text", "text": part.text}
        cites = [c for c in part.citations or () if isinstance(c, dict) and c.get("type") in _CITATION_TYPES]
        if cites:
            b["citations"] = cites
        return b
    if isinstance(part, ir.Refusal):
        return {"type": "text", "text": part.text}
    if isinstance(part, ir.Reasoning):
        if part.redacted:
            return {"type": "redacted_thinking", "data": part.redacted}
        if not part.text and (not part.signature or not thinking):
            # e.g. an encrypted Responses reasoning item: nothing an Anthropic client can show or send back.
            # A bare signature (Gemini 3 signs its text parts even when not asked to think) is left out too
            # when the caller did not ask for thinking: it would show up as an empty thinking block.
            return None
        return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
    if isinstance(part, ir.ToolCall):
        raw = part.arguments
        try:
            inp = orjson.loads(raw) if raw and not raw.isspace() else {}
        except orjson.JSONDecodeError:
            inp = None
        if not isinstance(inp, dict):
            # The model produced broken arguments: hand them over rather than failing the whole turn.
            inp = {"_raw": raw}
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": inp}
    # Images, audio, documents in output have no Anthropic response block.
    return None


def encode_response(resp: ir.Response, req: ir.Request) -> dict[str, Any]:
    extras = resp.extras.get(NAME) or {}
    content = []
    thinking = thinking_requested(req.reasoning)
    for part in resp.content:
        b = _response_block(part, thinking)
        if b is not None:
            content.append(b)
    usage = usage_to_anthropic(resp.usage or ir.Usage())
    for k, v in (extras.get("_usage") or {}).items():
        usage.setdefault(k, v)
    body: dict[str, Any] = {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model or req.model,
        "content": content,
        "stop_reason": stop_to_anthropic(resp.stop_reason),
        "stop_sequence": resp.stop_sequence,
        "usage": usage,
    }
    for k, v in extras.items():
        if not k.startswith("_"):
            body.setdefault(k, v)
    return body


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def render_error(err: GatewayError) -> tuple[int, dict[str, Any]]:
    # Anthropic clients know 529 as "overloaded" and retry it; keep their vocabulary.
    status = OVERLOADED_STATUS if err.kind == "overloaded" else err.status
    return status, error_payload(err)


def parse_error(status: int, body: bytes) -> GatewayError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return error_from_object(status, data["error"])
    text = body.decode("utf-8", "replace").strip()[:500] if body else ""
    return GatewayError(kind_for_status(status), text or f"upstream returned HTTP {status}", status=status)


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------



CODEC = FunctionCodec(
    name=NAME,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=lambda req: AnthropicStreamDecoder(),
    stream_encoder=lambda req: AnthropicStreamEncoder(thinking_requested(req.reasoning)),
    render_error=render_error,
    render_stream_error=_render_stream_error,
    parse_error=parse_error,
)
