"""The sans-IO parts of the Realtime relay: subprotocol auth, usage accounting, client-event hooks,
close codes and settings."""

from __future__ import annotations

import json

import attrs
import orjson
import pytest

from trigate.api.realtime import RealtimeExchange, _frame_size
from trigate.config import Config
from trigate.policies.auth import ANONYMOUS, Principal
from trigate.realtime import closing, usage
from trigate.realtime.hooks import HookChain, Reject, SessionModelPolicy, error_event
from trigate.realtime.settings import RealtimeSettings, realtime_settings
from trigate.realtime.subprotocols import client_credential, parse_offer, wants_beta
from trigate.realtime.usage import UsageMeter, tapped_type
from trigate.routing import Target

KEY = "sk-client-secret-abc"


# -- subprotocols --------------------------------------------------------------------------------


def test_browser_offer_yields_key_and_options_and_answers_realtime_only() -> None:
    offer = parse_offer(["realtime", f"openai-insecure-api-key.{KEY}", "openai-beta.realtime-v1",
                         "openai-organization.org-1", "openai-project.proj-9"])
    assert offer.api_key == KEY and offer.beta and offer.organization == "org-1" and offer.project == "proj-9"
    assert offer.selected == "realtime"
    assert KEY not in repr(offer)  # the key is kept out of reprs (and so out of logged objects)


def test_offer_without_realtime_selects_nothing() -> None:
    # A browser aborts when the server picks a protocol it did not offer: never answer one then.
    offer = parse_offer([f"openai-insecure-api-key.{KEY}"])
    assert offer.selected is None and offer.api_key == KEY and not offer.beta
    assert parse_offer([]).selected is None


@pytest.mark.parametrize(("headers", "offer", "beta"), [
    ({"openai-beta": "realtime=v1"}, [], True),
    ({"openai-beta": "assistants=v2, realtime=v1"}, [], True),
    ({"openai-beta": "assistants=v2"}, [], False),
    ({}, ["realtime", "openai-beta.realtime-v1"], True),
    ({}, ["realtime"], False),
])
def test_beta_is_asked_for_by_header_or_subprotocol(headers: dict[str, str], offer: list[str], beta: bool) -> None:
    assert wants_beta(headers, parse_offer(offer)) is beta


def test_credential_precedence() -> None:
    sub = parse_offer(["realtime", "openai-insecure-api-key.from-subprotocol"])
    assert client_credential({"authorization": "Bearer from-header"}, sub) == "from-header"
    assert client_credential({"api-key": "azure-style"}, sub) == "azure-style"
    assert client_credential({}, sub) == "from-subprotocol"
    assert client_credential({}, parse_offer(["realtime"])) is None


# -- usage ---------------------------------------------------------------------------------------


