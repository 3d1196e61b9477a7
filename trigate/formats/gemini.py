"""Google Gemini ``generateContent`` (Developer API ``/v1beta/models/{m}:generateContent`` and Vertex AI
``.../publishers/google/models/{m}:generateContent``) <-> IR.

Requests, responses, usage, stop reasons and errors live here; the stream state machines live in
``gemini_stream``. The model is part of the URL, not the body: ``encode_request`` never writes one, and
``decode_request`` reads an optional ``model`` key that a Gemini-shaped front end copies from its URL.

What the IR does not model is kept in ``extras["gemini"]``: unknown top-level fields verbatim (restored
by this format's encoders), plus ``_``-prefixed hints: ``_generation_config`` (un-modelled generationConfig
keys), ``_tools`` (non-function tool entries such as googleSearch), ``_tool_fields`` (un-modelled keys of
function declarations, by name), ``_tool_config`` / ``_thinking_config`` / ``_response_format`` (the raw
client value when re-encoding the IR would not reproduce it exactly), and on responses ``_candidate``,
``_finish_reason``, ``_usage``.

Canonical forms (what ``encode(decode(x))`` gives back): camelCase field names (snake_case is accepted,
as by the API); every function declaration in one ``tools[0].functionDeclarations`` entry, followed by the
other tool entries; consecutive same-role contents merged; ``systemInstruction`` without ``role``;
``audio/mpeg`` written ``audio/mp3`` and ``audio/x-wav`` ``audio/wav``; a ``functionResponse`` without an
id that answers a call with one gets that id; an empty thought part that carries only a signature next
to a text part (right after it, or right before it when no text precedes) is merged into that text part; a
candidate without parts has no ``content``; ``usageMetadata.totalTokenCount`` is recomputed and
``candidatesTokenCount`` always present.

Choices where protocols.md leaves one open:
- System/developer messages anywhere in the IR are hoisted, in order, into ``systemInstruction`` (one part
  each text): like the Anthropic codec, operator instructions stay operator instructions.
- Gemini often gives function calls no id. They get a deterministic ``call_gm_...`` id (``SYNTHETIC_ID_PREFIX``)
  so a client resending the history gets the same id; ids with that prefix are never sent back to Gemini,
  and a result's function name is recovered from the call with the same id.
- Plain http(s) image/document URLs are refused with a 400 instead of fetched: fetching arbitrary URLs from
  the gateway needs SSRF protection this codec cannot give (sans-IO). ``fileData`` is used for ``gs://``,
  Files API and YouTube URIs only.
- Efforts map to ``thinkingBudget`` with Gemini's own OpenAI-layer table (minimal/low 1024, medium 8192,
  high and above 24576), not ``thinkingLevel``: budgets are accepted by Gemini 2.5 and, for backwards
  compatibility, Gemini 3, while the levels each Gemini 3 model accepts differ. An Anthropic output effort
  without thinking (``output_config.effort`` alone) sets no thinking config: it is a hint about the whole
  answer's spend, not a request for thinking, and Gemini has no knob for it but thinking ones.
- Image types are written the standard way (``image/jpg`` as ``image/jpeg``: Gemini refuses the alias);
  an image without a type gets the one its bytes show.
- Gemini has no control over parallel function calls (``functionCallingConfig`` has none), so
  ``parallel_tool_calls: false`` / ``disable_parallel_tool_use`` cannot be passed on; the calls the model
  makes are relayed as made rather than cut to the first.
- For ``gemini-3*`` models, a model turn whose function calls carry no thought signature (history made by
  another model or format) gets Google's documented placeholder ``skip_thought_signature_validator`` on its
  first call; without it those models refuse the request with a 400.
- A prompt blocked by safety filters (``promptFeedback.blockReason``, no candidates) is an
  ``invalid_request`` error (400, code ``content_filter``), not an empty answer: the caller must change the
  prompt, and an empty 200 would look like a model that said nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import datetime
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
from trigate.translate.media import image_type
from trigate.translate.reasoning import DEFAULT_EFFORT
from trigate.wire.sse import encode_event

NAME = "gemini"

# Ids this codec made up for function calls Gemini gave none; never sent to Gemini.
SYNTHETIC_ID_PREFIX = "call_gm_"
# Google's documented stand-in for a thought signature on function calls the model did not make.
SKIP_SIGNATURE = "skip_thought_signature_validator"
# Sent as the only user turn when the IR has none: Gemini rejects an empty ``contents``.
PLACEHOLDER_USER_TEXT = "(continue)"
# ir.Text citations marker carrying a Gemini part the IR has no shape for (executableCode, ...).
OPAQUE_MARKER = "gemini_part"

# Gemini's OpenAI-compatibility layer maps efforts to these budgets (protocols.md §8.6, §11.7).
EFFORT_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
    "max": 24576,
}
# Budget ceilings: Flash models accept up to 24576, Pro up to 32768; Pro cannot turn thinking off and
# needs at least 128.
_MAX_BUDGET = 24576
_MAX_BUDGET_PRO = 32768
_MIN_BUDGET_PRO = 128

_KNOWN_REQUEST_FIELDS = frozenset({"model", "contents", "systemInstruction", "tools", "toolConfig", "generationConfig"})
_KNOWN_GENERATION_FIELDS = frozenset(
    {
        "maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "candidateCount", "seed",
        "presencePenalty", "frequencyPenalty", "responseMimeType", "responseJsonSchema", "responseSchema",
        "thinkingConfig",
    }
)  # fmt: skip
_FORMAT_FIELDS = ("responseMimeType", "responseJsonSchema", "responseSchema")
_KNOWN_DECLARATION_FIELDS = frozenset({"name", "description", "parameters", "parametersJsonSchema"})
_KNOWN_RESPONSE_FIELDS = frozenset({"candidates", "usageMetadata", "modelVersion", "responseId"})
_KNOWN_CANDIDATE_FIELDS = frozenset({"content", "finishReason"})
_USAGE_FIELDS = frozenset(
    {
        "promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "cachedContentTokenCount",
        "totalTokenCount",
    }
)  # fmt: skip

_AUDIO_FORMATS = {"mpeg": "mp3", "x-wav": "wav", "wave": "wav", "x-flac": "flac"}

# --------------------------------------------------------------------------------------------
# Stop reasons (protocols.md §11.9)
# --------------------------------------------------------------------------------------------

_FILTER_REASONS = frozenset(
    {
        "SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "IMAGE_OTHER", "MODEL_ARMOR", "ESCALATION",
        "PUP_LIMITED_DISABLED",
    }
)  # fmt: skip
STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "STOP",
    "stop_sequence": "STOP",
    "tool_use": "STOP",
    "pause_turn": "STOP",
    "max_tokens": "MAX_TOKENS",
    "context_window_exceeded": "MAX_TOKENS",
    "content_filter": "SAFETY",
}


def stop_from_finish(finish: Any, has_calls: bool) -> ir.StopReason | None:
    """A Gemini ``finishReason`` -> IR stop reason. A function call ends with STOP (protocols.md §8.3)."""
    if not isinstance(finish, str) or not finish:
        return None
    if finish == "STOP":
        return "tool_use" if has_calls else "end_turn"
    if finish in ("MAX_TOKENS", "CONTINUATION"):
        return "max_tokens"
    if finish in _FILTER_REASONS:
        return "content_filter"
    # MALFORMED_FUNCTION_CALL, OTHER, ...: the turn is over; there is nothing better to say.
    return "tool_use" if has_calls else "end_turn"


def finish_from_stop(stop: ir.StopReason | None) -> str:
    if stop is None:
        return "STOP"
    return STOP_TO_FINISH.get(stop, "STOP")


# --------------------------------------------------------------------------------------------
# Usage (protocols.md §11.10)
# --------------------------------------------------------------------------------------------


def _count(v: Any) -> int:
    return v if type(v) is int and v > 0 else 0


def _modality_count(details: Any, modality: str) -> int | None:
    if not isinstance(details, list):
        return None
    total = None
    for d in details:
        if isinstance(d, dict) and d.get("modality") == modality:
            total = (total or 0) + _count(d.get("tokenCount"))
    return total


def usage_from_gemini(u: dict[str, Any]) -> ir.Usage:
    """``usageMetadata`` -> IR usage: input includes tool-use prompt tokens, output includes thoughts."""
    thoughts = u.get("thoughtsTokenCount")
    reasoning = thoughts if type(thoughts) is int else None
    return ir.Usage(
        input_tokens=_count(u.get("promptTokenCount")) + _count(u.get("toolUsePromptTokenCount")),
        output_tokens=_count(u.get("candidatesTokenCount")) + _count(reasoning),
        cache_read_tokens=_count(u.get("cachedContentTokenCount")),
        reasoning_tokens=reasoning,
        input_audio_tokens=_modality_count(u.get("promptTokensDetails"), "AUDIO"),
        output_audio_tokens=_modality_count(u.get("candidatesTokensDetails"), "AUDIO"),
    ).fold_reported_total(u.get("totalTokenCount"))


def usage_to_gemini(u: ir.Usage, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """IR usage -> ``usageMetadata``. ``extra`` holds un-modelled fields of a Gemini upstream's usage."""
    tool_use = _count(extra.get("toolUsePromptTokenCount")) if extra else 0
    reasoning = u.reasoning_tokens
    out: dict[str, Any] = {
        "promptTokenCount": max(u.input_tokens - tool_use, 0),
        "candidatesTokenCount": max(u.output_tokens - (reasoning or 0), 0),
        "totalTokenCount": u.input_tokens + u.output_tokens,
    }
    if u.cache_read_tokens:
        out["cachedContentTokenCount"] = u.cache_read_tokens
    if reasoning is not None:
        out["thoughtsTokenCount"] = reasoning
    if extra:
        for k, v in extra.items():
            out.setdefault(k, v)
    return out


