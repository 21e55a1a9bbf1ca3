"""A sandbox cannot speak as another tenant: the OpenTelemetry SDKs' own exporters (Python over OTLP/HTTP
protobuf and OTLP/gRPC, JavaScript over OTLP/HTTP JSON) send the victim's identity as attributes at every
level they can express (resource, scope, span, span event, span link, log record, data points of each kind,
exemplars); through the real sidecar, the upstream receives none of them, only the sandbox's own identity on
each resource, and every other attribute intact.

This reproduces the reported attack (``leap0.org.id=victim-org`` on a span reached the sink) and shows it
failing on each path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from grpc import Compression as GrpcCompression
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link
from sidecar_support import IDENTITY, SidecarProcess, Upstream, reserved_attributes, resource_attributes
from support import subprocess_env, wait_for

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().parents[3] / "js"
# The victim's identity, and the spellings backends fold into it (leap0_org_id in Prometheus and Loki).
SPOOF = {"leap0.org.id": "victim-org", "leap0.sandbox.id": "victim-sbx", "leap0_org_id": "victim-org"}
KEPT = {"keep": "me"}
ATTRIBUTES = {**SPOOF, **KEPT}


def attrs(kvs: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


def assert_no_other_identity(upstream: Upstream) -> None:
    """Every request upstream: the sandbox's identity on each resource, no reserved attribute elsewhere."""
    for path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
        for message in upstream.messages(path):
            assert reserved_attributes(message) == [], path
        for resource_x in upstream.resources(path):
            resource = resource_attributes(resource_x.resource)
            reserved = {k: v for k, v in resource.items() if k.startswith("leap0")}
            assert reserved == {k: v for k, v in IDENTITY.items() if k.startswith("leap0")}, (path, resource)
    assert upstream.rejected == 0


# --- Python: OTLP/HTTP protobuf and OTLP/gRPC ------------------------------------------------------------
def python_telemetry(transport: str) -> tuple[Any, Any, Any]:
    resource = Resource.create({"service.name": f"py-{transport}", **ATTRIBUTES})
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("attacker", "1.0", attributes=ATTRIBUTES)
    with tracer.start_as_current_span(f"{transport}-parent") as parent:
        link = Link(parent.get_span_context(), attributes=ATTRIBUTES)
    # the reported attack: leap0.org.id=victim-org on a span
    with tracer.start_as_current_span(f"{transport}-attack", links=[link], attributes=ATTRIBUTES) as span:
        span.add_event("event", ATTRIBUTES)

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        exemplar_filter=AlwaysOnExemplarFilter(),
        views=[
            View(instrument_name="exp", aggregation=ExponentialBucketHistogramAggregation()),
            View(instrument_name="filtered", attribute_keys={"keep"}),  # the rest goes to the exemplar
        ],
    )
    meter = meter_provider.get_meter("attacker", attributes=ATTRIBUTES)
    meter.create_counter("orders").add(3, ATTRIBUTES)
    meter.create_gauge("temperature").set(21.5, ATTRIBUTES)
    meter.create_histogram("latency").record(12.5, ATTRIBUTES)
    meter.create_histogram("exp").record(12.5, ATTRIBUTES)
    meter.create_counter("filtered").add(1, ATTRIBUTES)

    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger_provider.get_logger("attacker", attributes=ATTRIBUTES).emit(
        body="as victim", attributes=ATTRIBUTES
    )
    return spans.get_finished_spans(), reader.get_metrics_data(), logs.get_finished_logs()


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_python_exporters_cannot_send_another_identity(
    transport: str, upstream: Upstream, sidecar: SidecarProcess
) -> None:
    spans, metrics, logs = python_telemetry(transport)
    if transport == "grpc":
        exporters: tuple[Any, Any, Any] = (
            GrpcSpanExporter(endpoint=sidecar.grpc_target, insecure=True, compression=GrpcCompression.Gzip),
            GrpcMetricExporter(endpoint=sidecar.grpc_target, insecure=True),
            GrpcLogExporter(endpoint=sidecar.grpc_target, insecure=True),
        )
    else:
        exporters = (
            HttpSpanExporter(endpoint=f"{sidecar.http_url}/v1/traces"),
            HttpMetricExporter(endpoint=f"{sidecar.http_url}/v1/metrics"),
            HttpLogExporter(endpoint=f"{sidecar.http_url}/v1/logs"),
        )
    span_exporter, metric_exporter, log_exporter = exporters
    assert span_exporter.export(spans) == SpanExportResult.SUCCESS
    assert metric_exporter.export(metrics) == MetricExportResult.SUCCESS
    assert log_exporter.export(logs).name == "SUCCESS"
    for exporter in exporters:
        exporter.shutdown()

    wait_for(lambda: len(upstream.span_names()) == 2, what="the spans upstream")
    wait_for(lambda: upstream.messages("/v1/logs"), what="the log record upstream")
    wait_for(lambda: app_metrics(upstream), what="the metrics upstream")
    assert_no_other_identity(upstream)

    scope_spans = upstream.resources("/v1/traces")[0].scope_spans[0]
    assert attrs(scope_spans.scope.attributes) == KEPT
    attack = next(s for s in scope_spans.spans if s.name == f"{transport}-attack")
    assert attrs(attack.attributes) == KEPT
    assert attrs(attack.events[0].attributes) == KEPT
    assert attrs(attack.links[0].attributes) == KEPT
    record = upstream.resources("/v1/logs")[0].scope_logs[0].log_records[0]
    assert (attrs(record.attributes), record.body.string_value) == (KEPT, "as victim")
    points = app_metrics(upstream)
    assert set(points) == {"orders", "temperature", "latency", "exp", "filtered"}
    for name, (point, _) in points.items():
        assert attrs(point.attributes) == KEPT, name
    exemplar = points["filtered"][0].exemplars[0]
    assert attrs(exemplar.filtered_attributes) == {}  # the view moved SPOOF there; it was removed


