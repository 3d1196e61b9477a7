"""OpenAI Chat Completions (``/v1/chat/completions``) <-> IR.

Requests, responses and errors live here; the stream state machines live in ``openai_chat_stream``.

Fields Chat has but the IR does not model are kept in ``extras["openai_chat"]``: unknown top-level fields
verbatim (restored by the encoders of this format), plus one reserved key, ``_meta``, holding hints the
gateway needs to restore this format's exact shape (legacy ``functions``, ``max_tokens`` spelling,
per-message fields such as assistant ``audio``, ``allowed_tools`` choices, extra usage details).

Non-standard reasoning fields: Chat has nowhere to put model thinking, so (like DeepSeek / vLLM) responses
carry ``message.reasoning_content`` with ``reasoning_signature`` / ``reasoning_redacted``; a message with
several reasoning blocks, or Responses-style ones (id / summary / encrypted_content), carries them all in
``reasoning_details`` (one entry per block, after OpenRouter's naming). Clients that echo the assistant
message back give the thinking back to us; requests never forward these fields upstream because OpenAI
rejects unknown message fields.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from trigate.errors import DEFAULT_STATUS, GatewayError, kind_for_status
from trigate.formats.base import FunctionCodec
from trigate.formats.checks import bad as _bad
from trigate.formats.checks import expect_dict as _dict
from trigate.formats.checks import expect_list as _list
from trigate.formats.checks import expect_str as _str
from trigate.formats.checks import kind_name as _kind_name
from trigate.translate import ir
from trigate.wire.sse import encode_event

FORMAT = "openai_chat"
META = "_meta"  # reserved key inside extras["openai_chat"]; never sent on the wire

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")

# Top-level request fields decoded into the IR; everything else is kept in extras.
_KNOWN_REQUEST_FIELDS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_completion_tokens", "max_tokens",
        "temperature", "top_p", "stop", "seed", "n", "frequency_penalty", "presence_penalty", "tools",
        "tool_choice", "functions", "function_call", "parallel_tool_calls", "response_format",
        "reasoning_effort", "user", "safety_identifier", "metadata", "service_tier", "store",
    }
)  # fmt: skip
_KNOWN_MESSAGE_FIELDS = frozenset(
    {
        "role", "content", "name", "tool_calls", "tool_call_id", "refusal", "function_call",
        "reasoning_content", "reasoning", "reasoning_signature", "reasoning_redacted", "reasoning_details",
    }
)  # fmt: skip
_KNOWN_RESPONSE_FIELDS = frozenset({"id", "object", "created", "model", "choices", "usage"})
_KNOWN_CHOICE_FIELDS = frozenset({"index", "message", "finish_reason"})

# data:<media type>[;param=value]*;base64,<payload>. Anything else is not an inline image we can translate.
_DATA_URL = re.compile(
    r"data:(?P<mt>[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*)"
    r"(?:;[A-Za-z0-9!#$&^_.+-]+=[^;,]*)*;base64,(?P<data>[A-Za-z0-9+/_-]*={0,2})",
    re.ASCII,
)
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}", re.ASCII)

FINISH_TO_STOP: dict[str, ir.StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}
STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # the caller must continue the turn; Chat has no better word for it (protocols.md §11.9)
    "pause_turn": "stop",
    "max_tokens": "length",
    "context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
}


# --------------------------------------------------------------------------------------------
# Validation helpers: every client mistake becomes a 400 naming the field.
# --------------------------------------------------------------------------------------------


def _need(obj: dict[str, Any], key: str, param: str) -> Any:
    v = obj.get(key)
    if v is None:
        raise _bad(param, "field required")
    return v


def _opt_str(obj: dict[str, Any], key: str, param: str) -> str | None:
    v = obj.get(key)
    return None if v is None else _str(v, param)


def _opt_int(obj: dict[str, Any], key: str, param: str) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise _bad(param, f"expected an integer, got {_kind_name(v)}")
    return int(v)


def _opt_num(obj: dict[str, Any], key: str, param: str) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(param, f"expected a number, got {_kind_name(v)}")
    return v


def _opt_bool(obj: dict[str, Any], key: str, param: str) -> bool | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise _bad(param, f"expected a boolean, got {_kind_name(v)}")
    return v


def _json_text(v: Any, param: str) -> str:
    """Tool call arguments: a JSON string per the spec; an object is tolerated and serialised compactly."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return orjson.dumps(v).decode()
    raise _bad(param, f"expected a string, got {_kind_name(v)}")


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` -> (media type, base64 data); None when ``url`` is not one."""
    m = _DATA_URL.fullmatch(url)
    if m is None:
        return None
    return m.group("mt").lower(), m.group("data")


# --------------------------------------------------------------------------------------------
# Request decoding
# --------------------------------------------------------------------------------------------


class _Legacy:
    """Ids for legacy ``function_call`` turns, which have none: deterministic so a client resending the
    same history gets the same ids, and each ``function`` result is paired with the latest call of its name."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}

    def call_id(self, msg_index: int, name: str) -> str:
        cid = f"call_fn_{msg_index}"
        self.pending[name] = cid
        return cid

    def result_id(self, name: str) -> str:
        return self.pending.pop(name, None) or f"call_fn_{name}"


def decode_request(body: dict[str, Any]) -> ir.Request:
    if not isinstance(body, dict):
        raise GatewayError("invalid_request", "request body must be a JSON object")
    model = _str(_need(body, "model", "model"), "model")
    if not model:
        raise _bad("model", "must not be empty")
    raw_messages = _list(_need(body, "messages", "messages"), "messages")
    if not raw_messages:
        raise _bad("messages", "must contain at least one message")

    meta: dict[str, Any] = {}
    # A client field spelled like the reserved key is dropped rather than mistaken for our hints.
    extras = {k: v for k, v in body.items() if k not in _KNOWN_REQUEST_FIELDS and k != META}
    legacy = _Legacy()
    msg_extras: dict[str, dict[str, Any]] = {}
    messages = []
    for i, m in enumerate(raw_messages):
        param = f"messages[{i}]"
        msg = _decode_message(_dict(m, param), i, param, legacy)
        messages.append(msg)
        unknown = {k: v for k, v in m.items() if k not in _KNOWN_MESSAGE_FIELDS}
        if unknown:
            msg_extras[str(i)] = unknown
    if msg_extras:
        meta["messages"] = msg_extras

    req = ir.Request(model=model, messages=messages)

    mct = _opt_int(body, "max_completion_tokens", "max_completion_tokens")
    legacy_mt = _opt_int(body, "max_tokens", "max_tokens")
    if mct is not None:
        req.max_tokens = mct
    elif legacy_mt is not None:
        req.max_tokens = legacy_mt
        meta["max_tokens_field"] = "max_tokens"  # OpenAI-compatible servers may know only this spelling
    req.temperature = _opt_num(body, "temperature", "temperature")
    req.top_p = _opt_num(body, "top_p", "top_p")
    req.frequency_penalty = _opt_num(body, "frequency_penalty", "frequency_penalty")
    req.presence_penalty = _opt_num(body, "presence_penalty", "presence_penalty")
    req.seed = _opt_int(body, "seed", "seed")
    req.n = _opt_int(body, "n", "n")
    req.stop = _decode_stop(body.get("stop"))

    tools = body.get("tools")
    if tools is not None:
        req.tools = [_decode_tool(t, f"tools[{j}]") for j, t in enumerate(_list(tools, "tools"))]
    functions = body.get("functions")
    if functions is not None:
        for j, f in enumerate(_list(functions, "functions")):
            req.tools.append(_decode_function_def(_dict(f, f"functions[{j}]"), f"functions[{j}]"))
        if tools is None:
            meta["legacy_functions"] = True
    if body.get("tool_choice") is not None:
        req.tool_choice = _decode_tool_choice(body["tool_choice"], meta)
    elif body.get("function_call") is not None:
        req.tool_choice = _decode_function_call_choice(body["function_call"])
    req.parallel_tool_calls = _opt_bool(body, "parallel_tool_calls", "parallel_tool_calls")
    if meta.get("legacy_functions") and req.parallel_tool_calls is None:
        # A legacy client can only receive one function_call per turn.
        req.parallel_tool_calls = False

    if body.get("response_format") is not None:
        req.response_format = _decode_response_format(body["response_format"])
    effort = _opt_str(body, "reasoning_effort", "reasoning_effort")
    if effort is not None:
        req.reasoning = ir.ReasoningConfig(effort=effort)

    req.stream = bool(_opt_bool(body, "stream", "stream"))
    so = body.get("stream_options")
    if so is not None:
        so = _dict(so, "stream_options")
        req.include_usage = bool(_opt_bool(so, "include_usage", "stream_options.include_usage"))
        rest = {k: v for k, v in so.items() if k != "include_usage"}
        if rest:
            meta["stream_options"] = rest

    safety = _opt_str(body, "safety_identifier", "safety_identifier")
    user = _opt_str(body, "user", "user")
    if safety is not None:
        req.user = safety
        if user is not None:
            extras["user"] = user
    elif user is not None:
        req.user = user
        meta["user_field"] = "user"
    md = body.get("metadata")
    req.metadata = None if md is None else _dict(md, "metadata")
    req.service_tier = _opt_str(body, "service_tier", "service_tier")
    req.store = _opt_bool(body, "store", "store")

    if meta:
        extras[META] = meta
    if extras:
        req.extras[FORMAT] = extras
    return req


def _decode_stop(v: Any) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    return [_str(s, f"stop[{j}]") for j, s in enumerate(_list(v, "stop"))]


def _decode_message(m: dict[str, Any], i: int, param: str, legacy: _Legacy) -> ir.Message:
    role = m.get("role")
    if role is None:
        raise _bad(f"{param}.role", "field required")
    if role not in _ROLES:
        raise _bad(f"{param}.role", f"unknown role {role!r}")
    name = _opt_str(m, "name", f"{param}.name")
    content = m.get("content")
    cparam = f"{param}.content"

    if role in ("system", "developer"):
        return ir.Message(role, _decode_text_content(_need(m, "content", cparam), cparam), name=name)
    if role == "user":
        return ir.Message("user", _decode_user_content(_need(m, "content", cparam), cparam), name=name)
    if role == "tool":
        call_id = _str(_need(m, "tool_call_id", f"{param}.tool_call_id"), f"{param}.tool_call_id")
        parts = _decode_user_content(_need(m, "content", cparam), cparam)
        # `name` is not in OpenAI's schema for tool messages, but clients send it and Gemini needs it.
        return ir.Message("tool", [ir.ToolResult(call_id=call_id, content=parts, name=name)])
    if role == "function":
        fname = _str(_need(m, "name", f"{param}.name"), f"{param}.name")
        text = _opt_str(m, "content", cparam)
        result = ir.ToolResult(legacy.result_id(fname), [ir.Text(text)] if text else [], name=fname)
        return ir.Message("tool", [result])

    # assistant: thinking first, as it preceded the answer
    parts: list[ir.Part] = list(_decode_reasoning(m, param))
    if content is not None:
        if isinstance(content, str):
            if content:
                parts.append(ir.Text(content))
        else:
            for j, p in enumerate(_list(content, cparam)):
                parts.append(_decode_assistant_part(_dict(p, f"{cparam}[{j}]"), f"{cparam}[{j}]"))
    refusal = _opt_str(m, "refusal", f"{param}.refusal")
    if refusal is not None:
        parts.append(ir.Refusal(refusal))
    tcs = m.get("tool_calls")
    if tcs is not None:
        for j, tc in enumerate(_list(tcs, f"{param}.tool_calls")):
            parts.append(_decode_tool_call(_dict(tc, f"{param}.tool_calls[{j}]"), f"{param}.tool_calls[{j}]"))
    fc = m.get("function_call")
    if fc is not None:
        fc = _dict(fc, f"{param}.function_call")
        fname = _str(_need(fc, "name", f"{param}.function_call.name"), f"{param}.function_call.name")
        args = _json_text(fc.get("arguments"), f"{param}.function_call.arguments")
        parts.append(ir.ToolCall(id=legacy.call_id(i, fname), name=fname, arguments=args))
    return ir.Message("assistant", parts, name=name)


def _decode_text_content(content: Any, param: str) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)]
    out: list[ir.Part] = []
    for j, p in enumerate(_list(content, param)):
        p = _dict(p, f"{param}[{j}]")
        if p.get("type") != "text":
            raise _bad(f"{param}[{j}].type", f"expected 'text', got {p.get('type')!r}")
        out.append(ir.Text(_str(_need(p, "text", f"{param}[{j}].text"), f"{param}[{j}].text")))
    return out


def _decode_user_content(content: Any, param: str) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)]
    return [_decode_user_part(_dict(p, f"{param}[{j}]"), f"{param}[{j}]") for j, p in enumerate(_list(content, param))]


def _decode_user_part(p: dict[str, Any], param: str) -> ir.Part:
    t = p.get("type")
    if t == "text":
        return ir.Text(_str(_need(p, "text", f"{param}.text"), f"{param}.text"))
    if t == "image_url":
        iu = _dict(_need(p, "image_url", f"{param}.image_url"), f"{param}.image_url")
        url = _str(_need(iu, "url", f"{param}.image_url.url"), f"{param}.image_url.url")
        detail = _opt_str(iu, "detail", f"{param}.image_url.detail")
        if url.startswith("data:"):
            parsed = parse_data_url(url)
            if parsed is None:
                raise _bad(f"{param}.image_url.url", "invalid data URL: expected data:<media type>;base64,<data>")
            return ir.Image(media_type=parsed[0], data=parsed[1], detail=detail)
        if not url.startswith(("https://", "http://")):
            raise _bad(f"{param}.image_url.url", "expected an http(s) URL or a base64 data URL")
        return ir.Image(url=url, detail=detail)
    if t == "input_audio":
        ia = _dict(_need(p, "input_audio", f"{param}.input_audio"), f"{param}.input_audio")
        data = _str(_need(ia, "data", f"{param}.input_audio.data"), f"{param}.input_audio.data")
        fmt = _str(_need(ia, "format", f"{param}.input_audio.format"), f"{param}.input_audio.format")
        return ir.Audio(data=data, format=fmt)
    if t == "file":
        f = _dict(_need(p, "file", f"{param}.file"), f"{param}.file")
        doc = ir.Document(
            file_id=_opt_str(f, "file_id", f"{param}.file.file_id"),
            filename=_opt_str(f, "filename", f"{param}.file.filename"),
        )
        fd = _opt_str(f, "file_data", f"{param}.file.file_data")
        if fd is not None:
            parsed = parse_data_url(fd) if fd.startswith("data:") else None
            if parsed is not None:
                doc.media_type, doc.data = parsed
            elif _BASE64.fullmatch(fd):
                doc.data = fd  # bare base64: media type unknown, sent back as it came
            else:
                raise _bad(f"{param}.file.file_data", "expected a base64 data URL")
        if doc.file_id is None and doc.data is None:
            raise _bad(f"{param}.file", "one of file_id or file_data is required")
        return doc
    if t is None:
        raise _bad(f"{param}.type", "field required")
    raise _bad(f"{param}.type", f"unknown content part type {t!r}")


def _decode_assistant_part(p: dict[str, Any], param: str) -> ir.Part:
    t = p.get("type")
    if t == "text":
        return ir.Text(_str(_need(p, "text", f"{param}.text"), f"{param}.text"))
    if t == "refusal":
        return ir.Refusal(_str(_need(p, "refusal", f"{param}.refusal"), f"{param}.refusal"))
    if t is None:
        raise _bad(f"{param}.type", "field required")
    raise _bad(f"{param}.type", f"unknown assistant content part type {t!r}")


def _decode_tool_call(tc: dict[str, Any], param: str) -> ir.ToolCall:
    cid = _str(_need(tc, "id", f"{param}.id"), f"{param}.id")
    t = tc.get("type") or ("custom" if "custom" in tc and "function" not in tc else "function")
    if t == "function":
        fn = _dict(_need(tc, "function", f"{param}.function"), f"{param}.function")
        name = _str(_need(fn, "name", f"{param}.function.name"), f"{param}.function.name")
        call = ir.ToolCall(cid, name, _json_text(fn.get("arguments"), f"{param}.function.arguments"))
    elif t == "custom":
        cu = _dict(_need(tc, "custom", f"{param}.custom"), f"{param}.custom")
        name = _str(_need(cu, "name", f"{param}.custom.name"), f"{param}.custom.name")
        call = ir.ToolCall(cid, name, _opt_str(cu, "input", f"{param}.custom.input") or "", kind="custom")
    else:
        raise _bad(f"{param}.type", f"unknown tool call type {t!r}")
    call.signature = thought_signature(tc)
    return call


def thought_signature(tc: dict[str, Any]) -> str | None:
    """Gemini's OpenAI layer puts thought signatures at tool_calls[].extra_content.google.thought_signature."""
    ec = tc.get("extra_content")
    if isinstance(ec, dict):
        g = ec.get("google")
        if isinstance(g, dict) and isinstance(g.get("thought_signature"), str):
            return g["thought_signature"]
    return None


def _decode_reasoning(m: dict[str, Any], param: str) -> list[ir.Reasoning]:
    details = m.get("reasoning_details")
    if details is not None:
        out = []
        for j, d in enumerate(_list(details, f"{param}.reasoning_details")):
            d = _dict(d, f"{param}.reasoning_details[{j}]")
            r = _reasoning_from_detail(d)
            if r is not None:
                out.append(r)
        return out
    text = m.get("reasoning_content")
    if text is None:
        text = m.get("reasoning")
    text = text if isinstance(text, str) else ""
    sig = m.get("reasoning_signature")
    sig = sig if isinstance(sig, str) and sig else None
    out = []
    if text or sig:
        out.append(ir.Reasoning(text=text, signature=sig))
    red = m.get("reasoning_redacted")
    if isinstance(red, str) and red:
        out.append(ir.Reasoning(redacted=red))
    return out


def _reasoning_from_detail(d: dict[str, Any]) -> ir.Reasoning | None:
    t = d.get("type")
    if t == "reasoning.encrypted":
        data = d.get("data")
        return ir.Reasoning(redacted=data) if isinstance(data, str) else None
    if t not in ("reasoning.text", "reasoning.summary"):
        return None
    summary = d.get("summary")
    if isinstance(summary, str):
        summary = [summary]
    elif not (isinstance(summary, list) and all(isinstance(s, str) for s in summary)):
        summary = None
    text = d.get("text")
    sig, enc, rid = d.get("signature"), d.get("encrypted_content"), d.get("id")
    return ir.Reasoning(
        text=text if isinstance(text, str) else "",
        signature=sig if isinstance(sig, str) else None,
        summary=summary,
        encrypted_content=enc if isinstance(enc, str) else None,
        id=rid if isinstance(rid, str) else None,
    )


def _decode_tool(t: Any, param: str) -> ir.Tool:
    t = _dict(t, param)
    kind = t.get("type")
    if kind == "function":
        return _decode_function_def(
            _dict(_need(t, "function", f"{param}.function"), f"{param}.function"), f"{param}.function"
        )
    if kind == "custom":
        cu = _dict(_need(t, "custom", f"{param}.custom"), f"{param}.custom")
        fmt = cu.get("format")
        return ir.Tool(
            name=_str(_need(cu, "name", f"{param}.custom.name"), f"{param}.custom.name"),
            description=_opt_str(cu, "description", f"{param}.custom.description"),
            kind="custom",
            format=None if fmt is None else _dict(fmt, f"{param}.custom.format"),
        )
    if kind is None:
        raise _bad(f"{param}.type", "field required")
    raise _bad(f"{param}.type", f"unsupported tool type {kind!r}")


def _decode_function_def(f: dict[str, Any], param: str) -> ir.Tool:
    params = f.get("parameters")
    return ir.Tool(
        name=_str(_need(f, "name", f"{param}.name"), f"{param}.name"),
        description=_opt_str(f, "description", f"{param}.description"),
        parameters=None if params is None else _dict(params, f"{param}.parameters"),
        strict=_opt_bool(f, "strict", f"{param}.strict"),
    )


def _decode_tool_choice(tc: Any, meta: dict[str, Any]) -> ir.ToolChoice:
    if isinstance(tc, str):
        if tc not in ("auto", "none", "required"):
            raise _bad("tool_choice", f"unknown value {tc!r}")
        return ir.ToolChoice(tc)  # type: ignore[arg-type]
    tc = _dict(tc, "tool_choice")
    t = tc.get("type")
    if t in ("function", "custom"):
        inner = _dict(_need(tc, t, f"tool_choice.{t}"), f"tool_choice.{t}")
        return ir.ToolChoice("tool", name=_str(_need(inner, "name", f"tool_choice.{t}.name"), f"tool_choice.{t}.name"))
    if t == "allowed_tools":
        at = _dict(_need(tc, "allowed_tools", "tool_choice.allowed_tools"), "tool_choice.allowed_tools")
        mode = at.get("mode")
        if mode not in ("auto", "required"):
            raise _bad("tool_choice.allowed_tools.mode", f"expected 'auto' or 'required', got {mode!r}")
        _list(_need(at, "tools", "tool_choice.allowed_tools.tools"), "tool_choice.allowed_tools.tools")
        # The IR has no allowed-subset notion: other formats see plain auto/required over all tools.
        meta["allowed_tools"] = at
        return ir.ToolChoice(mode)
    raise _bad("tool_choice.type", f"unknown tool choice type {t!r}")


def _decode_function_call_choice(fc: Any) -> ir.ToolChoice:
    if isinstance(fc, str):
        if fc not in ("auto", "none"):
            raise _bad("function_call", f"unknown value {fc!r}")
        return ir.ToolChoice(fc)  # type: ignore[arg-type]
    fc = _dict(fc, "function_call")
    return ir.ToolChoice("tool", name=_str(_need(fc, "name", "function_call.name"), "function_call.name"))


def _decode_response_format(rf: Any) -> ir.ResponseFormat:
    rf = _dict(rf, "response_format")
    t = rf.get("type")
    if t in ("text", "json_object"):
        return ir.ResponseFormat(t)
    if t == "json_schema":
        js = _dict(_need(rf, "json_schema", "response_format.json_schema"), "response_format.json_schema")
        schema = js.get("schema")
        return ir.ResponseFormat(
            "json_schema",
            name=_str(_need(js, "name", "response_format.json_schema.name"), "response_format.json_schema.name"),
            schema=None if schema is None else _dict(schema, "response_format.json_schema.schema"),
            strict=_opt_bool(js, "strict", "response_format.json_schema.strict"),
            description=_opt_str(js, "description", "response_format.json_schema.description"),
        )
    if t is None:
        raise _bad("response_format.type", "field required")
    raise _bad("response_format.type", f"unknown response format type {t!r}")


# --------------------------------------------------------------------------------------------
# Request encoding
# --------------------------------------------------------------------------------------------


def effort_for_budget(budget: int) -> str:
    """Anthropic/Gemini thinking budget -> reasoning_effort, on the protocols.md §11.7 scale
    (low ~1k, medium ~8k, high beyond)."""
    if budget <= 1024:
        return "low"
    if budget <= 8192:
        return "medium"
    return "high"


def _own_extras(extras: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    own = extras.get(FORMAT)
    if not own:
        return {}, {}
    meta = own.get(META)
    return own, meta if isinstance(meta, dict) else {}


def encode_request(req: ir.Request, model: str) -> dict[str, Any]:
    own, meta = _own_extras(req.extras)
    tool_kinds = {t.name: t.kind for t in req.tools}
    body: dict[str, Any] = {"model": model, "messages": _encode_messages(req.messages, meta.get("messages"))}

    if req.max_tokens is not None:
        body[meta.get("max_tokens_field", "max_completion_tokens")] = req.max_tokens
    for key in ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "n"):
        v = getattr(req, key)
        if v is not None:
            body[key] = v
    if req.stop:
        body["stop"] = list(req.stop)

    if req.tools:
        body["tools"] = [_encode_tool(t) for t in req.tools]
        # OpenAI rejects tool_choice / parallel_tool_calls without tools, which other formats allow.
        if req.tool_choice is not None:
            body["tool_choice"] = _encode_tool_choice(req.tool_choice, tool_kinds, meta.get("allowed_tools"))
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls

    rf = req.response_format
    if rf is not None:
        body["response_format"] = _encode_response_format(rf)
    rc = req.reasoning
    if rc is not None:
        if rc.effort is not None:
            body["reasoning_effort"] = rc.effort
        elif rc.budget_tokens is not None and rc.mode != "disabled":
            body["reasoning_effort"] = effort_for_budget(rc.budget_tokens)

    if req.stream:
        body["stream"] = True
        # Always ask for usage: the gateway bills from it; the stream encoder drops the usage chunk again
        # for clients that did not ask.
        body["stream_options"] = {**(meta.get("stream_options") or {}), "include_usage": True}

    if req.user is not None:
        # safety_identifier is OpenAI's current name; `user` is deprecated but kept for clients that sent it.
        body[meta.get("user_field", "safety_identifier")] = req.user
    if req.metadata is not None:
        body["metadata"] = req.metadata
    if req.service_tier is not None:
        body["service_tier"] = req.service_tier
    if req.store is not None:
        body["store"] = req.store

    for k, v in own.items():
        if k != META:
            body.setdefault(k, v)
    return body


def _encode_messages(messages: list[ir.Message], msg_extras: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        start = len(out)
        if m.role in ("system", "developer"):
            msg: dict[str, Any] = {"role": m.role, "content": _text_content(m.content)}
            if m.name is not None:
                msg["name"] = m.name
            out.append(msg)
        elif m.role == "assistant":
            out.append(_encode_assistant_request(m))
        else:
            # user / tool: tool results become `tool` messages, placed first because OpenAI wants them
            # right after the assistant turn that made the calls.
            rest: list[ir.Part] = []
            for p in m.content:
                if isinstance(p, ir.ToolResult):
                    out.append(_encode_tool_result(p, i))
                else:
                    rest.append(p)
            if rest or (m.role == "user" and not m.content):
                msg = {"role": "user", "content": _user_content(rest, i)}
                if m.name is not None:
                    msg["name"] = m.name
                out.append(msg)
        if msg_extras and len(out) == start + 1:
            extra = msg_extras.get(str(i))
            if extra:
                for k, v in extra.items():
                    out[start].setdefault(k, v)
    return out


def _text_content(parts: list[ir.Part]) -> str | list[dict[str, Any]]:
    texts = [p.text for p in parts if isinstance(p, ir.Text)]
    if len(texts) == 1:
        return texts[0]
    return [{"type": "text", "text": t} for t in texts] if texts else ""


def _user_content(parts: list[ir.Part], i: int) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], ir.Text):
        return parts[0].text
    out = []
    for p in parts:
        enc = _encode_user_part(p, i)
        if enc is not None:
            out.append(enc)
    return out


def _encode_user_part(p: ir.Part, i: int) -> dict[str, Any] | None:
    if isinstance(p, ir.Text):
        return {"type": "text", "text": p.text}
    if isinstance(p, ir.Image):
        if p.data is not None:
            url = f"data:{p.media_type or 'image/png'};base64,{p.data}"
        elif p.url is not None:
            url = p.url
        else:
            raise GatewayError(
                "invalid_request",
                "images by file id cannot be sent to a Chat Completions model",
                param=f"messages[{i}]",
            )
        iu: dict[str, Any] = {"url": url}
        if p.detail is not None:
            iu["detail"] = p.detail
        return {"type": "image_url", "image_url": iu}
    if isinstance(p, ir.Audio):
        return {"type": "input_audio", "input_audio": {"data": p.data, "format": p.format}}
    if isinstance(p, ir.Document):
        return _encode_document(p, i)
    # Reasoning / tool calls / refusals have no place in a user turn.
    return None


def _encode_document(d: ir.Document, i: int) -> dict[str, Any]:
    if d.media_type == "text/plain" and d.data is not None and d.file_id is None:
        # Chat file inputs are binary documents; a plain-text document reads the same as text.
        head = f"{d.title}\n\n" if d.title else ""
        return {"type": "text", "text": head + d.data}
    f: dict[str, Any] = {}
    if d.file_id is not None:
        f["file_id"] = d.file_id
    elif d.data is not None:
        f["file_data"] = f"data:{d.media_type};base64,{d.data}" if d.media_type else d.data
    else:
        raise GatewayError(
            "invalid_request", "documents by URL cannot be sent to a Chat Completions model", param=f"messages[{i}]"
        )
    filename = d.filename or d.title
    if filename is not None:
        f["filename"] = filename
    return {"type": "file", "file": f}


def _encode_tool_result(r: ir.ToolResult, i: int) -> dict[str, Any]:
    texts: list[str] = []
    for p in r.content:
        if isinstance(p, ir.Text):
            texts.append(p.text)
        elif isinstance(p, ir.Document) and p.media_type == "text/plain" and p.data is not None:
            texts.append(p.data)
        elif isinstance(p, ir.Image):
            texts.append("[image omitted: Chat Completions tool results are text-only]")
        elif isinstance(p, ir.Document):
            texts.append("[document omitted: Chat Completions tool results are text-only]")
    if r.is_error:
        # Chat has no error flag on tool results (protocols.md §11.5).
        texts = [f"Error: {texts[0]}", *texts[1:]] if texts else ["Error"]
    content: str | list[dict[str, Any]]
    if len(texts) == 1:
        content = texts[0]
    elif not texts:
        content = ""
    else:
        content = [{"type": "text", "text": t} for t in texts]
    return {"role": "tool", "tool_call_id": r.call_id, "content": content}


def _encode_assistant_request(m: ir.Message) -> dict[str, Any]:
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, ir.Text):
            texts.append(p.text)
        elif isinstance(p, ir.ToolCall):
            calls.append(encode_tool_call(p))
        elif isinstance(p, ir.Refusal):
            refusals.append(p.text)
        # Reasoning is not sent: OpenAI rejects unknown message fields. Images/audio/documents have no
        # place in a Chat assistant turn.
    msg: dict[str, Any] = {"role": "assistant"}
    if len(texts) == 1:
        msg["content"] = texts[0]
    elif texts:
        msg["content"] = [{"type": "text", "text": t} for t in texts]
    else:
        msg["content"] = None if calls or refusals else ""
    if refusals:
        msg["refusal"] = "".join(refusals)
    if calls:
        msg["tool_calls"] = calls
    if m.name is not None:
        msg["name"] = m.name
    return msg


def encode_tool_call(c: ir.ToolCall, client: bool = False) -> dict[str, Any]:
    """``client``: the call goes to a Chat client, which will parse the arguments as JSON. A call without
    arguments (Anthropic ``input: {}`` streamed as nothing) then reads "{}", as OpenAI itself sends."""
    out: dict[str, Any]
    if c.kind == "custom":
        out = {"id": c.id, "type": "custom", "custom": {"name": c.name, "input": c.arguments}}
    else:
        args = c.arguments or ("{}" if client else "")
        out = {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": args}}
    if c.signature is not None:
        out["extra_content"] = {"google": {"thought_signature": c.signature}}
    return out


def _encode_tool(t: ir.Tool) -> dict[str, Any]:
    if t.kind == "custom":
        cu: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            cu["description"] = t.description
        if t.format is not None:
            cu["format"] = t.format
        return {"type": "custom", "custom": cu}
    fn: dict[str, Any] = {"name": t.name}
    if t.description is not None:
        fn["description"] = t.description
    if t.parameters is not None:
        fn["parameters"] = t.parameters
    if t.strict is not None:
        fn["strict"] = t.strict
    return {"type": "function", "function": fn}


def _encode_tool_choice(tc: ir.ToolChoice, kinds: dict[str, str], allowed: dict[str, Any] | None) -> Any:
    if tc.mode == "tool":
        name = tc.name or ""
        if kinds.get(name) == "custom":
            return {"type": "custom", "custom": {"name": name}}
        return {"type": "function", "function": {"name": name}}
    if allowed is not None and tc.mode in ("auto", "required"):
        return {"type": "allowed_tools", "allowed_tools": {**allowed, "mode": tc.mode}}
    return tc.mode


def _encode_response_format(rf: ir.ResponseFormat) -> dict[str, Any]:
    if rf.type != "json_schema":
        return {"type": rf.type}
    js: dict[str, Any] = {"name": rf.name or "response"}
    if rf.description is not None:
        js["description"] = rf.description
    if rf.schema is not None:
        js["schema"] = rf.schema
    if rf.strict is not None:
        js["strict"] = rf.strict
    return {"type": "json_schema", "json_schema": js}


# --------------------------------------------------------------------------------------------
# Usage and stop reasons
# --------------------------------------------------------------------------------------------


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _opt_count(d: Any, key: str) -> int | None:
    if isinstance(d, dict):
        v = d.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def usage_from_dict(u: dict[str, Any]) -> ir.Usage:
    """A Chat ``usage`` object -> IR Usage. prompt_tokens already includes cached tokens and
    completion_tokens includes reasoning tokens, which is exactly the IR's convention; servers that
    count some output only in total_tokens (Gemini's OpenAI-compatible endpoint) have it folded in."""
    pd = u.get("prompt_tokens_details")
    cd = u.get("completion_tokens_details")
    cached = _opt_count(pd, "cached_tokens")
    if cached is None:
        # DeepSeek reports cache hits at the top level.
        cached = _opt_count(u, "prompt_cache_hit_tokens")
    return ir.Usage(
        input_tokens=_int(u.get("prompt_tokens")),
        output_tokens=_int(u.get("completion_tokens")),
        cache_read_tokens=cached or 0,
        cache_write_tokens=_opt_count(pd, "cache_write_tokens") or 0,
        reasoning_tokens=_opt_count(cd, "reasoning_tokens"),
        input_audio_tokens=_opt_count(pd, "audio_tokens"),
        output_audio_tokens=_opt_count(cd, "audio_tokens"),
    ).fold_reported_total(u.get("total_tokens"))


def usage_to_dict(u: ir.Usage, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """IR Usage -> Chat ``usage``; total_tokens is the IR's prompt + completion (protocols.md §11.10), which
    already include what the upstream counted only in its own total (``Usage.fold_reported_total``).
    ``extra`` carries detail fields the IR does not model (from a Chat upstream) to restore them."""
    pd: dict[str, Any] = {"cached_tokens": u.cache_read_tokens}
    if u.cache_write_tokens:
        pd["cache_write_tokens"] = u.cache_write_tokens
    if u.input_audio_tokens is not None:
        pd["audio_tokens"] = u.input_audio_tokens
    cd: dict[str, Any] = {"reasoning_tokens": u.reasoning_tokens or 0}
    if u.output_audio_tokens is not None:
        cd["audio_tokens"] = u.output_audio_tokens
    out: dict[str, Any] = {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": pd,
        "completion_tokens_details": cd,
    }
    if extra:
        for k, v in (extra.get("prompt_tokens_details") or {}).items():
            pd.setdefault(k, v)
        for k, v in (extra.get("completion_tokens_details") or {}).items():
            cd.setdefault(k, v)
        for k, v in extra.items():
            if k not in ("prompt_tokens_details", "completion_tokens_details"):
                out.setdefault(k, v)
    return out


_USAGE_KNOWN = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})
_PD_KNOWN = frozenset({"cached_tokens", "cache_write_tokens", "audio_tokens"})
_CD_KNOWN = frozenset({"reasoning_tokens", "audio_tokens"})


def _usage_leftovers(u: dict[str, Any]) -> dict[str, Any]:
    left: dict[str, Any] = {}
    for k, v in u.items():
        if k in _USAGE_KNOWN:
            continue
        if k == "prompt_tokens_details" and isinstance(v, dict):
            rest = {a: b for a, b in v.items() if a not in _PD_KNOWN}
        elif k == "completion_tokens_details" and isinstance(v, dict):
            rest = {a: b for a, b in v.items() if a not in _CD_KNOWN}
        else:
            left[k] = v
            continue
        if rest:
            left[k] = rest
    return left


def usage_from_chunk(chunk: dict[str, Any]) -> ir.Usage | None:
    """Usage carried by a stream chunk (the ``choices: []`` chunk), for the same-format fast path."""
    u = chunk.get("usage") if isinstance(chunk, dict) else None
    return usage_from_dict(u) if isinstance(u, dict) else None


def usage_from_body(body: dict[str, Any]) -> ir.Usage | None:
    """Usage of a non-streaming response body, for the same-format fast path."""
    return usage_from_chunk(body)


def stop_from_finish(finish: str | None) -> ir.StopReason | None:
    if finish is None:
        return None
    # Unknown vendor reasons (vLLM "abort", ...) still mean the model stopped.
    return FINISH_TO_STOP.get(finish, "end_turn")


def finish_from_stop(stop: ir.StopReason | None, has_tool_calls: bool, legacy: bool = False) -> str:
    if stop is None:
        finish = "tool_calls" if has_tool_calls else "stop"
    else:
        finish = STOP_TO_FINISH.get(stop, "stop")
    if legacy and finish == "tool_calls":
        return "function_call"
    return finish


def is_legacy(req: ir.Request) -> bool:
    """The client used the deprecated ``functions`` API and expects ``function_call`` answers."""
    own = req.extras.get(FORMAT)
    return bool(own and (own.get(META) or {}).get("legacy_functions"))


def chat_created(created: int) -> int:
    # Formats without a timestamp (Anthropic) decode to 0; Chat clients expect a real one.
    return created or int(time.time())


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def _upstream_bad(problem: str) -> GatewayError:
    return GatewayError("upstream_unavailable", f"invalid Chat Completions response from upstream: {problem}")


def decode_response(body: dict[str, Any]) -> ir.Response:
    if not isinstance(body, dict):
        raise _upstream_bad("body is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise _upstream_bad("missing choices")
    choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)
    extras = {k: v for k, v in body.items() if k not in _KNOWN_RESPONSE_FIELDS and k != META}
    meta: dict[str, Any] = {}
    content: list[ir.Part] = []
    finish = None
    if choice is not None:
        msg = choice.get("message")
        if not isinstance(msg, dict):
            raise _upstream_bad("choices[0].message is not an object")
        content = _decode_response_message(msg, str(body.get("id") or ""))
        f = choice.get("finish_reason")
        finish = f if isinstance(f, str) else None
        rest = {k: v for k, v in choice.items() if k not in _KNOWN_CHOICE_FIELDS}
        if rest:
            meta["choice"] = rest
        rest = {k: v for k, v in msg.items() if k not in _RESPONSE_MESSAGE_FIELDS}
        if rest:
            meta["message"] = rest
    usage = None
    u = body.get("usage")
    if isinstance(u, dict):
        usage = usage_from_dict(u)
        left = _usage_leftovers(u)
        if left:
            meta["usage"] = left
    if meta:
        extras[META] = meta
    resp = ir.Response(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        stop_reason=stop_from_finish(finish),
        usage=usage,
        created=_int(body.get("created")),
    )
    if extras:
        resp.extras[FORMAT] = extras
    return resp


_RESPONSE_MESSAGE_FIELDS = frozenset(
    {
        "role", "content", "refusal", "tool_calls", "function_call", "annotations", "reasoning_content",
        "reasoning", "reasoning_signature", "reasoning_redacted", "reasoning_details",
    }
)  # fmt: skip


def _decode_response_message(msg: dict[str, Any], resp_id: str) -> list[ir.Part]:
    try:
        parts: list[ir.Part] = list(_decode_reasoning(msg, "message"))
    except GatewayError:
        parts = []
    c = msg.get("content")
    text: str | None = None
    if isinstance(c, str):
        text = c
    elif isinstance(c, list):
        # some OpenAI-compatible servers answer with text parts
        text = "".join(p["text"] for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
    if text is not None:
        ann = msg.get("annotations")
        parts.append(ir.Text(text, citations=ann if isinstance(ann, list) else None))
    refusal = msg.get("refusal")
    if isinstance(refusal, str):
        parts.append(ir.Refusal(refusal))
    tcs = msg.get("tool_calls")
    if isinstance(tcs, list):
        for j, tc in enumerate(tcs):
            if not isinstance(tc, dict):
                continue
            try:
                call = _decode_tool_call(
                    {"id": f"call_{resp_id}_{j}", **{k: v for k, v in tc.items() if v is not None}}, "tool_call"
                )
            except GatewayError as e:
                raise _upstream_bad(e.message) from None
            parts.append(call)
    fc = msg.get("function_call")
    if isinstance(fc, dict) and isinstance(fc.get("name"), str):
        args = fc.get("arguments")
        parts.append(ir.ToolCall(f"call_{resp_id}", fc["name"], args if isinstance(args, str) else ""))
    return parts


def encode_response(resp: ir.Response, req: ir.Request) -> dict[str, Any]:
    own, meta = _own_extras(resp.extras)
    legacy = is_legacy(req)
    texts: list[ir.Text] = []
    refusals: list[str] = []
    calls: list[ir.ToolCall] = []
    reasoning: list[ir.Reasoning] = []
    for p in resp.content:
        if isinstance(p, ir.Text):
            texts.append(p)
        elif isinstance(p, ir.ToolCall):
            calls.append(p)
        elif isinstance(p, ir.Reasoning):
            reasoning.append(p)
        elif isinstance(p, ir.Refusal):
            refusals.append(p.text)

    msg: dict[str, Any] = {"role": "assistant", "content": None, "refusal": "".join(refusals) if refusals else None}
    if texts:
        msg["content"] = "".join(t.text for t in texts)
        ann = _annotations(texts)
        if ann is not None:
            msg["annotations"] = ann
    if reasoning:
        put_reasoning(msg, reasoning)
    if calls:
        if legacy:
            msg["function_call"] = {"name": calls[0].name, "arguments": calls[0].arguments or "{}"}
        else:
            msg["tool_calls"] = [encode_tool_call(c, client=True) for c in calls]
    for k, v in (meta.get("message") or {}).items():
        msg.setdefault(k, v)

    choice: dict[str, Any] = {
        "index": 0,
        "message": msg,
        "finish_reason": finish_from_stop(resp.stop_reason, bool(calls), legacy),
        "logprobs": None,
    }
    for k, v in (meta.get("choice") or {}).items():
        choice[k] = v
    body: dict[str, Any] = {
        "id": resp.id,
        "object": "chat.completion",
        "created": chat_created(resp.created),
        "model": resp.model,
        "choices": [choice],
    }
    if resp.usage is not None:
        body["usage"] = usage_to_dict(resp.usage, meta.get("usage"))
    for k, v in own.items():
        if k != META:
            body.setdefault(k, v)
    return body


def _annotations(texts: list[ir.Text]) -> list[Any] | None:
    """OpenAI url_citation annotations, with offsets shifted to the joined content. Citations in other
    vendors' shapes (Anthropic char_location, ...) mean nothing to Chat clients and are left out."""
    out: list[Any] | None = None
    offset = 0
    for t in texts:
        if t.citations is not None:
            if out is None:
                out = []
            for a in t.citations:
                if not (isinstance(a, dict) and a.get("type") == "url_citation"):
                    continue
                uc = a.get("url_citation")
                if offset and isinstance(uc, dict):
                    uc = dict(uc)
                    for key in ("start_index", "end_index"):
                        if isinstance(uc.get(key), int):
                            uc[key] += offset
                    a = {**a, "url_citation": uc}
                out.append(a)
        offset += len(t.text)
    return out


def _simple_reasoning(r: ir.Reasoning) -> bool:
    return (
        r.summary is None
        and r.encrypted_content is None
        and r.id is None
        and not (r.redacted and (r.text or r.signature))
    )


def put_reasoning(msg: dict[str, Any], parts: list[ir.Reasoning]) -> None:
    """Non-standard reasoning fields on an assistant message (see the module docstring)."""
    text = "".join(p.text for p in parts) or "\n\n".join(s for p in parts for s in p.summary or ())
    if text:
        msg["reasoning_content"] = text
    if len(parts) == 1 and _simple_reasoning(parts[0]):
        p = parts[0]
        if p.signature is not None:
            msg["reasoning_signature"] = p.signature
        if p.redacted is not None:
            msg["reasoning_redacted"] = p.redacted
        return
    details = []
    for p in parts:
        if p.redacted is not None and not (p.text or p.signature):
            details.append({"type": "reasoning.encrypted", "data": p.redacted})
            continue
        d: dict[str, Any] = {"type": "reasoning.text", "text": p.text}
        if p.signature is not None:
            d["signature"] = p.signature
        if p.summary is not None:
            d["summary"] = p.summary
        if p.encrypted_content is not None:
            d["encrypted_content"] = p.encrypted_content
        if p.id is not None:
            d["id"] = p.id
        details.append(d)
    msg["reasoning_details"] = details


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_ERROR_TYPES: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "billing": "insufficient_quota",
    "overloaded": "server_error",
    "timeout": "server_error",
    "server_error": "server_error",
    "upstream_unavailable": "server_error",
}
_DEFAULT_CODES: dict[str, str] = {"rate_limit": "rate_limit_exceeded", "billing": "insufficient_quota"}

# error.type / error.code vocabulary (OpenAI's and common compatible servers') -> kind, for errors without
# a usable HTTP status (in-stream errors).
_KIND_BY_TYPE: dict[str, Any] = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "invalid_api_key": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "model_not_found": "not_found",
    "rate_limit_error": "rate_limit",
    "rate_limit_exceeded": "rate_limit",
    "requests": "rate_limit",
    "tokens": "rate_limit",
    "insufficient_quota": "billing",
    "overloaded_error": "overloaded",
    "overloaded": "overloaded",
    "service_unavailable": "overloaded",
    "timeout": "timeout",
    "timeout_error": "timeout",
    "server_error": "server_error",
    "api_error": "server_error",
}


def error_payload(err: GatewayError) -> dict[str, Any]:
    return {
        "error": {
            "message": err.message,
            "type": _ERROR_TYPES.get(err.kind, "server_error"),
            "param": err.param,
            "code": err.code if err.code is not None else _DEFAULT_CODES.get(err.kind),
        }
    }


def render_error(err: GatewayError) -> tuple[int, dict[str, Any]]:
    # OpenAI clients do not know Anthropic's 529; 503 keeps it retryable for them.
    status = 503 if err.status == 529 else err.status
    return status, error_payload(err)


def render_stream_error(err: GatewayError) -> bytes:
    return encode_event(orjson.dumps(error_payload(err)))


def error_from_payload(e: Any, status: int = 0) -> GatewayError:
    """An OpenAI-shaped ``error`` value (object or bare string) -> GatewayError."""
    if not isinstance(e, dict):
        return GatewayError(
            kind_for_status(status) if status >= 400 else "server_error",
            str(e) if e else "upstream error",
            status=status if status >= 400 else 0,
            from_gateway=False,
        )
    etype = e.get("type")
    code = e.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and not status and 400 <= code < 600:
        status = code  # some compatible servers put the HTTP status in error.code
    code_s = None if code is None else str(code)
    kind: Any
    if code_s == "insufficient_quota" or etype == "insufficient_quota":
        kind = "billing"  # OpenAI sends quota exhaustion as a 429
    else:
        if status >= 400:
            kind = kind_for_status(status)
        else:
            kind = _KIND_BY_TYPE.get(etype if isinstance(etype, str) else "") or _KIND_BY_TYPE.get(code_s or "")
            kind = kind or "server_error"
    msg = e.get("message")
    param = e.get("param")
    return GatewayError(
        kind,
        msg if isinstance(msg, str) and msg else f"upstream error ({etype or status or 'unknown'})",
        status=status if status >= 400 else DEFAULT_STATUS[kind],
        param=param if isinstance(param, str) else None,
        code=code_s,
        from_gateway=False,
    )


def parse_error(status: int, body: bytes) -> GatewayError:
    if status < 400:
        return GatewayError("upstream_unavailable", f"upstream answered HTTP {status} with an unusable body")
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Gemini's OpenAI layer wraps errors in a list
    if isinstance(data, dict):
        e = data.get("error")
        if e is not None:
            return error_from_payload(e, status)
        if isinstance(data.get("message"), str):
            return error_from_payload(data, status)
    text = body[:500].decode("utf-8", "replace").strip() if body else ""
    return GatewayError(
        kind_for_status(status),
        f"upstream returned HTTP {status}" + (f": {text}" if text else ""),
        status=status,
        from_gateway=True,
    )


# --------------------------------------------------------------------------------------------
# The codec
# --------------------------------------------------------------------------------------------


def _stream() -> Any:
    # imported late: the stream module builds on this one's helpers
    import trigate.formats.openai_chat_stream as stream

    return stream


CODEC = FunctionCodec(
    name=FORMAT,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=lambda req: _stream().ChatStreamDecoder(req),
    stream_encoder=lambda req: _stream().ChatStreamEncoder(req),
    render_error=render_error,
    render_stream_error=render_stream_error,
    parse_error=parse_error,
)
