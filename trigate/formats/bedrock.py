"""Amazon Bedrock Converse / ConverseStream (``POST /model/{modelId}/converse[-stream]``) <-> IR.

Field names follow botocore's bedrock-runtime 2023-09-30 service model (protocols.md §9).

The model id travels in the URL, not the body. ``decode_request`` reads ``body["modelId"]`` when the shell
put it there (an unknown key otherwise); ``encode_request`` never writes it. ``stream`` is likewise the
shell's to set (the endpoint says it, not the body).

Round trip (Bedrock -> IR -> Bedrock) is lossless up to these canonical forms:
- tool results come first in their user turn; consecutive same-role messages are merged;
- ``toolResult.status: "success"`` is omitted; ``status: "error"`` is only sent to models that take it
  (Claude, Nova, and model ids the codec cannot place); other models get an ``Error:`` prefix instead;
- empty text blocks are dropped; ``outputConfig.textFormat...schema`` is re-serialised compactly;
- ``txt`` documents are carried as text (the IR's text/plain convention) and sent back as bytes; a
  ``source.text`` or ``source.content`` document comes back as a ``txt`` bytes document;
- ``s3Location.bucketOwner`` is not kept; ``toolUse.type`` / ``toolResult.type`` are not kept;
- ``maxTokens`` is filled in for Claude models when absent (§11.8: Bedrock's own default can be tiny).

Choices where protocols.md leaves one open:
- System/developer messages anywhere in the IR are hoisted, in order, into top-level ``system`` blocks
  (same policy as the Anthropic codec, for the same reason: operator text must not read as user text).
- A ``cachePoint`` block marks the end of a cached prefix; in the IR it becomes the ``cache_control`` of
  the part before it (Anthropic's vocabulary), so prompt caching survives Bedrock <-> Anthropic.
- ``temperature`` above 1 is clamped to 1 (Bedrock's range is 0-1).
- ``json_object`` output has no Bedrock switch: an instruction is appended to the system prompt.
  ``json_schema`` goes to ``outputConfig.textFormat`` (the schema as a JSON string, §9.2).
- Tool choice ``none`` has no Bedrock form: ``toolConfig`` is left out, unless the history holds tool
  blocks (Bedrock then requires it; tools are synthesised from the history when the request has none) and
  ``toolChoice`` is omitted.
- Blocks the IR has no part for (guardContent, video, searchResult, ...) ride as an ``ir.Text`` whose
  ``citations`` hold the block under ``OPAQUE_MARKER``: empty (other encoders leave empty text out), or the
  guarded text for guardContent so other formats still read it; this encoder restores the block.
  ``{json}`` tool-result content and ``citationsContent`` keep their text visible to other formats and
  their Bedrock shape under ``JSON_MARKER`` / ``CITATIONS_MARKER``.
- Reasoning goes back to Bedrock only when signed (or redacted) and not packed by another codec
  (``trigate:`` signatures): Claude rejects anything else in the history.
- ``thinking`` / ``top_k`` go in ``additionalModelRequestFields`` only for Claude model ids (or when the
  Bedrock caller sent them there): other models reject unknown fields. gpt-oss gets ``reasoning_effort``.
- An output effort (Anthropic ``output_config.effort``) reaches Claude models as
  ``additionalModelRequestFields.output_config.effort``, Claude's own field, which Bedrock passes through
  (Converse's ``outputConfig`` has only ``textFormat``); alone it does not turn thinking on. A Bedrock
  caller's own ``outputConfig.effort`` is sent back where it was.
- No parallel tool calls (``parallel_tool_calls: false``, ``disable_parallel_tool_use``): Converse has no
  switch, so Claude models get Claude's ``tool_choice`` (same type as ``toolChoice``, with
  ``disable_parallel_tool_use``) in ``additionalModelRequestFields``; other models' calls are relayed as made.
- IR requestMetadata <-> ``metadata`` (only entries Bedrock's key/value pattern accepts); ``user`` is not
  sent (Bedrock has no end-user field).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

import orjson

from trigate.errors import GatewayError, kind_for_status
from trigate.formats.anthropic import JSON_OBJECT_INSTRUCTION, PLACEHOLDER_USER_TEXT
from trigate.formats.base import FunctionCodec
from trigate.formats.bedrock_stream import (
    USAGE_FIELDS,
    BedrockStreamDecoder,
    BedrockStreamEncoder,
    error_from_exception,
    error_payload,
    error_status,
    new_message_id,
    stop_from_bedrock,
    stop_to_bedrock,
    usage_from_bedrock,
    usage_to_bedrock,
)
from trigate.formats.bedrock_stream import render_stream_error as _render_stream_error
from trigate.formats.openai_chat import parse_data_url
from trigate.translate import ir
from trigate.translate.media import image_type
from trigate.translate.reasoning import budget_for_effort, default_max_tokens, fit_thinking

__all__ = ["CITATIONS_MARKER", "CODEC", "JSON_MARKER", "OPAQUE_MARKER", "model_family", "tool_id"]

NAME = "bedrock"

OPAQUE_MARKER = "bedrock_block"
JSON_MARKER = "bedrock_json"
CITATIONS_MARKER = "bedrock_citations"
_MARKERS = frozenset({OPAQUE_MARKER, JSON_MARKER, CITATIONS_MARKER})

IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
DOCUMENT_MEDIA_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html",
    "txt": "text/plain",
    "md": "text/markdown",
}
_DOC_EXTENSIONS = frozenset(DOCUMENT_MEDIA_TYPES) | {"htm", "markdown", "text"}
_DOCUMENT_FORMATS = {v: k for k, v in DOCUMENT_MEDIA_TYPES.items()}
_DOCUMENT_FORMATS.update(
    {"text/x-markdown": "md", "application/xhtml+xml": "html", "text/comma-separated-values": "csv"}
)

_KNOWN_REQUEST_FIELDS = frozenset(
    {
        "modelId",
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "additionalModelRequestFields",
        "outputConfig",
        "requestMetadata",
        "serviceTier",
    }
)
_INFERENCE_FIELDS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
_SERVICE_TIERS = frozenset({"priority", "default", "flex", "reserved"})
_ANTHROPIC_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
_THINKING_TYPES = frozenset({"enabled", "adaptive", "disabled"})

_TOOL_ID_RE = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")
_DOC_NAME_BAD = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")
_SPACES = re.compile(r"\s+")
_METADATA_RE = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")
_GEO_PREFIXES = ("us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")


def _bad(message: str, param: str | None) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_num(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and v == v


def _obj(v: Any, p: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _bad(f"{p} must be an object", p)
    return v


def _list(v: Any, p: str) -> list[Any]:
    if not isinstance(v, list):
        raise _bad(f"{p} must be an array", p)
    return v


def _req_str(d: dict[str, Any], key: str, p: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise _bad(f"{p}.{key} is required and must be a string", f"{p}.{key}")
    return v


def _opt_str(d: dict[str, Any], key: str, p: str) -> str | None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        raise _bad(f"{p}.{key} must be a string", f"{p}.{key}")
    return v


def _union(v: Any, p: str) -> tuple[str, Any]:
    """Bedrock unions are objects with exactly one member."""
    if not isinstance(v, dict) or len(v) != 1:
        raise _bad(f"{p} must be an object with exactly one member", p)
    return next(iter(v.items()))


def _b64(v: Any, p: str) -> str:
    if not isinstance(v, str):
        raise _bad(f"{p} must be a base64 string", p)
    return v


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def model_family(model: str) -> str:
    """The vendor part of a Bedrock model id (``anthropic``, ``amazon``, ``meta``, ...), or ``""`` when the
    id does not say (ARNs of provisioned models, application inference profiles)."""
    m = model.lower()
    if m.startswith("arn:"):
        slash = m.find("/")
        if (":foundation-model/" not in m and ":inference-profile/" not in m) or slash < 0:
            return ""
        m = m[slash + 1 :]
    for geo in _GEO_PREFIXES:
        if m.startswith(geo):
            m = m[len(geo) :]
            break
    dot = m.find(".")
    return m[:dot] if dot > 0 else ""


def _is_claude(model: str) -> bool:
    return model_family(model) == "anthropic" or "claude" in model.lower()


def _full_tool_support(model: str) -> bool:
    # toolResult.status and toolChoice.tool: Claude and Nova only (service model docs). Unknown ids are
    # most often Claude inference profiles, so they get the full feature set.
    return model_family(model) in ("anthropic", "amazon", "") or "claude" in model.lower()


# --------------------------------------------------------------------------------------------
# Markers (IR parts standing for Bedrock blocks)
# --------------------------------------------------------------------------------------------


def opaque_part(block: dict[str, Any]) -> ir.Text:
    """A Bedrock-only block. Guarded text stays readable to other formats; the rest is empty text, which
    other encoders leave out."""
    guarded = block.get("guardContent")
    inner = guarded.get("text") if isinstance(guarded, dict) else None
    text = inner.get("text") if isinstance(inner, dict) else None
    return ir.Text(text if isinstance(text, str) else "", citations=[{"type": OPAQUE_MARKER, "block": block}])


def _marker(t: ir.Text) -> tuple[str, Any] | None:
    c = t.citations
    if c and len(c) == 1 and isinstance(c[0], dict) and c[0].get("type") in _MARKERS:
        return c[0]["type"], c[0].get("block")
    return None


def _cache_control(cp: Any, p: str) -> dict[str, Any]:
    cp = _obj(cp, p)
    cc: dict[str, Any] = {"type": "ephemeral"}
    ttl = _opt_str(cp, "ttl", p)
    if ttl is not None:
        cc["ttl"] = ttl
    return cc


def _cache_point(cc: dict[str, Any]) -> dict[str, Any]:
    cp: dict[str, Any] = {"type": "default"}
    ttl = cc.get("ttl")
    if ttl in ("5m", "1h"):
        cp["ttl"] = ttl
    return {"cachePoint": cp}


def _attach_cache(parts: list[Any], block: dict[str, Any], p: str) -> None:
    """A cachePoint closes the cached prefix at the part before it; with no such part it stays opaque."""
    cc = _cache_control(block["cachePoint"], f"{p}.cachePoint")
    if parts:
        last = parts[-1]
        if hasattr(last, "cache_control") and last.cache_control is None:
            last.cache_control = cc
            return
    parts.append(opaque_part(block))


# --------------------------------------------------------------------------------------------
# Request: Bedrock -> IR
# --------------------------------------------------------------------------------------------


def _decode_image(b: Any, p: str) -> ir.Image | ir.Text:
    b = _obj(b, p)
    fmt = b.get("format")
    if fmt not in IMAGE_FORMATS:
        raise _bad(f"{p}.format must be one of png, jpeg, gif, webp", f"{p}.format")
    kind, src = _union(b.get("source"), f"{p}.source")
    if kind == "bytes":
        return ir.Image(media_type=f"image/{fmt}", data=_b64(src, f"{p}.source.bytes"))
    if kind == "s3Location":
        return ir.Image(
            media_type=f"image/{fmt}",
            url=_req_str(_obj(src, f"{p}.source.s3Location"), "uri", f"{p}.source.s3Location"),
        )
    raise _bad(f"{p}.source must hold bytes or s3Location", f"{p}.source")


def _decode_document(b: Any, p: str) -> ir.Document:
    b = _obj(b, p)
    fmt = _opt_str(b, "format", p)
    if fmt is not None and fmt not in DOCUMENT_MEDIA_TYPES:
        raise _bad(f"{p}.format must be one of {', '.join(DOCUMENT_MEDIA_TYPES)}", f"{p}.format")
    doc = ir.Document(
        filename=_req_str(b, "name", p),
        context=_opt_str(b, "context", p),
        citations=_obj(b["citations"], f"{p}.citations") if b.get("citations") is not None else None,
    )
    sp = f"{p}.source"
    kind, src = _union(b.get("source"), sp)
    if kind == "bytes":
        data = _b64(src, f"{sp}.bytes")
        if fmt == "txt":
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise _bad(f"{sp}.bytes is not valid base64", f"{sp}.bytes") from None
            doc.media_type, doc.data = "text/plain", raw.decode("utf-8", "replace")
        else:
            doc.media_type, doc.data = DOCUMENT_MEDIA_TYPES.get(fmt or "pdf"), data
    elif kind == "text":
        if not isinstance(src, str):
            raise _bad(f"{sp}.text must be a string", f"{sp}.text")
        doc.media_type, doc.data = "text/plain", src
    elif kind == "content":
        texts = []
        for j, c in enumerate(_list(src, f"{sp}.content")):
            texts.append(_req_str(_obj(c, f"{sp}.content[{j}]"), "text", f"{sp}.content[{j}]"))
        doc.media_type, doc.data = "text/plain", "\n".join(texts)
    elif kind == "s3Location":
        doc.url = _req_str(_obj(src, f"{sp}.s3Location"), "uri", f"{sp}.s3Location")
        doc.media_type = DOCUMENT_MEDIA_TYPES.get(fmt or "pdf")
    else:
        raise _bad(f"{sp} must hold bytes, text, content or s3Location", sp)
    return doc


def _decode_tool_result(b: Any, p: str) -> ir.ToolResult:
    b = _obj(b, p)
    parts: list[ir.Part] = []
    for j, c in enumerate(_list(b.get("content"), f"{p}.content")):
        cp = f"{p}.content[{j}]"
        kind, v = _union(c, cp)
        if kind == "text":
            if not isinstance(v, str):
                raise _bad(f"{cp}.text must be a string", f"{cp}.text")
            parts.append(ir.Text(v))
        elif kind == "json":
            parts.append(ir.Text(orjson.dumps(v).decode(), citations=[{"type": JSON_MARKER}]))
        elif kind == "image":
            parts.append(_decode_image(v, f"{cp}.image"))
        elif kind == "document":
            parts.append(_decode_document(v, f"{cp}.document"))
        else:
            parts.append(opaque_part(c))
    status = b.get("status")
    if status not in (None, "success", "error"):
        raise _bad(f"{p}.status must be success or error", f"{p}.status")
    return ir.ToolResult(call_id=_req_str(b, "toolUseId", p), content=parts, is_error=status == "error")


def _decode_reasoning(v: Any, p: str) -> ir.Reasoning:
    kind, body = _union(v, p)
    if kind == "reasoningText":
        body = _obj(body, f"{p}.reasoningText")
        return ir.Reasoning(
            text=_req_str(body, "text", f"{p}.reasoningText"),
            signature=_opt_str(body, "signature", f"{p}.reasoningText"),
        )
    if kind == "redactedContent":
        return ir.Reasoning(redacted=_b64(body, f"{p}.redactedContent"))
    raise _bad(f"{p} must hold reasoningText or redactedContent", p)


def _decode_citations_content(block: dict[str, Any], p: str) -> ir.Text:
    body = _obj(block["citationsContent"], f"{p}.citationsContent")
    texts = [c["text"] for c in body.get("content") or () if isinstance(c, dict) and isinstance(c.get("text"), str)]
    return ir.Text("".join(texts), citations=[{"type": CITATIONS_MARKER, "block": block}])


def _decode_block(block: Any, p: str, role: str, parts: list[Any]) -> None:
    kind, v = _union(block, p)
    if kind == "text":
        if not isinstance(v, str):
            raise _bad(f"{p}.text must be a string", f"{p}.text")
        parts.append(ir.Text(v))
    elif kind == "image":
        parts.append(_decode_image(v, f"{p}.image"))
    elif kind == "document":
        parts.append(_decode_document(v, f"{p}.document"))
    elif kind == "toolUse":
        if role != "assistant":
            raise _bad(f"{p}: toolUse blocks belong in assistant messages", f"{p}.toolUse")
        tu = _obj(v, f"{p}.toolUse")
        if "input" not in tu:
            raise _bad(f"{p}.toolUse.input is required", f"{p}.toolUse.input")
        parts.append(
            ir.ToolCall(
                id=_req_str(tu, "toolUseId", f"{p}.toolUse"),
                name=_req_str(tu, "name", f"{p}.toolUse"),
                arguments=orjson.dumps(tu["input"]).decode(),
            )
        )
    elif kind == "toolResult":
        if role != "user":
            raise _bad(f"{p}: toolResult blocks belong in user messages", f"{p}.toolResult")
        parts.append(_decode_tool_result(v, f"{p}.toolResult"))
    elif kind == "reasoningContent":
        if role != "assistant":
            raise _bad(f"{p}: reasoningContent blocks belong in assistant messages", f"{p}.reasoningContent")
        parts.append(_decode_reasoning(v, f"{p}.reasoningContent"))
    elif kind == "cachePoint":
        _attach_cache(parts, block, p)
    elif kind == "audio":
        audio = _obj(v, f"{p}.audio")
        src = audio.get("source")
        if isinstance(src, dict) and isinstance(src.get("bytes"), str) and isinstance(audio.get("format"), str):
            parts.append(ir.Audio(data=src["bytes"], format=audio["format"]))
        else:
            parts.append(opaque_part(block))
    elif kind == "citationsContent":
        parts.append(_decode_citations_content(block, p))
    else:
        # guardContent, video, searchResult, toolAddition, ...: Bedrock-only, carried whole.
        parts.append(opaque_part(block))


def _decode_messages(raw: Any) -> list[ir.Message]:
    out: list[ir.Message] = []
    for i, m in enumerate(_list(raw, "messages")):
        p = f"messages[{i}]"
        m = _obj(m, p)
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise _bad(f"{p}.role must be user or assistant", f"{p}.role")
        parts: list[Any] = []
        for j, b in enumerate(_list(m.get("content"), f"{p}.content")):
            _decode_block(b, f"{p}.content[{j}]", role, parts)
        if role == "user" and any(type(x) is ir.ToolResult for x in parts):
            out.append(ir.Message("tool", [x for x in parts if type(x) is ir.ToolResult]))
            rest = [x for x in parts if type(x) is not ir.ToolResult]
            if rest:
                out.append(ir.Message("user", rest))
        else:
            out.append(ir.Message(role, parts))
    return out


def _decode_system(raw: Any) -> list[ir.Part]:
    parts: list[Any] = []
    for j, b in enumerate(_list(raw, "system")):
        p = f"system[{j}]"
        kind, v = _union(b, p)
        if kind == "text":
            if not isinstance(v, str):
                raise _bad(f"{p}.text must be a string", f"{p}.text")
            parts.append(ir.Text(v))
        elif kind == "cachePoint":
            _attach_cache(parts, b, p)
        else:
            parts.append(opaque_part(b))
    return parts


def _decode_inference(raw: Any, req: ir.Request, extras: dict[str, Any]) -> None:
    cfg = _obj(raw, "inferenceConfig")
    mt = cfg.get("maxTokens")
    if mt is not None:
        if not _is_int(mt) or mt < 1:
            raise _bad("inferenceConfig.maxTokens must be a positive integer", "inferenceConfig.maxTokens")
        req.max_tokens = mt
    for key, attr in (("temperature", "temperature"), ("topP", "top_p")):
        v = cfg.get(key)
        if v is not None:
            if not _is_num(v):
                raise _bad(f"inferenceConfig.{key} must be a number", f"inferenceConfig.{key}")
            setattr(req, attr, v)
    stop = cfg.get("stopSequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _bad("inferenceConfig.stopSequences must be an array of strings", "inferenceConfig.stopSequences")
        req.stop = stop
    rest = {k: v for k, v in cfg.items() if k not in _INFERENCE_FIELDS}
    if rest:
        extras["_inference"] = rest


def _decode_tool_config(raw: Any, req: ir.Request, extras: dict[str, Any]) -> None:
    cfg = _obj(raw, "toolConfig")
    system_tools: list[list[Any]] = []
    tools: list[Any] = []
    for i, t in enumerate(_list(cfg.get("tools"), "toolConfig.tools")):
        p = f"toolConfig.tools[{i}]"
        kind, v = _union(t, p)
        if kind == "toolSpec":
            sp = f"{p}.toolSpec"
            spec = _obj(v, sp)
            schema = _obj(spec.get("inputSchema"), f"{sp}.inputSchema")
            if not isinstance(schema.get("json"), dict):
                raise _bad(f"{sp}.inputSchema.json is required and must be an object", f"{sp}.inputSchema.json")
            strict = spec.get("strict")
            if strict is not None and not isinstance(strict, bool):
                raise _bad(f"{sp}.strict must be a boolean", f"{sp}.strict")
            tools.append(
                ir.Tool(
                    name=_req_str(spec, "name", sp),
                    description=_opt_str(spec, "description", sp),
                    parameters=schema["json"],
                    strict=strict,
                )
            )
        elif kind == "cachePoint":
            if tools and tools[-1].cache_control is None:
                tools[-1].cache_control = _cache_control(v, f"{p}.cachePoint")
            else:
                system_tools.append([i, t])
        else:
            # systemTool (Bedrock-run tools): kept with its position, only Bedrock can run it.
            system_tools.append([i, t])
    req.tools = tools
    if system_tools:
        extras["_system_tools"] = system_tools
    choice = cfg.get("toolChoice")
    if choice is not None:
        kind, v = _union(choice, "toolChoice")
        if kind == "auto":
            req.tool_choice = ir.ToolChoice("auto")
        elif kind == "any":
            req.tool_choice = ir.ToolChoice("required")
        elif kind == "tool":
            req.tool_choice = ir.ToolChoice(
                "tool", name=_req_str(_obj(v, "toolChoice.tool"), "name", "toolChoice.tool")
            )
        else:
            raise _bad("toolChoice must hold auto, any or tool", "toolChoice")


def _decode_model_fields(raw: Any, req: ir.Request, extras: dict[str, Any]) -> None:
    fields = _obj(raw, "additionalModelRequestFields")
    extras["_amrf"] = dict(fields)
    top_k = fields.get("top_k")
    if top_k is not None:
        if not _is_int(top_k):
            raise _bad("additionalModelRequestFields.top_k must be an integer", "additionalModelRequestFields.top_k")
        req.top_k = top_k
    thinking = fields.get("thinking")
    if thinking is not None:
        p = "additionalModelRequestFields.thinking"
        thinking = _obj(thinking, p)
        ttype = thinking.get("type")
        if ttype not in _THINKING_TYPES:
            raise _bad(f"{p}.type must be one of enabled, adaptive, disabled", f"{p}.type")
        cfg = req.reasoning or ir.ReasoningConfig()
        cfg.mode = ttype
        cfg.display = _opt_str(thinking, "display", p)
        budget = thinking.get("budget_tokens")
        if budget is not None:
            if not _is_int(budget) or budget < 0:
                raise _bad(f"{p}.budget_tokens must be a non-negative integer", f"{p}.budget_tokens")
            cfg.budget_tokens = budget
        req.reasoning = cfg
    # Claude's own output_config / tool_choice, passed through by Bedrock (restored verbatim from _amrf).
    output_config = fields.get("output_config")
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    if effort is not None:
        if not isinstance(effort, str):
            raise _bad(
                "additionalModelRequestFields.output_config.effort must be a string",
                "additionalModelRequestFields.output_config.effort",
            )
        req.reasoning = req.reasoning or ir.ReasoningConfig()
        req.reasoning.effort = effort
        req.reasoning.effort_is_hint = True
    tool_choice = fields.get("tool_choice")
    no_parallel = tool_choice.get("disable_parallel_tool_use") if isinstance(tool_choice, dict) else None
    if no_parallel is not None:
        if not isinstance(no_parallel, bool):
            raise _bad(
                "additionalModelRequestFields.tool_choice.disable_parallel_tool_use must be a boolean",
                "additionalModelRequestFields.tool_choice.disable_parallel_tool_use",
            )
        req.parallel_tool_calls = not no_parallel


def _decode_output_config(raw: Any, req: ir.Request, extras: dict[str, Any]) -> None:
    cfg = dict(_obj(raw, "outputConfig"))
    fmt = cfg.pop("textFormat", None)
    if fmt is not None:
        p = "outputConfig.textFormat"
        fmt = _obj(fmt, p)
        if fmt.get("type") != "json_schema":
            raise _bad(f"{p}.type must be json_schema", f"{p}.type")
        kind, js = _union(fmt.get("structure"), f"{p}.structure")
        if kind != "jsonSchema":
            raise _bad(f"{p}.structure must hold jsonSchema", f"{p}.structure")
        jp = f"{p}.structure.jsonSchema"
        js = _obj(js, jp)
        try:
            schema = orjson.loads(_req_str(js, "schema", jp))
        except orjson.JSONDecodeError:
            raise _bad(f"{jp}.schema must be a JSON document in a string", f"{jp}.schema") from None
        if not isinstance(schema, dict):
            raise _bad(f"{jp}.schema must encode a JSON object", f"{jp}.schema")
        req.response_format = ir.ResponseFormat(
            "json_schema", name=_opt_str(js, "name", jp), schema=schema, description=_opt_str(js, "description", jp)
        )
    effort = cfg.get("effort")
    if effort is not None:
        if not isinstance(effort, str):
            raise _bad("outputConfig.effort must be a string", "outputConfig.effort")
        req.reasoning = req.reasoning or ir.ReasoningConfig()
        req.reasoning.effort = effort
        req.reasoning.effort_is_hint = True
    # The rest, including effort (which marks the effort as native so the encoder keeps it there rather
    # than turning it into a thinking budget), comes back verbatim.
    if cfg:
        extras["_output_config"] = cfg


def decode_request(body: dict[str, Any]) -> ir.Request:
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object", None)
    model = body.get("modelId")
    if model is not None and not isinstance(model, str):
        raise _bad("modelId must be a string", "modelId")
    extras: dict[str, Any] = {k: v for k, v in body.items() if k not in _KNOWN_REQUEST_FIELDS}
    req = ir.Request(model=model or "")
    messages: list[ir.Message] = []
    if body.get("system") is not None:
        parts = _decode_system(body["system"])
        if parts:
            messages.append(ir.Message("system", parts))
    if body.get("messages") is not None:
        messages.extend(_decode_messages(body["messages"]))
    req.messages = messages
    if body.get("inferenceConfig") is not None:
        _decode_inference(body["inferenceConfig"], req, extras)
    if body.get("toolConfig") is not None:
        _decode_tool_config(body["toolConfig"], req, extras)
    if body.get("additionalModelRequestFields") is not None:
        _decode_model_fields(body["additionalModelRequestFields"], req, extras)
    if body.get("outputConfig") is not None:
        _decode_output_config(body["outputConfig"], req, extras)
    meta = body.get("requestMetadata")
    if meta is not None:
        meta = _obj(meta, "requestMetadata")
        if not all(isinstance(v, str) for v in meta.values()):
            raise _bad("requestMetadata values must be strings", "requestMetadata")
        req.metadata = dict(meta)
    tier = body.get("serviceTier")
    if tier is not None:
        req.service_tier = _req_str(_obj(tier, "serviceTier"), "type", "serviceTier")
    if extras:
        req.extras[NAME] = extras
    return req


# --------------------------------------------------------------------------------------------
# Request: IR -> Bedrock
# --------------------------------------------------------------------------------------------


def tool_id(raw: str) -> str:
    """A toolUseId Bedrock accepts: legal ids pass through; others get a deterministic stand-in, applied
    identically to the call and its result so the pair still matches without server state."""
    if _TOOL_ID_RE.fullmatch(raw):
        return raw
    return "tooluse_gw_" + hashlib.sha1(raw.encode()).hexdigest()[:24]




def _image_format(media_type: str | None, data: str) -> str | None:
    mt = image_type(media_type, data)
    if mt is None or not mt.startswith("image/"):
        return None
    fmt = mt[6:]
    return fmt if fmt in IMAGE_FORMATS else None


def _image_block(img: ir.Image, p: str) -> dict[str, Any]:
    data, media_type = img.data, img.media_type
    url = img.url
    if data is None and url and url.startswith("data:"):
        parsed = parse_data_url(url)
        if parsed is None:
            raise _bad(f"{p}: malformed data URL", p)
        media_type, data = media_type or parsed[0], parsed[1]
    if data is not None:
        fmt = _image_format(media_type, data)
        if fmt is None:
            raise _bad(f"{p}: image type {media_type!r} is not supported by Bedrock (png, jpeg, gif, webp)", p)
        return {"image": {"format": fmt, "source": {"bytes": data}}}
    if url and url.startswith("s3://"):
        fmt = _image_format(media_type, "") or _image_format("image/" + url.rsplit(".", 1)[-1], "")
        if fmt is None:
            raise _bad(f"{p}: cannot tell the image format of {url!r} (png, jpeg, gif, webp)", p)
        return {"image": {"format": fmt, "source": {"s3Location": {"uri": url}}}}
    if url:
        raise _bad(f"{p}: Bedrock needs inline image data (base64 or a data: URL), not an image URL", p)
    raise _bad(f"{p}: Bedrock needs inline image data; a provider file id means nothing to it", p)


def _document_name(raw: str | None, used: dict[str, int]) -> str:
    name = raw or "document"
    stem, dot, ext = name.rpartition(".")
    if dot and stem and ext.lower() in _DOC_EXTENSIONS:
        name = stem
    # Bedrock's charset: letters, digits, single whitespace, hyphens, parentheses, square brackets.
    name = _SPACES.sub(" ", _DOC_NAME_BAD.sub(" ", name)).strip()[:190] or "document"
    # Names must differ within a request; a counter in parentheses stays inside the charset.
    n = used.get(name, 0) + 1
    used[name] = n
    return name if n == 1 else f"{name} ({n})"


def _document_format(d: ir.Document, p: str) -> str:
    mt = (d.media_type or "").lower().split(";", 1)[0].strip()
    fmt = _DOCUMENT_FORMATS.get(mt)
    if fmt is None and d.filename:
        ext = d.filename.rsplit(".", 1)[-1].lower()
        fmt = {"htm": "html", "markdown": "md", "text": "txt"}.get(ext, ext)
        if fmt not in DOCUMENT_MEDIA_TYPES:
            fmt = None
    if fmt is None:
        if not mt:
            return "pdf"
        raise _bad(f"{p}: document type {mt!r} is not supported by Bedrock ({', '.join(DOCUMENT_MEDIA_TYPES)})", p)
    return fmt


def _document_block(d: ir.Document, p: str, used: dict[str, int]) -> dict[str, Any]:
    data, media_type = d.data, d.media_type
    # IR convention: inline text/plain data is the text itself, anything else (and data URLs) base64.
    plain = data is not None and media_type == "text/plain"
    if data is None and d.url and d.url.startswith("data:"):
        parsed = parse_data_url(d.url)
        if parsed is None:
            raise _bad(f"{p}: malformed data URL", p)
        media_type, data = media_type or parsed[0], parsed[1]
    doc_for_format = ir.Document(media_type=media_type, filename=d.filename)
    if data is not None:
        fmt = _document_format(doc_for_format, p)
        if plain:
            data = base64.b64encode(data.encode("utf-8")).decode()
        source: dict[str, Any] = {"bytes": data}
    elif d.url and d.url.startswith("s3://"):
        fmt = _document_format(doc_for_format, p)
        source = {"s3Location": {"uri": d.url}}
    elif d.url:
        raise _bad(f"{p}: Bedrock needs inline document data, not a document URL", p)
    else:
        raise _bad(f"{p}: Bedrock needs inline document data; a provider file id means nothing to it", p)
    block: dict[str, Any] = {"format": fmt, "name": _document_name(d.filename or d.title, used), "source": source}
    if d.context is not None:
        block["context"] = d.context
    if d.citations is not None:
        block["citations"] = d.citations
    return {"document": block}


class _Enc:
    """Per-request encoding state: the model's capabilities and names already given to documents."""

    __slots__ = ("claude", "full_tools", "names")

    def __init__(self, model: str) -> None:
        self.claude = _is_claude(model)
        self.full_tools = _full_tool_support(model)
        self.names: dict[str, int] = {}


