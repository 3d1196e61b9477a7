"""Observability and accounting: Prometheus metrics, OpenTelemetry traces, the JSON access log, prices
and per-key cost. ``telemetry.Telemetry`` ties them together; ``trigate.telemetry.Exchange`` is the
per-request record they are all fed from."""
