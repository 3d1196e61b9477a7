"""OpenAI Responses API (``/v1/responses``) <-> IR.

Requests, response objects, ids and errors live here; the stream state machines live in
``openai_responses_stream``.

What the IR does not model is kept in ``extras["openai_responses"]`` (see ``_X_*`` keys below): unknown
top-level fields verbatim, plus the hints needed to restore this format's exact shape (the
``instructions`` text, built-in tools and items only OpenAI understands, ``allowed_tools`` choices,
``text``/``reasoning`` sub-fields, output message ids). Encoders of this format restore them; other
encoders ignore them. The presence of ``extras["openai_responses"]`` on a request also tells the
encoders it came from a Responses client (some defaults differ for foreign requests, see
``_encode_tool``).

``namespace`` tools are not OpenAI-only: the IR has their tools flat, named ``namespace__name`` (what
other providers' tool-name rules allow), and the namespace of the request's tools and of earlier calls
(``_X_NAMESPACED``) gives the answer's calls their ``name`` + ``namespace`` back; this format's own
encoder restores the namespace tools verbatim.

Canonical forms (what ``encode(decode(x))`` gives back): message items always carry ``type`` and a
list ``content``; assistant ``output_text`` parts always carry ``annotations``; output items that carry
an ``id`` also carry ``status: "completed"`` (function calls and assistant messages, as OpenAI returns
them); a ``function_call_output`` whose output is a one-``input_text`` list becomes a string; explicit
``null`` values of modelled fields are dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import orjson

from trigate.errors import GatewayError
from trigate.formats import openai_chat as _chat
from trigate.formats.base import FunctionCodec
from trigate.formats.checks import bad as _bad
from trigate.formats.checks import expect_dict as _dict
from trigate.formats.checks import expect_list as _list
from trigate.formats.checks import expect_str as _str
from trigate.formats.checks import kind_name as _type_name
from trigate.translate import ir

FORMAT = "openai_responses"

# Keys inside extras["openai_responses"] (request side unless noted).
_X_FIELDS = "fields"  # unknown top-level fields, restored verbatim
_X_INSTRUCTIONS = "instructions"  # the instructions string; the IR carries it as messages[0]
_X_INPUT_STRING = "input_string"  # input was a bare string
_X_INPUT_ABSENT = "input_absent"  # no input at all (previous_response_id / prompt only)
_X_BUILTIN_TOOLS = "builtin_tools"  # [[position, tool]] tools only OpenAI runs (web_search, mcp, ...)
_X_TOOL_FIELDS = "tool_fields"  # {tool name: {field: value}} un-modelled fields of function/custom tools
_X_NAMESPACE_TOOLS = "namespace_tools"  # [[position, tool]] namespace tools verbatim (the IR has their tools flat)
_X_NAMESPACED = "namespaced"  # {IR tool name: [namespace, name]} of flattened namespace tools and calls
_X_TOOL_CHOICE = "tool_choice"  # raw tool_choice when the IR cannot say it (allowed_tools, mcp, built-ins)
_X_TEXT = "text"  # text.* except format (verbosity)
_X_REASONING = "reasoning"  # reasoning.* except effort / summary
_X_ITEMS = "items"  # [[message index, item]] input items only OpenAI understands
_X_USER_FIELD = "user_field"  # "user" when the caller used the deprecated field instead of safety_identifier
# Response side.
# the output message items in order: {"id", "n": number of content parts, "fields": un-modelled fields}
_X_MESSAGES = "messages"
_X_OUTPUT_ITEMS = "output_items"  # [[content index, item]] output items only OpenAI understands
_X_RESPONSE_FIELDS = "response_fields"  # un-modelled response fields (service_tier, completed_at, ...)

_KNOWN_REQUEST_FIELDS = frozenset(
    {
        "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools",
        "tool_choice", "parallel_tool_calls", "text", "reasoning", "store", "previous_response_id",
        "stream", "metadata", "user", "safety_identifier", "service_tier",
    }
)  # fmt: skip

# Request fields a real response object echoes back besides the modelled ones.
_ECHOED_EXTRA_FIELDS = (
    "background", "max_tool_calls", "prompt_cache_key", "prompt_cache_retention", "top_logprobs",
)  # fmt: skip

# Response fields rebuilt from the IR + request by encode_response; the rest go to extras.
_BUILT_RESPONSE_FIELDS = frozenset(
    {
        "id", "object", "created_at", "status", "error", "incomplete_details", "instructions",
        "max_output_tokens", "model", "output", "parallel_tool_calls", "previous_response_id",
        "reasoning", "store", "temperature", "text", "tool_choice", "tools", "top_p", "truncation",
        "usage", "user", "metadata", "output_text",
    }
)  # fmt: skip

# Item types of OpenAI-run tools and features. They cannot be translated; they are kept for OpenAI round
# trips and reported by ``unsupported_items`` so the shell can refuse them for other providers.
_OPENAI_ONLY_ITEMS = frozenset(
    {
        "web_search_call", "file_search_call", "computer_call", "computer_call_output",
        "code_interpreter_call", "image_generation_call", "local_shell_call", "local_shell_call_output",
        "shell_call", "shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_list_tools",
        "mcp_approval_request", "mcp_approval_response", "mcp_call", "compaction", "tool_search_call",
        "tool_search_output", "additional_tools", "program", "program_output", "configuration_update",
    }
)  # fmt: skip

_ROLES = ("user", "system", "developer", "assistant")
_OPENAI_SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority"})
_ANNOTATION_TYPES = frozenset({"file_citation", "url_citation", "container_file_citation", "file_path"})

# Gateway-made encrypted_content: thinking signatures of other providers travel to Responses clients in
# the one reasoning field clients are required to echo back unchanged.
_PACK_PREFIX = "trigate:v1:"

# Minimum OpenAI accepts for max_output_tokens.
_MIN_OUTPUT_TOKENS = 16

# A tool of a ``namespace`` tool reaches other providers as one tool named namespace + separator + name.
# The separator and the length limit fit every provider's tool-name rule (Anthropic, Bedrock and Chat
# Completions: ^[a-zA-Z0-9_-]{1,64}$; Gemini: letters, digits, _ . : -, at most 64).
_NAMESPACE_SEPARATOR = "__"
_MAX_TOOL_NAME = 64

# --------------------------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------------------------

_ITEM_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
}


def _hex() -> str:
    return os.urandom(16).hex()


def new_response_id() -> str:
    return "resp_" + _hex()


def new_message_id() -> str:
    return "msg_" + _hex()


def new_function_call_id() -> str:
    return "fc_" + _hex()


def new_reasoning_id() -> str:
    return "rs_" + _hex()


def new_item_id(item_type: str) -> str:
    return _ITEM_PREFIX.get(item_type, "item") + "_" + _hex()


def derived_item_id(response_id: str, prefix: str, output_index: int) -> str:
    """An output item id fixed by the response id and position, so a stream and its final response
    object name every item the same without sharing state."""
    h = hashlib.blake2b(f"{response_id}/{prefix}/{output_index}".encode(), digest_size=16)
    return f"{prefix}_{h.hexdigest()}"


# --------------------------------------------------------------------------------------------
# Validation helpers: every client mistake becomes a 400 naming the field.
# --------------------------------------------------------------------------------------------


def _opt_str(obj: dict[str, Any], key: str, param: str) -> str | None:
    v = obj.get(key)
    return None if v is None else _str(v, param)


def _req_str(obj: dict[str, Any], key: str, param: str) -> str:
    v = obj.get(key)
    if v is None:
        raise _bad(param, "field required")
    return _str(v, param)


def _opt_bool(obj: dict[str, Any], key: str, param: str) -> bool | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise _bad(param, f"expected a boolean, got {_type_name(v)}")
    return v


def _opt_int(obj: dict[str, Any], key: str, param: str, minimum: int | None = None) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(param, f"expected an integer, got {_type_name(v)}")
    if minimum is not None and v < minimum:
        raise _bad(param, f"must be >= {minimum}")
    return v


def _opt_num(obj: dict[str, Any], key: str, param: str, lo: float, hi: float) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(param, f"expected a number, got {_type_name(v)}")
    if not lo <= v <= hi:
        raise _bad(param, f"must be between {lo:g} and {hi:g}")
    return v


def _parse_data_url(url: str) -> tuple[str | None, str] | None:
    """``data:<mt>[;params];base64,<data>`` -> (media type, base64 data); None for anything else."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",")
    if comma < 0:
        return None
    meta = url[5:comma]
    if not meta.endswith(";base64"):
        return None
    mt = meta[:-7].split(";", 1)[0]
    return (mt or None), url[comma + 1 :]


