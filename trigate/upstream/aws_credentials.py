"""AWS credentials for SigV4, from botocore's own credential chain.

Static keys in the provider config are used as they are. Otherwise botocore resolves them the way the
AWS SDKs and CLI do: environment, shared config/credentials files (``profile``), web identity
(``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``, EKS), ECS/EKS container credentials
(``AWS_CONTAINER_CREDENTIALS_*``), EC2 instance metadata; ``role_arn`` then assumes that role with STS
from those. Temporary credentials are refreshed by botocore.

botocore does its HTTP (IMDS, container endpoint, STS) synchronously, inside the credential objects'
getters, so nothing here calls them on the event loop: the chain is resolved, and each refresh done, on
a worker thread, one at a time, and requests sign with a frozen copy. The copy is renewed ahead of
expiry with botocore's own windows: from 15 minutes before expiry a refresh is started (callers keep
the current copy while it runs), from 10 minutes before they wait for it.
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any, Protocol

import trio
from attrs import define, field
from botocore.credentials import Credentials, ReadOnlyCredentials

from trigate.errors import GatewayError

ADVISORY_REFRESH = 15 * 60.0  # botocore's RefreshableCredentials windows, seconds before expiry
MANDATORY_REFRESH = 10 * 60.0

log = logging.getLogger("trigate.upstream")


class AwsCredentialSource(Protocol):
    async def get(self) -> ReadOnlyCredentials: ...


@define(frozen=True)
class StaticAwsCredentials:
    """Keys written in the provider config (or its ${VAR}s): nothing to refresh."""

    frozen: ReadOnlyCredentials = field(repr=False)

    async def get(self) -> ReadOnlyCredentials:
        return self.frozen


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class BotocoreCredentials:
    """botocore's chain for one provider (``profile``; ``role_arn`` assumed from the chain's credentials or
    from ``source``, static keys); resolved on first use."""

    def __init__(self, *, provider: str, region: str, profile: str | None = None, role_arn: str | None = None,
                 source: Credentials | None = None, role_session_name: str = "trigate") -> None:
        self._provider = provider
        self._region = region
        self._profile = profile
        self._role_arn = role_arn
        self._source = source
        self._session_name = role_session_name
        self._credentials: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self._expiry: datetime.datetime | None = None  # None: static credentials, never refreshed
        self._lock = trio.Lock()
        # botocore's credential objects are not meant for concurrent refreshes from several threads.
        self._thread_lock = threading.Lock()

    def _seconds_left(self) -> float:
        return float("inf") if self._expiry is None else (self._expiry - _now()).total_seconds()

    async def get(self) -> ReadOnlyCredentials:
        left = self._seconds_left()
        if self._frozen is not None and left > ADVISORY_REFRESH:
            return self._frozen
        if self._frozen is not None and left > MANDATORY_REFRESH and self._lock.locked():
            return self._frozen  # a refresh is in flight and the current copy is still good
        async with self._lock:
            if self._frozen is None or self._seconds_left() <= ADVISORY_REFRESH:
                await trio.to_thread.run_sync(self._load)
        assert self._frozen is not None
        return self._frozen

    def _load(self) -> None:
        """Worker thread: resolve the chain (first time) and take a fresh frozen copy."""
        with self._thread_lock:
            try:
                if self._credentials is None:
                    self._credentials = self._resolve()
                frozen = self._credentials.get_frozen_credentials()
            except GatewayError:
                raise
            except Exception as exc:  # botocore's many error types
                # The detail (which provider of the chain, what it answered) is for the operator only.
                log.warning("provider %r: cannot get AWS credentials: %s: %s", self._provider,
                            type(exc).__name__, exc)
                raise GatewayError("upstream_unavailable", f"provider '{self._provider}': cannot get AWS "
                                   f"credentials ({type(exc).__name__})", status=502) from None
            self._frozen = frozen
            expiry = getattr(self._credentials, "_expiry_time", None)  # RefreshableCredentials only
            self._expiry = expiry if isinstance(expiry, datetime.datetime) else None

    def _resolve(self) -> Credentials:
        import botocore.session

        session = botocore.session.Session(profile=self._profile)
        source = self._source or session.get_credentials()
        if source is None:
            raise GatewayError("server_error", f"provider '{self._provider}' found no AWS credentials (environment, "
                               "shared files, web identity, container or instance metadata)", status=500)
        if self._role_arn is None:
            return source
        from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

        def client(service: str, **kwargs: Any) -> Any:  # STS; honours AWS_ENDPOINT_URL_STS
            return session.create_client(service, region_name=self._region, **kwargs)

        fetcher = AssumeRoleCredentialFetcher(client, source, self._role_arn,
                                              extra_args={"RoleSessionName": self._session_name})
        return DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role")


def credential_source(*, provider: str, region: str, access_key: str | None, secret_key: str | None,
                      session_token: str | None, profile: str | None, role_arn: str | None) -> AwsCredentialSource:
    """Static keys when the config gives them (``role_arn`` then assumes from them), else botocore's chain."""
    static = Credentials(access_key, secret_key, session_token) if access_key and secret_key else None
    if static is not None and role_arn is None:
        return StaticAwsCredentials(static.get_frozen_credentials())
    return BotocoreCredentials(provider=provider, region=region, profile=profile, role_arn=role_arn, source=static)


__all__ = ["AwsCredentialSource", "BotocoreCredentials", "StaticAwsCredentials", "credential_source"]