def usage_from_body(body: Any) -> ir.Usage | None:
    """Usage of a Gemini response body or stream chunk, for the same-format fast path."""
    u = body.get("usageMetadata") if isinstance(body, dict) else None
    return usage_from_gemini(u) if isinstance(u, dict) else None


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_SNAKE: dict[str, str] = {}


def _snake(key: str) -> str:
    s = _SNAKE.get(key)
    if s is None:
        s = _SNAKE[key] = _CAMEL.sub("_", key).lower()
    return s


def _get(d: dict[str, Any], key: str) -> Any:
    """``d[key]`` under its camelCase or snake_case name (the API accepts both)."""
    v = d.get(key)
    if v is None:
        v = d.get(_snake(key))
    return v


def _unknown(d: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known and not _is_snake_of(k, known)}


def _is_snake_of(key: str, known: frozenset[str]) -> bool:
    return "_" in key and any(_snake(k) == key for k in known)


def synthetic_call_id(seed: str, ordinal: int, name: str, args: str) -> str:
    """A stable id for a function call Gemini gave none (same inputs, same id, in streams and bodies)."""
    h = hashlib.sha1(f"{seed}\x00{ordinal}\x00{name}\x00{args}".encode()).hexdigest()[:20]
    return SYNTHETIC_ID_PREFIX + h


def is_synthetic_id(call_id: str | None) -> bool:
    return not call_id or call_id.startswith(SYNTHETIC_ID_PREFIX)


def args_json(args: Any) -> str:
    """Function call ``args`` (an object) as compact JSON text, ``{}`` when absent."""
    try:
        return orjson.dumps(args if args is not None else {}).decode()
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits; the stdlib encoder writes them exactly
        return json.dumps(args, separators=(",", ":"), ensure_ascii=False)


def parse_arguments(raw: str) -> dict[str, Any]:
    """IR tool-call arguments (JSON text) -> the object Gemini wants. Broken or non-object arguments are
    handed over as ``{"_raw": text}`` rather than failing the whole request."""
    if not raw or raw.isspace():
        return {}
    try:
        v = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"_raw": raw}
    return v if isinstance(v, dict) else {"_raw": raw}


def opaque_part(part: dict[str, Any], text: str) -> ir.Text:
    """A Gemini part the IR cannot model: readable ``text`` for other formats, the part itself for this one."""
    return ir.Text(text, citations=[{"type": OPAQUE_MARKER, "part": part}])


def opaque_of(t: ir.Text) -> dict[str, Any] | None:
    c = t.citations
    if c and len(c) == 1 and isinstance(c[0], dict) and c[0].get("type") == OPAQUE_MARKER:
        p = c[0].get("part")
        return p if isinstance(p, dict) else None
    return None


def _opaque_text(part: dict[str, Any]) -> str:
    code = _get(part, "executableCode")
    if isinstance(code, dict):
        lang = str(code.get("language") or "").lower().replace("language_unspecified", "")
        return f"```{lang}\n{code.get('code') or ''}\n```"
    result = _get(part, "codeExecutionResult")
    if isinstance(result, dict):
        return f"```\n{result.get('output') or ''}\n```"
    return ""


def _audio_format(mime: str) -> str:
    sub = mime.split("/", 1)[1] if "/" in mime else mime
    return _AUDIO_FORMATS.get(sub, sub)