# --------------------------------------------------------------------------------------------
# Reasoning pack (other providers' thinking signatures inside encrypted_content)
# --------------------------------------------------------------------------------------------


def _pack(d: dict[str, Any]) -> str:
    return _PACK_PREFIX + base64.urlsafe_b64encode(orjson.dumps(d)).decode().rstrip("=")


def _unpack(enc: str) -> dict[str, Any] | None:
    if not enc.startswith(_PACK_PREFIX):
        return None
    raw = enc[len(_PACK_PREFIX) :]
    try:
        d = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        return None
    return d if isinstance(d, dict) else None


def openai_reasoning_signature(item_id: str | None, encrypted_content: str | None) -> str:
    """OpenAI reasoning (item id + encrypted_content) as an IR signature, for IR streams, which have no
    other slot for them; ``encode_request`` turns it back into the original reasoning item."""
    d: dict[str, Any] = {}
    if item_id is not None:
        d["id"] = item_id
    if encrypted_content is not None:
        d["e"] = encrypted_content
    return _pack(d)


def reasoning_item(r: ir.Reasoning, item_id: str) -> dict[str, Any]:
    """An IR reasoning part as a Responses ``reasoning`` item.

    Thinking text of providers without summaries (Anthropic, Gemini) is shown as the summary, because
    that is what Responses clients display; its signature rides in ``encrypted_content`` with a flag so
    the text comes back as text when the client returns the item.
    """
    item: dict[str, Any] = {"id": item_id, "type": "reasoning"}
    text_in_summary = r.summary is None and bool(r.text)
    summary = r.summary if r.summary is not None else ([r.text] if r.text else [])
    item["summary"] = [{"type": "summary_text", "text": s} for s in summary]
    if r.summary is not None and r.text:
        item["content"] = [{"type": "reasoning_text", "text": r.text}]
    if r.encrypted_content is not None:
        item["encrypted_content"] = r.encrypted_content
    elif r.signature is not None or r.redacted is not None:
        d: dict[str, Any] = {}
        if r.signature is not None:
            oa = _unpack(r.signature)
            if oa is not None and ("id" in oa or "e" in oa):
                d.update(oa)  # OpenAI reasoning that crossed an IR stream: one pack, not two
            else:
                d["s"] = r.signature
        if r.redacted is not None:
            d["r"] = r.redacted
        if text_in_summary:
            d["t"] = 1
        item["encrypted_content"] = _pack(d)
    return item


def _decode_reasoning(item: dict[str, Any], param: str) -> ir.Reasoning:
    summary_v = item.get("summary")
    summary: list[str] = []
    if summary_v is not None:
        for k, s in enumerate(_list(summary_v, f"{param}.summary")):
            sp = f"{param}.summary[{k}]"
            summary.append(_req_str(_dict(s, sp), "text", f"{sp}.text"))
    texts: list[str] = []
    content_v = item.get("content")
    if content_v is not None:
        for k, c in enumerate(_list(content_v, f"{param}.content")):
            cp = f"{param}.content[{k}]"
            texts.append(_req_str(_dict(c, cp), "text", f"{cp}.text"))
    r = ir.Reasoning(
        text="".join(texts),
        summary=summary,
        encrypted_content=_opt_str(item, "encrypted_content", f"{param}.encrypted_content"),
        id=_opt_str(item, "id", f"{param}.id"),
    )
    packed = _unpack(r.encrypted_content) if r.encrypted_content else None
    if packed is not None:
        sig, red, oa_id, oa_enc = packed.get("s"), packed.get("r"), packed.get("id"), packed.get("e")
        r.encrypted_content = oa_enc if isinstance(oa_enc, str) else None
        if isinstance(oa_id, str):
            r.id = oa_id
        r.signature = sig if isinstance(sig, str) else None
        r.redacted = red if isinstance(red, str) else None
        if packed.get("t"):
            r.text = "".join(summary)
            r.summary = None
    return r


# --------------------------------------------------------------------------------------------
# Request decoding
# --------------------------------------------------------------------------------------------


def decode_request(body: dict[str, Any]) -> ir.Request:
    if not isinstance(body, dict):
        raise _bad("body", "expected a JSON object")
    x: dict[str, Any] = {}
    model = _req_str(body, "model", "model")
    req = ir.Request(model=model, extras={FORMAT: x})
    flat = _Flattened()

    instructions = body.get("instructions")
    if instructions is not None:
        # The IR carries instructions as a leading system message; the extras copy marks it as
        # instructions so it is neither stored as history nor re-encoded as an input item.
        req.messages.append(ir.Message("system", [ir.Text(_str(instructions, "instructions"))]))
        x[_X_INSTRUCTIONS] = instructions

    inp = body.get("input")
    if inp is None:
        x[_X_INPUT_ABSENT] = True
    elif isinstance(inp, str):
        x[_X_INPUT_STRING] = True
        req.messages.append(ir.Message("user", [ir.Text(inp)]))
    else:
        offset = len(req.messages)
        msgs, opaque = _decode_items(_list(inp, "input"), flat)
        req.messages.extend(msgs)
        if opaque:
            x[_X_ITEMS] = [[pos + offset, item] for pos, item in opaque]

    req.max_tokens = _opt_int(body, "max_output_tokens", "max_output_tokens", minimum=1)
    req.temperature = _opt_num(body, "temperature", "temperature", 0, 2)
    req.top_p = _opt_num(body, "top_p", "top_p", 0, 1)
    req.parallel_tool_calls = _opt_bool(body, "parallel_tool_calls", "parallel_tool_calls")
    req.store = _opt_bool(body, "store", "store")
    req.previous_response_id = _opt_str(body, "previous_response_id", "previous_response_id")
    req.stream = bool(_opt_bool(body, "stream", "stream"))
    # Responses streams always end with the usage in response.completed.
    req.include_usage = req.stream
    req.service_tier = _opt_str(body, "service_tier", "service_tier")

    metadata = body.get("metadata")
    if metadata is not None:
        req.metadata = _dict(metadata, "metadata")

    safety = _opt_str(body, "safety_identifier", "safety_identifier")
    user = _opt_str(body, "user", "user")
    if safety is not None:
        req.user = safety
        if user is not None:
            x.setdefault(_X_FIELDS, {})["user"] = user
    elif user is not None:
        req.user = user
        x[_X_USER_FIELD] = "user"

    tools = body.get("tools")
    if tools is not None:
        _decode_tools(_list(tools, "tools"), req, x, flat)
    if flat.names:
        x[_X_NAMESPACED] = flat.names
    tc = body.get("tool_choice")
    if tc is not None:
        req.tool_choice = _decode_tool_choice(tc, x)

    text = body.get("text")
    if text is not None:
        text = _dict(text, "text")
        fmt = text.get("format")
        if fmt is not None:
            req.response_format = _decode_text_format(_dict(fmt, "text.format"))
        rest = {k: v for k, v in text.items() if k != "format"}
        if rest:
            x[_X_TEXT] = rest

    reasoning = body.get("reasoning")
    if reasoning is not None:
        reasoning = _dict(reasoning, "reasoning")
        summary = _opt_str(reasoning, "summary", "reasoning.summary")
        req.reasoning = ir.ReasoningConfig(
            effort=_opt_str(reasoning, "effort", "reasoning.effort"),
            summary=summary,
        )
        rest = {k: v for k, v in reasoning.items() if k not in ("effort", "summary")}
        if rest:
            x[_X_REASONING] = rest

    fields = {k: v for k, v in body.items() if k not in _KNOWN_REQUEST_FIELDS}
    if fields:
        x.setdefault(_X_FIELDS, {}).update(fields)
    return req