def _with_cache(out: list[dict[str, Any]], block: dict[str, Any], cc: dict[str, Any] | None) -> None:
    out.append(block)
    if cc is not None:
        out.append(_cache_point(cc))


def _text_part(t: ir.Text, out: list[dict[str, Any]]) -> None:
    mark = _marker(t)
    if mark is not None and mark[0] != JSON_MARKER and isinstance(mark[1], dict):
        _with_cache(out, mark[1], t.cache_control)
    elif t.text:
        _with_cache(out, {"text": t.text}, t.cache_control)


def _media_part(part: ir.Part, p: str, enc: _Enc, out: list[dict[str, Any]]) -> None:
    """Blocks allowed in user and assistant turns alike."""
    if isinstance(part, ir.Text):
        _text_part(part, out)
    elif isinstance(part, ir.Image):
        _with_cache(out, _image_block(part, p), part.cache_control)
    elif isinstance(part, ir.Document):
        _with_cache(out, _document_block(part, p, enc.names), part.cache_control)
    elif isinstance(part, ir.Refusal):
        if part.text:
            out.append({"text": part.text})
    elif isinstance(part, ir.Audio):
        out.append({"audio": {"format": part.format, "source": {"bytes": part.data}}})


def _tool_input(call: ir.ToolCall, p: str) -> Any:
    raw = call.arguments
    if not raw or raw.isspace():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _bad(f"{p}: arguments of tool call {call.id!r} are not valid JSON", p) from None