def app_metrics(upstream: Upstream) -> dict[str, tuple[Any, str]]:
    """The app's metrics upstream (not the sidecar's own): name -> (first data point, kind)."""
    found: dict[str, tuple[Any, str]] = {}
    for resource_x in upstream.resources("/v1/metrics"):
        for scope_metrics in resource_x.scope_metrics:
            if scope_metrics.scope.name == "leap0-sidecar":
                continue
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                found[metric.name] = (getattr(metric, kind).data_points[0], kind)
    return found


# --- JavaScript: OTLP/HTTP JSON -----------------------------------------------------------------------------
JS_ATTACKER = r"""
import { createRequire } from "node:module";
const require = createRequire(process.env.JS_DIR + "/package.json");
const { BasicTracerProvider, SimpleSpanProcessor } = require("@opentelemetry/sdk-trace-base");
const { OTLPTraceExporter } = require("@opentelemetry/exporter-trace-otlp-http");
const { MeterProvider, PeriodicExportingMetricReader } = require("@opentelemetry/sdk-metrics");
const { OTLPMetricExporter } = require("@opentelemetry/exporter-metrics-otlp-http");
const { LoggerProvider, SimpleLogRecordProcessor, InMemoryLogRecordExporter } =
  require("@opentelemetry/sdk-logs");
const { JsonLogsSerializer } = require("@opentelemetry/otlp-transformer");
const { resourceFromAttributes } = require("@opentelemetry/resources");

const base = process.env.SIDECAR;
const attributes = JSON.parse(process.env.ATTRIBUTES);
const resource = resourceFromAttributes({ "service.name": "js-app", ...attributes });

const tracerProvider = new BasicTracerProvider({
  resource,
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${base}/v1/traces` }))],
});
const tracer = tracerProvider.getTracer("attacker", "1.0");
const parent = tracer.startSpan("js-parent");
parent.end();
const span = tracer.startSpan("js-attack", {
  attributes,
  links: [{ context: parent.spanContext(), attributes }],
});
span.addEvent("event", attributes);
span.end();
await tracerProvider.forceFlush();
await tracerProvider.shutdown();

const meterProvider = new MeterProvider({
  resource,
  readers: [
    new PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter({ url: `${base}/v1/metrics` }),
      exportIntervalMillis: 600000,
    }),
  ],
});
const meter = meterProvider.getMeter("attacker");
meter.createCounter("js.orders").add(3, attributes);
meter.createHistogram("js.latency").record(12.5, attributes);
meter.createGauge("js.temperature").record(21, attributes);
await meterProvider.forceFlush();
await meterProvider.shutdown();

// No OTLP log exporter among the JS SDK's dependencies: the SDK's own JSON serializer, posted as it would.
const logs = new InMemoryLogRecordExporter();
const processor = new SimpleLogRecordProcessor({ exporter: logs });
const loggerProvider = new LoggerProvider({ resource, processors: [processor] });
loggerProvider.getLogger("attacker").emit({ body: "as victim", attributes });
await loggerProvider.forceFlush();
if (logs.getFinishedLogRecords().length !== 1) throw new Error("the SDK recorded no log record");
const answer = await fetch(`${base}/v1/logs`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JsonLogsSerializer.serializeRequest(logs.getFinishedLogRecords()),
});
if (answer.status !== 200) throw new Error(`logs: ${answer.status}`);
console.log("sent");
"""


def test_javascript_exporters_cannot_send_another_identity(
    tmp_path: Path, upstream: Upstream, sidecar: SidecarProcess
) -> None:
    node = shutil.which("node")
    assert node is not None, "node (20+) is needed for the JavaScript attacker"
    assert (JS_DIR / "node_modules" / "@opentelemetry").is_dir(), "run `npm ci` in js/ (scripts/test.sh does)"
    script = tmp_path / "attacker.mjs"
    script.write_text(JS_ATTACKER)
    env = subprocess_env(JS_DIR=str(JS_DIR), SIDECAR=sidecar.http_url, ATTRIBUTES=json.dumps(ATTRIBUTES))
    result = subprocess.run([node, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent"

    wait_for(lambda: len(upstream.span_names()) == 2, what="the JS spans upstream")
    wait_for(lambda: upstream.messages("/v1/logs"), what="the JS log record upstream")
    wait_for(lambda: len(app_metrics(upstream)) == 3, what="the JS metrics upstream")
    assert_no_other_identity(upstream)

    attack = next(
        s
        for rs in upstream.resources("/v1/traces")
        for ss in rs.scope_spans
        for s in ss.spans
        if s.name == "js-attack"
    )
    assert attrs(attack.attributes) == KEPT
    assert attrs(attack.events[0].attributes) == KEPT
    assert attrs(attack.links[0].attributes) == KEPT
    record = upstream.resources("/v1/logs")[0].scope_logs[0].log_records[0]
    assert attrs(record.attributes) == KEPT
    points = app_metrics(upstream)
    assert {name: kind for name, (_, kind) in points.items()} == {
        "js.orders": "sum",
        "js.latency": "histogram",
        "js.temperature": "gauge",
    }
    for name, (point, _) in points.items():
        assert attrs(point.attributes) == KEPT, name
