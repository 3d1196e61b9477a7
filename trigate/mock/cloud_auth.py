"""The fake upstream's cloud credential endpoints, for testing the gateway's credential chains on loopback:

- AWS: the ECS/EKS container credentials endpoint (``AWS_CONTAINER_CREDENTIALS_FULL_URI`` =
  ``{mock}/_mock/aws/credentials``) and STS (``AWS_ENDPOINT_URL_STS`` = ``{mock}/_mock/aws/sts``:
  AssumeRole, AssumeRoleWithWebIdentity). Every hand-out is a fresh temporary key the mock's Bedrock
  routes then accept (with its session token) until it expires.
- Google: the GCE metadata server (``GCE_METADATA_HOST`` = the mock's host:port; wants
  ``Metadata-Flavor: Google``), the refresh-token grant (``/_mock/google/token``), STS token exchange
  (``/_mock/google/sts``) and service account impersonation (``/_mock/google/iam/...:generateAccessToken``).
  The token finally minted is the mock's ``api_key``, the bearer token its Vertex routes accept.
"""

from __future__ import annotations

import datetime
import threading
import uuid
from typing import Any

import orjson
from quart import Response, request
from quart_trio import QuartTrio

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


class CloudAuth:
    """What the credential endpoints hand out and saw (thread-safe: tests read it from their thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.aws_ttl = 3600.0  # lifetime of handed-out AWS keys, seconds
        self.aws_issued: dict[str, tuple[str, str, datetime.datetime]] = {}  # key id -> secret, token, expiry
        self.aws_fetches: list[str] = []  # "container", "AssumeRole", "AssumeRoleWithWebIdentity", in order
        self.sts_params: list[dict[str, str]] = []
        self.container_token: str | None = None  # AWS_CONTAINER_AUTHORIZATION_TOKEN the endpoint wants
        self.google_ttl = 3600
        self.metadata_fetches = 0
        self.google_refresh: tuple[str, str, str] | None = None  # client_id, client_secret, refresh_token
        self.google_subject_token: str | None = None  # what STS accepts as subject_token
        self.federated_token = "federated-access-token"
        self.google_calls: list[str] = []

    def issue_aws(self, how: str) -> tuple[str, str, str, datetime.datetime]:
        n = uuid.uuid4().hex[:12].upper()
        key, secret, token = f"ASIAMOCK{n}", f"mock-secret-{uuid.uuid4().hex}", f"mock-session-{uuid.uuid4().hex}"
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.aws_ttl)
        with self._lock:
            self.aws_issued[key] = (secret, token, expiry)
            self.aws_fetches.append(how)
        return key, secret, token, expiry

    def aws_secret(self, key_id: str) -> tuple[str, str] | None:
        """(secret, session token) of a handed-out key that has not expired."""
        with self._lock:
            found = self.aws_issued.get(key_id)
        if found is None or found[2] < datetime.datetime.now(datetime.UTC):
            return None
        return found[0], found[1]


def signing_key_id(authorization: str) -> str:
    """The access key id in a SigV4 ``Authorization: ... Credential=<id>/<scope>, ...`` header ("" if none)."""
    return authorization.partition("Credential=")[2].split("/")[0]


def _iso(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, content_type="application/json")


def register(app: QuartTrio, cloud: CloudAuth, api_key: Any) -> None:
    """``api_key``: a callable giving the mock's current api_key (the Google token to mint)."""

    @app.get("/_mock/aws/credentials")
    async def container_credentials() -> Response:
        if cloud.container_token is not None and request.headers.get("authorization") != cloud.container_token:
            return _json({"message": "unauthorized"}, 401)
        key, secret, token, expiry = cloud.issue_aws("container")
        return _json({"AccessKeyId": key, "SecretAccessKey": secret, "Token": token, "Expiration": _iso(expiry),
                      "RoleArn": "arn:aws:iam::123456789012:role/mock-task"})

    async def sts() -> Response:
        form = await request.form
        action = form.get("Action", "")
        if action not in ("AssumeRole", "AssumeRoleWithWebIdentity"):
            return Response(f"<ErrorResponse xmlns=\"{STS_NS}\"><Error><Type>Sender</Type><Code>InvalidAction"
                            f"</Code><Message>unsupported</Message></Error></ErrorResponse>", status=400,
                            content_type="text/xml")
        params = dict(form.items())
        if action == "AssumeRole":  # signed with the source credentials: record whose
            params["signed_by"] = signing_key_id(request.headers.get("authorization", ""))
        cloud.sts_params.append(params)
        key, secret, token, expiry = cloud.issue_aws(action)
        body = (f"<{action}Response xmlns=\"{STS_NS}\"><{action}Result><Credentials>"
                f"<AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
                f"<SessionToken>{token}</SessionToken><Expiration>{_iso(expiry)}</Expiration></Credentials>"
                f"<AssumedRoleUser><Arn>{form.get('RoleArn', '')}/{form.get('RoleSessionName', '')}</Arn>"
                f"<AssumedRoleId>AROAMOCK:{form.get('RoleSessionName', '')}</AssumedRoleId></AssumedRoleUser>"
                f"</{action}Result><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                f"</{action}Response>")
        return Response(body, content_type="text/xml")

    app.add_url_rule("/_mock/aws/sts", "mock_sts", sts, methods=["POST"])
    app.add_url_rule("/_mock/aws/sts/", "mock_sts_slash", sts, methods=["POST"])

    @app.get("/computeMetadata/v1/instance/service-accounts/default/token")
    async def metadata_token() -> Response:
        if request.headers.get("metadata-flavor") != "Google":
            return Response("Missing required header: Metadata-Flavor", status=403, content_type="text/plain")
        cloud.metadata_fetches += 1
        return _json({"access_token": api_key(), "expires_in": cloud.google_ttl, "token_type": "Bearer"})

    @app.post("/_mock/google/token")
    async def refresh_grant() -> Response:
        form = await request.form
        cloud.google_calls.append("refresh_token")
        given = (form.get("client_id"), form.get("client_secret"), form.get("refresh_token"))
        if form.get("grant_type") != "refresh_token" or cloud.google_refresh != given:
            return _json({"error": "invalid_grant", "error_description": "Bad Request"}, 400)
        return _json({"access_token": api_key(), "expires_in": cloud.google_ttl, "token_type": "Bearer",
                      "scope": form.get("scope", "")})

    @app.post("/_mock/google/sts")
    async def token_exchange() -> Response:
        form = await request.form
        cloud.google_calls.append("sts")
        if (form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" or not form.get("audience")
                or form.get("subject_token") != cloud.google_subject_token):
            return _json({"error": "invalid_grant", "error_description": "The subject token is invalid."}, 400)
        return _json({"access_token": cloud.federated_token, "expires_in": cloud.google_ttl, "token_type": "Bearer",
                      "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})

    @app.post("/_mock/google/iam/v1/projects/-/serviceAccounts/<path:rest>")
    async def generate_access_token(rest: str) -> Response:
        cloud.google_calls.append(f"impersonate {rest}")
        if not rest.endswith(":generateAccessToken"):
            return _json({"error": {"code": 404, "message": "not found"}}, 404)
        if request.headers.get("authorization") != f"Bearer {cloud.federated_token}":
            return _json({"error": {"code": 401, "message": "Request had invalid authentication credentials."}}, 401)
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=cloud.google_ttl)
        return _json({"accessToken": api_key(), "expireTime": _iso(expiry)})