def _decode_items(
    items: list[Any], flat: _Flattened
) -> tuple[list[ir.Message], list[tuple[int, dict[str, Any]]]]:
    """Input items -> IR messages. Consecutive assistant-side items (reasoning, one assistant message,
    function calls) form one assistant message, as they are one model turn; every other item is a
    message of its own, so ids map one to one. Calls of namespaced tools get their flat names from ``flat``."""
    msgs: list[ir.Message] = []
    opaque: list[tuple[int, dict[str, Any]]] = []
    turn: ir.Message | None = None  # the open assistant turn
    turn_has_message = False
    for i, item in enumerate(items):
        p = f"input[{i}]"
        item = _dict(item, p)
        t = item.get("type")
        if t is None and "role" in item:
            t = "message"  # EasyInputMessage
        if not isinstance(t, str):
            raise _bad(f"{p}.type", f"unknown item type {t!r}")
        if t == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise _bad(f"{p}.role", f"expected one of {', '.join(_ROLES)}, got {role!r}")
            item_id = _opt_str(item, "id", f"{p}.id")
            content = _decode_content(item.get("content"), f"{p}.content")
            if role == "assistant":
                if turn is None or turn_has_message:
                    turn = ir.Message("assistant", id=item_id)
                    msgs.append(turn)
                else:
                    turn.id = item_id
                turn_has_message = True
                turn.content.extend(content)
            else:
                turn = None
                msgs.append(ir.Message(role, content, id=item_id))
        elif t in ("function_call", "custom_tool_call", "reasoning"):
            if turn is None:
                turn = ir.Message("assistant")
                msgs.append(turn)
                turn_has_message = False
            turn.content.append(_decode_reasoning(item, p) if t == "reasoning" else _decode_call(item, t, p, flat))
        elif t in ("function_call_output", "custom_tool_call_output"):
            turn = None
            result = ir.ToolResult(
                call_id=_req_str(item, "call_id", f"{p}.call_id"),
                content=_decode_output(item.get("output"), f"{p}.output"),
            )
            msgs.append(ir.Message("tool", [result], id=_opt_str(item, "id", f"{p}.id")))
        elif t == "item_reference":
            raise _bad(p, "item_reference items cannot be resolved for this model")
        elif t in _OPENAI_ONLY_ITEMS:
            turn = None
            opaque.append((len(msgs), item))
        else:
            raise _bad(f"{p}.type", f"unknown item type {t!r}")
    return msgs, opaque


def _decode_call(item: dict[str, Any], t: str, p: str, flat: _Flattened | None) -> ir.ToolCall:
    custom = t == "custom_tool_call"
    args_key = "input" if custom else "arguments"
    args = item.get(args_key)
    name = _req_str(item, "name", f"{p}.name")
    namespace = _opt_str(item, "namespace", f"{p}.namespace")
    if namespace is not None:
        # Upstream answers (no ``flat``) are taken as they are; client input is checked like its tools.
        name = flat_tool_name(namespace, name) if flat is None else flat.add(namespace, name, f"{p}.namespace", False)
    return ir.ToolCall(
        id=_req_str(item, "call_id", f"{p}.call_id"),
        name=name,
        arguments="" if args is None else _str(args, f"{p}.{args_key}"),
        kind="custom" if custom else "function",
        item_id=_opt_str(item, "id", f"{p}.id"),
    )


def _decode_content(content: Any, param: str) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)]
    return [_decode_part(_dict(c, f"{param}[{k}]"), f"{param}[{k}]") for k, c in enumerate(_list(content, param))]


def _decode_output(output: Any, param: str) -> list[ir.Part]:
    if output is None:
        raise _bad(param, "field required")
    if isinstance(output, str):
        return [ir.Text(output)]
    return [_decode_part(_dict(c, f"{param}[{k}]"), f"{param}[{k}]") for k, c in enumerate(_list(output, param))]


def _decode_part(c: dict[str, Any], p: str) -> ir.Part:
    t = c.get("type")
    if t in ("input_text", "output_text", "text"):
        text = ir.Text(_req_str(c, "text", f"{p}.text"))
        ann = c.get("annotations")
        if ann:
            text.citations = _list(ann, f"{p}.annotations")
        return text
    if t == "refusal":
        return ir.Refusal(_req_str(c, "refusal", f"{p}.refusal"))
    if t == "input_image":
        url = _opt_str(c, "image_url", f"{p}.image_url")
        file_id = _opt_str(c, "file_id", f"{p}.file_id")
        if url is None and file_id is None:
            raise _bad(f"{p}.image_url", "an input_image needs image_url or file_id")
        img = ir.Image(file_id=file_id, detail=_opt_str(c, "detail", f"{p}.detail"))
        if url is not None:
            parsed = _parse_data_url(url)
            if parsed is None:
                img.url = url
            else:
                img.media_type, img.data = parsed
        return img
    if t == "input_file":
        doc = ir.Document(
            file_id=_opt_str(c, "file_id", f"{p}.file_id"),
            url=_opt_str(c, "file_url", f"{p}.file_url"),
            filename=_opt_str(c, "filename", f"{p}.filename"),
        )
        data = _opt_str(c, "file_data", f"{p}.file_data")
        if data is not None:
            parsed = _parse_data_url(data)
            if parsed is None:
                doc.data = data
            else:
                doc.media_type, doc.data = parsed
                if doc.media_type == "text/plain":
                    # IR convention: text/plain documents carry plain text, not base64.
                    try:
                        doc.data = base64.b64decode(doc.data, validate=True).decode("utf-8")
                    except (ValueError, binascii.Error):
                        raise _bad(f"{p}.file_data", "invalid base64 text/plain data") from None
        if doc.file_id is None and doc.url is None and doc.data is None:
            raise _bad(p, "an input_file needs file_id, file_data or file_url")
        return doc
    if t == "input_audio":
        a = _dict(c.get("input_audio"), f"{p}.input_audio")
        return ir.Audio(
            data=_req_str(a, "data", f"{p}.input_audio.data"),
            format=_req_str(a, "format", f"{p}.input_audio.format"),
        )
    raise _bad(f"{p}.type", f"unknown content part type {t!r}")


