"""The fake upstream's Amazon Bedrock Runtime endpoints: Converse and ConverseStream.

Streams are real AWS event-stream frames (``application/vnd.amazon.eventstream``), one per event, shaped
like the service's: messageStart, text and reasoning blocks opened by their first delta (no
contentBlockStart), toolUse blocks with contentBlockStart and input fragments, messageStop, then metadata
with usage. Requests are authenticated with SigV4 (checked with the known secret) or a Bedrock API key
(``Authorization: Bearer``), and validated the way the service validates what translators most often get
wrong: alternation, first turn, tool result ids, toolConfig with tool blocks, blank text, ``outputConfig``
members Converse does not have (it has only ``textFormat``), Claude's ``tool_choice`` in the model fields
without a ``type``. ``tool_choice.disable_parallel_tool_use`` there turns parallel tool calls off.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio

from trigate.mock.cloud_auth import signing_key_id
from trigate.mock.replies import Conversation, Reply, plan_reply
from trigate.mock.state import Fault, MockState, SeenRequest
from trigate.upstream.sigv4 import verify_request
from trigate.wire.eventstream import encode_message

EVENTSTREAM = "application/vnd.amazon.eventstream"

ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}

_TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_DOC_NAME = re.compile(r"[A-Za-z0-9\-()\[\]]+(\s[A-Za-z0-9\-()\[\]]+)*")
_BLOCK_KINDS = frozenset(
    {
        "text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent", "cachePoint",
        "reasoningContent", "citationsContent", "searchResult",
    }
)  # fmt: skip
_IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})


def error_type_for(status: int, error_type: str | None = None) -> str:
    name = error_type or ERROR_TYPES.get(status, "InternalServerException")
    return name[:1].upper() + name[1:]


def error_response(
    status: int, message: str, error_type: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    etype = error_type_for(status, error_type)
    hdrs = {
        "x-amzn-ErrorType": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-RequestId": str(uuid.uuid4()),
        **(headers or {}),
    }
    return Response(orjson.dumps({"message": message}), status=status, content_type="application/json", headers=hdrs)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _one(block: Any) -> tuple[str, Any] | None:
    if isinstance(block, dict) and len(block) == 1:
        return next(iter(block.items()))
    return None


def validate(body: Any) -> str | None:
    """The checks the real service makes that translators most often get wrong; the message, or None."""
    try:
        return _validate(body)
    except (TypeError, AttributeError, KeyError):
        # Wrong JSON types somewhere: the service answers these with a generic 400 as well.
        return "Malformed input request, please reformat your input and try again."


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Malformed input request, please reformat your input and try again."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return (
            "A conversation must start with a user message. Try again with a conversation that starts with a "
            "user message."
        )
    has_tool_blocks = False
    pending: list[str] = []  # toolUse ids of the previous assistant turn
    prev_role = None
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            return (
                f"1 validation error detected: Value at 'messages.{i + 1}.member.role' failed to satisfy "
                "constraint: Member must satisfy enum value set: [user, assistant]"
            )
        if i == 0 and role != "user":
            return (
                "A conversation must start with a user message. Try again with a conversation that starts "
                "with a user message."
            )
        if role == prev_role:
            return (
                "A conversation must alternate between user and assistant roles. Make sure the conversation "
                "alternates between user and assistant roles and try again."
            )
        prev_role = role
        content = m.get("content")
        if not isinstance(content, list) or not content:
            return (
                f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock object "
                "to the content field and try again."
            )
        results: list[str] = []
        uses: list[str] = []
        for j, block in enumerate(content):
            kv = _one(block)
            if kv is None or kv[0] not in _BLOCK_KINDS:
                return f"The ContentBlock object at messages.{i}.content.{j} must set exactly one supported field."
            kind, v = kv
            where = f"messages.{i}.content.{j}"
            if kind == "text" and (not isinstance(v, str) or not v.strip()):
                return (
                    f"The text field in the ContentBlock object at {where} is blank. Add text to the text "
                    "field, and try again."
                )
            if kind == "image":
                if (
                    not isinstance(v, dict)
                    or v.get("format") not in _IMAGE_FORMATS
                    or not isinstance((v.get("source") or {}).get("bytes"), str)
                ):
                    return f"The image at {where} must have a png, jpeg, gif or webp format and inline bytes."
            if kind == "document":
                name = v.get("name") if isinstance(v, dict) else None
                if not isinstance(name, str) or not _DOC_NAME.fullmatch(name):
                    return (
                        f"The document name at {where} can only contain alphanumeric characters, whitespace "
                        "characters (no more than one in a row), hyphens, parentheses, and square brackets."
                    )
            if kind == "toolUse":
                has_tool_blocks = True
                if role != "assistant":
                    return f"The toolUse block at {where} must be in an assistant message."
                tid = v.get("toolUseId") if isinstance(v, dict) else None
                if not isinstance(tid, str) or not _TOOL_USE_ID.fullmatch(tid):
                    return (
                        f"1 validation error detected: Value at '{where}.toolUse.toolUseId' failed to satisfy "
                        "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.:-]+"
                    )
                if not isinstance(v.get("input"), dict):
                    return f"The toolUse input at {where} must be a JSON object."
                uses.append(tid)
            if kind == "toolResult":
                has_tool_blocks = True
                if role != "user":
                    return f"The toolResult block at {where} must be in a user message."
                results.append(v.get("toolUseId") if isinstance(v, dict) else None)
                if not isinstance(v, dict) or not isinstance(v.get("content"), list):
                    return f"The toolResult block at {where} must have content."
                for c in v["content"]:
                    ckv = _one(c)
                    if ckv is not None and ckv[0] == "text" and not str(ckv[1]).strip():
                        return f"The text field in the toolResult content at {where} is blank."
        if role == "user" and (pending or results):
            missing = [t for t in pending if t not in results]
            extra = [t for t in results if t not in pending]
            if missing:
                return f"Expected toolResult blocks at messages.{i}.content for the following Ids: {', '.join(missing)}"
            if extra:
                return (
                    f"The toolResult blocks at messages.{i}.content contain ids that don't match any toolUse "
                    f"block of the previous assistant turn: {', '.join(map(str, extra))}"
                )
        pending = uses if role == "assistant" else []
    tool_config = body.get("toolConfig")
    if has_tool_blocks and tool_config is None:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    if tool_config is not None:
        tools = tool_config.get("tools") if isinstance(tool_config, dict) else None
        if not isinstance(tools, list) or not tools:
            return (
                "1 validation error detected: Value at 'toolConfig.tools' failed to satisfy constraint: "
                "Member must have length greater than or equal to 1"
            )
        names = []
        for k, t in enumerate(tools):
            kv = _one(t)
            if kv is None or kv[0] not in ("toolSpec", "cachePoint", "systemTool"):
                return f"The tool at toolConfig.tools.{k} must set exactly one of toolSpec, systemTool, cachePoint."
            if kv[0] == "toolSpec":
                spec = kv[1]
                name = spec.get("name") if isinstance(spec, dict) else None
                if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
                    return (
                        f"1 validation error detected: Value at 'toolConfig.tools.{k + 1}.member.toolSpec.name' "
                        "failed to satisfy constraint: Member must satisfy regular expression pattern: "
                        "[a-zA-Z0-9_-]+"
                    )
                if not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
                    return f"The tool {name} must have an inputSchema with a json schema."
                names.append(name)
        choice = tool_config.get("toolChoice")
        if choice is not None:
            ckv = _one(choice)
            if ckv is None or ckv[0] not in ("auto", "any", "tool"):
                return "toolChoice must set exactly one of auto, any, tool."
            if ckv[0] == "tool" and (ckv[1] or {}).get("name") not in names:
                return "The tool specified in toolChoice is not defined in toolConfig.tools."
    for j, s in enumerate(body.get("system") or []):
        kv = _one(s)
        if kv is not None and kv[0] == "text" and (not isinstance(kv[1], str) or not kv[1].strip()):
            return f"The text field in the SystemContentBlock object at system.{j} is blank."
    inference = body.get("inferenceConfig") or {}
    max_tokens = inference.get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return "The maximum tokens you requested must be at least 1."
    temperature = inference.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "The value of temperature must be between 0 and 1."
    output_config = body.get("outputConfig")
    if isinstance(output_config, dict):
        for k in output_config:
            if k != "textFormat":
                return f"Malformed input request: #/outputConfig: extraneous key [{k}] is not permitted"
    amrf = body.get("additionalModelRequestFields") or {}
    tool_choice = amrf.get("tool_choice")
    if tool_choice is not None and (not isinstance(tool_choice, dict) or "type" not in tool_choice):
        return "The model returned the following errors: tool_choice.type: Field required"
    thinking = amrf.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens", 0)
        if budget < 1024:
            return "thinking.budget_tokens: Input should be greater than or equal to 1024"
        if max_tokens is not None and budget >= max_tokens:
            return "`max_tokens` must be greater than `thinking.budget_tokens`."
        if temperature is not None and temperature != 1:
            return "`temperature` may only be set to 1 when thinking is enabled."
    return None


# --------------------------------------------------------------------------------------------
# Conversation
# --------------------------------------------------------------------------------------------


def _block_text(block: Any) -> str:
    kv = _one(block)
    if kv is None:
        return ""
    kind, v = kv
    if kind == "text":
        return v if isinstance(v, str) else ""
    if kind == "json":
        return orjson.dumps(v).decode()
    if kind == "toolUse" and isinstance(v, dict):
        return orjson.dumps(v.get("input", {})).decode()
    if kind == "toolResult" and isinstance(v, dict):
        return " ".join(_block_text(c) for c in v.get("content") or [])
    return ""


def conversation(body: dict[str, Any]) -> Conversation:
    conv = Conversation()
    messages = body.get("messages") or []
    conv.messages = len(messages)
    system = " ".join(_block_text(b) for b in body.get("system") or [])
    if system:
        conv.texts.append(system)
    for m in messages:
        conv.texts.append(" ".join(_block_text(b) for b in m.get("content") or []))
    if messages:
        last = messages[-1]
        results = [b["toolResult"] for b in last.get("content") or [] if isinstance(b, dict) and "toolResult" in b]
        if last.get("role") == "user" and results:
            conv.last_role = "tool"
            conv.tool_results = [" ".join(_block_text(c) for c in r.get("content") or []) for r in results]
    for m in reversed(messages):
        if m.get("role") != "user":
            continue
        text = " ".join(
            b["text"] for b in m.get("content") or [] if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
        if text:
            conv.last_user_text = text
            break
    tool_config = body.get("toolConfig") or {}
    conv.tools = [
        {"name": t["toolSpec"]["name"], "parameters": (t["toolSpec"].get("inputSchema") or {}).get("json")}
        for t in tool_config.get("tools") or []
        if isinstance(t, dict) and "toolSpec" in t
    ]
    choice = tool_config.get("toolChoice")
    if "toolConfig" in body and choice is None:
        conv.tool_choice = "auto"
    elif isinstance(choice, dict):
        if "any" in choice:
            conv.tool_choice = "required"
        elif "tool" in choice:
            conv.tool_choice, conv.forced_tool = "tool", choice["tool"].get("name")
    conv.max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    amrf = body.get("additionalModelRequestFields") or {}
    thinking = amrf.get("thinking") or {}
    conv.thinking = thinking.get("type") in ("enabled", "adaptive")
    # Claude's own tool_choice, passed through by Bedrock: the only way to turn parallel calls off.
    conv.parallel = not (amrf.get("tool_choice") or {}).get("disable_parallel_tool_use", False)
    return conv


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _signature(text: str) -> str:
    return "sig_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def usage_of(reply: Reply) -> dict[str, int]:
    return {
        "inputTokens": reply.prompt_tokens,
        "outputTokens": reply.completion_tokens,
        "totalTokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _stop_reason(reply: Reply) -> str:
    return {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}[reply.finish]


def _tool_ids(reply: Reply) -> list[str]:
    base = uuid.uuid4().hex[:20]
    return [f"tooluse_{base}{i:02d}" for i in range(len(reply.calls))]


def converse_body(reply: Reply) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.thinking_tokens:
        content.append(
            {"reasoningContent": {"reasoningText": {"text": reply.thinking, "signature": _signature(reply.thinking)}}}
        )
    if reply.text:
        content.append({"text": reply.text})
    for tid, call in zip(_tool_ids(reply), reply.calls, strict=True):
        content.append({"toolUse": {"toolUseId": tid, "name": call.name, "input": orjson.loads(call.arguments)}})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _stop_reason(reply),
        "usage": usage_of(reply),
        "metrics": {"latencyMs": 42},
    }


def _frame(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps(payload))


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_message(headers, orjson.dumps({"message": message}))


def stream_frames(reply: Reply) -> list[bytes]:
    out = [_frame("messageStart", {"role": "assistant"})]
    index = 0
    if reply.thinking_tokens:
        out += [
            _frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": t}}})
            for t in reply.thinking_tokens
        ]
        out.append(
            _frame(
                "contentBlockDelta",
                {"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": _signature(reply.thinking)}}},
            )
        )
        out.append(_frame("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    if reply.text_tokens:
        # Like the service: a text block opens with its first delta, and deltas carry a padding field.
        out += [
            _frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": t}, "p": "abcdef"})
            for t in reply.text_tokens
        ]
        out.append(_frame("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for tid, call in zip(_tool_ids(reply), reply.calls, strict=True):
        out.append(
            _frame(
                "contentBlockStart",
                {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": tid, "name": call.name}}},
            )
        )
        args = call.arguments
        out += [
            _frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": args[j : j + 8]}}})
            for j in range(0, len(args), 8)
        ]
        out.append(_frame("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    out.append(_frame("messageStop", {"stopReason": _stop_reason(reply)}))
    out.append(_frame("metadata", {"usage": usage_of(reply), "metrics": {"latencyMs": 42}}))
    return out


async def stream(state: MockState, seen: SeenRequest, reply: Reply, fault: Fault | None) -> AsyncIterator[bytes]:
    delay = state.token_delay_ms / 1000
    try:
        for n, piece in enumerate(stream_frames(reply)):
            if fault and fault.drop_after is not None and n >= fault.drop_after:
                raise ConnectionAbortedError("mock: injected connection drop")
            if fault and fault.error_after is not None and n >= fault.error_after:
                etype = fault.error_type or "serviceUnavailableException"
                yield exception_frame(etype[:1].lower() + etype[1:], fault.message)
                return
            if delay and n > 0:
                await trio.sleep(delay)
            yield piece
        seen.usage = usage_of(reply)
        seen.finished = time.monotonic()
    except trio.Cancelled:
        seen.disconnected = time.monotonic()
        raise


# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------


def _auth_problem(state: MockState, credentials: tuple[str, str] | None, raw: bytes) -> Response | None:
    auth = request.headers.get("authorization", "")
    if state.api_key is not None and auth == f"Bearer {state.api_key}":
        return None
    if credentials is None:
        if state.api_key is None:
            return None
        return error_response(
            403, "The security token included in the request is invalid.", "UnrecognizedClientException"
        )
    if auth.startswith("Bearer "):
        return error_response(
            403, "The security token included in the request is invalid.", "UnrecognizedClientException"
        )
    # Keys the mock's credential endpoints handed out (trigate.mock.cloud_auth) sign too, with their token.
    key_id = signing_key_id(auth)
    issued = state.cloud.aws_secret(key_id) if key_id else None
    if issued is not None:
        if request.headers.get("x-amz-security-token") != issued[1]:
            return error_response(403, "The security token included in the request is invalid.",
                                  "UnrecognizedClientException")
        credentials = (key_id, issued[0])
    # The signature covers the path exactly as sent (still percent-encoded), so use the raw one.
    raw_path = request.scope.get("raw_path") or request.path.encode()
    query = request.scope.get("query_string") or b""
    url = f"{request.scheme}://{request.headers.get('host', '')}{raw_path.decode('latin-1')}"
    if query:
        url += "?" + query.decode("latin-1")
    problem = verify_request(
        request.method, url, dict(request.headers.items()), raw, access_key=credentials[0], secret_key=credentials[1]
    )
    if problem is not None:
        return error_response(403, problem.message, problem.error_type)
    return None


def register(app: QuartTrio, state: MockState, *, credentials: tuple[str, str] | None = None) -> None:
    """Add the Bedrock Runtime routes to a mock app. ``credentials`` (access key id, secret) turns SigV4
    checking on; ``state.api_key`` accepts ``Authorization: Bearer <key>`` (Bedrock API keys) too."""

    async def handle(model_id: str, streaming: bool) -> Response:
        raw = await request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body: Any = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        seen = state.record(request.path, headers, body)
        fault = state.take_fault(request.path, model_id)
        latency = state.latency_ms + ((fault.latency_ms or 0) if fault else 0)
        if latency:
            await trio.sleep(latency / 1000)
        denied = _auth_problem(state, credentials, raw)
        if denied is not None:
            return denied
        if fault and fault.status:
            return error_response(fault.status, fault.message, fault.error_type, fault.headers)
        if fault and fault.malformed:
            if streaming:
                frame = bytearray(_frame("messageStart", {"role": "assistant"}))
                frame[-1] ^= 0xFF  # a message CRC that does not match
                return Response(bytes(frame), content_type=EVENTSTREAM)
            return Response(b'{"output": {"message": ', status=200, content_type="application/json")
        problem = validate(body)
        if problem:
            return error_response(400, problem, "ValidationException")
        conv = conversation(body)
        reply = plan_reply(conv, state.take_script(conv, model_id))
        rid = {"x-amzn-RequestId": str(uuid.uuid4())}
        if streaming:
            return Response(stream(state, seen, reply, fault), content_type=EVENTSTREAM, headers=rid)
        seen.usage = usage_of(reply)
        seen.finished = time.monotonic()
        return Response(orjson.dumps(converse_body(reply)), content_type="application/json", headers=rid)

    @app.post("/model/<path:model_id>/converse")
    async def bedrock_converse(model_id: str) -> Response:
        return await handle(model_id, False)

    @app.post("/model/<path:model_id>/converse-stream")
    async def bedrock_converse_stream(model_id: str) -> Response:
        return await handle(model_id, True)

    @app.post("/model/<path:model_id>/count-tokens")
    async def bedrock_count_tokens(model_id: str) -> Response:
        # CountTokens: {"input": {"converse": {...Converse fields}}} -> {"inputTokens": N}
        raw = await request.get_data()
        state.record(request.path, {k.lower(): v for k, v in request.headers.items()}, raw)
        denied = _auth_problem(state, credentials, raw)
        if denied is not None:
            return denied
        try:
            converse = orjson.loads(raw)["input"]["converse"]
            conv = conversation({"messages": converse["messages"], "system": converse.get("system", [])})
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return error_response(400, "input.converse: required", "ValidationException")
        return Response(orjson.dumps({"inputTokens": plan_reply(conv).prompt_tokens}),
                        content_type="application/json")


__all__ = ["conversation", "converse_body", "error_response", "register", "stream_frames", "usage_of", "validate"]
