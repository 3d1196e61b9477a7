"""Prometheus metrics: OpenTelemetry GenAI names mapped to Prometheus conventions, plus the gateway's own.

Each Gateway owns a ``CollectorRegistry`` (tests run several gateways in one process). Under several
worker processes (``PROMETHEUS_MULTIPROC_DIR`` set before start), prometheus-client keeps every value
in per-process files; ``/metrics`` then serves a ``MultiProcessCollector`` over that directory, so any
worker answers with the sum of all of them, and the gauges add up the live processes (``livesum``).

Label children are cached per label tuple: ``labels()`` costs a lock and a dict build per call.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.exposition import choose_encoder

log = logging.getLogger("trigate.metrics")

# Bucket boundaries the GenAI semantic conventions recommend for each instrument.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")
REQUEST = ("api", "provider", *GENAI)
KEY_TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")


def multiprocess_dir() -> str | None:
    """The shared directory when prometheus-client runs in multiprocess mode, else None."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return None
    # prometheus-client picks its value store when first imported: the variable must be set before
    # that, i.e. in the environment the process started with.
    if values.ValueClass is values.MutexValue:
        log.warning("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported; "
                    "serving this process's metrics only")
        return None
    return path


class _Family:
    """A labelled metric with its children cached by label values."""

    __slots__ = ("_children", "metric")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.metric.labels(*labels)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir()
        if self.multiprocess is not None:
            self.exposed = CollectorRegistry(auto_describe=True)
            multiprocess.MultiProcessCollector(self.exposed, path=self.multiprocess)
        else:
            self.exposed = self.registry
        r = self.registry

        def fam(cls: Any, name: str, doc: str, labels: tuple[str, ...], **kw: Any) -> _Family:
            return _Family(cls(name, doc, labels, registry=r, **kw))

        self.requests = fam(Counter, "trigate_requests", "Requests (text, passthrough, realtime sessions) by "
                            "outcome", (*REQUEST, "status", "error_type"))
        self.request_duration = fam(Histogram, "gen_ai_server_request_duration_seconds",
                                    "Request duration, to the last byte of the answer (streams included)",
                                    (*REQUEST, "error_type"), buckets=DURATION_BUCKETS)
        self.ttft = fam(Histogram, "gen_ai_server_time_to_first_token_seconds",
                        "Time to the first streamed chunk of a successful stream", REQUEST, buckets=TTFT_BUCKETS)
        self.tpot = fam(Histogram, "gen_ai_server_time_per_output_token_seconds",
                        "Time per output token after the first, of successful streams", REQUEST,
                        buckets=TPOT_BUCKETS)
        self.token_usage = fam(Histogram, "gen_ai_client_token_usage",
                               "Input and output tokens per request, as the upstream reported them",
                               (*REQUEST, "gen_ai_token_type"), buckets=TOKEN_BUCKETS)
        self.operation_duration = fam(Histogram, "gen_ai_client_operation_duration_seconds",
                                      "Duration of each upstream attempt",
                                      ("provider", "gen_ai_operation_name", "gen_ai_provider_name",
                                       "gen_ai_request_model", "error_type"), buckets=DURATION_BUCKETS)
        self.upstream_errors = fam(Counter, "trigate_upstream_errors", "Failed upstream attempts and "
                                   "mid-stream failures", ("provider", "gen_ai_provider_name", "error_type"))
        self.retries = fam(Counter, "trigate_upstream_retries", "Further attempts after a failed one: on the "
                           "same target (retry) or the next target or model (fallback)",
                           ("provider", "gen_ai_provider_name", "error_type", "reason"))
        self.rate_limited = fam(Counter, "trigate_rate_limit_rejections", "Requests refused by a gateway "
                                "limit, by the scope that said no", ("scope",))
        self.limits_unenforced = Counter("trigate_limits_unenforced_requests", "Requests served without "
                                         "limits because the limits backend was unavailable "
                                         "(limits.on_backend_error: open)", registry=r)
        self.key_requests = fam(Counter, "trigate_key_requests", "Requests per client key and served model",
                                ("key_id", "model"))
        self.key_errors = fam(Counter, "trigate_key_errors", "Failed requests per client key and served model",
                              ("key_id", "model"))
        self.key_tokens = fam(Counter, "trigate_key_tokens", "Tokens per client key and served model; input "
                              "includes cache reads and writes, output includes reasoning",
                              ("key_id", "model", "gen_ai_token_type"))
        self.cost = fam(Counter, "trigate_cost_usd", "Estimated cost in USD from the price table, per client "
                        "key and served model", ("key_id", "model"))
        self.unpriced = fam(Counter, "trigate_unpriced_requests", "Requests with usage but no price for the "
                            "served model (their cost is not counted)", ("provider", "model"))
        self.usage_written = Counter("trigate_usage_rows_written", "Usage rows committed to the database",
                                     registry=r)
        self.usage_dropped = Counter("trigate_usage_rows_dropped", "Usage rows dropped because the buffer in "
                                     "front of a slow or unavailable database was full", registry=r)
        self.inflight = Gauge("trigate_requests_in_flight", "HTTP requests being served, bodies and streams "
                              "included", registry=r, multiprocess_mode="livesum")
        self.streams = Gauge("trigate_streams_open", "Server-sent event streams open", registry=r,
                             multiprocess_mode="livesum")
        self.sessions = Gauge("trigate_realtime_sessions_open", "Realtime WebSocket sessions open", registry=r,
                              multiprocess_mode="livesum")

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.exposed), content_type

    def close(self) -> None:
        if self.multiprocess is not None:
            # this process's live gauges no longer count; its counters stay in the totals
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess)