def _done(rid: str, status: str = "completed", **u: int) -> str:
    usage_obj = {
        "total_tokens": u.get("inp", 0) + u.get("out", 0), "input_tokens": u.get("inp", 0),
        "output_tokens": u.get("out", 0),
        "input_token_details": {"text_tokens": u.get("inp_text", 0), "audio_tokens": u.get("inp_audio", 0),
                                "image_tokens": 0, "cached_tokens": u.get("cached", 0),
                                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": u.get("cached_audio", 0)}},
        "output_token_details": {"text_tokens": u.get("out_text", 0), "audio_tokens": u.get("out_audio", 0)},
    }
    return json.dumps({"type": "response.done", "event_id": "ev", "response": {
        "id": rid, "object": "realtime.response", "status": status, "output": [], "usage": usage_obj}})


@pytest.mark.parametrize(("frame", "expected"), [
    ('{"type":"response.done","response":{}}', "response.done"),
    ('{ "type" : "response.created" }', "response.created"),
    ('{"type":"conversation.item.input_audio_transcription.completed"}', usage.TRANSCRIPTION_COMPLETED),
    ('{"type":"response.output_audio.delta","delta":"AAAA"}', None),
    ('{"type":"response.output_audio_transcript.delta","delta":"say response.done"}', None),
    ('{"event_id":"e","type":"response.done"}', "response.done"),  # type not first: substring fallback
    (b'{"type":"response.done"}', "response.done"),
    (b'{"type":"session.updated"}', None),
    (b'{"event_id":"e","type":"response.created"}', "response.created"),
])
def test_tapped_type(frame: str | bytes, expected: str | None) -> None:
    assert tapped_type(frame) == expected


def test_meter_sums_every_finished_response_including_cancelled_and_failed() -> None:
    m = UsageMeter()
    for frame in (
        '{"type":"response.created","response":{"id":"r1"}}',
        _done("r1", inp=100, out=50, inp_text=40, inp_audio=60, cached=64, cached_audio=10, out_text=20, out_audio=30),
        '{"type":"response.created","response":{"id":"r2"}}',
        _done("r2", "cancelled", inp=10, out=3, inp_text=10, out_text=3),
        _done("r3", "failed", inp=7, out=1, inp_audio=7, out_audio=1),
        _done("r4", "incomplete", inp=5, out=9, inp_text=5, out_text=9),
    ):
        m.feed(frame)
    u = m.usage
    assert (u.responses, u.input_tokens, u.output_tokens, u.cached_tokens) == (4, 122, 63, 64)
    assert (u.input_text_tokens, u.input_audio_tokens, u.cached_audio_tokens) == (55, 67, 10)
    assert (u.output_text_tokens, u.output_audio_tokens) == (32, 31)
    assert u.statuses == {"completed": 1, "cancelled": 1, "failed": 1, "incomplete": 1}
    assert m.unfinished == 0
    ir_usage = u.to_ir()
    assert (ir_usage.input_tokens, ir_usage.output_tokens, ir_usage.cache_read_tokens) == (122, 63, 64)
    assert (ir_usage.input_audio_tokens, ir_usage.output_audio_tokens) == (67, 31)


def test_meter_counts_a_response_once_and_reports_unfinished_ones() -> None:
    m = UsageMeter()
    m.feed('{"type":"response.created","response":{"id":"r1"}}')
    m.feed('{"type":"response.created","response":{"id":"r2"}}')
    m.feed(_done("r1", inp=10, out=10))
    m.feed(_done("r1", inp=10, out=10))  # a repeat must not be billed twice
    assert m.usage.input_tokens == 10 and m.usage.responses == 1
    assert m.unfinished == 1  # r2 never finished: its usage is unknown, not zero


def test_meter_transcription_usage_by_tokens_and_by_duration() -> None:
    m = UsageMeter()
    m.feed(json.dumps({"type": usage.TRANSCRIPTION_COMPLETED, "item_id": "i", "transcript": "hi", "usage": {
        "type": "tokens", "input_tokens": 12, "output_tokens": 3, "total_tokens": 15}}))
    m.feed(json.dumps({"type": usage.TRANSCRIPTION_COMPLETED, "usage": {"type": "duration", "seconds": 2.5}}))
    u = m.usage
    assert (u.transcriptions, u.transcription_input_tokens, u.transcription_output_tokens) == (2, 12, 3)
    assert u.transcription_seconds == 2.5
    assert u.input_tokens == 0  # transcription is billed apart from the session's responses


def test_meter_ignores_junk() -> None:
    m = UsageMeter()
    for frame in ('{"type":"response.done"', '{"type":"response.done","response":"x"}', "[1,2]",
                  '{"type":"response.done","response":{"id":"r","usage":{"input_tokens":-5,"output_tokens":true}}}'):
        m.feed(frame)
    assert m.usage.input_tokens == 0 and m.usage.output_tokens == 0


def test_meter_parses_only_tapped_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[object] = []
    real = orjson.loads

    def counting(data: object) -> object:
        parsed.append(data)
        return real(data)  # type: ignore[arg-type]

    monkeypatch.setattr(usage.orjson, "loads", counting)
    m = UsageMeter()
    delta = '{"type":"response.output_audio.delta","response_id":"r","delta":"' + "QUFB" * 4000 + '"}'
    for _ in range(50):
        m.feed(delta)
    m.feed(_done("r", inp=1, out=1))
    assert len(parsed) == 1


# -- hooks ---------------------------------------------------------------------------------------

ROUTES = {"gpt-realtime": Target("openai", "gpt-realtime"), "fast": Target("openai", "gpt-realtime-mini"),
          "claude-x": Target("anthropic", "claude-x")}


def _chain(principal: Principal = ANONYMOUS) -> HookChain:
    return HookChain([SessionModelPolicy(principal, ROUTES.get, "openai")])


def _update(model: str | None = None, event_id: str | None = "evt_1", **session: object) -> str:
    s = dict(session)
    if model is not None:
        s["model"] = model
    ev: dict[str, object] = {"type": "session.update", "session": {"type": "realtime", **s}}
    if event_id:
        ev["event_id"] = event_id
    return json.dumps(ev)


def test_disallowed_model_is_rejected_with_a_realtime_error_event() -> None:
    principal = Principal(key_id="team-a", allowed_models=("gpt-realtime-mini*", "fast"))
    verdict = _chain(principal).inspect(_update("gpt-realtime"))
    assert verdict.frame is None and verdict.error is not None
    err = json.loads(verdict.error)
    assert err["type"] == "error" and err["event_id"].startswith("event_")
    assert err["error"] == {"type": "invalid_request_error", "code": "model_not_allowed",
                            "message": "this key may not use model 'gpt-realtime'", "param": "session.model",
                            "event_id": "evt_1"}


def test_allowed_alias_is_rewritten_to_the_upstream_name() -> None:
    principal = Principal(key_id="team-a", allowed_models=("fast",))
    frame = _update("fast", instructions="hi")
    verdict = _chain(principal).inspect(frame)
    assert verdict.error is None and verdict.rewritten
    assert isinstance(verdict.frame, str)
    out = json.loads(verdict.frame)
    assert out["session"] == {"type": "realtime", "instructions": "hi", "model": "gpt-realtime-mini"}
    assert out["event_id"] == "evt_1"


def test_same_name_and_no_model_are_forwarded_byte_for_byte() -> None:
    for frame in (_update("gpt-realtime"), _update(None, instructions="x")):
        verdict = _chain().inspect(frame)
        assert verdict.frame is frame and not verdict.rewritten


@pytest.mark.parametrize(("model", "code"), [("nope", "model_not_found"),
                                             ("claude-x", "model_not_available_in_session")])
def test_unroutable_or_other_provider_model_is_rejected(model: str, code: str) -> None:
    verdict = _chain().inspect(_update(model, event_id=None))
    assert verdict.error is not None
    err = json.loads(verdict.error)["error"]
    assert err["code"] == code and err["event_id"] is None


def test_transcription_models_are_checked_against_the_allow_list() -> None:
    principal = Principal(key_id="k", allowed_models=("gpt-realtime", "gpt-4o-mini-transcribe"))
    chain = _chain(principal)
    ga = _update(audio={"input": {"transcription": {"model": "whisper-1"}}})
    err = json.loads(chain.inspect(ga).error or "{}")["error"]
    assert err["code"] == "model_not_allowed" and err["param"] == "session.audio.input.transcription.model"
    beta = json.dumps({"type": "transcription_session.update",
                       "session": {"input_audio_transcription": {"model": "whisper-1"}}})
    assert chain.inspect(beta).error is not None
    ok = _update(audio={"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}})
    assert chain.inspect(ok).error is None


def test_escaped_type_names_cannot_slip_past() -> None:
    principal = Principal(key_id="k", allowed_models=("fast",))
    sneaky = '{"type":"session\\u002eupdate","session":{"model":"gpt-realtime"}}'
    assert json.loads(sneaky)["type"] == "session.update"
    assert _chain(principal).inspect(sneaky).error is not None
    # the same in a binary frame
    assert _chain(principal).inspect(sneaky.encode()).error is not None


def test_audio_appends_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    import trigate.realtime.hooks as hooks_mod

    def boom(data: object) -> object:
        raise AssertionError("parsed an audio frame")

    monkeypatch.setattr(hooks_mod.orjson, "loads", boom)
    frame = json.dumps({"type": "input_audio_buffer.append", "audio": "QUFB" * 1000})
    assert _chain().inspect(frame).frame is frame


def test_hook_chain_edge_frames() -> None:
    chain = _chain()
    for frame in ("not json session.update", '["session.update"]', '{"type":["session.update"]}',
                  '{"type":"session.update","session":"x"}'):
        assert chain.inspect(frame).frame == frame
    assert not HookChain([])
    assert HookChain([]).inspect("x").frame == "x"


def test_binary_rewrite_stays_binary() -> None:
    verdict = _chain().inspect(_update("fast").encode())
    assert isinstance(verdict.frame, bytes) and json.loads(verdict.frame)["session"]["model"] == "gpt-realtime-mini"


def test_a_custom_hook_sees_the_previous_rewrite() -> None:
    class CapTokens:
        event_types = frozenset({"session.update"})

        def inspect(self, event: dict) -> object:
            from trigate.realtime.hooks import Rewrite

            return Rewrite({**event, "session": {**event["session"], "max_output_tokens": 100}})

    class Deny:
        event_types = frozenset({"response.create"})

        def inspect(self, event: dict) -> object:
            return Reject("budget_exhausted", "no more responses today")

    chain = HookChain([SessionModelPolicy(ANONYMOUS, ROUTES.get, "openai"), CapTokens(), Deny()])  # type: ignore[list-item]
    out = json.loads(chain.inspect(_update("fast")).frame or "{}")
    assert out["session"]["model"] == "gpt-realtime-mini" and out["session"]["max_output_tokens"] == 100
    err = json.loads(chain.inspect('{"type":"response.create","event_id":"c9"}').error or "{}")
    assert err["error"]["code"] == "budget_exhausted" and err["error"]["event_id"] == "c9"


def test_error_event_shape() -> None:
    ev = json.loads(error_event("c", "m"))
    assert set(ev) == {"type", "event_id", "error"}
    assert ev["error"] == {"type": "invalid_request_error", "code": "c", "message": "m", "param": None,
                           "event_id": None}


# -- closing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "reason", "client_code", "client_reason"), [
    (1000, "bye", 1000, "bye"),
    (1000, None, 1000, "upstream closed the session (1000)"),
    (None, None, 1000, "upstream closed the session"),
    (1005, None, 1000, "upstream closed the session"),
    (1006, None, 1011, "upstream connection lost"),
    (1015, None, 1011, "upstream connection lost"),
    (1011, "server error", 1011, "server error"),
    (1010, None, 1011, "upstream closed (1010)"),
    (4001, "custom", 4001, "custom"),
])
def test_upstream_close_is_forwarded_as_a_sendable_code(code: int | None, reason: str | None, client_code: int,
                                                         client_reason: str) -> None:
    ending = closing.upstream_closed(code, reason)
    assert (ending.client_code, ending.client_reason, ending.upstream_code) == (client_code, client_reason, None)


def test_close_reasons_fit_a_close_frame() -> None:
    long = "é" * 200
    clipped = closing.clip_reason(long)
    assert len(clipped.encode()) <= 123 and long.startswith(clipped)
    assert len(closing.upstream_closed(1011, long).client_reason.encode()) <= 123


def test_limits_and_client_close_endings() -> None:
    expired = closing.session_expired(3600)
    assert expired.client_code == 1001 and expired.notice is not None and expired.notice[0] == "session_expired"
    assert "maximum duration of 3600 seconds" in expired.client_reason
    idle = closing.idle_timeout(1.5)
    assert idle.client_code == 1001 and idle.upstream_code == 1000 and "1.5s" in idle.client_reason
    gone = closing.client_closed()
    assert gone.client_code is None and gone.upstream_code == 1000 and gone.closed_by == "client"
    assert closing.client_closed(draining=True).upstream_code == 1001
    assert closing.frame_too_big(10, 5).client_code == 1009
    assert closing.upstream_unreachable("x").client_code == 1011
    down = closing.shutting_down()
    assert (down.client_code, down.upstream_code, down.cause) == (1001, 1001, "shutdown")


# -- settings, sizes, the log record -------------------------------------------------------------


def test_settings_defaults_and_validation() -> None:
    s = RealtimeSettings()
    assert s.max_session_seconds == 3600 and s.max_sessions == 1000 and s.enforce_session_model
    assert realtime_settings(Config()) == s
    custom = RealtimeSettings(idle_timeout_seconds=5)
    assert realtime_settings(type("C", (), {"realtime": custom})()) is custom
    with pytest.raises(ValueError):
        RealtimeSettings(idle_timeout_seconds=0)
    with pytest.raises(ValueError):
        RealtimeSettings(max_sessions=-1)
    assert RealtimeSettings(max_sessions=None).max_sessions is None
    assert attrs.has(RealtimeSettings)


def test_frame_size_counts_utf8_bytes_only_when_needed() -> None:
    assert _frame_size(b"abc", 2) == 3
    assert _frame_size("abc", 100) == 3
    assert _frame_size("é" * 10, 25) == 20  # 10 chars could be 40 bytes: encoded to decide
    assert _frame_size("x" * 50, 10) == 50


def test_session_log_record_has_frames_close_and_usage_but_no_key() -> None:
    ex = RealtimeExchange(method="GET", path="/v1/realtime", api="realtime", client_format="openai_realtime")
    ex.status, ex.client_frames, ex.upstream_frames = 101, 3, 40
    ex.closed_by, ex.close_cause, ex.close_code, ex.close_reason = "upstream", "upstream_closed", 1000, "bye"
    ex.meter = UsageMeter()
    ex.meter.feed(_done("r", inp=10, out=4, inp_audio=6, out_audio=2))
    ex.usage = ex.meter.usage.to_ir()
    rec = ex.record()
    assert rec["client_frames"] == 3 and rec["upstream_frames"] == 40 and rec["close_code"] == 1000
    assert rec["input_tokens"] == 10 and rec["input_audio_tokens"] == 6 and rec["output_audio_tokens"] == 2
    assert rec["responses"] == 1 and rec["responses_unfinished"] == 0
    assert "meter" not in rec and KEY not in json.dumps(rec)
