"""SigV4 signing (botocore under the hood) and the mock's verification of it."""

from __future__ import annotations

import datetime
import hashlib
import hmac

import pytest

from trigate.upstream.sigv4 import sign_request, verify_request

AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
HOST = "bedrock-runtime.us-east-1.amazonaws.com"
URL = f"https://{HOST}/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
BODY = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
WHEN = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _received(signed: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The headers as the server sees them (the HTTP client adds host)."""
    return {"content-type": "application/json", "host": HOST, **signed, **(extra or {})}


def test_aws_test_suite_get_vanilla() -> None:
    # The "get-vanilla" case of AWS's published SigV4 test suite.
    out = sign_request(
        "GET",
        "https://example.amazonaws.com/",
        {},
        b"",
        access_key=AKID,
        secret_key=SECRET,
        region="us-east-1",
        service="service",
        timestamp=datetime.datetime(2015, 8, 30, 12, 36, tzinfo=datetime.UTC),
    )
    assert out["X-Amz-Date"] == "20150830T123600Z"
    assert out["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_model_id_path_is_encoded_twice_in_the_canonical_request() -> None:
    # protocols.md §9.1: the already-encoded ':' (%3A) is signed as %253A. Recomputed here by hand.
    out = sign_request(
        "POST",
        URL,
        {"content-type": "application/json"},
        BODY,
        access_key=AKID,
        secret_key=SECRET,
        region="us-east-1",
        timestamp=WHEN,
    )
    amz_date = "20250102T030405Z"
    canonical = "\n".join(
        [
            "POST",
            "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse",
            "",
            f"content-type:application/json\nhost:{HOST}\nx-amz-date:{amz_date}\n",
            "content-type;host;x-amz-date",
            hashlib.sha256(BODY).hexdigest(),
        ]
    )
    scope = "20250102/us-east-1/bedrock/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("AWS4" + SECRET).encode()
    for part in ("20250102", "us-east-1", "bedrock", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    assert out["Authorization"].endswith(f"Signature={signature}")
    assert f"Credential={AKID}/{scope}" in out["Authorization"]


def test_sign_then_verify_now() -> None:
    out = sign_request(
        "POST", URL, {"content-type": "application/json"}, BODY, access_key=AKID, secret_key=SECRET, region="us-east-1"
    )
    assert set(out) == {"Authorization", "X-Amz-Date"}
    assert verify_request("POST", URL, _received(out), BODY, access_key=AKID, secret_key=SECRET) is None
    assert (
        verify_request("POST", URL, _received(out), BODY, access_key=AKID, secret_key=SECRET, region="us-east-1")
        is None
    )


def test_session_token_is_sent_and_signed() -> None:
    out = sign_request(
        "POST",
        URL,
        {"content-type": "application/json"},
        BODY,
        access_key=AKID,
        secret_key=SECRET,
        session_token="FQoGZXIvYXdzE",
        region="eu-west-1",
    )
    assert out["X-Amz-Security-Token"] == "FQoGZXIvYXdzE"
    assert "x-amz-security-token" in out["Authorization"]
    recv = _received(out)
    assert verify_request("POST", URL, recv, BODY, access_key=AKID, secret_key=SECRET) is None
    recv["X-Amz-Security-Token"] = "other"
    assert (
        verify_request("POST", URL, recv, BODY, access_key=AKID, secret_key=SECRET).error_type
        == "InvalidSignatureException"
    )


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        ({"secret_key": "wrong"}, "InvalidSignatureException"),
        ({"access_key": "AKIDOTHER"}, "UnrecognizedClientException"),
        ({"body": BODY + b" "}, "InvalidSignatureException"),
        ({"url": URL.replace("%3A", ":")}, "InvalidSignatureException"),
        ({"url": URL.replace("/converse", "/converse-stream")}, "InvalidSignatureException"),
        ({"region": "us-west-2"}, "InvalidSignatureException"),
        ({"method": "PUT"}, "InvalidSignatureException"),
    ],
)
def test_verify_rejects(change: dict, error_type: str) -> None:
    out = sign_request(
        "POST",
        URL,
        {"content-type": "application/json"},
        BODY,
        access_key=AKID,
        secret_key=SECRET,
        region="us-east-1",
        timestamp=WHEN,
    )
    args = {"method": "POST", "url": URL, "body": BODY, "access_key": AKID, "secret_key": SECRET, **change}
    problem = verify_request(args.pop("method"), args.pop("url"), _received(out), args.pop("body"), now=WHEN, **args)
    assert problem is not None and problem.error_type == error_type


def test_verify_rejects_tampered_signed_header_and_missing_auth() -> None:
    out = sign_request(
        "POST",
        URL,
        {"content-type": "application/json"},
        BODY,
        access_key=AKID,
        secret_key=SECRET,
        region="us-east-1",
        timestamp=WHEN,
    )
    recv = _received(out, {"content-type": "text/plain"})
    assert verify_request("POST", URL, recv, BODY, access_key=AKID, secret_key=SECRET, now=WHEN).message.startswith(
        "The request signature we calculated does not match"
    )
    problem = verify_request("POST", URL, {"host": HOST}, BODY, access_key=AKID, secret_key=SECRET, now=WHEN)
    assert problem.error_type == "MissingAuthenticationTokenException"
    problem = verify_request(
        "POST", URL, {"authorization": "AWS4-HMAC-SHA256 junk"}, BODY, access_key=AKID, secret_key=SECRET, now=WHEN
    )
    assert problem.error_type == "IncompleteSignatureException"


def test_verify_rejects_expired_signature() -> None:
    out = sign_request(
        "POST",
        URL,
        {"content-type": "application/json"},
        BODY,
        access_key=AKID,
        secret_key=SECRET,
        region="us-east-1",
        timestamp=WHEN,
    )
    recv = _received(out)
    assert (
        verify_request(
            "POST", URL, recv, BODY, access_key=AKID, secret_key=SECRET, now=WHEN + datetime.timedelta(minutes=4)
        )
        is None
    )
    problem = verify_request(
        "POST", URL, recv, BODY, access_key=AKID, secret_key=SECRET, now=WHEN + datetime.timedelta(minutes=6)
    )
    assert problem.error_type == "InvalidSignatureException" and problem.message.startswith("Signature expired")


def test_signing_is_fast() -> None:
    import time

    start = time.perf_counter()
    for _ in range(200):
        sign_request(
            "POST",
            URL,
            {"content-type": "application/json"},
            BODY,
            access_key=AKID,
            secret_key=SECRET,
            region="us-east-1",
        )
    assert (time.perf_counter() - start) / 200 < 0.002