def _tool_result_block(r: ir.ToolResult, p: str, enc: _Enc) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for j, part in enumerate(r.content):
        cp = f"{p}.content[{j}]"
        if isinstance(part, ir.Text):
            mark = _marker(part)
            if mark is not None and mark[0] == JSON_MARKER:
                try:
                    content.append({"json": orjson.loads(part.text)})
                    continue
                except orjson.JSONDecodeError:
                    pass
            _text_part(part, content)
        elif isinstance(part, (ir.Image, ir.Document)):
            # cachePoint is no member of tool-result content: the caching mark of inner parts is dropped.
            blocks: list[dict[str, Any]] = []
            _media_part(part, cp, enc, blocks)
            content.append(blocks[0])
        elif isinstance(part, ir.Refusal) and part.text:
            content.append({"text": part.text})
        elif isinstance(part, (ir.ToolCall, ir.ToolResult)):
            raise _bad(f"{cp}: a tool result cannot contain tool calls or results", cp)
    content = [c for c in content if "cachePoint" not in c]
    out: dict[str, Any] = {"toolUseId": tool_id(r.call_id), "content": content}
    if r.is_error:
        if enc.full_tools:
            out["status"] = "error"
        elif content and "text" in content[0]:
            content[0] = {"text": "Error: " + content[0]["text"]}
        else:
            content.insert(0, {"text": "Error"})
    return {"toolResult": out}


