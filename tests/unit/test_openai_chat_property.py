"""Property: encode(decode(x)) == x for generated Chat requests and responses in canonical form.

Canonical form (what the encoders emit; other spellings decode to the same IR):
- ``stop`` is a list; a content array holding a single text part is a plain string;
- assistant ``content`` is null only when the turn has tool calls or a refusal, and never "";
- assistant ``refusal`` content parts are the ``refusal`` field; reasoning fields are not sent upstream;
- a streaming request carries ``stream_options.include_usage: true`` (the gateway always asks for usage);
- legacy ``functions`` / ``function`` messages become tools / tool messages (not generated here);
- responses: choice 0 only, ``usage`` details always present and ``total_tokens`` = prompt + completion;
  a function call without arguments reads "{}" (clients json-parse them).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trigate.formats.openai_chat import CODEC
from trigate.translate import ir

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(max_size=30)
nonempty_text = st.text(min_size=1, max_size=30)
ident = st.from_regex(r"[a-zA-Z0-9_-]{1,20}", fullmatch=True)
b64 = st.from_regex(r"(?:[A-Za-z0-9+/]{4}){1,6}", fullmatch=True)
media_type = st.sampled_from(["image/png", "image/jpeg", "image/webp", "application/pdf"])
small_int = st.integers(min_value=0, max_value=100_000)
json_leaf = st.none() | st.booleans() | st.integers(-1000, 1000) | text
json_obj = st.dictionaries(ident, json_leaf, max_size=3)


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


text_part = st.builds(lambda t: {"type": "text", "text": t}, text)
image_part = st.builds(
    lambda url, detail: {"type": "image_url", "image_url": _drop_none({"url": url, "detail": detail})},
    st.builds(lambda p: f"https://example.com/{p}.png", ident)
    | st.builds(lambda mt, d: f"data:{mt};base64,{d}", media_type, b64),
    _opt(st.sampled_from(["auto", "low", "high"])),
)
audio_part = st.builds(
    lambda d, f: {"type": "input_audio", "input_audio": {"data": d, "format": f}}, b64, st.sampled_from(["wav", "mp3"])
)
file_part = st.builds(
    lambda f: {"type": "file", "file": f},
    st.builds(lambda i, n: _drop_none({"file_id": f"file-{i}", "filename": n}), ident, _opt(ident))
    | st.builds(lambda mt, d, n: {"file_data": f"data:{mt};base64,{d}", "filename": n}, media_type, b64, ident)
    | st.builds(lambda d: {"file_data": d}, b64),
)
any_user_part = text_part | image_part | audio_part | file_part


def _content(single: st.SearchStrategy[Any], parts: st.SearchStrategy[Any], lone: st.SearchStrategy[Any]) -> Any:
    """A string, an array of 2+ parts, or a lone non-text part (a lone text part is canonically a string)."""
    return single | st.lists(parts, min_size=2, max_size=4) | st.builds(lambda p: [p], lone)


system_msg = st.builds(
    lambda role, content, name: _drop_none({"role": role, "content": content, "name": name}),
    st.sampled_from(["system", "developer"]),
    text | st.lists(text_part, min_size=2, max_size=3),
    _opt(ident),
)
user_msg = st.builds(
    lambda content, name: _drop_none({"role": "user", "content": content, "name": name}),
    _content(text, any_user_part, image_part | audio_part | file_part),
    _opt(ident),
)


def _tool_call(cid: str, name: str, args: str, custom: bool, sig: str | None) -> dict[str, Any]:
    if custom:
        tc: dict[str, Any] = {"id": cid, "type": "custom", "custom": {"name": name, "input": args}}
    else:
        tc = {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
    if sig is not None:
        tc["extra_content"] = {"google": {"thought_signature": sig}}
    return tc


tool_call = st.builds(_tool_call, ident, ident, text, st.booleans(), _opt(b64))
# Chat clients get "{}" for a function call without arguments, so responses never carry "".
response_tool_call = st.builds(_tool_call, ident, ident, nonempty_text, st.booleans(), _opt(b64))


@st.composite
def assistant_msg(draw: st.DrawFn) -> dict[str, Any]:
    calls = draw(st.lists(tool_call, max_size=3))
    refusal = draw(_opt(text))
    may_be_null = bool(calls) or refusal is not None
    content_s = nonempty_text | st.lists(text_part, min_size=2, max_size=3)
    content = draw(st.none() | content_s) if may_be_null else draw(content_s)
    msg = {"role": "assistant", "content": content, "name": draw(_opt(ident))}
    if refusal is not None:
        msg["refusal"] = refusal
    if calls:
        msg["tool_calls"] = calls
    return {k: v for k, v in msg.items() if v is not None or k == "content"}


tool_msg = st.builds(
    lambda cid, content: {"role": "tool", "tool_call_id": cid, "content": content},
    ident,
    text | st.lists(text_part, min_size=2, max_size=3),
)


def _tool_def(name: str, custom: bool, desc: str | None, params: Any, strict: bool | None, fmt: Any) -> dict[str, Any]:
    if custom:
        return {"type": "custom", "custom": _drop_none({"name": name, "description": desc, "format": fmt})}
    fn = _drop_none({"name": name, "description": desc, "parameters": params, "strict": strict})
    return {"type": "function", "function": fn}


@st.composite
def chat_request(draw: st.DrawFn) -> dict[str, Any]:
    messages = draw(st.lists(system_msg | user_msg | assistant_msg() | tool_msg, min_size=1, max_size=6))
    body: dict[str, Any] = {"model": draw(ident), "messages": messages}
    optional = {
        "max_completion_tokens": small_int,
        "temperature": st.floats(0, 2, allow_nan=False),
        "top_p": st.floats(0, 1, allow_nan=False),
        "frequency_penalty": st.floats(-2, 2, allow_nan=False),
        "presence_penalty": st.floats(-2, 2, allow_nan=False),
        "seed": st.integers(-(2**40), 2**40),
        "n": st.integers(1, 4),
        "stop": st.lists(nonempty_text, min_size=1, max_size=4),
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}])
        | st.builds(
            lambda n, s, strict, d: {
                "type": "json_schema",
                "json_schema": _drop_none({"name": n, "schema": s, "strict": strict, "description": d}),
            },
            ident,
            _opt(json_obj),
            _opt(st.booleans()),
            _opt(text),
        ),
        "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh"]),
        "metadata": st.dictionaries(ident, text, max_size=3),
        "service_tier": st.sampled_from(["auto", "default", "flex", "priority"]),
        "store": st.booleans(),
        "logprobs": st.booleans(),
        "prompt_cache_key": ident,
        "x_vendor_option": json_obj,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    who = draw(st.sampled_from([None, "user", "safety_identifier"]))
    if who:
        body[who] = draw(ident)
    if draw(st.booleans()):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    names = draw(st.lists(ident, max_size=4, unique=True))
    if names:
        tools = [
            draw(
                st.builds(
                    _tool_def,
                    st.just(n),
                    st.booleans(),
                    _opt(text),
                    _opt(json_obj),
                    _opt(st.booleans()),
                    _opt(json_obj),
                )
            )
            for n in names
        ]
        body["tools"] = tools
        choice = draw(st.sampled_from(["absent", "auto", "none", "required", "named"]))
        if choice == "named":
            t = draw(st.sampled_from(tools))
            kind = t["type"]
            body["tool_choice"] = {"type": kind, kind: {"name": t[kind]["name"]}}
        elif choice != "absent":
            body["tool_choice"] = choice
        if draw(st.booleans()):
            body["parallel_tool_calls"] = draw(st.booleans())
    return body


@SETTINGS
@given(chat_request())
def test_request_round_trip(body: dict[str, Any]) -> None:
    assert CODEC.encode_request(CODEC.decode_request(body), body["model"]) == body


@st.composite
def chat_response(draw: st.DrawFn) -> dict[str, Any]:
    content = draw(_opt(text))
    msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": draw(_opt(text))}
    if content is not None and draw(st.booleans()):
        msg["annotations"] = draw(
            st.lists(
                st.builds(
                    lambda u, a, b: {
                        "type": "url_citation",
                        "url_citation": {"url": f"https://x/{u}", "title": u, "start_index": a, "end_index": a + b},
                    },
                    ident,
                    small_int,
                    small_int,
                ),
                max_size=2,
            )
        )
    reasoning = draw(st.sampled_from(["none", "text", "signed", "redacted"]))
    if reasoning != "none" and reasoning != "redacted":
        msg["reasoning_content"] = draw(nonempty_text)
    if reasoning == "signed":
        msg["reasoning_signature"] = draw(b64)
    if reasoning == "redacted":
        msg["reasoning_redacted"] = draw(b64)
    calls = draw(st.lists(response_tool_call, max_size=3))
    if calls:
        msg["tool_calls"] = calls
    prompt, completion = draw(small_int), draw(small_int)
    pd: dict[str, Any] = {"cached_tokens": draw(st.integers(0, prompt))}
    cd: dict[str, Any] = {"reasoning_tokens": draw(st.integers(0, completion))}
    if draw(st.booleans()):
        pd["cache_write_tokens"] = draw(st.integers(1, 1000))
    if draw(st.booleans()):
        pd["audio_tokens"] = draw(small_int)
        cd["audio_tokens"] = draw(small_int)
    if draw(st.booleans()):
        cd["accepted_prediction_tokens"] = draw(small_int)
    body: dict[str, Any] = {
        "id": "chatcmpl-" + draw(ident),
        "object": "chat.completion",
        "created": draw(st.integers(1, 2**31)),
        "model": draw(ident),
        "choices": [
            {
                "index": 0,
                "message": msg,
                "finish_reason": draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"])),
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": pd,
            "completion_tokens_details": cd,
        },
    }
    if draw(st.booleans()):
        body["system_fingerprint"] = "fp_" + draw(ident)
    if draw(st.booleans()):
        body["service_tier"] = draw(st.sampled_from(["default", "flex"]))
    return body


REQ = ir.Request(model="m", messages=[ir.Message("user", [ir.Text("x")])])


@SETTINGS
@given(chat_response())
def test_response_round_trip(body: dict[str, Any]) -> None:
    assert CODEC.encode_response(CODEC.decode_response(body), REQ) == body


@SETTINGS
@given(st.recursive(json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3), max_leaves=20))
def test_garbage_requests_only_raise_gateway_errors(junk: Any) -> None:
    from trigate.errors import GatewayError

    for body in (
        junk,
        {"model": "m", "messages": junk},
        {"model": "m", "messages": [junk]},
        {"model": "m", "messages": [{"role": "user", "content": junk}]},
    ):
        try:
            CODEC.decode_request(body)
        except GatewayError as e:
            assert e.kind == "invalid_request" and e.status == 400