def _decode_tool(tool: dict[str, Any], p: str) -> tuple[ir.Tool, dict[str, Any]] | None:
    """A function or custom tool and its un-modelled fields; None for any other type."""
    t = tool.get("type")
    if t == "function":
        params = tool.get("parameters")
        ir_tool = ir.Tool(
            name=_req_str(tool, "name", f"{p}.name"),
            description=_opt_str(tool, "description", f"{p}.description"),
            parameters=None if params is None else _dict(params, f"{p}.parameters"),
            strict=_opt_bool(tool, "strict", f"{p}.strict"),
        )
        known: tuple[str, ...] = ("type", "name", "description", "parameters", "strict")
    elif t == "custom":
        fmt = tool.get("format")
        ir_tool = ir.Tool(
            name=_req_str(tool, "name", f"{p}.name"),
            description=_opt_str(tool, "description", f"{p}.description"),
            kind="custom",
            format=None if fmt is None else _dict(fmt, f"{p}.format"),
        )
        known = ("type", "name", "description", "format")
    else:
        return None
    return ir_tool, {k: v for k, v in tool.items() if k not in known}


def _decode_tools(tools: list[Any], req: ir.Request, x: dict[str, Any], flat: _Flattened) -> None:
    builtin: list[list[Any]] = []
    namespace_tools: list[list[Any]] = []
    tool_fields: dict[str, dict[str, Any]] = {}
    plain: dict[str, str] = {}  # name -> param of the tools outside namespaces
    for j, tool in enumerate(tools):
        p = f"tools[{j}]"
        tool = _dict(tool, p)
        t = tool.get("type")
        if t == "namespace":
            namespace_tools.append([j, tool])
            req.tools.extend(_decode_namespace(tool, p, flat))
            continue
        decoded = _decode_tool(tool, p)
        if decoded is None:
            if isinstance(t, str) and t:
                builtin.append([j, tool])
                continue
            raise _bad(f"{p}.type", f"unknown tool type {t!r}")
        ir_tool, rest = decoded
        if rest:
            tool_fields[ir_tool.name] = rest
        plain.setdefault(ir_tool.name, f"{p}.name")
        req.tools.append(ir_tool)
    for name, param in plain.items():
        if name in flat.names:
            # The answer's calls of that name could not be told apart.
            raise _bad(flat.params[name], f"the namespaced tool name {name!r} is also the name of {param}")
    if builtin:
        x[_X_BUILTIN_TOOLS] = builtin
    if namespace_tools:
        x[_X_NAMESPACE_TOOLS] = namespace_tools
    if tool_fields:
        x[_X_TOOL_FIELDS] = tool_fields


def flat_tool_name(namespace: str, name: str) -> str:
    """The IR name of tool ``name`` of namespace ``namespace``."""
    return namespace + _NAMESPACE_SEPARATOR + name


class _Flattened:
    """The names namespaced tools and calls get in the IR (``namespace__name``), refusing what would be
    ambiguous or too long for other providers' tool names."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}  # flat name -> [namespace, name]; see _X_NAMESPACED
        self.params: dict[str, str] = {}  # flat name -> where it was first named
        self._tools: set[str] = set()  # flat names of namespace tools (a second one is a duplicate)

    def add(self, namespace: str, name: str, param: str, tool: bool) -> str:
        flat = flat_tool_name(namespace, name)
        if len(flat) > _MAX_TOOL_NAME:
            raise _bad(
                param,
                f"the namespaced tool name {flat!r} ({len(flat)} characters) is longer than the "
                f"{_MAX_TOOL_NAME} characters this model's provider accepts",
            )
        known = self.names.get(flat)
        if (known is not None and known != [namespace, name]) or (tool and flat in self._tools):
            raise _bad(param, f"the namespaced tool name {flat!r} is also the name of {self.params[flat]}")
        if tool:
            self._tools.add(flat)
        self.names[flat] = [namespace, name]
        self.params.setdefault(flat, param)
        return flat


def _decode_namespace(tool: dict[str, Any], p: str, flat: _Flattened) -> list[ir.Tool]:
    """A namespace tool -> one IR tool per member, the namespace's description leading each member's
    so the model still reads it."""
    namespace = _req_str(tool, "name", f"{p}.name")
    about = _opt_str(tool, "description", f"{p}.description")
    out: list[ir.Tool] = []
    for k, member in enumerate(_list(tool.get("tools"), f"{p}.tools")):
        q = f"{p}.tools[{k}]"
        decoded = _decode_tool(_dict(member, q), q)
        if decoded is None:
            raise _bad(f"{q}.type", f"expected function or custom, got {member.get('type')!r}")
        ir_tool = decoded[0]
        ir_tool.name = flat.add(namespace, ir_tool.name, f"{q}.name", tool=True)
        if about:
            ir_tool.description = f"{about}\n\n{ir_tool.description}" if ir_tool.description else about
        out.append(ir_tool)
    return out


def _decode_tool_choice(tc: Any, x: dict[str, Any]) -> ir.ToolChoice | None:
    if isinstance(tc, str):
        if tc not in ("none", "auto", "required"):
            raise _bad("tool_choice", f"expected none, auto, required or an object, got {tc!r}")
        return ir.ToolChoice(tc)  # type: ignore[arg-type]
    tc = _dict(tc, "tool_choice")
    t = tc.get("type")
    if t in ("function", "custom"):
        return ir.ToolChoice("tool", _req_str(tc, "name", "tool_choice.name"))
    if not isinstance(t, str) or not t:
        raise _bad("tool_choice.type", f"unknown tool_choice type {t!r}")
    x[_X_TOOL_CHOICE] = tc
    if t == "allowed_tools":
        mode = tc.get("mode")
        if mode not in ("auto", "required"):
            raise _bad("tool_choice.mode", f"expected auto or required, got {mode!r}")
        allowed = _list(tc.get("tools"), "tool_choice.tools")
        # Other providers get the whole tool list (the IR has no subset); the closest they can do is
        # the mode, or forcing the one tool when exactly one is allowed and required.
        if mode == "required" and len(allowed) == 1 and isinstance(allowed[0], dict):
            name = allowed[0].get("name")
            if isinstance(name, str):
                return ir.ToolChoice("tool", name)
        return ir.ToolChoice(mode)
    # mcp, shell, apply_patch and built-in tool choices: OpenAI-only, see unsupported_tools().
    return None


def _decode_text_format(fmt: dict[str, Any]) -> ir.ResponseFormat:
    t = fmt.get("type")
    if t in ("text", "json_object"):
        return ir.ResponseFormat(t)
    if t == "json_schema":
        return ir.ResponseFormat(
            "json_schema",
            name=_req_str(fmt, "name", "text.format.name"),
            schema=_dict(fmt.get("schema"), "text.format.schema"),
            strict=_opt_bool(fmt, "strict", "text.format.strict"),
            description=_opt_str(fmt, "description", "text.format.description"),
        )
    raise _bad("text.format.type", f"expected text, json_object or json_schema, got {t!r}")


# --------------------------------------------------------------------------------------------
# Helpers for the shell (stored responses)
# --------------------------------------------------------------------------------------------


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as stored items: canonical item shapes, each with an ``id``.

    Expects a body ``decode_request`` accepted. The ``instructions`` are not part of it (they are not
    carried over by ``previous_response_id``)."""
    inp = body.get("input")
    if inp is None:
        return []
    if isinstance(inp, str):
        inp = [{"role": "user", "content": inp}]
    if not isinstance(inp, list):
        return []
    return [_canonical_item(it) for it in inp if isinstance(it, dict)]


