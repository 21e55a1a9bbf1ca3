"""The console OTLP sink: real OpenTelemetry exporters send to it; it decodes, keeps and prints."""

from __future__ import annotations

import gzip
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from support import send_with_the_js_exporters

from leap0_dev.sink import OtlpSink

pytestmark = pytest.mark.e2e

RESOURCE = Resource.create({"leap0.sandbox.id": "demo", "leap0.org.id": "acme", "service.name": "app"})


@pytest.fixture
def sink() -> Iterator[tuple[OtlpSink, list[str]]]:
    printed: list[str] = []
    with OtlpSink(printer=printed.append) as server:
        yield server, printed


def test_spans_from_the_sdk_are_decoded_and_printed_with_identity(sink: tuple[OtlpSink, list[str]]) -> None:
    server, printed = sink
    provider = TracerProvider(resource=RESOURCE)
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", compression=Compression.Gzip)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("work", attributes={"step": 1}):
        pass
    provider.shutdown()
    (span,) = server.spans()
    assert span["name"] == "work"
    assert span["attributes"] == {"step": 1}
    assert span["resource"]["leap0.sandbox.id"] == "demo"
    identity = "leap0.sandbox.id=demo, leap0.org.id=acme"
    assert any(line.startswith("span   work ") and identity in line for line in printed)


def test_metrics_from_the_sdk_are_decoded_with_values(sink: tuple[OtlpSink, list[str]]) -> None:
    server, printed = sink
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    gauge = provider.get_meter("test").create_gauge("leap0.sandbox.cpu.limit", unit="{cpu}")
    gauge.set(2)
    data = reader.get_metrics_data()
    assert data is not None
    OTLPMetricExporter(endpoint=f"{server.url}/v1/metrics").export(data)
    provider.shutdown()
    (point,) = server.metric_points()
    assert (point["name"], point["unit"], point["value"]) == ("leap0.sandbox.cpu.limit", "{cpu}", 2)
    assert "metric leap0.sandbox.cpu.limit = 2 {cpu} [leap0.sandbox.id=demo, leap0.org.id=acme]" in printed


def post(url: str, body: bytes, content_type: str, encoding: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    if encoding:
        request.add_header("Content-Encoding", encoding)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_json_bodies_and_bad_input_get_otlp_answers(sink: tuple[OtlpSink, list[str]]) -> None:
    server, _ = sink
    body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "j", "traceId": "", "spanId": ""}]}]}]}'
    assert post(f"{server.url}/v1/traces", body, "application/json") == (200, b"{}")
    assert [s["name"] for s in server.spans()] == ["j"]
    assert post(f"{server.url}/v1/traces", b"\xff\x01", "application/x-protobuf")[0] == 400
    assert post(f"{server.url}/v1/traces", b"x", "text/plain")[0] == 415
    assert post(f"{server.url}/v1/traces", b"not gzip", "application/x-protobuf", "gzip")[0] == 400
    assert post(f"{server.url}/v1/nothing", b"", "application/x-protobuf")[0] == 404
    status, _ = post(f"{server.url}/v1/logs", gzip.compress(b""), "application/x-protobuf", "gzip")
    assert status == 200


def test_otlp_json_ids_are_hex_and_chunked_bodies_are_read(sink: tuple[OtlpSink, list[str]]) -> None:
    """OTLP/JSON trace and span ids are hex strings (not protobuf's base64), and a body may come chunked."""
    server, printed = sink
    span = {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "a1a2a3a4a5a6a7a8", "name": "hex"}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    pieces = iter([body[:10], body[10:]])
    conn.request(
        "POST", "/v1/traces", body=pieces, headers={"Content-Type": "application/json"}, encode_chunked=True
    )
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"{}")
    conn.close()
    ((trace_id, span_id),) = [(s["trace_id"], s["span_id"]) for s in server.spans()]
    assert (trace_id, span_id) == ("0102030405060708090a0b0c0d0e0f10", "a1a2a3a4a5a6a7a8")
    assert any("trace=0102030405060708 " in line for line in printed)
    bad = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{**span, "traceId": "0102"}]}]}]}).encode()
    status, answer = post(f"{server.url}/v1/traces", bad, "application/json")
    assert status == 400
    assert b"traceId" in answer


def test_the_opentelemetry_js_exporters_reach_the_sink(
    tmp_path: Path, sink: tuple[OtlpSink, list[str]]
) -> None:
    """The JS SDK's exporters (OTLP/JSON, chunked): spans with their own ids, and metrics (a JS counter is
    a double), decoded and printed."""
    server, printed = sink
    sent = send_with_the_js_exporters(server.url, tmp_path)
    assert all("chunked" in r.headers.get("Transfer-Encoding", "") for r in server.requests)
    ((span),) = server.spans()
    assert (span["name"], span["trace_id"], span["span_id"]) == ("js-work", sent["traceId"], sent["spanId"])
    assert span["attributes"] == {"step": 1}
    (point,) = server.metric_points()
    assert (point["name"], point["unit"], point["value"]) == ("js.calls", "{call}", 3)
    identity = "[leap0.sandbox.id=demo, leap0.org.id=acme]"
    assert any(
        line.startswith("span   js-work ") and f"trace={sent['traceId'][:16]}" in line for line in printed
    )
    assert f"metric js.calls = 3.00 {{call}} {identity}" in printed