def _reasoning_block(r: ir.Reasoning) -> dict[str, Any] | None:
    if r.redacted:
        return {"reasoningContent": {"redactedContent": r.redacted}}
    sig = r.signature
    # Only signed reasoning is accepted back; unsigned text (other providers' summaries) and signatures
    # packed by the Responses codec would be rejected, so they stay out of the history.
    if not sig or sig.startswith("trigate:"):
        return None
    return {"reasoningContent": {"reasoningText": {"text": r.text, "signature": sig}}}


def _assistant_blocks(m: ir.Message, i: int, enc: _Enc) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, part in enumerate(m.content):
        p = f"messages[{i}].content[{j}]"
        if isinstance(part, ir.ToolCall):
            if part.kind != "function":
                raise _bad(f"{p}: Bedrock has no custom (free-form) tools", p)
            block = {"toolUse": {"toolUseId": tool_id(part.id), "name": part.name, "input": _tool_input(part, p)}}
            _with_cache(out, block, part.cache_control)
        elif isinstance(part, ir.Reasoning):
            b = _reasoning_block(part)
            if b is not None:
                out.append(b)
        elif isinstance(part, ir.ToolResult):
            raise _bad(f"{p}: tool results cannot appear in an assistant message", p)
        else:
            _media_part(part, p, enc, out)
    return out