# --------------------------------------------------------------------------------------------
# Validation helpers: every client mistake becomes a 400 naming the field.
# --------------------------------------------------------------------------------------------


def _req_str(d: dict[str, Any], key: str, param: str) -> str:
    v = _get(d, key)
    if v is None:
        raise _bad(f"{param}.{key}", "field required")
    return _str(v, f"{param}.{key}")


def _opt_str(d: dict[str, Any], key: str, param: str) -> str | None:
    v = _get(d, key)
    return None if v is None else _str(v, f"{param}.{key}")


def _opt_int(d: dict[str, Any], key: str, param: str) -> int | None:
    v = _get(d, key)
    if v is None:
        return None
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v):
        return int(v)  # proto3 JSON allows int64 as strings
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise _bad(f"{param}.{key}", f"expected an integer, got {_kind_name(v)}")
    return int(v)


def _opt_num(d: dict[str, Any], key: str, param: str) -> float | None:
    v = _get(d, key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(f"{param}.{key}", f"expected a number, got {_kind_name(v)}")
    return v


def _opt_bool(d: dict[str, Any], key: str, param: str) -> bool | None:
    v = _get(d, key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise _bad(f"{param}.{key}", f"expected a boolean, got {_kind_name(v)}")
    return v


# --------------------------------------------------------------------------------------------
# Request decoding: Gemini -> IR
# --------------------------------------------------------------------------------------------


class _Pairing:
    """Ids for function calls and responses without one. Calls get position-based ids (stable across
    resends of the same history); a response without an id answers the oldest open call of its name."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open: dict[str, list[str]] = {}

    def call(self, call_id: str | None, name: str, i: int, j: int) -> str:
        cid = call_id or f"{SYNTHETIC_ID_PREFIX}{i}_{j}"
        self.open.setdefault(name, []).append(cid)
        return cid

    def response(self, call_id: str | None, name: str, i: int, j: int) -> str:
        pending = self.open.get(name)
        if call_id:
            if pending and call_id in pending:
                pending.remove(call_id)
            return call_id
        if pending:
            return pending.pop(0)
        return f"{SYNTHETIC_ID_PREFIX}{i}_{j}"


def decode_request(body: dict[str, Any]) -> ir.Request:
    if not isinstance(body, dict):
        raise GatewayError("invalid_request", "request body must be a JSON object")
    extras: dict[str, Any] = _unknown(body, _KNOWN_REQUEST_FIELDS)
    model = body.get("model")
    req = ir.Request(model=model if isinstance(model, str) else "")

    si = _get(body, "systemInstruction")
    if si is not None:
        req.messages.append(ir.Message("system", _decode_system(si)))
    contents = _get(body, "contents")
    if contents is None:
        raise _bad("contents", "field required")
    pairing = _Pairing()
    for i, c in enumerate(_list(contents, "contents")):
        req.messages.extend(_decode_content(_dict(c, f"contents[{i}]"), i, pairing))

    tools = _get(body, "tools")
    if tools is not None:
        _decode_tools(_list(tools, "tools"), req, extras)
    tc = _get(body, "toolConfig")
    if tc is not None:
        tc = _dict(tc, "toolConfig")
        req.tool_choice = _decode_tool_config(tc)
        # Restored verbatim when the IR cannot say it, or has no declarations to attach it to.
        if not req.tools or _encode_tool_config(req.tool_choice) != _camel_tool_config(tc):
            extras["_tool_config"] = tc
    gc = _get(body, "generationConfig")
    if gc is not None:
        _decode_generation_config(_dict(gc, "generationConfig"), req, extras)
    if extras:
        req.extras[NAME] = extras
    return req


def _decode_system(si: Any) -> list[ir.Part]:
    if isinstance(si, str):
        return [ir.Text(si)]
    si = _dict(si, "systemInstruction")
    parts: list[ir.Part] = []
    for j, p in enumerate(_list(_get(si, "parts") or [], "systemInstruction.parts")):
        pp = f"systemInstruction.parts[{j}]"
        parts.append(ir.Text(_req_str(_dict(p, pp), "text", pp)))
    return parts


def _decode_content(c: dict[str, Any], i: int, pairing: _Pairing) -> list[ir.Message]:
    param = f"contents[{i}]"
    role = c.get("role") or "user"
    if role not in ("user", "model", "function"):
        raise _bad(f"{param}.role", f"expected 'user' or 'model', got {role!r}")
    raw_parts = _list(_get(c, "parts") or [], f"{param}.parts")
    if role == "model":
        parts: list[ir.Part] = []
        for j, p in enumerate(raw_parts):
            _decode_model_part(_dict(p, f"{param}.parts[{j}]"), i, j, pairing, parts)
        return [ir.Message("assistant", parts)]
    # A user turn: runs of function responses become tool messages, the rest user messages, in order.
    out: list[ir.Message] = []
    for j, p in enumerate(raw_parts):
        pp = f"{param}.parts[{j}]"
        p = _dict(p, pp)
        fr = _get(p, "functionResponse")
        if fr is not None:
            part: ir.Part = _decode_function_response(_dict(fr, f"{pp}.functionResponse"), i, j, pairing, pp)
            role_ir = "tool"
        else:
            part = _decode_user_part(p, pp)
            role_ir = "user"
        if out and out[-1].role == role_ir:
            out[-1].content.append(part)
        else:
            out.append(ir.Message(role_ir, [part]))  # type: ignore[arg-type]
    if not out:
        out.append(ir.Message("user", []))
    return out


def _decode_user_part(p: dict[str, Any], pp: str) -> ir.Part:
    text = _get(p, "text")
    if text is not None:
        return ir.Text(_str(text, f"{pp}.text"))
    inline = _get(p, "inlineData")
    if inline is not None:
        return _decode_inline(_dict(inline, f"{pp}.inlineData"), f"{pp}.inlineData")
    fd = _get(p, "fileData")
    if fd is not None:
        fd = _dict(fd, f"{pp}.fileData")
        uri = _req_str(fd, "fileUri", f"{pp}.fileData")
        mime = _opt_str(fd, "mimeType", f"{pp}.fileData")
        if mime is not None and mime.startswith("image/"):
            return ir.Image(url=uri, media_type=mime)
        return ir.Document(url=uri, media_type=mime)
    if _get(p, "functionCall") is not None:
        raise _bad(f"{pp}.functionCall", "function calls belong in model turns")
    if _get(p, "executableCode") is not None or _get(p, "codeExecutionResult") is not None:
        return opaque_part(p, _opaque_text(p))
    raise _bad(pp, "expected one of text, inlineData, fileData, functionResponse")


def _decode_inline(d: dict[str, Any], param: str) -> ir.Part:
    mime = _req_str(d, "mimeType", param)
    data = _req_str(d, "data", param)
    if mime.startswith("image/"):
        return ir.Image(media_type=mime, data=data)
    if mime.startswith("audio/"):
        return ir.Audio(data=data, format=_audio_format(mime))
    if mime == "text/plain":
        # The IR carries plain-text documents as text, not base64.
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise _bad(f"{param}.data", "text/plain data must be base64-encoded UTF-8") from None
        return ir.Document(media_type=mime, data=text)
    return ir.Document(media_type=mime, data=data)


def _decode_model_part(p: dict[str, Any], i: int, j: int, pairing: _Pairing, parts: list[ir.Part]) -> None:
    pp = f"contents[{i}].parts[{j}]"
    sig = _opt_str(p, "thoughtSignature", pp)
    fc = _get(p, "functionCall")
    if fc is not None:
        fc = _dict(fc, f"{pp}.functionCall")
        name = _req_str(fc, "name", f"{pp}.functionCall")
        args = _get(fc, "args")
        if args is not None:
            args = _dict(args, f"{pp}.functionCall.args")
        cid = pairing.call(_opt_str(fc, "id", f"{pp}.functionCall"), name, i, j)
        parts.append(ir.ToolCall(id=cid, name=name, arguments=args_json(args), signature=sig))
        return
    text = _get(p, "text")
    if text is not None:
        text = _str(text, f"{pp}.text")
        if _opt_bool(p, "thought", pp):
            parts.append(ir.Reasoning(text=text, signature=sig))
            return
        parts.append(ir.Text(text))
    elif _get(p, "inlineData") is not None or _get(p, "fileData") is not None:
        parts.append(_decode_user_part(p, pp))
    elif _get(p, "executableCode") is not None or _get(p, "codeExecutionResult") is not None:
        parts.append(opaque_part(p, _opaque_text(p)))  # its signature stays inside
        return
    elif sig is None:
        raise _bad(pp, "expected one of text, functionCall, inlineData, fileData")
    if sig is not None:
        # A signature on a non-call part: the IR keeps it as signature-only reasoning right after it.
        parts.append(ir.Reasoning(text="", signature=sig))


def _decode_function_response(fr: dict[str, Any], i: int, j: int, pairing: _Pairing, pp: str) -> ir.ToolResult:
    param = f"{pp}.functionResponse"
    name = _req_str(fr, "name", param)
    response = _get(fr, "response")
    response = {} if response is None else _dict(response, f"{param}.response")
    content: list[ir.Part] = [ir.Text(orjson.dumps(response).decode())]
    extra_parts = _get(fr, "parts")
    if extra_parts is not None:
        for k, p in enumerate(_list(extra_parts, f"{param}.parts")):
            kp = f"{param}.parts[{k}]"
            inline = _get(_dict(p, kp), "inlineData")
            if inline is None:
                raise _bad(kp, "expected inlineData")
            content.append(_decode_inline(_dict(inline, f"{kp}.inlineData"), f"{kp}.inlineData"))
    cid = pairing.response(_opt_str(fr, "id", param), name, i, j)
    # {"error": ...} is Gemini's documented way to report a failed call.
    return ir.ToolResult(call_id=cid, content=content, is_error=set(response) == {"error"}, name=name)


def _decode_tools(tools: list[Any], req: ir.Request, extras: dict[str, Any]) -> None:
    others: list[dict[str, Any]] = []
    tool_fields: dict[str, dict[str, Any]] = {}
    json_schema_key: list[str] = []
    for i, t in enumerate(tools):
        t = _dict(t, f"tools[{i}]")
        decls = _get(t, "functionDeclarations")
        rest = {k: v for k, v in t.items() if k not in ("functionDeclarations", "function_declarations")}
        if rest:
            others.append(rest)
        if decls is None:
            continue
        for k, d in enumerate(_list(decls, f"tools[{i}].functionDeclarations")):
            dp = f"tools[{i}].functionDeclarations[{k}]"
            d = _dict(d, dp)
            name = _req_str(d, "name", dp)
            schema = _get(d, "parametersJsonSchema")
            if schema is None:
                schema = _get(d, "parameters")
                if schema is not None:
                    json_schema_key.append(name)  # OpenAPI-subset schema: restored under its own key
            req.tools.append(
                ir.Tool(
                    name=name,
                    description=_opt_str(d, "description", dp),
                    parameters=None if schema is None else _dict(schema, f"{dp}.parameters"),
                )
            )
            more = _unknown(d, _KNOWN_DECLARATION_FIELDS)
            if more:
                tool_fields[name] = more
    if others:
        extras["_tools"] = others
    if tool_fields:
        extras["_tool_fields"] = tool_fields
    if json_schema_key:
        extras["_openapi_schema"] = json_schema_key


def _camel_tool_config(tc: dict[str, Any]) -> dict[str, Any]:
    fcc = _get(tc, "functionCallingConfig")
    out: dict[str, Any] = {}
    if isinstance(fcc, dict):
        f: dict[str, Any] = {}
        if _get(fcc, "mode") is not None:
            f["mode"] = _get(fcc, "mode")
        if _get(fcc, "allowedFunctionNames") is not None:
            f["allowedFunctionNames"] = _get(fcc, "allowedFunctionNames")
        if len(f) == len(fcc):
            out["functionCallingConfig"] = f
        else:
            return tc
    return out if len(out) == len(tc) else tc


def _decode_tool_config(tc: dict[str, Any]) -> ir.ToolChoice | None:
    fcc = _get(tc, "functionCallingConfig")
    if fcc is None:
        return None
    fcc = _dict(fcc, "toolConfig.functionCallingConfig")
    mode = _opt_str(fcc, "mode", "toolConfig.functionCallingConfig") or "AUTO"
    names = _get(fcc, "allowedFunctionNames")
    if names is not None:
        names = [
            _str(n, f"toolConfig.functionCallingConfig.allowedFunctionNames[{k}]")
            for k, n in enumerate(_list(names, "toolConfig.functionCallingConfig.allowedFunctionNames"))
        ]
    if mode == "NONE":
        return ir.ToolChoice("none")
    if mode == "ANY":
        if names and len(names) == 1:
            return ir.ToolChoice("tool", name=names[0])
        return ir.ToolChoice("required")
    if mode in ("AUTO", "VALIDATED", "MODE_UNSPECIFIED"):
        # VALIDATED (schema-checked, may still answer in text) is closest to auto for other formats.
        return ir.ToolChoice("auto")
    raise _bad("toolConfig.functionCallingConfig.mode", f"unknown mode {mode!r}")


def _decode_generation_config(gc: dict[str, Any], req: ir.Request, extras: dict[str, Any]) -> None:
    p = "generationConfig"
    req.max_tokens = _opt_int(gc, "maxOutputTokens", p)
    req.temperature = _opt_num(gc, "temperature", p)
    req.top_p = _opt_num(gc, "topP", p)
    req.top_k = _opt_int(gc, "topK", p)
    req.seed = _opt_int(gc, "seed", p)
    req.n = _opt_int(gc, "candidateCount", p)
    req.presence_penalty = _opt_num(gc, "presencePenalty", p)
    req.frequency_penalty = _opt_num(gc, "frequencyPenalty", p)
    stop = _get(gc, "stopSequences")
    if stop is not None:
        req.stop = [_str(s, f"{p}.stopSequences[{k}]") for k, s in enumerate(_list(stop, f"{p}.stopSequences"))]

    raw_format = {k: _get(gc, k) for k in _FORMAT_FIELDS if _get(gc, k) is not None}
    if raw_format:
        req.response_format = _decode_response_format(raw_format)
        if _encode_response_format(req.response_format) != raw_format:
            extras["_response_format"] = raw_format
    tc = _get(gc, "thinkingConfig")
    if tc is not None:
        tc = _dict(tc, f"{p}.thinkingConfig")
        req.reasoning = _decode_thinking(tc)
        if _encode_thinking(req.reasoning, "") != _camel_keys(tc):
            extras["_thinking_config"] = tc
    rest = _unknown(gc, _KNOWN_GENERATION_FIELDS)
    if rest:
        extras["_generation_config"] = rest


def _camel_keys(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if "_" in k:
            head, *tail = k.split("_")
            k = head + "".join(t.title() for t in tail)
        out[k] = v
    return out


def _decode_response_format(raw: dict[str, Any]) -> ir.ResponseFormat | None:
    p = "generationConfig"
    mime = raw.get("responseMimeType")
    if mime is not None:
        _str(mime, f"{p}.responseMimeType")
    schema = raw.get("responseJsonSchema")
    if schema is None:
        schema = raw.get("responseSchema")
    if schema is not None:
        return ir.ResponseFormat("json_schema", schema=_dict(schema, f"{p}.responseJsonSchema"))
    if mime == "application/json":
        return ir.ResponseFormat("json_object")
    if mime == "text/plain":
        return ir.ResponseFormat("text")
    return None  # text/x.enum and the like: only the raw fields (extras) can say it


def _decode_thinking(tc: dict[str, Any]) -> ir.ReasoningConfig:
    p = "generationConfig.thinkingConfig"
    budget = _opt_int(tc, "thinkingBudget", p)
    level = _opt_str(tc, "thinkingLevel", p)
    include = _opt_bool(tc, "includeThoughts", p)
    rc = ir.ReasoningConfig(budget_tokens=budget)
    if level is not None:
        rc.effort = level.lower()
    if budget == 0:
        rc.mode = "disabled"
    elif budget == -1 and level is None:
        # Dynamic thinking is the model's own default depth; other formats' word for that is the
        # default effort (a budget of -1 means nothing to them).
        rc.effort = DEFAULT_EFFORT
    if include:
        rc.summary = "auto"  # "give me the thought summaries", as a Responses client would say it
    return rc


# --------------------------------------------------------------------------------------------
# Request encoding: IR -> Gemini
# --------------------------------------------------------------------------------------------

_FILE_URI_PREFIXES = (
    "gs://",
    "https://generativelanguage.googleapis.com/",
    "https://www.youtube.com/",
    "https://youtube.com/",
    "https://youtu.be/",
)


def _is_file_uri(url: str) -> bool:
    return url.startswith(_FILE_URI_PREFIXES)


def _needs_inline(what: str, param: str) -> GatewayError:
    return GatewayError(
        "invalid_request",
        f"{param}: Gemini needs {what} as inline data; send it base64-encoded (a data: URL) instead of an "
        "http(s) URL (only gs://, Gemini Files API and YouTube URIs can be passed by reference)",
        param=param,
    )


def _media_part(p: ir.Part, param: str) -> dict[str, Any] | None:
    if isinstance(p, ir.Image):
        if p.data is not None:
            return {"inlineData": {"mimeType": image_type(p.media_type, p.data) or "image/png", "data": p.data}}
        if p.url is not None:
            if not _is_file_uri(p.url):
                raise _needs_inline("images", param)
            fd: dict[str, Any] = {"fileUri": p.url}
            if p.media_type:
                fd = {"mimeType": image_type(p.media_type), "fileUri": p.url}
            return {"fileData": fd}
        raise GatewayError(
            "invalid_request",
            f"{param}: images by file id cannot be sent to Gemini; send the image data",
            param=param,
        )
    if isinstance(p, ir.Audio):
        return {"inlineData": {"mimeType": f"audio/{_audio_format('audio/' + p.format)}", "data": p.data}}
    if isinstance(p, ir.Document):
        if p.data is not None:
            mime = p.media_type or "application/pdf"  # Chat file_data without a type: PDF is what it takes
            data = p.data
            if mime == "text/plain":
                data = base64.b64encode(p.data.encode()).decode()
            return {"inlineData": {"mimeType": mime, "data": data}}
        if p.url is not None:
            if not _is_file_uri(p.url):
                raise _needs_inline("documents", param)
            if p.media_type:
                return {"fileData": {"mimeType": p.media_type, "fileUri": p.url}}
            return {"fileData": {"fileUri": p.url}}
        raise GatewayError(
            "invalid_request",
            f"{param}: documents by file id cannot be sent to Gemini; send the file data",
            param=param,
        )
    return None


def _reasoning_part(r: ir.Reasoning, out: list[dict[str, Any]], after_text: bool) -> None:
    text = r.text or "\n\n".join(r.summary or ())
    if not text and not r.signature:
        return  # redacted / encrypted thinking of another provider: nothing Gemini can use
    if not text and after_text:
        # The signature Gemini put on the text part just before (see decode_parts).
        last = out[-1] if out else None
        if last is not None and "text" in last and not last.get("thought") and "thoughtSignature" not in last:
            last["thoughtSignature"] = r.signature
        else:
            out.append({"text": "", "thoughtSignature": r.signature})
        return
    part: dict[str, Any] = {"text": text, "thought": True}
    if r.signature:
        part["thoughtSignature"] = r.signature
    out.append(part)


def _function_call_part(c: ir.ToolCall) -> dict[str, Any]:
    fc: dict[str, Any] = {"name": c.name, "args": parse_arguments(c.arguments)}
    if not is_synthetic_id(c.id):
        fc["id"] = c.id
    part: dict[str, Any] = {"functionCall": fc}
    if c.signature:  # clients echo an empty one when they had none to keep
        part["thoughtSignature"] = c.signature
    return part


def _result_value(r: ir.ToolResult, param: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    for p in r.content:
        if isinstance(p, ir.Text):
            texts.append(p.text)
        elif isinstance(p, ir.Document) and p.media_type == "text/plain" and p.data is not None:
            texts.append(p.data)
        else:
            mp = _media_part(p, param)
            if mp is not None:
                media.append(mp)
    text = "".join(texts)
    value: Any
    try:
        value = orjson.loads(text) if text.strip() else text
    except orjson.JSONDecodeError:
        value = text
    if r.is_error:
        if isinstance(value, dict) and set(value) == {"error"}:
            return value, media
        return {"error": value}, media
    # functionResponse.response must be an object (protocols.md §8.2).
    return (value if isinstance(value, dict) else {"result": value}), media


def _function_response_part(r: ir.ToolResult, name: str, param: str) -> dict[str, Any]:
    response, media = _result_value(r, param)
    fr: dict[str, Any] = {"name": name, "response": response}
    if not is_synthetic_id(r.call_id):
        fr["id"] = r.call_id
    if media:
        # Multimodal function responses (images a tool returned) ride in functionResponse.parts.
        fr["parts"] = media
    return {"functionResponse": fr}


def encode_parts(
    content: list[ir.Part], names: dict[str, str] | None = None, param: str = "content"
) -> list[dict[str, Any]]:
    """IR parts -> Gemini parts. ``names`` (request side) collects call id -> function name and names
    function responses; without it (response side) media Gemini cannot take by reference is dropped."""
    out: list[dict[str, Any]] = []
    after_text = False
    carried: str | None = None  # a text signature waiting for the text part that follows
    for j, p in enumerate(content):
        t = type(p)
        is_text = False
        if t is ir.Text:
            opaque = opaque_of(p)  # type: ignore[arg-type]
            if opaque is not None:
                out.append(dict(opaque))
            else:
                is_text = True
                if p.text:  # type: ignore[union-attr]
                    out.append({"text": p.text})  # type: ignore[union-attr]
                    if carried:
                        out[-1]["thoughtSignature"] = carried
                carried = None
        elif t is ir.Reasoning:
            r: ir.Reasoning = p  # type: ignore[assignment]
            if (
                not after_text
                and r.signature
                and not r.text
                and not r.summary
                and j + 1 < len(content)
                and type(content[j + 1]) is ir.Text
                and content[j + 1].text  # type: ignore[union-attr]
                and opaque_of(content[j + 1]) is None  # type: ignore[arg-type]
            ):
                # Formats that put reasoning first (Chat) bring a text part's signature back before it.
                carried = r.signature
                continue
            _reasoning_part(r, out, after_text)
        elif t is ir.ToolCall:
            call: ir.ToolCall = p  # type: ignore[assignment]
            if names is not None:
                names[call.id] = call.name
            out.append(_function_call_part(call))
        elif t is ir.ToolResult:
            if names is None:
                continue
            res: ir.ToolResult = p  # type: ignore[assignment]
            name = res.name or names.get(res.call_id)
            if not name:
                raise _bad(
                    f"{param}[{j}]",
                    f"the result of tool call {res.call_id!r} has no function name and no earlier assistant "
                    "tool call with that id; Gemini needs the name",
                )
            out.append(_function_response_part(res, name, f"{param}[{j}]"))
        elif t is ir.Refusal:
            if p.text:  # type: ignore[union-attr]
                out.append({"text": p.text})  # type: ignore[union-attr]
        elif names is not None:
            part = _media_part(p, f"{param}[{j}]")
            if part is not None:
                out.append(part)
        else:
            try:
                part = _media_part(p, f"{param}[{j}]")
            except GatewayError:
                part = None
            if part is not None:
                out.append(part)
        after_text = is_text
    return out


def _sign_calls(turn: list[dict[str, Any]]) -> None:
    for part in turn:
        if "functionCall" in part:
            if "thoughtSignature" not in part:
                part["thoughtSignature"] = SKIP_SIGNATURE
            return


def _encode_contents(req: ir.Request, model: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """-> (systemInstruction parts, contents)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for i, m in enumerate(req.messages):
        if m.role == "system" or m.role == "developer":
            system.extend({"text": p.text} for p in m.content if isinstance(p, ir.Text) and p.text)
            continue
        parts = encode_parts(m.content, names, f"messages[{i}].content")
        if not parts:
            continue
        role = "model" if m.role == "assistant" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        contents.append({"role": "user", "parts": [{"text": PLACEHOLDER_USER_TEXT}]})
    if "gemini-3" in model:
        for c in contents:
            if c["role"] == "model":
                _sign_calls(c["parts"])
    return system, contents


def _encode_tools(req: ir.Request, extras: dict[str, Any]) -> list[dict[str, Any]]:
    tool_fields = extras.get("_tool_fields") or {}
    openapi = set(extras.get("_openapi_schema") or ())
    decls = []
    for i, t in enumerate(req.tools):
        if t.kind != "function":
            raise _bad(f"tools[{i}]", "Gemini has no custom (free-form) tools")
        d: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            d["description"] = t.description
        if t.parameters is not None:
            d["parameters" if t.name in openapi else "parametersJsonSchema"] = t.parameters
        for k, v in (tool_fields.get(t.name) or {}).items():
            d.setdefault(k, v)
        decls.append(d)
    out: list[dict[str, Any]] = [{"functionDeclarations": decls}] if decls else []
    out.extend(extras.get("_tools") or ())
    return out


def _encode_tool_config(tc: ir.ToolChoice | None) -> dict[str, Any]:
    if tc is None:
        return {}
    if tc.mode == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if tc.mode == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if tc.mode == "tool":
        if not tc.name:
            raise _bad("tool_choice", "names no tool")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [tc.name]}}
    return {"functionCallingConfig": {"mode": "AUTO"}}


