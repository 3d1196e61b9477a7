"""Bedrock error bodies: parsing upstream errors, rendering errors for Bedrock clients (checked with botocore's
own rest-json error parser), and in-stream exceptions."""

from __future__ import annotations

import orjson
import pytest
from botocore.parsers import RestJSONParser

from trigate.errors import GatewayError
from trigate.formats.bedrock import CODEC
from trigate.wire.eventstream import EventStreamDecoder


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (400, {"message": "Malformed input request"}, "invalid_request", None),
        (
            400,
            {"__type": "com.amazon.coral.validate#ValidationException", "message": "bad"},
            "invalid_request",
            "ValidationException",
        ),
        (403, {"__type": "AccessDeniedException", "message": "no"}, "permission", "AccessDeniedException"),
        (
            403,
            {
                "__type": "UnrecognizedClientException:http://internal.amazon.com/",
                "message": "The security token included in the request is invalid.",
            },
            "authentication",
            "UnrecognizedClientException",
        ),
        (403, {"__type": "InvalidSignatureException", "Message": "sig"}, "authentication", "InvalidSignatureException"),
        (404, {"message": "model not found"}, "not_found", None),
        (408, {"__type": "ModelTimeoutException", "message": "slow"}, "timeout", "ModelTimeoutException"),
        (
            424,
            {"__type": "ModelErrorException", "message": "model failed", "originalStatusCode": 500},
            "server_error",
            "ModelErrorException",
        ),
        (429, {"message": "Too many requests, please wait before trying again."}, "rate_limit", None),
        (429, {"__type": "ModelNotReadyException", "message": "warming"}, "overloaded", "ModelNotReadyException"),
        (
            400,
            {"code": "ServiceQuotaExceededException", "message": "quota"},
            "rate_limit",
            "ServiceQuotaExceededException",
        ),
        (500, {"message": "internal"}, "server_error", None),
        (
            503,
            {"__type": "ServiceUnavailableException", "message": "busy"},
            "overloaded",
            "ServiceUnavailableException",
        ),
    ],
)
def test_parse_error(status: int, body: dict, kind: str, code: str | None) -> None:
    err = CODEC.parse_error(status, orjson.dumps(body))
    assert (err.kind, err.status, err.code) == (kind, status, code)
    assert err.message == (body.get("message") or body.get("Message"))
    assert err.from_gateway is False


def test_parse_error_without_json() -> None:
    err = CODEC.parse_error(502, b"<html>Bad Gateway</html>")
    assert (err.kind, err.status, err.message) == ("server_error", 502, "<html>Bad Gateway</html>")
    err = CODEC.parse_error(503, b"")
    assert (err.kind, err.message) == ("overloaded", "upstream returned HTTP 503")


def _botocore_error(status: int, body: dict) -> dict:
    parsed = RestJSONParser().parse({"status_code": status, "headers": {}, "body": orjson.dumps(body)}, None)
    return parsed["Error"]


@pytest.mark.parametrize(
    ("kind", "status", "etype"),
    [
        ("invalid_request", 400, "ValidationException"),
        ("request_too_large", 400, "ValidationException"),
        ("authentication", 403, "UnrecognizedClientException"),
        ("permission", 403, "AccessDeniedException"),
        ("not_found", 404, "ResourceNotFoundException"),
        ("rate_limit", 429, "ThrottlingException"),
        ("billing", 400, "ServiceQuotaExceededException"),
        ("overloaded", 503, "ServiceUnavailableException"),
        ("timeout", 408, "ModelTimeoutException"),
        ("server_error", 500, "InternalServerException"),
        ("upstream_unavailable", 502, "InternalServerException"),
    ],
)
def test_render_error_read_by_botocore(kind: str, status: int, etype: str) -> None:
    got_status, body = CODEC.render_error(GatewayError(kind, "what went wrong"))
    assert (got_status, body) == (status, {"message": "what went wrong", "__type": etype})
    assert _botocore_error(got_status, body) == {"Code": etype, "Message": "what went wrong"}
    # And the gateway reads its own rendering back as the same kind of failure.
    back = CODEC.parse_error(got_status, orjson.dumps(body))
    expected = {
        "request_too_large": "invalid_request",
        "billing": "rate_limit",
        "upstream_unavailable": "server_error",
    }.get(kind, kind)
    assert back.kind == expected


def test_model_error_keeps_424() -> None:
    err = CODEC.parse_error(424, orjson.dumps({"__type": "ModelErrorException", "message": "boom"}))
    assert CODEC.render_error(err) == (424, {"message": "boom", "__type": "ModelErrorException"})
    [frame] = EventStreamDecoder().feed(CODEC.render_stream_error(err))
    assert frame.headers[":exception-type"] == "modelStreamErrorException"


@pytest.mark.parametrize(
    ("kind", "etype"),
    [
        ("invalid_request", "validationException"),
        ("rate_limit", "throttlingException"),
        ("overloaded", "serviceUnavailableException"),
        ("server_error", "internalServerException"),
        ("upstream_unavailable", "internalServerException"),
        ("timeout", "internalServerException"),
    ],
)
def test_render_stream_error(kind: str, etype: str) -> None:
    [frame] = EventStreamDecoder().feed(CODEC.render_stream_error(GatewayError(kind, "mid-stream")))
    assert frame.headers == {
        ":message-type": "exception",
        ":exception-type": etype,
        ":content-type": "application/json",
    }
    assert orjson.loads(frame.payload) == {"message": "mid-stream"}
