"""Error rendering for Chat clients and parsing of OpenAI-shaped upstream errors."""

from __future__ import annotations

import orjson
import pytest

from trigate.errors import GatewayError
from trigate.formats.openai_chat import CODEC
from trigate.wire.sse import SSEDecoder


@pytest.mark.parametrize(
    ("kind", "status", "etype", "code"),
    [
        ("invalid_request", 400, "invalid_request_error", None),
        ("authentication", 401, "authentication_error", None),
        ("billing", 402, "insufficient_quota", "insufficient_quota"),
        ("permission", 403, "permission_error", None),
        ("not_found", 404, "not_found_error", None),
        ("request_too_large", 413, "invalid_request_error", None),
        ("rate_limit", 429, "rate_limit_error", "rate_limit_exceeded"),
        ("server_error", 500, "server_error", None),
        ("upstream_unavailable", 502, "server_error", None),
        ("overloaded", 503, "server_error", None),
        ("timeout", 504, "server_error", None),
    ],
)
def test_render_error(kind: str, status: int, etype: str, code: str | None) -> None:
    st, body = CODEC.render_error(GatewayError(kind, "boom"))  # type: ignore[arg-type]
    assert st == status
    assert body == {"error": {"message": "boom", "type": etype, "param": None, "code": code}}


def test_render_error_keeps_param_code_and_maps_529() -> None:
    st, body = CODEC.render_error(GatewayError("invalid_request", "bad", param="messages[1].role", code="x"))
    assert st == 400 and body["error"]["param"] == "messages[1].role" and body["error"]["code"] == "x"
    st, body = CODEC.render_error(GatewayError("overloaded", "Overloaded", status=529))
    assert st == 503  # OpenAI clients don't know 529; 503 stays retryable


def test_render_stream_error_is_one_sse_data_event() -> None:
    raw = CODEC.render_stream_error(GatewayError("rate_limit", "slow down"))
    events = SSEDecoder().feed(raw)
    assert len(events) == 1 and events[0].event is None
    assert orjson.loads(events[0].data)["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "param"),
    [
        (
            400,
            b'{"error":{"message":"bad role","type":"invalid_request_error","param":"messages","code":null}}',
            "invalid_request",
            None,
            "messages",
        ),
        (
            401,
            b'{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}',
            "authentication",
            "invalid_api_key",
            None,
        ),
        (
            429,
            b'{"error":{"message":"Rate limit","type":"requests","code":"rate_limit_exceeded"}}',
            "rate_limit",
            "rate_limit_exceeded",
            None,
        ),
        (
            429,
            b'{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}',
            "billing",
            "insufficient_quota",
            None,
        ),
        (
            404,
            b'{"error":{"message":"no model","type":"invalid_request_error","code":"model_not_found"}}',
            "not_found",
            "model_not_found",
            None,
        ),
        (503, b'{"error":{"message":"overloaded","type":"server_error"}}', "overloaded", None, None),
        (500, b'{"error":{"message":"oops","type":"server_error"}}', "server_error", None, None),
        # Gemini's OpenAI layer wraps the error in a list; some servers use a bare string
        (
            400,
            b'[{"error":{"code":400,"message":"bad arg","status":"INVALID_ARGUMENT"}}]',
            "invalid_request",
            "400",
            None,
        ),
        (502, b'{"error":"upstream connect error"}', "server_error", None, None),
        (422, b'{"message":"field missing"}', "invalid_request", None, None),
    ],
)
def test_parse_error(status: int, body: bytes, kind: str, code: str | None, param: str | None) -> None:
    err = CODEC.parse_error(status, body)
    assert err.kind == kind and err.status == status and err.code == code and err.param == param
    assert err.from_gateway is False
    assert err.message


def test_parse_error_message_text() -> None:
    err = CODEC.parse_error(400, b'{"error":{"message":"bad role","type":"invalid_request_error"}}')
    assert err.message == "bad role"


@pytest.mark.parametrize("body", [b"", b"<html>502 Bad Gateway</html>", b"\xff\xfe", b"null", b"[]", b'{"x":1}'])
def test_parse_error_tolerates_non_openai_bodies(body: bytes) -> None:
    err = CODEC.parse_error(502, body)
    assert err.kind == "server_error" and err.status == 502  # kind_for_status's reading of a bare 502
    assert "502" in err.message
    assert err.from_gateway is True


def test_parse_error_non_error_status() -> None:
    err = CODEC.parse_error(200, b"{}")
    assert err.kind == "upstream_unavailable" and err.status == 502


def test_round_trip_render_then_parse() -> None:
    original = GatewayError("rate_limit", "slow", status=429, param="p", code="rate_limit_exceeded")
    st, body = CODEC.render_error(original)
    back = CODEC.parse_error(st, orjson.dumps(body))
    assert (back.kind, back.status, back.message, back.param, back.code) == (
        "rate_limit",
        429,
        "slow",
        "p",
        "rate_limit_exceeded",
    )
