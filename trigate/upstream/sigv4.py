"""AWS Signature Version 4 for Bedrock calls, and its check for the mock (protocols.md §9.1).

All cryptography and canonicalisation is botocore's (``SigV4Auth``): hand-rolled SigV4 is the classic
source of ``SignatureDoesNotMatch`` (the model id in the path is percent-encoded once by the caller and
once more by the canonical request). Pure and synchronous.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Mapping

from attrs import define
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
# AWS refuses requests whose X-Amz-Date is further than this from its clock.
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)

_ADDED_HEADERS = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    session_token: str | None = None,
    region: str,
    service: str = "bedrock",
    timestamp: datetime.datetime | None = None,
) -> dict[str, str]:
    """The headers to add to a request so AWS accepts it.

    ``url`` must be the URL exactly as it will be sent (model id already percent-encoded); ``headers``
    the headers that will be sent and should be signed (content-type, ...). ``host`` is derived from the
    URL when absent, the way the HTTP client will send it. ``timestamp`` pins the signing time (tests).
    """
    request = AWSRequest(method=method.upper(), url=url, data=body, headers=dict(headers))
    signer = SigV4Auth(Credentials(access_key, secret_key, session_token), service, region)
    if timestamp is None:
        signer.add_auth(request)
    else:
        if session_token:
            request.headers["X-Amz-Security-Token"] = session_token
        _sign_at(signer, request, timestamp.astimezone(datetime.UTC).strftime(SIGV4_TIMESTAMP))
    return {k: v for k, v in request.headers.items() if k.lower() in _ADDED_HEADERS}


def _signature(signer: SigV4Auth, request: AWSRequest, amz_date: str) -> str:
    request.context["timestamp"] = amz_date
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def _sign_at(signer: SigV4Auth, request: AWSRequest, amz_date: str) -> None:
    if "X-Amz-Date" in request.headers:
        del request.headers["X-Amz-Date"]
    request.headers["X-Amz-Date"] = amz_date
    signature = _signature(signer, request, amz_date)
    signed = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"{ALGORITHM} Credential={signer.scope(request)}, SignedHeaders={signed}, Signature={signature}"
    )


# --------------------------------------------------------------------------------------------
# Verification (the mock's side)
# --------------------------------------------------------------------------------------------


@define
class SignatureProblem:
    """Why a request is refused, as AWS words it: ``error_type`` goes in ``x-amzn-ErrorType``."""

    error_type: str
    message: str


_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


def _parse_authorization(value: str) -> dict[str, str] | None:
    if not value.startswith(ALGORITHM + " "):
        return None
    fields: dict[str, str] = {}
    for item in value[len(ALGORITHM) + 1 :].split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        fields[key] = val
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        return None
    return fields


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str | None = None,
    service: str = "bedrock",
    now: datetime.datetime | None = None,
) -> SignatureProblem | None:
    """Recompute the SigV4 signature of a received request with the known secret; None when it matches.

    ``url`` must carry the path as received on the wire (still percent-encoded). ``region`` None accepts
    whatever region the credential scope names.
    """
    h = {k.lower(): v for k, v in headers.items()}
    fields = _parse_authorization(h.get("authorization", ""))
    if fields is None:
        if "authorization" not in h:
            return SignatureProblem("MissingAuthenticationTokenException", "Missing Authentication Token")
        return SignatureProblem(
            "IncompleteSignatureException", "Authorization header requires Credential, SignedHeaders, Signature"
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return SignatureProblem("IncompleteSignatureException", "Credential is not a valid SigV4 credential scope")
    key_id, date, scope_region, scope_service, _ = scope
    if key_id != access_key:
        return SignatureProblem("UnrecognizedClientException", "The security token included in the request is invalid.")
    if scope_service != service or (region is not None and scope_region != region):
        return SignatureProblem(
            "InvalidSignatureException", f"Credential should be scoped to correct service/region: '{service}'"
        )
    amz_date = h.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=datetime.UTC)
    except ValueError:
        return SignatureProblem("IncompleteSignatureException", "X-Amz-Date header is missing or malformed")
    if amz_date[:8] != date:
        return SignatureProblem("InvalidSignatureException", "Credential date does not match X-Amz-Date")
    current = now or datetime.datetime.now(datetime.UTC)
    if abs(current - when) > MAX_CLOCK_SKEW:
        return SignatureProblem(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {(current - MAX_CLOCK_SKEW).strftime(SIGV4_TIMESTAMP)}",
        )
    signed_names = fields["SignedHeaders"].split(";")
    if "host" not in signed_names or any(n not in h for n in signed_names):
        return SignatureProblem("InvalidSignatureException", _MISMATCH)
    claimed_hash = h.get("x-amz-content-sha256")
    if claimed_hash not in (None, "UNSIGNED-PAYLOAD") and claimed_hash != hashlib.sha256(body).hexdigest():
        return SignatureProblem("InvalidSignatureException", "The provided x-amz-content-sha256 does not match")
    request = AWSRequest(method=method.upper(), url=url, data=body, headers={n: h[n] for n in signed_names})
    signer = SigV4Auth(Credentials(access_key, secret_key), scope_service, scope_region)
    expected = _signature(signer, request, amz_date)
    if not hmac.compare_digest(expected.encode(), fields["Signature"].encode()):
        return SignatureProblem("InvalidSignatureException", _MISMATCH)
    return None


__all__ = ["MAX_CLOCK_SKEW", "SignatureProblem", "sign_request", "verify_request"]
