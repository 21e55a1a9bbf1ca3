"""The SDK's own OpenTelemetry: a span and a duration histogram per SDK operation.

Enablement (``resolve_enabled``) is a pure function of the client argument and the environment. When it is
off, the client holds a :class:`NoopTelemetry` and nothing from ``opentelemetry`` is even imported.
When on, the application's global providers are used if it has set them; otherwise the SDK builds its own
TracerProvider and MeterProvider with OTLP/HTTP exporters configured from the standard ``OTEL_*`` env, and
flushes and shuts them down in ``close()``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import leap0_contract as c

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def resolve_enabled(explicit: bool | None, env: Mapping[str, str]) -> bool:
    """Is SDK telemetry on? The argument wins; then ``LEAP0_SDK_OTEL_ENABLED``; then a local OTLP endpoint.

    ``LEAP0_SDK_OTEL_ENABLED=false`` turns it off even with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (the more
    specific setting wins); an unrecognised value is ignored (as if unset).
    """
    if explicit is not None:
        return bool(explicit)
    flag = env.get(c.ENV_SDK_OTEL_ENABLED, "").strip().lower()
    if flag in _TRUE:
        return True
    if flag in _FALSE:
        return False
    return bool(env.get(c.OTEL_EXPORTER_OTLP_ENDPOINT, "").strip())


def own_export_timeout(signal: str, env: Mapping[str, str]) -> float | None:
    """The export timeout in seconds (retries included) of the SDK's own exporters for ``signal`` (``TRACES``,
    ``METRICS``): None when ``OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT`` or ``OTEL_EXPORTER_OTLP_TIMEOUT`` is set
    (the exporter reads them itself), else ``SDK_OTEL_EXPORT_TIMEOUT_MS`` instead of OpenTelemetry's 10 s, so
    ``close()`` is quick when the collector is unreachable."""
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT", c.OTEL_EXPORTER_OTLP_TIMEOUT):
        if env.get(name, "").strip():
            return None
    return c.SDK_OTEL_EXPORT_TIMEOUT_MS / 1000


def histogram_name(operation: str) -> str:
    """The duration histogram of an operation: ``sandboxes.create`` -> ``sandboxes_create_duration`` (ms).

    One histogram per operation, named as the hosted Leap0 SDK names them, so dashboards carry over.
    """
    return operation.replace(".", "_").lower() + "_duration"


class Operation(Protocol):
    def set_sandbox_id(self, sandbox_id: str) -> None: ...

    def set_attribute(self, key: str, value: str | int | float | bool) -> None: ...

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` of the operation's span (None without one): the sandbox's supervisor puts
        it on the log records of the command the operation runs."""
        ...


class Telemetry(Protocol):
    enabled: bool

    def operation(self, name: str, sandbox_id: str | None = None) -> Any: ...

    def span(self, name: str, sandbox_id: str | None = None) -> Any: ...

    def close(self) -> None: ...


class _NoopOperation:
    def set_sandbox_id(self, sandbox_id: str) -> None:
        pass

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        pass

    def traceparent(self) -> str | None:
        return None


class NoopTelemetry:
    """Telemetry off: no OpenTelemetry object exists and ``opentelemetry`` is not imported."""

    enabled = False

    @contextmanager
    def operation(self, name: str, sandbox_id: str | None = None) -> Iterator[Operation]:
        yield _NoopOperation()

    @contextmanager
    def span(self, name: str, sandbox_id: str | None = None) -> Iterator[Operation]:
        yield _NoopOperation()

    def close(self) -> None:
        pass


class _SpanOperation:
    def __init__(self, span: Any) -> None:
        self._span = span

    def set_sandbox_id(self, sandbox_id: str) -> None:
        self._span.set_attribute(c.ATTR_SANDBOX_ID, sandbox_id)

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        self._span.set_attribute(key, value)

    def traceparent(self) -> str | None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(self._span))
        return carrier.get("traceparent")