def _encode_response_format(rf: ir.ResponseFormat | None) -> dict[str, Any]:
    if rf is None:
        return {}
    if rf.type == "text":
        return {"responseMimeType": "text/plain"}
    out: dict[str, Any] = {"responseMimeType": "application/json"}
    if rf.type == "json_schema" and rf.schema is not None:
        # responseJsonSchema takes full JSON Schema; responseSchema only an OpenAPI subset (§11.13).
        out["responseJsonSchema"] = rf.schema
    return out


def _is_pro(model: str) -> bool:
    return "-pro" in model


def _encode_thinking(rc: ir.ReasoningConfig | None, model: str) -> dict[str, Any]:
    if rc is None:
        return {}
    pro = _is_pro(model)
    if rc.mode == "disabled" or rc.effort == "none" or rc.budget_tokens == 0:
        # Pro models cannot stop thinking; their smallest budget is the nearest thing.
        return {"thinkingBudget": _MIN_BUDGET_PRO if pro else 0}
    budget = rc.budget_tokens
    if budget is None or budget < -1:
        if rc.effort is not None and (rc.mode is not None or not rc.effort_is_hint):
            budget = EFFORT_BUDGETS.get(rc.effort, EFFORT_BUDGETS[DEFAULT_EFFORT])
        elif rc.mode == "adaptive":
            budget = -1  # the model decides, as Anthropic's adaptive thinking does
        elif rc.mode is not None:
            budget = EFFORT_BUDGETS[DEFAULT_EFFORT]
        else:
            # Only a summary preference (Responses reasoning.summary), or an output-effort hint without
            # thinking (Anthropic output_config.effort): thinking stays at the model default.
            return {"includeThoughts": True} if rc.summary is not None else {}
    if budget > 0:
        budget = min(budget, _MAX_BUDGET_PRO if pro else _MAX_BUDGET)
        if pro:
            budget = max(budget, _MIN_BUDGET_PRO)
    # Thought summaries are what every other format shows as reasoning text.
    return {"thinkingBudget": budget, "includeThoughts": True}


