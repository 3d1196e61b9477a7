"""OpenTelemetry traces (the optional ``otel`` extra): one SERVER span per request, one CLIENT span per
upstream attempt, W3C trace context in and out.

Built only when ``observability.tracing.enabled`` is set and the SDK is installed; otherwise the
gateway holds ``None`` and the hot path pays one ``is None`` test. The gateway has its own
TracerProvider (not the global one), so several gateways in one process keep their traces apart and
the host application's tracing is left alone. Parents are passed explicitly, never through OTel's
ambient context, which does not follow the request across trio tasks the way the code needs.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit

from trigate import __version__
from trigate.config import TracingConfig

log = logging.getLogger("trigate.tracing")


def _traces_url(endpoint: str) -> str:
    # The OTLP/HTTP exporter wants the full signal URL; accept the collector's base URL too.
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


class Tracing:
    def __init__(self, cfg: TracingConfig) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self.provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name,
                                                                 "service.version": __version__}),
                                       sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)))
        from_env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if cfg.otlp_endpoint or from_env:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = _traces_url(cfg.otlp_endpoint) if cfg.otlp_endpoint else None  # None: the env's
            exporter = OTLPSpanExporter(endpoint=endpoint, headers=dict(cfg.headers) or None)
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        else:
            log.warning("observability.tracing is enabled without an otlp_endpoint: spans are not exported")
        self.tracer = self.provider.get_tracer("trigate", __version__)
        self.propagator = TraceContextTextMapPropagator()
        self.SERVER = trace.SpanKind.SERVER
        self.CLIENT = trace.SpanKind.CLIENT
        self.ERROR = trace.StatusCode.ERROR

    def extract(self, headers: list[tuple[bytes, bytes]]) -> Any:
        """The caller's trace context from ``traceparent``/``tracestate``, or None."""
        carrier = {}
        for k, v in headers:
            if k in (b"traceparent", b"tracestate"):
                carrier[k.decode("latin-1")] = v.decode("latin-1")
        return self.propagator.extract(carrier) if carrier else None

    def start_server(self, name: str, parent: Any) -> Any:
        return self.tracer.start_span(name, context=parent, kind=self.SERVER)

    def start_client(self, name: str, parent_span: Any) -> Any:
        ctx = self._trace.set_span_in_context(parent_span) if parent_span is not None else None
        return self.tracer.start_span(name, context=ctx, kind=self.CLIENT)

    def inject(self, span: Any, headers: dict[str, str]) -> None:
        """Write ``traceparent`` (and ``tracestate``) for ``span`` into outgoing headers, replacing any."""
        headers.pop("traceparent", None)
        headers.pop("tracestate", None)
        self.propagator.inject(headers, context=self._trace.set_span_in_context(span))

    def fail(self, span: Any, error_type: str) -> None:
        span.set_attribute("error.type", error_type)
        span.set_status(self._trace.Status(self.ERROR, error_type))

    def flush(self, timeout_ms: int = 5000) -> bool:
        return bool(self.provider.force_flush(timeout_ms))

    def shutdown(self) -> None:
        self.provider.shutdown()


def make_tracing(cfg: TracingConfig) -> Tracing | None:
    if not cfg.enabled:
        return None
    try:
        return Tracing(cfg)
    except ImportError:
        log.warning("observability.tracing is enabled but the OpenTelemetry SDK is not installed "
                    "(pip install 'trigate[otel]'); tracing is off")
        return None
