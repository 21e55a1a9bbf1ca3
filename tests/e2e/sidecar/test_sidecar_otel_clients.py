"""The OpenTelemetry Python SDK's OTLP exporters (gRPC and HTTP), and the JavaScript SDK's (OTLP/JSON), send
spans, metrics and logs through the real sidecar to an upstream that decodes the protobuf: every resource
arrives with the sandbox's identity, the app's spoofed leap0.* attributes overwritten, and the data itself
intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from grpc import Compression as GrpcCompression
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sidecar_support import IDENTITY, SidecarProcess, Upstream, resource_attributes
from support import send_with_the_js_exporters, wait_for

pytestmark = pytest.mark.e2e

SPOOFED = Resource.create(
    {
        "service.name": "checkout",
        "leap0.sandbox.id": "someone-else",
        "leap0.org.id": "other-org",
        "leap0.template.id": "fake",
        "k8s.pod.name": "not-my-pod",
    }
)


def make_spans(prefix: str, n: int) -> Any:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=SPOOFED)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for i in range(n):
        with tracer.start_as_current_span(f"{prefix}-{i}", attributes={"i": i, "kind": "work"}):
            pass
    return memory.get_finished_spans()


def make_metrics() -> Any:
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=SPOOFED, metric_readers=[reader])
    provider.get_meter("test").create_counter("orders").add(3, {"shop": "a"})
    return reader.get_metrics_data()


def make_logs(text: str) -> Any:
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=SPOOFED)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    provider.get_logger("test").emit(body=text, attributes={"user": "u1"})
    return memory.get_finished_logs()


def exporters(transport: str, sidecar: SidecarProcess) -> tuple[Any, Any, Any]:
    # The span exporters send gzip bodies (as apps configured with OTEL_EXPORTER_OTLP_COMPRESSION do).
    if transport == "grpc":
        return (
            GrpcSpanExporter(endpoint=sidecar.grpc_target, insecure=True, compression=GrpcCompression.Gzip),
            GrpcMetricExporter(endpoint=sidecar.grpc_target, insecure=True),
            GrpcLogExporter(endpoint=sidecar.grpc_target, insecure=True),
        )
    return (
        HttpSpanExporter(endpoint=f"{sidecar.http_url}/v1/traces", compression=HttpCompression.Gzip),
        HttpMetricExporter(endpoint=f"{sidecar.http_url}/v1/metrics"),
        HttpLogExporter(endpoint=f"{sidecar.http_url}/v1/logs"),
    )


def assert_identity(resource: Any) -> None:
    attrs = resource_attributes(resource)
    for key, value in IDENTITY.items():
        assert attrs[key] == value, (key, attrs)
    assert attrs["service.name"] == "checkout"
    # each identity attribute exactly once (the spoofed ones removed, not duplicated)
    keys = [kv.key for kv in resource.attributes]
    assert len(keys) == len(set(keys)), keys


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporters_through_sidecar_get_identity(
    transport: str, upstream: Upstream, sidecar: SidecarProcess
) -> None:
    span_exporter, metric_exporter, log_exporter = exporters(transport, sidecar)
    spans = make_spans(transport, 5)
    assert span_exporter.export(spans) == SpanExportResult.SUCCESS
    assert metric_exporter.export(make_metrics()) == MetricExportResult.SUCCESS
    assert log_exporter.export(make_logs(f"hello over {transport}")).name == "SUCCESS"

    wait_for(lambda: len(upstream.span_names()) == 5, what="the spans upstream")
    wait_for(lambda: upstream.messages("/v1/logs"), what="the logs upstream")
    wait_for(
        lambda: any(
            m.name == "orders"
            for rm in upstream.resources("/v1/metrics")
            for sm in rm.scope_metrics
            for m in sm.metrics
        ),
        what="the app's metric upstream",
    )
    for path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
        for resource_x in upstream.resources(path):
            assert_identity(resource_x.resource)

    # The data itself arrives intact (the rewrite copies it byte for byte).
    received = [s for rs in upstream.resources("/v1/traces") for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in received) == sorted(s.name for s in spans)
    by_name = {s.name: s for s in received}
    for span in spans:
        got = by_name[span.name]
        assert got.trace_id == span.context.trace_id.to_bytes(16, "big")
        assert got.span_id == span.context.span_id.to_bytes(8, "big")
        assert {kv.key for kv in got.attributes} == {"i", "kind"}
    log_record = upstream.resources("/v1/logs")[0].scope_logs[0].log_records[0]
    assert log_record.body.string_value == f"hello over {transport}"
    orders = next(
        m
        for rm in upstream.resources("/v1/metrics")
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "orders"
    )
    assert orders.sum.data_points[0].as_int == 3
    for exporter in (span_exporter, metric_exporter, log_exporter):
        exporter.shutdown()


def test_the_opentelemetry_js_exporters_through_the_sidecar(
    tmp_path: Path, upstream: Upstream, sidecar: SidecarProcess
) -> None:
    """The JS SDK's OTLP/HTTP exporters send OTLP/JSON, chunked: the span arrives with its own (hex) ids, the
    metric with its value, both with the sandbox's identity instead of the one the app claimed."""
    sent = send_with_the_js_exporters(sidecar.http_url, tmp_path)
    wait_for(lambda: upstream.span_names() == ["js-work"], what="the JS span")
    ((resource_spans,),) = [m.resource_spans for m in upstream.messages("/v1/traces")]
    span = resource_spans.scope_spans[0].spans[0]
    assert (span.trace_id.hex(), span.span_id.hex()) == (sent["traceId"], sent["spanId"])
    assert resource_attributes(resource_spans.resource).items() >= IDENTITY.items()

    def js_calls() -> list[Any]:
        return [
            (metric, rm.resource)
            for rm in upstream.resources("/v1/metrics")
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == "js.calls"
        ]

    ((metric, resource),) = wait_for(js_calls, what="the JS counter")
    assert (metric.unit, metric.sum.data_points[0].as_double) == ("{call}", 3.0)
    assert resource_attributes(resource).items() >= IDENTITY.items()