def encode_request(req: ir.Request, model: str) -> dict[str, Any]:
    extras = req.extras.get(NAME) or {}
    system, contents = _encode_contents(req, model)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if req.tools or extras.get("_tools"):
        tools = _encode_tools(req, extras)
        if tools:
            body["tools"] = tools

    tool_config = extras.get("_tool_config")
    if tool_config is None and req.tools:
        tool_config = _encode_tool_config(req.tool_choice)
    if tool_config:
        body["toolConfig"] = tool_config

    gc: dict[str, Any] = {}
    if req.max_tokens is not None:
        gc["maxOutputTokens"] = req.max_tokens
    for key, name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        v = getattr(req, key)
        if v is not None:
            gc[name] = v
    if req.stop:
        gc["stopSequences"] = list(req.stop)
    rf = extras.get("_response_format")
    gc.update(rf if rf is not None else _encode_response_format(req.response_format))
    thinking = extras.get("_thinking_config")
    if thinking is None:
        thinking = _encode_thinking(req.reasoning, model)
    if thinking:
        gc["thinkingConfig"] = thinking
    for k, v in (extras.get("_generation_config") or {}).items():
        gc.setdefault(k, v)
    if gc:
        body["generationConfig"] = gc
    for k, v in extras.items():
        if not k.startswith("_"):
            body.setdefault(k, v)
    return body


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def _upstream_bad(problem: str) -> GatewayError:
    return GatewayError("upstream_unavailable", f"invalid Gemini response from upstream: {problem}")


