"""Who is calling: the client credential (never a provider key) -> a Principal.

Keys are configured as plaintext (hashed at load) or as SHA-256 digests; only digests are kept. A
presented key is hashed and looked up, then compared in constant time. Open mode (no keys) is an
explicit config choice; there every caller is the anonymous principal.

Runtime keys (made through the admin API, kept in the database) are looked up after the config keys:
from an in-process cache by digest, kept fresh by a task polling the table for changes, and on a cache
miss from the database itself, so a key made on another replica works at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from fnmatch import fnmatchcase

import trio
from attrs import define, field

from trigate.config import AuthConfig, BudgetSpec, ClientKey
from trigate.errors import GatewayError
from trigate.store.keys import KeyRecord, KeyStore
from trigate.store.sql import DatabaseError

log = logging.getLogger("trigate.auth")


@define(frozen=True)
class Principal:
    key_id: str  # a name for the key, safe to log; never the key
    allowed_models: tuple[str, ...] | None = None  # None: every model
    allowed_providers: tuple[str, ...] | None = None  # for passthrough; None: every provider
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    metadata: dict[str, str] = field(factory=dict)
    budget: BudgetSpec | None = None  # this key's own USD budget

    @property
    def team(self) -> str | None:
        """The team the key belongs to (``metadata.team``): team budgets and usage reports use it."""
        return self.metadata.get("team")

    def may_use(self, model: str) -> bool:
        return _allows(self.allowed_models, model)

    def may_pass_through(self, provider: str) -> bool:
        return _allows(self.allowed_providers, provider)


def _allows(patterns: tuple[str, ...] | None, name: str) -> bool:
    return patterns is None or any(fnmatchcase(name, pattern) for pattern in patterns)


ANONYMOUS = Principal(key_id="anonymous")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _principal(k: ClientKey) -> Principal:
    models = tuple(k.models) if k.models is not None else None
    if k.providers is not None:
        providers: tuple[str, ...] | None = tuple(k.providers)
    else:
        # a key held to some models must not reach any model raw through passthrough
        providers = None if models is None else ()
    return Principal(key_id=k.id, allowed_models=models, allowed_providers=providers, rpm=k.rpm, tpm=k.tpm,
                     max_concurrent=k.max_concurrent, metadata=dict(k.metadata), budget=k.budget)


def invalid_key() -> GatewayError:
    return GatewayError("authentication", "invalid API key", code="invalid_api_key")


def key_store_unavailable() -> GatewayError:
    # 503, not 401: the key may well be valid, the gateway just cannot tell right now
    return GatewayError("server_error", "The gateway cannot check this API key right now (its key database is "
                        "unavailable); retry shortly", status=503, code="key_store_unavailable", retry_after=1.0)


@define
class _Cached:
    record: KeyRecord
    principal: Principal
    valid_until: float | None  # this secret's own end: the key's expiry, or a rotated-out secret's grace
    rotated_out: bool = False  # the secret a rotation replaced (working only during its grace period)


class RuntimeKeys:
    """Runtime keys by digest: a bounded in-process cache, refreshed by ``run`` polling the table every
    ``poll_seconds`` (so a revocation on another replica applies here within that), with the database
    asked directly on a miss and unknown digests remembered for ``negative_seconds``."""

    # rows changed this long before the last poll are read again: a change committed late (its
    # updated_at stamped before a later one's commit) is still seen
    LOOKBACK = 2.0

    def __init__(self, store: KeyStore, *, poll_seconds: float = 0.25, negative_seconds: float = 1.0,
                 max_cached: int = 100_000, max_negative: int = 10_000) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.negative_seconds = negative_seconds
        self.max_cached = max_cached
        self.max_negative = max_negative
        self._by_digest: OrderedDict[str, _Cached] = OrderedDict()
        self._digests_of: dict[str, set[str]] = {}  # key id -> its cached digests
        self._unknown: OrderedDict[str, float] = OrderedDict()  # digest -> until (trio clock)
        self._outage = False
        self._scope = trio.CancelScope()

    async def lookup(self, sha256: str) -> _Cached | None:
        """The cached or stored key with this digest, or None. Raises key_store_unavailable when the
        database must be asked and cannot answer."""
        found = self._by_digest.get(sha256)
        if found is not None:
            self._by_digest.move_to_end(sha256)
            return found
        until = self._unknown.get(sha256)
        if until is not None and until > trio.current_time():
            return None
        try:
            record = await self.store.find(sha256)
        except DatabaseError as exc:
            self._note_outage(exc)
            raise key_store_unavailable() from None
        self._note_recovery()
        if record is None:
            self._unknown[sha256] = trio.current_time() + self.negative_seconds
            self._unknown.move_to_end(sha256)
            while len(self._unknown) > self.max_negative:
                self._unknown.popitem(last=False)
            return None
        self.put(record)
        return self._by_digest.get(sha256)

    def put(self, record: KeyRecord) -> None:
        """Cache ``record`` under each of its secrets' digests, replacing what its id had before (unless
        that is newer: a lookup's read may finish after the poller saw a later change)."""
        cached = [self._by_digest[d] for d in self._digests_of.get(record.id, ()) if d in self._by_digest]
        if cached and cached[0].record.updated_at > record.updated_at:
            return
        for old in self._digests_of.pop(record.id, ()):
            self._by_digest.pop(old, None)
        principal = _principal(record.spec)
        digests = set()
        for sha in record.digests():
            until = record.expires_at
            if sha != record.key_sha256 and record.previous_until is not None:
                until = record.previous_until if until is None else min(until, record.previous_until)
            self._by_digest[sha] = _Cached(record, principal, until, rotated_out=sha != record.key_sha256)
            self._by_digest.move_to_end(sha)
            self._unknown.pop(sha, None)
            digests.add(sha)
        self._digests_of[record.id] = digests
        while len(self._by_digest) > self.max_cached:
            _, evicted = self._by_digest.popitem(last=False)
            # all of a key's digests go together: one left behind would escape the next change of that key
            for other in self._digests_of.pop(evicted.record.id, ()):
                self._by_digest.pop(other, None)

    def forget_unknown(self) -> None:
        self._unknown.clear()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll the table for changes until cancelled (started in the gateway's services nursery)."""
        task_status.started()
        with self._scope:
            await self._poll()

    def close(self) -> None:
        self._scope.cancel()

    async def _poll(self) -> None:
        since: float | None = None
        while True:
            try:
                if since is None:
                    since = await self.store.now() - self.LOOKBACK
                now, changed = await self.store.changed_since(since)
                for record in changed:
                    cached = self._by_digest.get(record.key_sha256)
                    if cached is None or cached.record != record:
                        self.put(record)
                since = now - self.LOOKBACK
                self._note_recovery()
            except DatabaseError as exc:
                self._note_outage(exc)
            await trio.sleep(self.poll_seconds)

    def _note_outage(self, exc: DatabaseError) -> None:
        if not self._outage:
            self._outage = True
            log.warning("runtime keys: the key database is unavailable (cached keys keep working): %s", exc)

    def _note_recovery(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("runtime keys: the key database is reachable again")


class KeyRing:
    def __init__(self, auth: AuthConfig, runtime: RuntimeKeys | None = None) -> None:
        self.open = auth.open
        self.runtime = runtime
        self._keys = {(k.key_sha256 or digest(k.key or "")): _principal(k) for k in auth.keys}
        self._admin = {(k.key_sha256 or digest(k.key or "")): _principal(k) for k in auth.admin_keys}
        self.config_ids = frozenset(k.id for k in (*auth.keys, *auth.admin_keys))

    @staticmethod
    def _find(table: dict[str, Principal], credential: str) -> Principal | None:
        presented = digest(credential)
        for known, principal in table.items():
            # every entry is compared, in constant time: no early exit leaks which digest matched
            if hmac.compare_digest(known, presented):
                return principal
        return None

    async def authenticate(self, credential: str | None) -> Principal:
        """Config keys first (no I/O), then runtime keys."""
        if credential:
            found = self._find(self._keys, credential)
            if found is not None:
                return found
            if self.runtime is not None:
                found = await self._runtime(credential)
                if found is not None:
                    return found
        if self.open:
            return ANONYMOUS
        if not credential:
            raise GatewayError("authentication", "missing API key: send it as 'Authorization: Bearer <key>' "
                               "or 'x-api-key: <key>'", code="missing_api_key")
        raise invalid_key()

    async def _runtime(self, credential: str) -> Principal | None:
        assert self.runtime is not None
        try:
            # A dict lookup by the presented key's digest: its timing tells only about that digest, which
            # the caller knows already, never about a stored one.
            found = await self.runtime.lookup(digest(credential))
        except GatewayError:
            if self.open:  # open mode serves everyone anyway
                return None
            raise
        if found is None:
            return None
        if found.record.revoked_at is not None:
            raise GatewayError("authentication", "API key revoked", code="key_revoked")
        if found.valid_until is not None and found.valid_until <= time.time():
            if found.rotated_out:  # replaced by a rotation and its grace is over: no longer this key's secret
                raise invalid_key()
            raise GatewayError("authentication", "key expired", code="key_expired")
        return found.principal

    def authenticate_admin(self, credential: str | None) -> Principal:
        found = self._find(self._admin, credential) if credential else None
        if found is None:
            raise GatewayError("authentication", "an admin key is required", code="invalid_api_key")
        return found


def credential_from_headers(headers: dict[str, str]) -> str | None:
    """The caller's own key: ``Authorization: Bearer``, ``x-api-key`` (Anthropic clients), ``api-key``
    (Azure-style clients), ``x-goog-api-key`` (Google clients), or the access key id of a SigV4
    signature (AWS clients)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    if auth.startswith(SIGV4_ALGORITHM):
        return sigv4_access_key(auth)
    return headers.get("x-api-key") or headers.get("api-key") or headers.get("x-goog-api-key") or None


SIGV4_ALGORITHM = "AWS4-HMAC-SHA256 "


def sigv4_access_key(auth: str) -> str | None:
    """The access key id of ``Credential=<id>/<date>/<region>/<service>/aws4_request``. It is the gateway
    key: only key digests are kept, so the signature (made with a secret) cannot be checked, and the id
    is then a bearer credential like any other."""
    for item in auth[len(SIGV4_ALGORITHM):].split(","):
        name, _, value = item.strip().partition("=")
        if name == "Credential":
            scope = value.rsplit("/", 4)
            return (scope[0] or None) if len(scope) == 5 else None
    return None


def check_model(principal: Principal, model: str) -> None:
    if not principal.may_use(model):
        raise GatewayError("permission", f"this key may not use model '{model}'", param="model",
                           code="model_not_allowed")


def check_provider(principal: Principal, provider: str) -> None:
    """Passthrough: may this key call ``provider``'s own API directly (``auth.keys[].providers``)?"""
    if not principal.may_pass_through(provider):
        raise GatewayError("permission", f"this key may not call provider '{provider}' directly",
                           code="provider_not_allowed")