def _canonical_item(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    t = out.get("type")
    if t is None and "role" in out:
        t = out["type"] = "message"
    if t == "item_reference":
        return out
    if t == "message":
        content = out.get("content")
        assistant = out.get("role") == "assistant"
        if isinstance(content, str):
            part = {"type": "output_text", "text": content, "annotations": []} if assistant else None
            out["content"] = [part or {"type": "input_text", "text": content}]
        elif isinstance(content, list):
            out["content"] = [_canonical_part(c) for c in content]
    if "id" not in out or out["id"] is None:
        out["id"] = new_item_id(t if isinstance(t, str) else "item")
    if t in ("message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output"):
        out.setdefault("status", "completed")
    return out


def _canonical_part(c: Any) -> Any:
    if isinstance(c, dict) and c.get("type") == "input_image" and c.get("detail") is None:
        return {**c, "detail": "auto"}
    return c


def output_items(response_obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The output items of an encoded response object (what the shell stores as the turn's output)."""
    out = response_obj.get("output")
    return [it for it in out if isinstance(it, dict)] if isinstance(out, list) else []


def prepend_history(
    body: dict[str, Any], history: list[dict[str, Any]], current: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A copy of ``body`` whose input is the stored ``history`` followed by its own input, for serving
    ``previous_response_id`` to providers without server-side state. Pass ``current`` (the
    ``input_items(body)`` the shell stores) so the ids sent and stored agree."""
    return {**body, "input": [*history, *(input_items(body) if current is None else current)]}


def expand_for_native(body: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of ``body`` for a Responses upstream that does not hold ``previous_response_id`` (another
    provider served it, or the gateway translated it): the stored history, then the client's own
    input as it sent it, and no ``previous_response_id``."""
    inp = body.get("input")
    own = [{"role": "user", "content": inp}] if isinstance(inp, str) else inp if isinstance(inp, list) else []
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out["input"] = [*_native_history(history), *own]
    return out


def _native_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Item ids are dropped (they name items of another store), and reasoning stays only where it
    carries OpenAI's own encrypted content, the one form any OpenAI upstream can read."""
    out = []
    for item in history:
        if item.get("type") != "reasoning":
            out.append({k: v for k, v in item.items() if k != "id"})
            continue
        enc = item.get("encrypted_content")
        packed = _unpack(enc) if isinstance(enc, str) else None
        if packed is not None:
            enc = packed.get("e")
        if isinstance(enc, str):
            summary = item.get("summary") if isinstance(item.get("summary"), list) else []
            out.append({"type": "reasoning", "summary": summary, "encrypted_content": enc})
    return out


def resolve_item_references(body: dict[str, Any], lookup: Callable[[str], dict[str, Any] | None]) -> dict[str, Any]:
    """A copy of ``body`` with each ``item_reference`` replaced by ``lookup(id)`` when it knows the
    item; unknown references stay, and decode_request refuses them."""
    inp = body.get("input")
    if not isinstance(inp, list) or not any(isinstance(it, dict) and it.get("type") == "item_reference" for it in inp):
        return body
    out: list[Any] = []
    for it in inp:
        if isinstance(it, dict) and it.get("type") == "item_reference" and isinstance(it.get("id"), str):
            found = lookup(it["id"])
            out.append(found if found is not None else it)
        else:
            out.append(it)
    return {**body, "input": out}


def unsupported_tools(req: ir.Request) -> list[str]:
    """Tools (and tool choices) only OpenAI can run. Non-empty means: answer 400 unless the provider
    is OpenAI; they are never silently dropped."""
    x = req.extras.get(FORMAT) or {}
    out = [f"tools[{pos}]: {tool.get('type')}" for pos, tool in x.get(_X_BUILTIN_TOOLS, ())]
    tc = x.get(_X_TOOL_CHOICE)
    if isinstance(tc, dict) and tc.get("type") != "allowed_tools":
        out.append(f"tool_choice: {tc.get('type')}")
    return out


def unsupported_items(req: ir.Request) -> list[str]:
    """Input items only OpenAI understands (web_search_call, mcp_call, ...), same contract."""
    x = req.extras.get(FORMAT) or {}
    return [f"input item: {item.get('type')}" for _, item in x.get(_X_ITEMS, ())]


def unsupported_features(req: ir.Request) -> list[str]:
    return unsupported_tools(req) + unsupported_items(req)


# --------------------------------------------------------------------------------------------
# Request encoding
# --------------------------------------------------------------------------------------------


def effort_for_budget(budget: int) -> str:
    """Thinking budget -> reasoning effort on the protocols.md §11.7 scale (low ~1k, medium ~8k)."""
    if budget <= 2048:
        return "low"
    if budget <= 12288:
        return "medium"
    return "high"


def _effort(r: ir.ReasoningConfig) -> str | None:
    if r.effort is not None:
        return r.effort
    if r.budget_tokens is not None and r.mode != "disabled":
        return effort_for_budget(r.budget_tokens)
    return None


def encode_request(req: ir.Request, model: str) -> dict[str, Any]:
    own = req.extras.get(FORMAT)
    x: dict[str, Any] = own if own is not None else {}
    if req.n is not None and req.n > 1:
        raise _bad("n", "several choices (n > 1) are not supported by this model's API")
    body: dict[str, Any] = {"model": model}

    messages = req.messages
    if (
        _X_INSTRUCTIONS in x
        and messages
        and messages[0].role in ("system", "developer")
        and all(isinstance(p, ir.Text) for p in messages[0].content)
    ):
        body["instructions"] = "".join(p.text for p in messages[0].content)  # type: ignore[union-attr]
        messages = messages[1:]
        offset = 1
    else:
        offset = 0

    plain = _plain_user_text(messages) if x.get(_X_INPUT_STRING) and not x.get(_X_ITEMS) else None
    if plain is not None:
        body["input"] = plain
    else:
        items = _encode_items(messages, x.get(_X_ITEMS), offset, x.get(_X_NAMESPACED, {}))
        if items or not x.get(_X_INPUT_ABSENT):
            body["input"] = items

    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens if own is not None else max(req.max_tokens, _MIN_OUTPUT_TOKENS)
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    tools = encode_tools(req)
    if tools:
        body["tools"] = tools
    tc = encode_tool_choice(req)
    if tc is not None:
        body["tool_choice"] = tc
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    text = _encode_text(req, x)
    if text is not None:
        body["text"] = text
    reasoning = _encode_reasoning(req, x)
    if reasoning is not None:
        body["reasoning"] = reasoning
    if req.store is not None:
        body["store"] = req.store
    if req.previous_response_id is not None:
        body["previous_response_id"] = req.previous_response_id
    if req.stream:
        body["stream"] = True
    if req.metadata is not None:
        body["metadata"] = (
            req.metadata if own is not None else {k: v for k, v in req.metadata.items() if isinstance(v, str)}
        )
    if req.user is not None:
        body["user" if x.get(_X_USER_FIELD) == "user" else "safety_identifier"] = req.user
    if req.service_tier is not None and (own is not None or req.service_tier in _OPENAI_SERVICE_TIERS):
        body["service_tier"] = req.service_tier
    # Responses has no stop sequences, top_k, seed or penalties (protocols.md §11.1): they are dropped.
    for k, v in x.get(_X_FIELDS, {}).items():
        body.setdefault(k, v)
    return body


def _plain_user_text(messages: list[ir.Message]) -> str | None:
    """The text of a conversation that is one plain user text (what a bare-string input decodes to)."""
    if len(messages) != 1:
        return None
    m = messages[0]
    if m.role != "user" or m.id is not None or len(m.content) != 1:
        return None
    p = m.content[0]
    return p.text if isinstance(p, ir.Text) and not p.citations else None


def _encode_items(
    messages: list[ir.Message], opaque: list[list[Any]] | None, offset: int, namespaced: dict[str, list[str]]
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    custom_calls: set[str] = set()
    pending = sorted(opaque or (), key=lambda e: e[0])
    k = 0
    for mi, m in enumerate(messages):
        while k < len(pending) and pending[k][0] <= mi + offset:
            items.append(pending[k][1])
            k += 1
        if m.role == "assistant":
            _encode_assistant(m, items, custom_calls, namespaced)
        elif m.role == "tool":
            for p in m.content:
                if isinstance(p, ir.ToolResult):
                    items.append(_encode_result(p, m.id, custom_calls))
        else:
            parts: list[dict[str, Any]] = []
            for p in m.content:
                if isinstance(p, ir.ToolResult):
                    # Anthropic-style results inside a user turn become items of their own, in place.
                    if parts:
                        items.append(_message_item(m.role, parts, None))
                        parts = []
                    items.append(_encode_result(p, None, custom_calls))
                else:
                    enc = _encode_input_part(p)
                    if enc is not None:
                        parts.append(enc)
            if parts or not m.content:
                items.append(_message_item(m.role, parts, m.id))
    items.extend(e[1] for e in pending[k:])
    return items


def _message_item(role: str, parts: list[dict[str, Any]], item_id: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "message", "role": role, "content": parts}
    if item_id is not None:
        item["id"] = item_id
    return item


def _encode_assistant(
    m: ir.Message, items: list[dict[str, Any]], custom_calls: set[str], namespaced: dict[str, list[str]]
) -> None:
    run: list[dict[str, Any]] = []
    msg_id = m.id

    def flush() -> None:
        nonlocal run, msg_id
        if run:
            item: dict[str, Any] = {"type": "message", "role": "assistant", "content": run}
            if msg_id is not None:
                item["id"] = msg_id
                item["status"] = "completed"
                msg_id = None
            items.append(item)
            run = []

    for p in m.content:
        if isinstance(p, ir.Text):
            run.append(_output_text(p, with_logprobs=False))
        elif isinstance(p, ir.Refusal):
            run.append({"type": "refusal", "refusal": p.text})
        elif isinstance(p, ir.ToolCall):
            flush()
            items.append(_call_item(p, p.item_id, namespaced=namespaced))
            if p.kind == "custom":
                custom_calls.add(p.id)
        elif isinstance(p, ir.Reasoning):
            item = _upstream_reasoning(p)
            if item is not None:
                flush()
                items.append(item)
    flush()


def _upstream_reasoning(r: ir.Reasoning) -> dict[str, Any] | None:
    """Only OpenAI's own reasoning means anything to a Responses upstream: an encrypted blob or the id
    of a stored item, possibly carried through an IR stream as a signature pack. Other providers'
    thinking (their signatures, redacted blocks) is dropped."""
    if r.encrypted_content is not None:
        return reasoning_item(r, r.id or new_reasoning_id())
    if r.signature is not None:
        oa = _unpack(r.signature)
        if oa is None or not ("id" in oa or "e" in oa):
            return None
        item_id, enc = oa.get("id"), oa.get("e")
        summary = r.summary if r.summary is not None else ([r.text] if r.text else [])
        plain = ir.Reasoning(text=r.text if r.summary is not None else "", summary=summary)
        plain.encrypted_content = enc if isinstance(enc, str) else None
        return reasoning_item(plain, item_id if isinstance(item_id, str) else new_reasoning_id())
    if r.id is not None and r.redacted is None:
        return reasoning_item(r, r.id)
    return None


def _call_item(
    c: ir.ToolCall,
    item_id: str | None,
    status: str | None = "completed",
    namespaced: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """A call item; ``namespaced`` (the request's _X_NAMESPACED) turns flat names back into namespace + name."""
    name, namespace = c.name, None
    if namespaced and c.name in namespaced:
        namespace, name = namespaced[c.name]
    if c.kind == "custom":
        item: dict[str, Any] = {"type": "custom_tool_call", "call_id": c.id, "name": name, "input": c.arguments}
        if namespace is not None:
            item["namespace"] = namespace
        if item_id is not None:
            item["id"] = item_id
        return item
    item = {"type": "function_call", "call_id": c.id, "name": name, "arguments": c.arguments}
    if namespace is not None:
        item["namespace"] = namespace
    if item_id is not None:
        item["id"] = item_id
        if status is not None:
            item["status"] = status
    return item


def _encode_result(r: ir.ToolResult, item_id: str | None, custom_calls: set[str]) -> dict[str, Any]:
    parts = [e for e in (_encode_input_part(p) for p in r.content) if e is not None]
    output: str | list[dict[str, Any]]
    if not parts:
        output = ""
    elif len(parts) == 1 and parts[0]["type"] == "input_text":
        output = parts[0]["text"]
    else:
        output = parts
    if r.is_error:
        # Responses has no error flag on results (protocols.md §11.5): say it in the text.
        if isinstance(output, str):
            output = "Error: " + output
        else:
            output = [{"type": "input_text", "text": "Error:"}, *output]
    t = "custom_tool_call_output" if r.call_id in custom_calls else "function_call_output"
    item: dict[str, Any] = {"type": t, "call_id": r.call_id, "output": output}
    if item_id is not None:
        item["id"] = item_id
    return item


def _encode_input_part(p: ir.Part) -> dict[str, Any] | None:
    if isinstance(p, ir.Text):
        return {"type": "input_text", "text": p.text}
    if isinstance(p, ir.Image):
        img: dict[str, Any] = {"type": "input_image"}
        if p.data is not None:
            img["image_url"] = f"data:{p.media_type or 'image/png'};base64,{p.data}"
        elif p.url is not None:
            img["image_url"] = p.url
        if p.file_id is not None:
            img["file_id"] = p.file_id
        if p.detail is not None:
            img["detail"] = p.detail
        return img
    if isinstance(p, ir.Document):
        f: dict[str, Any] = {"type": "input_file"}
        if p.file_id is not None:
            f["file_id"] = p.file_id
        if p.data is not None:
            if p.media_type == "text/plain":
                f["file_data"] = "data:text/plain;base64," + base64.b64encode(p.data.encode()).decode()
            elif p.media_type is not None:
                f["file_data"] = f"data:{p.media_type};base64,{p.data}"
            else:
                f["file_data"] = p.data
        if p.url is not None:
            f["file_url"] = p.url
        if p.filename is not None:
            f["filename"] = p.filename
        return f
    if isinstance(p, ir.Audio):
        return {"type": "input_audio", "input_audio": {"data": p.data, "format": p.format}}
    if isinstance(p, ir.Refusal):
        return {"type": "input_text", "text": p.text}
    return None


def _output_text(p: ir.Text, with_logprobs: bool) -> dict[str, Any]:
    ann = [a for a in p.citations or () if isinstance(a, dict) and a.get("type") in _ANNOTATION_TYPES]
    out: dict[str, Any] = {"type": "output_text", "text": p.text, "annotations": ann}
    if with_logprobs:
        out["logprobs"] = []
    return out


def _encode_tool(t: ir.Tool, own: bool, fields: dict[str, Any] | None) -> dict[str, Any]:
    if t.kind == "custom":
        out: dict[str, Any] = {"type": "custom", "name": t.name}
        if t.description is not None:
            out["description"] = t.description
        if t.format is not None:
            out["format"] = t.format
    else:
        out = {"type": "function", "name": t.name}
        if t.description is not None:
            out["description"] = t.description
        if own:
            if t.parameters is not None:
                out["parameters"] = t.parameters
            if t.strict is not None:
                out["strict"] = t.strict
        else:
            # Responses treats an absent strict as true, which rejects the loose schemas Chat and
            # Anthropic clients send; foreign tools keep their own default (not strict).
            out["parameters"] = t.parameters if t.parameters is not None else {"type": "object", "properties": {}}
            out["strict"] = bool(t.strict)
    if fields:
        out.update(fields)
    return out


def encode_tools(req: ir.Request) -> list[dict[str, Any]]:
    own = req.extras.get(FORMAT)
    x = own or {}
    fields = x.get(_X_TOOL_FIELDS, {})
    namespaced = x.get(_X_NAMESPACED, {})
    # Members of namespace tools come back inside their namespace tool, kept verbatim.
    tools = [_encode_tool(t, own is not None, fields.get(t.name)) for t in req.tools if t.name not in namespaced]
    kept = [*x.get(_X_BUILTIN_TOOLS, ()), *x.get(_X_NAMESPACE_TOOLS, ())]
    for pos, tool in sorted(kept, key=lambda e: e[0]):
        tools.insert(min(pos, len(tools)), tool)
    return tools


def tool_namespaces(req: ir.Request) -> dict[str, list[str]]:
    """{IR tool name: [namespace, name]} for the request's namespaced tools and calls (empty for requests
    of other formats), for the encoders to give the answer's calls their namespace back."""
    x = req.extras.get(FORMAT) or {}
    return x.get(_X_NAMESPACED, {})


def encode_tool_choice(req: ir.Request) -> Any:
    x = req.extras.get(FORMAT) or {}
    raw = x.get(_X_TOOL_CHOICE)
    if raw is not None:
        return raw
    tc = req.tool_choice
    if tc is None:
        return None
    if tc.mode == "tool":
        kind = next((t.kind for t in req.tools if t.name == tc.name), "function")
        return {"type": kind, "name": tc.name}
    return tc.mode


def _encode_text_format(rf: ir.ResponseFormat) -> dict[str, Any]:
    if rf.type != "json_schema":
        return {"type": rf.type}
    out: dict[str, Any] = {"type": "json_schema", "name": rf.name or "response", "schema": rf.schema or {}}
    if rf.description is not None:
        out["description"] = rf.description
    if rf.strict is not None:
        out["strict"] = rf.strict
    return out


def _encode_text(req: ir.Request, x: dict[str, Any]) -> dict[str, Any] | None:
    rest = x.get(_X_TEXT)
    if req.response_format is None and not rest:
        return None
    text: dict[str, Any] = {}
    if req.response_format is not None:
        text["format"] = _encode_text_format(req.response_format)
    if rest:
        text.update(rest)
    return text


def _encode_reasoning(req: ir.Request, x: dict[str, Any]) -> dict[str, Any] | None:
    r = req.reasoning
    rest = x.get(_X_REASONING)
    if r is None:
        return dict(rest) if rest else None
    if r.mode == "disabled" and r.effort is None:
        # Thinking explicitly off: leave the model's default rather than guess an effort it may reject.
        return None
    out: dict[str, Any] = {}
    effort = _effort(r)
    if effort is not None:
        out["effort"] = effort
    if r.summary is not None:
        out["summary"] = r.summary
    if rest:
        out.update(rest)
    return out


# --------------------------------------------------------------------------------------------
# Responses: decoding
# --------------------------------------------------------------------------------------------


def _upstream_bad(problem: str) -> GatewayError:
    return GatewayError("upstream_unavailable", f"unusable Responses object from upstream: {problem}")


def _count(d: Any, key: str) -> int:
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def usage_from_dict(u: Any) -> ir.Usage | None:
    if not isinstance(u, dict):
        return None
    in_d = u.get("input_tokens_details")
    out_d = u.get("output_tokens_details")
    reasoning = out_d.get("reasoning_tokens") if isinstance(out_d, dict) else None
    return ir.Usage(
        input_tokens=_count(u, "input_tokens"),
        output_tokens=_count(u, "output_tokens"),
        cache_read_tokens=_count(in_d, "cached_tokens"),
        cache_write_tokens=_count(in_d, "cache_write_tokens"),
        reasoning_tokens=reasoning if isinstance(reasoning, int) and not isinstance(reasoning, bool) else None,
    ).fold_reported_total(u.get("total_tokens"))


def usage_to_dict(u: ir.Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens or 0},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def stop_reason_for(status: Any, incomplete: Any, has_calls: bool) -> ir.StopReason | None:
    """Responses status (+ incomplete_details, + whether function calls were produced) -> IR stop reason
    (protocols.md §11.9)."""
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        if reason == "content_filter":
            return "content_filter"
        if reason == "max_output_tokens":
            return "max_tokens"
        # max_messages / steered / unspecified: the turn stopped early and can be continued.
        return "pause_turn"
    if status == "failed":
        return None
    return "tool_use" if has_calls else "end_turn"


def status_for(stop: ir.StopReason | None) -> tuple[str, dict[str, Any] | None]:
    """IR stop reason -> (status, incomplete_details)."""
    if stop in ("max_tokens", "context_window_exceeded"):
        return "incomplete", {"reason": "max_output_tokens"}
    if stop == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    if stop == "pause_turn":
        # No exact match (§11.9): incomplete, without a reason the SDKs would misread.
        return "incomplete", {"reason": None}
    return "completed", None


def decode_response(body: dict[str, Any]) -> ir.Response:
    if not isinstance(body, dict):
        raise _upstream_bad("not a JSON object")
    output = body.get("output")
    if not isinstance(output, list):
        raise _upstream_bad("no output list")
    x: dict[str, Any] = {}
    created = body.get("created_at")
    resp = ir.Response(
        id=body.get("id") if isinstance(body.get("id"), str) else "",
        model=body.get("model") if isinstance(body.get("model"), str) else "",
        created=int(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else 0,
        extras={FORMAT: x},
    )
    messages: list[dict[str, Any]] = []
    opaque: list[list[Any]] = []
    has_calls = False
    for i, item in enumerate(output):
        p = f"output[{i}]"
        if not isinstance(item, dict):
            raise _upstream_bad(f"{p} is not an object")
        t = item.get("type")
        try:
            if t == "message":
                parts = _decode_content(item.get("content") or [], f"{p}.content")
                entry: dict[str, Any] = {"id": item.get("id"), "n": len(parts)}
                fields = {k: v for k, v in item.items() if k not in ("id", "type", "status", "content", "role")}
                if fields:
                    entry["fields"] = fields  # e.g. phase (commentary / final_answer)
                messages.append(entry)
                resp.content.extend(parts)
            elif t in ("function_call", "custom_tool_call"):
                has_calls = True
                resp.content.append(_decode_call(item, t, p, None))
            elif t == "reasoning":
                resp.content.append(_decode_reasoning(item, p))
            else:
                opaque.append([len(resp.content), item])
        except GatewayError as e:
            raise _upstream_bad(e.message) from None
    resp.stop_reason = stop_reason_for(body.get("status"), body.get("incomplete_details"), has_calls)
    resp.usage = usage_from_dict(body.get("usage"))
    if messages:
        x[_X_MESSAGES] = messages
    if opaque:
        x[_X_OUTPUT_ITEMS] = opaque
    rest = {k: v for k, v in body.items() if k not in _BUILT_RESPONSE_FIELDS}
    if body.get("status") == "failed" or body.get("error") is not None:
        rest["error"] = body.get("error")
        rest["status"] = body.get("status")
    if rest:
        x[_X_RESPONSE_FIELDS] = rest
    return resp


# --------------------------------------------------------------------------------------------
# Responses: encoding
# --------------------------------------------------------------------------------------------


def encode_output(
    resp: ir.Response, response_id: str, incomplete: bool = False, namespaced: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """The output items of ``resp``: reasoning items, one message item per run of text/refusal parts,
    function calls; in IR order. Missing item ids are derived from the response id and position. When
    the response is ``incomplete`` a message that ends it is the one cut short. ``namespaced`` is the
    request's ``tool_namespaces``."""
    x = resp.extras.get(FORMAT) or {}
    messages: list[dict[str, Any]] = x.get(_X_MESSAGES) or []
    opaque = sorted(x.get(_X_OUTPUT_ITEMS, ()), key=lambda e: e[0])
    out: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []
    n_msg = 0  # message items written
    k = 0

    def flush() -> None:
        nonlocal run, n_msg
        if run:
            entry = messages[n_msg] if n_msg < len(messages) else {}
            msg_id = entry.get("id") or derived_item_id(response_id, "msg", len(out))
            item = {"id": msg_id, "type": "message", "status": "completed", "content": run, "role": "assistant"}
            item.update(entry.get("fields") or {})
            out.append(item)
            n_msg += 1
            run = []

    def run_full() -> bool:
        # adjacent message items of an upstream response stay separate items
        n = messages[n_msg].get("n") if n_msg < len(messages) else None
        return isinstance(n, int) and len(run) >= n

    for ci, p in enumerate(resp.content):
        while k < len(opaque) and opaque[k][0] <= ci:
            flush()
            out.append(opaque[k][1])
            k += 1
        if isinstance(p, (ir.Text, ir.Refusal)):
            if run and run_full():
                flush()
            if isinstance(p, ir.Text):
                run.append(_output_text(p, with_logprobs=True))
            else:
                run.append({"type": "refusal", "refusal": p.text})
        elif isinstance(p, ir.ToolCall):
            flush()
            prefix = "ctc" if p.kind == "custom" else "fc"
            item_id = p.item_id or derived_item_id(response_id, prefix, len(out))
            call = (
                p if p.id else ir.ToolCall(derived_item_id(response_id, "call", len(out)), p.name, p.arguments, p.kind)
            )
            out.append(_call_item(call, item_id, namespaced=namespaced))
        elif isinstance(p, ir.Reasoning):
            flush()
            out.append(reasoning_item(p, p.id or derived_item_id(response_id, "rs", len(out))))
    flush()
    if incomplete and out and out[-1].get("type") == "message":
        out[-1]["status"] = "incomplete"
    out.extend(e[1] for e in opaque[k:])
    return out


def response_object(
    resp: ir.Response,
    req: ir.Request,
    response_id: str,
    status: str | None = None,
    output: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A full Responses object. ``status`` overrides the one the stop reason gives (stream lifecycle
    objects are ``in_progress`` / ``failed``)."""
    rx = resp.extras.get(FORMAT) or {}
    qx = req.extras.get(FORMAT) or {}
    fields = qx.get(_X_FIELDS, {})
    if status is None:
        status, incomplete = status_for(resp.stop_reason)
    else:
        incomplete = None
    r = req.reasoning
    text: dict[str, Any] = {
        "format": _encode_text_format(req.response_format) if req.response_format else {"type": "text"}
    }
    text.update(qx.get(_X_TEXT, {}))
    tc = encode_tool_choice(req)
    obj: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": resp.created or int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": qx.get(_X_INSTRUCTIONS),
        "max_output_tokens": req.max_tokens,
        "model": resp.model or req.model,
        "output": (
            encode_output(resp, response_id, status == "incomplete", tool_namespaces(req)) if output is None else output
        ),
        "parallel_tool_calls": True if req.parallel_tool_calls is None else req.parallel_tool_calls,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": _effort(r) if r else None, "summary": r.summary if r else None},
        "store": True if req.store is None else req.store,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": text,
        "tool_choice": "auto" if tc is None else tc,
        "tools": encode_tools(req),
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "truncation": fields.get("truncation", "disabled"),
        "usage": usage_to_dict(resp.usage) if resp.usage is not None and status != "in_progress" else None,
        "user": req.user if qx.get(_X_USER_FIELD) == "user" else fields.get("user"),
        "metadata": req.metadata or {},
    }
    if req.user is not None and qx.get(_X_USER_FIELD) != "user":
        obj["safety_identifier"] = req.user
    tier = req.service_tier
    obj["service_tier"] = tier if tier in _OPENAI_SERVICE_TIERS and tier != "auto" else "default"
    for k in _ECHOED_EXTRA_FIELDS:
        if k in fields:
            obj[k] = fields[k]
    for k, v in rx.get(_X_RESPONSE_FIELDS, {}).items():
        obj[k] = v
    return obj


def encode_response(resp: ir.Response, req: ir.Request) -> dict[str, Any]:
    rid = resp.id if resp.id.startswith("resp_") else new_response_id()
    return response_object(resp, req, rid)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

# ResponseError.code values the SDK accepts on a failed response object.
_RESPONSE_ERROR_CODES = frozenset(
    {
        "server_error", "rate_limit_exceeded", "invalid_prompt", "vector_store_timeout", "invalid_image",
        "invalid_image_format", "invalid_base64_image", "invalid_image_url", "image_too_large",
        "image_too_small", "image_parse_error", "image_content_policy_violation", "invalid_image_mode",
        "image_file_too_large", "unsupported_image_media_type", "empty_image_file",
        "failed_to_download_image", "image_file_not_found",
    }
)  # fmt: skip


def stream_error_code(err: GatewayError) -> str:
    """The ``code`` of an in-stream ``error`` event."""
    if err.code:
        return err.code
    return {"rate_limit": "rate_limit_exceeded", "billing": "insufficient_quota"}.get(err.kind, err.kind)


def response_error(err: GatewayError) -> dict[str, Any]:
    """``response.error`` of a failed response; its code vocabulary is closed."""
    if err.code in _RESPONSE_ERROR_CODES:
        code = err.code
    else:
        code = "rate_limit_exceeded" if err.kind == "rate_limit" else "server_error"
    return {"code": code, "message": err.message}


def error_from_response_error(e: Any) -> GatewayError:
    """``response.error`` / an in-stream ``error`` event -> GatewayError."""
    if not isinstance(e, dict):
        return GatewayError("server_error", "upstream response failed", from_gateway=False)
    code = e.get("code")
    msg = e.get("message")
    msg = msg if isinstance(msg, str) and msg else "upstream response failed"
    param = e.get("param") if isinstance(e.get("param"), str) else None
    code_s = code if isinstance(code, str) else None
    kind = {
        "rate_limit_exceeded": "rate_limit",
        "insufficient_quota": "billing",
        "invalid_prompt": "invalid_request",
        "context_length_exceeded": "invalid_request",
        "invalid_api_key": "authentication",
        "server_is_overloaded": "overloaded",
    }.get(code_s or "")
    if kind is None:
        kind = "invalid_request" if code_s and code_s.startswith(("invalid_", "image_")) else "server_error"
    return GatewayError(kind, msg, param=param, code=code_s, from_gateway=False)  # type: ignore[arg-type]


def render_error(err: GatewayError) -> tuple[int, dict[str, Any]]:
    # The same error body as Chat Completions (protocols.md §2.4).
    return _chat.render_error(err)


def render_stream_error(err: GatewayError) -> bytes:
    """An ``error`` event for a stream whose encoder does not exist yet (so this is its first event)."""
    data = {
        "type": "error",
        "code": stream_error_code(err),
        "message": err.message,
        "param": err.param,
        "sequence_number": 0,
    }
    return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


def parse_error(status: int, body: bytes) -> GatewayError:
    return _chat.parse_error(status, body)


# --------------------------------------------------------------------------------------------
# The codec
# --------------------------------------------------------------------------------------------


def _stream() -> Any:
    # imported late: the stream module builds on this one's helpers
    import trigate.formats.openai_responses_stream as stream

    return stream


CODEC = FunctionCodec(
    name=FORMAT,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=lambda req: _stream().ResponsesStreamDecoder(req),
    stream_encoder=lambda req: _stream().ResponsesStreamEncoder(req),
    render_error=render_error,
    render_stream_error=render_stream_error,
    parse_error=parse_error,
)