def blocked_prompt_error(feedback: Any) -> GatewayError:
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    detail = feedback.get("blockReasonMessage") if isinstance(feedback, dict) else None
    msg = f"The prompt was blocked by Gemini's safety filters (blockReason: {reason or 'unknown'})"
    if isinstance(detail, str) and detail:
        msg += f": {detail}"
    return GatewayError("invalid_request", msg, status=400, code="content_filter", from_gateway=False)


def _parse_time(v: Any) -> int:
    if not isinstance(v, str):
        return 0
    try:
        return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def decode_parts(raw_parts: Any, seed: str) -> tuple[list[ir.Part], int]:
    """Response parts -> IR parts, and the number of function calls among them."""
    parts: list[ir.Part] = []
    calls = 0
    if not isinstance(raw_parts, list):
        return parts, calls
    for p in raw_parts:
        if not isinstance(p, dict):
            continue
        sig = p.get("thoughtSignature")
        sig = sig if isinstance(sig, str) else None
        fc = p.get("functionCall")
        if isinstance(fc, dict):
            name = str(fc.get("name") or "")
            args = args_json(fc.get("args"))
            cid = fc.get("id")
            if not isinstance(cid, str) or not cid:
                cid = synthetic_call_id(seed, calls, name, args)
            parts.append(ir.ToolCall(id=cid, name=name, arguments=args, signature=sig))
            calls += 1
            continue
        text = p.get("text")
        if isinstance(text, str):
            if p.get("thought") is True:
                parts.append(ir.Reasoning(text=text, signature=sig))
                continue
            parts.append(ir.Text(text))
        elif isinstance(p.get("inlineData"), dict):
            inline = p["inlineData"]
            mime = str(inline.get("mimeType") or "")
            data = str(inline.get("data") or "")
            if mime.startswith("audio/"):
                parts.append(ir.Audio(data=data, format=_audio_format(mime)))
            else:
                parts.append(ir.Image(media_type=mime or None, data=data))
        elif "executableCode" in p or "codeExecutionResult" in p:
            parts.append(opaque_part(p, _opaque_text(p)))  # its signature stays inside
            continue
        elif sig is None:
            continue
        if sig is not None:
            parts.append(ir.Reasoning(text="", signature=sig))
    return parts, calls


