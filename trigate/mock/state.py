"""The fake upstream's observable state: settings, the fault queue, and what it saw.

Thread-safe on purpose: tests often run the servers on a background thread and inspect this from
the test thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from attrs import define, field

from trigate.mock.cloud_auth import CloudAuth
from trigate.mock.replies import Conversation, ScriptedCall


@define
class Fault:
    """One injected failure, consumed by the next request it matches."""

    status: int | None = None  # answer with this HTTP status and a provider-shaped error body
    message: str = "injected fault"
    error_type: str | None = None  # provider error type/code override
    malformed: bool = False  # 200 with a body that is not valid JSON
    drop_after: int | None = None  # streams: close the connection after this many chunks
    error_after: int | None = None  # streams: send an in-stream error event after this many chunks
    latency_ms: float | None = None  # extra delay before answering
    headers: dict[str, str] = field(factory=dict)  # e.g. retry-after
    model: str | None = None  # only requests for this model match
    path: str | None = None  # only requests whose path contains this match
    times: int = 1


@define
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: Any
    started: float  # time.monotonic()
    usage: dict[str, int] | None = None
    finished: float | None = None
    disconnected: float | None = None  # time.monotonic() when the client went away mid-stream


class MockState:
    def __init__(self, *, latency_ms: float = 0.0, token_delay_ms: float = 0.0, api_key: str | None = None,
                 aws_credentials: tuple[str, str] | None = None):
        self.latency_ms = latency_ms
        self.token_delay_ms = token_delay_ms
        # When set, requests must carry this key in the provider's auth header.
        self.api_key = api_key
        # (access key id, secret): Bedrock routes then verify SigV4 signatures made with them.
        self.aws_credentials = aws_credentials
        # Google OAuth token endpoint (/token): the service account's public key (PEM) it verifies
        # JWT assertions with, the lifetime of the tokens it mints, and how many it minted.
        self.google_public_key: bytes | None = None
        self.google_token_ttl = 3600
        self.google_tokens_issued = 0
        # Cloud credential endpoints (AWS container/STS, GCE metadata, Google STS): trigate.mock.cloud_auth.
        self.cloud = CloudAuth()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._script: list[ScriptedCall] = []
        self.requests: list[SeenRequest] = []

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take_fault(self, path: str, model: str | None) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.model is not None and f.model != model:
                    continue
                if f.path is not None and f.path not in path:
                    continue
                f.times -= 1
                if f.times <= 0:
                    del self._faults[i]
                return f
        return None

    def add_script(self, call: ScriptedCall) -> None:
        with self._lock:
            self._script.append(call)

    def take_script(self, conv: Conversation, model: str | None) -> ScriptedCall | None:
        """The first queued call this request matches (consumed), or None: the reply is planned as usual."""
        with self._lock:
            for i, call in enumerate(self._script):
                if not call.matches(conv, model):
                    continue
                call.times -= 1
                if call.times <= 0:
                    del self._script[i]
                return call
        return None

    def record(self, path: str, headers: dict[str, str], body: Any) -> SeenRequest:
        seen = SeenRequest(path, headers, body, time.monotonic())
        with self._lock:
            self.requests.append(seen)
            # Bounded: a long-running `trigate mock` must not grow without limit.
            if len(self.requests) > 10_000:
                del self.requests[:5_000]
        return seen

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._script.clear()
            self.requests.clear()
