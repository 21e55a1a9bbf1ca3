"""Names and defaults of the sidecar's pipeline: env vars, ports, attributes, paths.

The sidecar installs alone (``pip install 'leap0[sidecar]'`` in a small image), so it cannot import
``leap0.constants``; the names both define are checked to be equal by a unit test. Metric names of the sandbox
gauges live in ``names.py`` (the metrics sampler's module); the sidecar's own ``leap0.sidecar.*`` names are
here.
"""

from __future__ import annotations

from typing import Final, Literal

Signal = Literal["traces", "metrics", "logs"]
SIGNALS: Final[tuple[Signal, ...]] = ("traces", "metrics", "logs")

# --- Identity: resource attributes stamped on every signal ------------------------------------------
ATTR_SANDBOX_ID: Final = "leap0.sandbox.id"
ATTR_ORG_ID: Final = "leap0.org.id"
ATTR_TEMPLATE_ID: Final = "leap0.template.id"
ATTR_K8S_NAMESPACE: Final = "k8s.namespace.name"
ATTR_K8S_POD_NAME: Final = "k8s.pod.name"

# --- Environment variables ----------------------------------------------------------------------------
ENV_SANDBOX_ID: Final = "LEAP0_SANDBOX_ID"
ENV_ORG_ID: Final = "LEAP0_ORG_ID"
ENV_TEMPLATE_ID: Final = "LEAP0_TEMPLATE_ID"
# Set by the operator through the downward API (metadata.namespace, metadata.name).
ENV_K8S_NAMESPACE: Final = "LEAP0_K8S_NAMESPACE"
ENV_K8S_POD_NAME: Final = "LEAP0_K8S_POD_NAME"
ENV_OTLP_GRPC_ENDPOINT: Final = "LEAP0_OTLP_GRPC_ENDPOINT"
ENV_OTLP_HTTP_ENDPOINT: Final = "LEAP0_OTLP_HTTP_ENDPOINT"
ENV_METRICS_INTERVAL: Final = "LEAP0_METRICS_INTERVAL"
ENV_HEALTH_ENDPOINT: Final = "LEAP0_HEALTH_ENDPOINT"
ENV_QUEUE_BYTES: Final = "LEAP0_SIDECAR_QUEUE_BYTES"
ENV_MAX_REQUEST_BYTES: Final = "LEAP0_SIDECAR_MAX_REQUEST_BYTES"
ENV_RECEIVE_TIMEOUT: Final = "LEAP0_SIDECAR_RECEIVE_TIMEOUT"
ENV_SHUTDOWN_TIMEOUT: Final = "LEAP0_SIDECAR_SHUTDOWN_TIMEOUT"
ENV_RETRY_INITIAL: Final = "LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL"
ENV_RETRY_MAX: Final = "LEAP0_SIDECAR_RETRY_MAX_INTERVAL"
ENV_LOG_LEVEL: Final = "LEAP0_SIDECAR_LOG_LEVEL"
ENV_BATCH_LINGER: Final = "LEAP0_SIDECAR_BATCH_LINGER"

OTEL_EXPORTER_OTLP_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTEL_EXPORTER_OTLP_HEADERS: Final = "OTEL_EXPORTER_OTLP_HEADERS"
OTEL_EXPORTER_OTLP_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"

# --- Ports and defaults ------------------------------------------------------------------------------
OTLP_GRPC_PORT: Final = 4317
OTLP_HTTP_PORT: Final = 4318
# The pod's probes reach the sidecar on the pod IP, so health listens on all interfaces on its own port
# (the OpenTelemetry Collector's health_check port); it serves nothing but the two paths below.
SIDECAR_HEALTH_PORT: Final = 13133
SIDECAR_HEALTH_PATH: Final = "/healthz"
SIDECAR_READY_PATH: Final = "/readyz"

DEFAULT_OTLP_GRPC_ENDPOINT: Final = f"127.0.0.1:{OTLP_GRPC_PORT}"
DEFAULT_OTLP_HTTP_ENDPOINT: Final = f"127.0.0.1:{OTLP_HTTP_PORT}"
DEFAULT_HEALTH_ENDPOINT: Final = f"0.0.0.0:{SIDECAR_HEALTH_PORT}"
DEFAULT_METRICS_INTERVAL_S: Final = 10.0
DEFAULT_TIMEOUT_MS: Final = 10_000
DEFAULT_QUEUE_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
DEFAULT_RECEIVE_TIMEOUT_S: Final = 10.0
DEFAULT_SHUTDOWN_TIMEOUT_S: Final = 20.0
DEFAULT_RETRY_INITIAL_S: Final = 1.0
DEFAULT_RETRY_MAX_S: Final = 30.0
# How long a forwarder waits for more requests of its signal before sending (unless 256 KiB are waiting).
DEFAULT_BATCH_LINGER_S: Final = 0.2

SIGNAL_PATHS: Final[dict[Signal, str]] = {
    "traces": "/v1/traces",
    "metrics": "/v1/metrics",
    "logs": "/v1/logs",
}
GRPC_SERVICES: Final[dict[Signal, str]] = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}

# --- The sidecar's own metrics ------------------------------------------------------------------------
SELF_SCOPE: Final = "leap0-sidecar"
METRIC_RECEIVED: Final = "leap0.sidecar.requests.received"
METRIC_FORWARDED: Final = "leap0.sidecar.requests.forwarded"
METRIC_RETRIED: Final = "leap0.sidecar.requests.retried"
METRIC_DROPPED: Final = "leap0.sidecar.requests.dropped"
METRIC_REFUSED: Final = "leap0.sidecar.requests.refused"
METRIC_QUEUE_SIZE: Final = "leap0.sidecar.queue.size"
METRIC_QUEUE_BYTES: Final = "leap0.sidecar.queue.bytes"
METRIC_QUEUE_CAPACITY: Final = "leap0.sidecar.queue.capacity"