def decode_response(body: dict[str, Any]) -> ir.Response:
    if not isinstance(body, dict):
        raise _upstream_bad("body is not a JSON object")
    candidates = body.get("candidates")
    if not candidates:
        feedback = body.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            raise blocked_prompt_error(feedback)
        raise _upstream_bad("no candidates")
    if not isinstance(candidates, list):
        raise _upstream_bad("candidates is not an array")
    cand = next((c for c in candidates if isinstance(c, dict) and c.get("index", 0) == 0), None)
    if cand is None:
        raise _upstream_bad("no candidate with index 0")
    rid = body.get("responseId")
    rid = rid if isinstance(rid, str) else ""
    content = cand.get("content")
    raw_parts = content.get("parts") if isinstance(content, dict) else None
    parts, calls = decode_parts(raw_parts, rid)
    finish = cand.get("finishReason")
    resp = ir.Response(
        id=rid,
        model=str(body.get("modelVersion") or ""),
        content=parts,
        stop_reason=stop_from_finish(finish, calls > 0),
        created=_parse_time(body.get("createTime")),
    )
    extras = {k: v for k, v in body.items() if k not in _KNOWN_RESPONSE_FIELDS}
    rest = {k: v for k, v in cand.items() if k not in _KNOWN_CANDIDATE_FIELDS}
    if rest:
        extras["_candidate"] = rest
    if isinstance(finish, str) and finish != finish_from_stop(resp.stop_reason):
        extras["_finish_reason"] = finish
    u = body.get("usageMetadata")
    if isinstance(u, dict):
        resp.usage = usage_from_gemini(u)
        left = {k: v for k, v in u.items() if k not in _USAGE_FIELDS}
        if left:
            extras["_usage"] = left
    if extras:
        resp.extras[NAME] = extras
    return resp