class OtelTelemetry:
    """Telemetry on: spans and duration histograms from the ``leap0-sdk-python`` tracer and meter."""

    enabled = True

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from opentelemetry import metrics, trace

        self._owned: list[Any] = []
        if tracer_provider is None:
            tracer_provider = trace.get_tracer_provider()
            if isinstance(tracer_provider, trace.ProxyTracerProvider):
                tracer_provider = self._own_tracer_provider()
        if meter_provider is None:
            meter_provider = metrics.get_meter_provider()
            if type(meter_provider).__name__ == "_ProxyMeterProvider":
                meter_provider = self._own_meter_provider()
        from leap0 import __version__

        self._tracer = tracer_provider.get_tracer(c.SDK_INSTRUMENTATION_NAME, __version__)
        self._meter = meter_provider.get_meter(c.SDK_INSTRUMENTATION_NAME, __version__)
        self._histograms: dict[str, Any] = {}

    def _own_tracer_provider(self) -> Any:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create())
        exporter = OTLPSpanExporter(timeout=own_export_timeout("TRACES", os.environ))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        self._owned.append(provider)
        return provider

    def _own_meter_provider(self) -> Any:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        exporter = OTLPMetricExporter(timeout=own_export_timeout("METRICS", os.environ))
        provider = MeterProvider(
            resource=Resource.create(), metric_readers=[PeriodicExportingMetricReader(exporter)]
        )
        self._owned.append(provider)
        return provider

    def _histogram(self, operation: str) -> Any:
        hist = self._histograms.get(operation)
        if hist is None:
            hist = self._meter.create_histogram(
                histogram_name(operation), unit="ms", description=f"Duration of the SDK operation {operation}"
            )
            self._histograms[operation] = hist
        return hist

    @contextmanager
    def operation(self, name: str, sandbox_id: str | None = None) -> Iterator[Operation]:
        """One SDK operation: a CLIENT span and its duration histogram (status ``success`` or ``error``)."""
        from opentelemetry.trace import SpanKind

        histogram = self._histogram(name)
        status = c.SDK_STATUS_ERROR
        started = time.perf_counter()
        try:
            with self._span(name, SpanKind.CLIENT, sandbox_id) as op:
                yield op
                status = c.SDK_STATUS_SUCCESS
        finally:
            histogram.record((time.perf_counter() - started) * 1000.0, {c.SDK_ATTR_STATUS: status})

    @contextmanager
    def span(self, name: str, sandbox_id: str | None = None) -> Iterator[Operation]:
        """A span of the SDK's tracer without a histogram (for layers over the SDK: ``mcp.tool <name>``).

        The SDK operations run inside become its children. An exception ends it with status ERROR.
        """
        from opentelemetry.trace import SpanKind

        with self._span(name, SpanKind.INTERNAL, sandbox_id) as op:
            yield op

    @contextmanager
    def _span(self, name: str, kind: Any, sandbox_id: str | None) -> Iterator[Operation]:
        from opentelemetry.trace import Status, StatusCode

        with self._tracer.start_as_current_span(
            name, kind=kind, record_exception=False, set_status_on_exception=False
        ) as span:
            op = _SpanOperation(span)
            if sandbox_id:
                op.set_sandbox_id(sandbox_id)
            try:
                yield op
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            span.set_status(Status(StatusCode.OK))

    def close(self) -> None:
        """Flush and shut down the providers the SDK built itself (never the application's)."""
        owned, self._owned = self._owned, []
        for provider in owned:
            provider.shutdown()  # exports what is pending (spans) and a last collection (metrics), once


def make_telemetry(
    explicit: bool | None, env: Mapping[str, str], tracer_provider: Any = None, meter_provider: Any = None
) -> Telemetry:
    if not resolve_enabled(explicit, env):
        return NoopTelemetry()
    return OtelTelemetry(tracer_provider, meter_provider)