def _user_blocks(m: ir.Message, i: int, enc: _Enc) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, part in enumerate(m.content):
        p = f"messages[{i}].content[{j}]"
        if isinstance(part, ir.ToolResult):
            _with_cache(out, _tool_result_block(part, p, enc), part.cache_control)
        elif m.role == "tool":
            raise _bad(f"{p}: a tool message must hold tool results", p)
        elif isinstance(part, ir.ToolCall):
            raise _bad(f"{p}: tool calls can only appear in assistant messages", p)
        elif not isinstance(part, ir.Reasoning):
            _media_part(part, p, enc, out)
    return out


def _encode_messages(req: ir.Request, enc: _Enc) -> list[dict[str, Any]]:
    turns: list[list[Any]] = []  # [role, blocks]
    for i, m in enumerate(req.messages):
        if m.role == "system" or m.role == "developer":
            continue
        if m.role == "assistant":
            role, blocks = "assistant", _assistant_blocks(m, i, enc)
        else:
            role, blocks = "user", _user_blocks(m, i, enc)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append([role, blocks])
    if not turns or turns[0][0] == "assistant":
        turns.insert(0, ["user", [{"text": PLACEHOLDER_USER_TEXT}]])
    out = []
    for role, blocks in turns:
        if role == "user" and any("toolResult" in b for b in blocks[1:]):
            # toolResult blocks must open the user turn that answers the tool calls.
            blocks = _results_first(blocks)
        out.append({"role": role, "content": blocks})
    return out