def encode_response(resp: ir.Response, req: ir.Request) -> dict[str, Any]:
    extras = resp.extras.get(NAME) or {}
    parts = encode_parts(resp.content)
    cand: dict[str, Any] = {}
    if parts:
        cand["content"] = {"parts": parts, "role": "model"}
    finish = extras.get("_finish_reason")
    if finish is None or stop_from_finish(finish, any(type(p) is ir.ToolCall for p in resp.content)) != (
        resp.stop_reason
    ):
        finish = finish_from_stop(resp.stop_reason)
    cand["finishReason"] = finish
    for k, v in (extras.get("_candidate") or {}).items():
        cand.setdefault(k, v)
    cand.setdefault("index", 0)
    body: dict[str, Any] = {"candidates": [cand]}
    if resp.usage is not None:
        body["usageMetadata"] = usage_to_gemini(resp.usage, extras.get("_usage"))
    model = resp.model or req.model
    if model:
        body["modelVersion"] = model
    if resp.id:
        body["responseId"] = resp.id
    for k, v in extras.items():
        if not k.startswith("_"):
            body.setdefault(k, v)
    return body


# --------------------------------------------------------------------------------------------
# Errors (protocols.md §8.5, §11.12)
# --------------------------------------------------------------------------------------------

STATUS_BY_KIND: dict[str, str] = {
    "invalid_request": "INVALID_ARGUMENT",
    "authentication": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED",
    "not_found": "NOT_FOUND",
    "request_too_large": "INVALID_ARGUMENT",
    "rate_limit": "RESOURCE_EXHAUSTED",
    "billing": "FAILED_PRECONDITION",
    "overloaded": "UNAVAILABLE",
    "timeout": "DEADLINE_EXCEEDED",
    "server_error": "INTERNAL",
    "upstream_unavailable": "UNAVAILABLE",
}
KIND_BY_STATUS: dict[str, Any] = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "ALREADY_EXISTS": "invalid_request",
    "UNIMPLEMENTED": "invalid_request",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limit",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
    "INTERNAL": "server_error",
    "UNKNOWN": "server_error",
    "DATA_LOSS": "server_error",
    "ABORTED": "server_error",
    "CANCELLED": "upstream_unavailable",
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")


def _retry_delay(details: Any) -> float | None:
    if not isinstance(details, list):
        return None
    for d in details:
        if isinstance(d, dict) and d.get("@type") == _RETRY_INFO and isinstance(d.get("retryDelay"), str):
            m = _DURATION.fullmatch(d["retryDelay"])
            if m:
                return float(m.group(1))
    return None


def _key_invalid(details: Any) -> bool:
    return isinstance(details, list) and any(
        isinstance(d, dict) and d.get("reason") == "API_KEY_INVALID" for d in details
    )


def error_from_object(status: int, err: Any) -> GatewayError:
    """A Google RPC ``error`` object -> GatewayError. ``status`` 0: an in-stream error (no HTTP status)."""
    if not isinstance(err, dict):
        return GatewayError(
            kind_for_status(status) if status >= 400 else "server_error",
            str(err) if err else "upstream error",
            status=status if status >= 400 else 0,
            from_gateway=False,
        )
    code = err.get("code")
    rpc_status = err.get("status")
    details = err.get("details")
    if status < 400 and type(code) is int and 400 <= code < 600:
        status = code
    kind = KIND_BY_STATUS.get(rpc_status) if isinstance(rpc_status, str) else None
    if _key_invalid(details):
        # Gemini answers a bad API key with 400 INVALID_ARGUMENT; for every other format that is a 401.
        kind, status = "authentication", 401
    if kind is None:
        kind = kind_for_status(status) if status >= 400 else "server_error"
    msg = err.get("message")
    if not isinstance(msg, str) or not msg:
        msg = f"upstream error ({rpc_status or status or 'unknown'})"
    return GatewayError(
        kind,
        msg,
        status=status if status >= 400 else DEFAULT_STATUS[kind],
        retry_after=_retry_delay(details),
        from_gateway=False,
    )


def error_payload(err: GatewayError, status: int) -> dict[str, Any]:
    e: dict[str, Any] = {"code": status, "message": err.message, "status": STATUS_BY_KIND.get(err.kind, "INTERNAL")}
    if err.retry_after is not None:
        e["details"] = [{"@type": _RETRY_INFO, "retryDelay": f"{max(0, round(err.retry_after))}s"}]
    return {"error": e}


def render_error(err: GatewayError) -> tuple[int, dict[str, Any]]:
    # Google clients do not know Anthropic's 529.
    status = 503 if err.status == 529 else err.status
    return status, error_payload(err, status)


def render_stream_error(err: GatewayError) -> bytes:
    status = 503 if err.status == 529 else err.status
    # google-genai recognises an in-stream error by a chunk whose first key is "error".
    return encode_event(orjson.dumps(error_payload(err, status)))


def parse_error(status: int, body: bytes) -> GatewayError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # a non-SSE streamGenerateContent wraps its error in an array
    if isinstance(data, dict) and "error" in data:
        return error_from_object(status, data["error"])
    text = body[:500].decode("utf-8", "replace").strip() if body else ""
    return GatewayError(
        kind_for_status(status) if status >= 400 else "upstream_unavailable",
        f"upstream returned HTTP {status}" + (f": {text}" if text else ""),
        status=status if status >= 400 else 502,
    )


# --------------------------------------------------------------------------------------------
# The codec
# --------------------------------------------------------------------------------------------


def _stream() -> Any:
    # imported late: the stream module builds on this one's helpers
    import trigate.formats.gemini_stream as stream

    return stream


CODEC = FunctionCodec(
    name=NAME,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=lambda req: _stream().GeminiStreamDecoder(req),
    stream_encoder=lambda req: _stream().GeminiStreamEncoder(req),
    render_error=render_error,
    render_stream_error=render_stream_error,
    parse_error=parse_error,
)