def _results_first(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stable partition: toolResult blocks (each with the cachePoint following it) before the rest."""
    results: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    target = rest
    for b in blocks:
        if "toolResult" in b:
            target = results
        elif "cachePoint" not in b:
            target = rest
        target.append(b)
    return results + rest


def _encode_system(req: ir.Request, enc: _Enc) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        if m.role != "system" and m.role != "developer":
            continue
        for j, part in enumerate(m.content):
            if not isinstance(part, ir.Text):
                p = f"messages[{i}].content[{j}]"
                raise _bad(f"{p}: system messages can only hold text for Bedrock", p)
            _text_part(part, blocks)
    return blocks


def _tool_spec(t: ir.Tool, i: int) -> dict[str, Any]:
    if t.kind != "function":
        raise _bad(f"tools[{i}]: Bedrock has no custom (free-form) tools", f"tools[{i}]")
    schema = t.parameters
    if not schema:
        schema = {"type": "object", "properties": {}}
    elif "type" not in schema:
        schema = {"type": "object", **schema}
    spec: dict[str, Any] = {"name": t.name}
    if t.description:
        spec["description"] = t.description
    spec["inputSchema"] = {"json": schema}
    if t.strict is not None:
        spec["strict"] = t.strict
    return {"toolSpec": spec}


def _history_tools(req: ir.Request) -> tuple[bool, list[str]]:
    """(history has tool blocks, tool names the history calls, in order)."""
    has = False
    names: list[str] = []
    for m in req.messages:
        for part in m.content:
            if isinstance(part, ir.ToolCall):
                has = True
                if part.name not in names:
                    names.append(part.name)
            elif isinstance(part, ir.ToolResult):
                has = True
                if part.name and part.name not in names:
                    names.append(part.name)
    return has, names


def _encode_tool_config(req: ir.Request, extras: dict[str, Any], enc: _Enc) -> dict[str, Any] | None:
    tools: list[dict[str, Any]] = []
    for i, t in enumerate(req.tools):
        _with_cache(tools, _tool_spec(t, i), t.cache_control)
    for pos, tool in extras.get("_system_tools") or ():
        tools.insert(min(pos, len(tools)), tool)
    has_blocks, called = _history_tools(req)
    tc = req.tool_choice
    if not tools or (tc is not None and tc.mode == "none"):
        if not has_blocks:
            return None
        if not tools:
            # Bedrock refuses tool blocks in the history without a toolConfig; the caller dropped its
            # tools, so declare the ones the history uses with a permissive schema.
            tools = [{"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object"}}}} for n in called]
            if not tools:
                return None
        return {"tools": tools}
    cfg: dict[str, Any] = {"tools": tools}
    if tc is not None:
        if tc.mode == "auto":
            cfg["toolChoice"] = {"auto": {}}
        elif tc.mode == "required":
            cfg["toolChoice"] = {"any": {}}
        elif tc.mode == "tool":
            if not tc.name:
                raise _bad("tool_choice names no tool", "tool_choice")
            # Only Claude and Nova take a specific tool; for the others "any" is the nearest promise.
            cfg["toolChoice"] = {"tool": {"name": tc.name}} if enc.full_tools else {"any": {}}
    return cfg


def _claude_tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    """Converse's toolChoice as Claude's own tool_choice with parallel calls off. Converse has no such switch;
    Bedrock passes Claude's tool_choice through the model fields, and it must name the same choice as
    toolConfig does (a different type is refused as a conflict)."""
    if "any" in choice:
        out: dict[str, Any] = {"type": "any"}
    elif "tool" in choice:
        out = {"type": "tool", "name": choice["tool"]["name"]}
    else:
        out = {"type": "auto"}
    out["disable_parallel_tool_use"] = True
    return out


def _anthropic_effort(effort: str | None) -> str | None:
    if effort in _ANTHROPIC_EFFORTS:
        return effort
    if effort == "minimal":
        return "low"
    return None


def _claude_thinking(
    req: ir.Request, max_tokens: int | None, native_effort: bool, model: str
) -> tuple[dict[str, Any] | None, str | None, int | None]:
    """-> (additionalModelRequestFields.thinking, outputConfig.effort, maxTokens) for a Claude model,
    with the rules of the Anthropic codec (Bedrock forwards these to the same models)."""
    r = req.reasoning
    if r is None:
        return None, None, max_tokens
    mode = r.mode
    effort = _anthropic_effort(r.effort) if (mode is not None or native_effort) else None
    thinking: dict[str, Any] | None = None
    if mode == "disabled":
        thinking = {"type": "disabled"}
    elif mode == "adaptive":
        thinking = {"type": "adaptive"}
    elif mode == "enabled" or (mode is None and not native_effort):
        budget = r.budget_tokens
        if mode is None and (r.effort == "none" or budget == 0 or (budget is None and r.effort is None)):
            return None, None, max_tokens
        tc = req.tool_choice
        if mode is None and tc is not None and tc.mode in ("required", "tool") and req.tools:
            # Claude refuses thinking with a forced tool choice; the forced tool is the hard requirement.
            return None, None, max_tokens
        if budget is None or budget < 0:
            budget = budget_for_effort(r.effort)
        budget, max_tokens = fit_thinking(budget, max_tokens if max_tokens is not None else default_max_tokens(model))
        thinking = {"type": "enabled", "budget_tokens": budget}
    if thinking is not None and r.display is not None and thinking["type"] != "disabled":
        thinking["display"] = r.display
    return thinking, effort, max_tokens


def _response_format(rf: ir.ResponseFormat) -> dict[str, Any]:
    js: dict[str, Any] = {"schema": orjson.dumps(rf.schema).decode()}
    if rf.name is not None:
        js["name"] = rf.name
    if rf.description is not None:
        js["description"] = rf.description
    return {"type": "json_schema", "structure": {"jsonSchema": js}}


def encode_request(req: ir.Request, model: str) -> dict[str, Any]:
    if req.n is not None and req.n > 1:
        raise _bad("n > 1 is not supported by Bedrock models", "n")
    extras = req.extras.get(NAME) or {}
    enc = _Enc(model)
    body: dict[str, Any] = {}

    amrf: dict[str, Any] = dict(extras.get("_amrf") or {})
    had_top_k = amrf.pop("top_k", None) is not None
    had_thinking = amrf.pop("thinking", None) is not None
    output_config: dict[str, Any] = dict(extras.get("_output_config") or {})
    # The Bedrock caller's own outputConfig.effort goes back where it was; other output efforts (Anthropic's)
    # go where Bedrock takes them for Claude, its output_config among the model fields.
    own_effort = "effort" in output_config
    output_config.pop("effort", None)
    native_effort = own_effort or (req.reasoning is not None and req.reasoning.effort_is_hint)

    max_tokens = req.max_tokens
    if max_tokens is None and enc.claude:
        max_tokens = default_max_tokens(model)
    thinking: dict[str, Any] | None = None
    effort: str | None = None
    if enc.claude or had_thinking:
        thinking, effort, max_tokens = _claude_thinking(req, max_tokens, native_effort, model)
    elif req.reasoning is not None and own_effort:
        effort = req.reasoning.effort
    elif req.reasoning is not None and model_family(model) == "openai":
        # gpt-oss on Bedrock takes OpenAI's own knob, through the model fields.
        e = req.reasoning.effort
        if e is not None and e != "none":
            amrf["reasoning_effort"] = {"minimal": "low", "xhigh": "high", "max": "high"}.get(e, e)
    thinking_on = thinking is not None and thinking["type"] != "disabled"

    sys_blocks = _encode_system(req, enc)
    rf = req.response_format
    if rf is not None and (rf.type == "json_object" or (rf.type == "json_schema" and rf.schema is None)):
        sys_blocks.append({"text": JSON_OBJECT_INSTRUCTION})
    body["messages"] = _encode_messages(req, enc)
    if sys_blocks:
        body["system"] = sys_blocks

    inference: dict[str, Any] = dict(extras.get("_inference") or {})
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if req.temperature is not None and (not thinking_on or req.temperature == 1):
        # Bedrock's range is 0-1; see the module docstring for clamping rather than scaling.
        inference["temperature"] = min(max(req.temperature, 0), 1)
    if req.top_p is not None and (not thinking_on or 0.95 <= req.top_p <= 1):
        inference["topP"] = min(max(req.top_p, 0), 1)
    if req.stop:
        inference["stopSequences"] = list(req.stop)
    if inference:
        body["inferenceConfig"] = inference

    tool_config = _encode_tool_config(req, extras, enc)
    if tool_config is not None:
        body["toolConfig"] = tool_config

    if req.top_k is not None and not thinking_on and (enc.claude or had_top_k):
        amrf["top_k"] = req.top_k
    if thinking is not None:
        amrf["thinking"] = thinking
    if effort is not None and not own_effort:
        amrf["output_config"] = {**(amrf.get("output_config") or {}), "effort": effort}
    tc = req.tool_choice
    if req.parallel_tool_calls is False and enc.claude and tool_config is not None and req.tools and (
        tc is None or tc.mode != "none"
    ):
        amrf.setdefault("tool_choice", _claude_tool_choice(tool_config.setdefault("toolChoice", {"auto": {}})))
    if amrf:
        body["additionalModelRequestFields"] = amrf

    if effort is not None and own_effort:
        output_config["effort"] = effort
    if rf is not None and rf.type == "json_schema" and rf.schema is not None:
        output_config["textFormat"] = _response_format(rf)
    if output_config:
        body["outputConfig"] = output_config

    if req.metadata:
        meta = {
            k: v
            for k, v in req.metadata.items()
            if isinstance(k, str)
            and isinstance(v, str)
            and 0 < len(k)
            and _METADATA_RE.fullmatch(k)
            and _METADATA_RE.fullmatch(v)
        }
        if meta:
            body["requestMetadata"] = dict(list(meta.items())[:16])
    tier = req.service_tier
    if tier == "standard_only":
        tier = "default"
    if tier in _SERVICE_TIERS:
        body["serviceTier"] = {"type": tier}
    for k, v in extras.items():
        if not k.startswith("_"):
            body.setdefault(k, v)
    return body


# --------------------------------------------------------------------------------------------
# Response
# --------------------------------------------------------------------------------------------


def _upstream_bad(detail: str) -> GatewayError:
    return GatewayError("upstream_unavailable", f"malformed Bedrock response: {detail}")


def _decode_output_block(b: Any, p: str) -> ir.Part | None:
    if not isinstance(b, dict) or len(b) != 1:
        raise _upstream_bad(f"{p} is not a one-member object")
    kind, v = next(iter(b.items()))
    if kind == "text":
        return ir.Text(str(v))
    if kind == "toolUse":
        return ir.ToolCall(
            id=str(v.get("toolUseId") or ""),
            name=str(v.get("name") or ""),
            arguments=orjson.dumps(v.get("input") if v.get("input") is not None else {}).decode(),
        )
    if kind == "reasoningContent":
        if "redactedContent" in v:
            return ir.Reasoning(redacted=str(v["redactedContent"]))
        rt = v.get("reasoningText") or {}
        return ir.Reasoning(text=str(rt.get("text") or ""), signature=rt.get("signature"))
    if kind == "citationsContent":
        return _decode_citations_content(b, p)
    return opaque_part(b)


def decode_response(body: dict[str, Any]) -> ir.Response:
    if not isinstance(body, dict):
        raise _upstream_bad("body is not an object")
    output = body.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise _upstream_bad("output.message.content is not an array")
    parts: list[ir.Part] = []
    for j, b in enumerate(content):
        try:
            part = _decode_output_block(b, f"output.message.content[{j}]")
        except (AttributeError, TypeError):
            raise _upstream_bad(f"output.message.content[{j}] has the wrong shape") from None
        if part is not None:
            parts.append(part)
    raw_stop = body.get("stopReason")
    resp = ir.Response(id=new_message_id(), model="", content=parts, stop_reason=stop_from_bedrock(raw_stop))
    # metrics, trace, additionalModelResponseFields, performanceConfig, serviceTier and anything newer.
    extras: dict[str, Any] = {k: v for k, v in body.items() if k not in ("output", "stopReason", "usage")}
    if isinstance(raw_stop, str) and stop_to_bedrock(resp.stop_reason) != raw_stop:
        extras["_stop_reason"] = raw_stop
    fields = body.get("additionalModelResponseFields")
    if isinstance(fields, dict) and isinstance(fields.get("stop_sequence"), str):
        resp.stop_sequence = fields["stop_sequence"]
    usage = body.get("usage")
    if isinstance(usage, dict):
        resp.usage = usage_from_bedrock(usage)
        rest = {k: v for k, v in usage.items() if k not in USAGE_FIELDS}
        if rest:
            extras["_usage"] = rest
    if extras:
        resp.extras[NAME] = extras
    return resp


def _output_block(part: ir.Part) -> dict[str, Any] | None:
    if isinstance(part, ir.Text):
        mark = _marker(part)
        if mark is not None and mark[0] != JSON_MARKER and isinstance(mark[1], dict):
            return mark[1]
        return {"text": part.text} if part.text else None
    if isinstance(part, ir.Refusal):
        return {"text": part.text} if part.text else None
    if isinstance(part, ir.Reasoning):
        if part.redacted:
            return {"reasoningContent": {"redactedContent": part.redacted}}
        if not part.text and not part.signature:
            return None
        rt: dict[str, Any] = {"text": part.text}
        if part.signature is not None:
            rt["signature"] = part.signature
        return {"reasoningContent": {"reasoningText": rt}}
    if isinstance(part, ir.ToolCall):
        raw = part.arguments
        try:
            inp = orjson.loads(raw) if raw and not raw.isspace() else {}
        except orjson.JSONDecodeError:
            # The model produced broken arguments: hand them over rather than failing the whole turn.
            inp = {"_raw": raw}
        return {"toolUse": {"toolUseId": tool_id(part.id), "name": part.name, "input": inp}}
    return None


def encode_response(resp: ir.Response, req: ir.Request) -> dict[str, Any]:
    extras = resp.extras.get(NAME) or {}
    content = [b for b in (_output_block(p) for p in resp.content) if b is not None]
    stop = stop_to_bedrock(resp.stop_reason)
    orig = extras.get("_stop_reason")
    if isinstance(orig, str) and stop_from_bedrock(orig) == (resp.stop_reason or "end_turn"):
        stop = orig
    usage = usage_to_bedrock(resp.usage or ir.Usage())
    for k, v in (extras.get("_usage") or {}).items():
        usage.setdefault(k, v)
    body: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage,
        "metrics": extras.get("metrics") or {"latencyMs": 0},
    }
    for k, v in extras.items():
        if not k.startswith("_"):
            body.setdefault(k, v)
    return body


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def render_error(err: GatewayError) -> tuple[int, dict[str, Any]]:
    """Bedrock's error body. SDKs read the exception name from ``x-amzn-ErrorType`` or, failing that,
    from ``__type`` in the body, so the body carries it (the shell may copy it into the header)."""
    status, _ = error_status(err)
    return status, error_payload(err)


def parse_error(status: int, body: bytes) -> GatewayError:
    """HTTP error -> GatewayError. The exception name normally travels in the ``x-amzn-ErrorType`` header,
    which this signature does not see: it is read from the body's ``__type`` / ``code`` when present (the
    shell can inject the header value as ``__type``), else the kind follows the HTTP status."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        etype = data.get("__type") or data.get("code") or data.get("Code")
        message = data.get("message") or data.get("Message")
        if isinstance(etype, str) or isinstance(message, str):
            return error_from_exception(etype if isinstance(etype, str) else None, message, status or 500)
    text = body.decode("utf-8", "replace").strip()[:500] if body else ""
    return GatewayError(
        kind_for_status(status), text or f"upstream returned HTTP {status}", status=status, from_gateway=False
    )


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------



CODEC = FunctionCodec(
    name=NAME,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=lambda req: BedrockStreamDecoder(),
    stream_encoder=lambda req: BedrockStreamEncoder(),
    render_error=render_error,
    render_stream_error=_render_stream_error,
    parse_error=parse_error,
)
