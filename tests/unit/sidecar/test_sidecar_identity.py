"""The identity rewrite on real OpenTelemetry SDK payloads: resources rewritten, the rest byte for byte."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceProto
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from leap0_sidecar.identity import IdentityStamper, WireError, encode_varint, iter_fields

IDENTITY = [("leap0.sandbox.id", "sbx-1"), ("leap0.org.id", "org-1"), ("leap0.template.id", "default")]
SPOOFED = {"service.name": "app", "leap0.sandbox.id": "evil", "leap0.org.id": "evil-org", "deployment": "x"}


def attrs(resource: ResourceProto) -> list[tuple[str, str]]:
    return [(kv.key, kv.value.string_value) for kv in resource.attributes]


def sdk_spans(resource: Resource, n: int = 3) -> ExportTraceServiceRequest:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("lib", "1.0")
    for i in range(n):
        with tracer.start_as_current_span(f"op-{i}", attributes={"n": i, "s": "v" * 20}) as span:
            span.add_event("evt", {"k": "v"})
    return encode_spans(memory.get_finished_spans())


def test_sdk_trace_request_rewritten_spans_untouched() -> None:
    request = sdk_spans(Resource.create(SPOOFED))
    stamped = IdentityStamper(IDENTITY).rewrite(request.SerializeToString())
    result = ExportTraceServiceRequest.FromString(stamped)
    got = dict(attrs(result.resource_spans[0].resource))
    assert got["leap0.sandbox.id"] == "sbx-1"
    assert got["leap0.org.id"] == "org-1"
    assert got["leap0.template.id"] == "default"
    assert got["service.name"] == "app"
    assert got["deployment"] == "x"
    assert [k for k, _ in attrs(result.resource_spans[0].resource)].count("leap0.sandbox.id") == 1
    # The scope spans are the very same bytes.
    assert result.resource_spans[0].scope_spans[0].SerializeToString() == (
        request.resource_spans[0].scope_spans[0].SerializeToString()
    )
    assert result.resource_spans[0].schema_url == request.resource_spans[0].schema_url


def test_several_resources_in_one_request_all_rewritten() -> None:
    a = sdk_spans(Resource.create({"service.name": "a", "leap0.template.id": "x"}))
    b = sdk_spans(Resource.create({"service.name": "b"}), n=2)
    combined = a.SerializeToString() + b.SerializeToString()  # concatenation merges: two ResourceSpans
    result = ExportTraceServiceRequest.FromString(IdentityStamper(IDENTITY).rewrite(combined))
    assert len(result.resource_spans) == 2
    for rs, service in zip(result.resource_spans, ["a", "b"], strict=True):
        got = dict(attrs(rs.resource))
        assert got["service.name"] == service
        assert {k: got[k] for k, _ in IDENTITY} == dict(IDENTITY)
    assert [len(rs.scope_spans[0].spans) for rs in result.resource_spans] == [3, 2]


def test_sdk_metrics_and_logs_requests() -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=Resource.create(SPOOFED), metric_readers=[reader])
    meter_provider.get_meter("m").create_histogram("latency").record(12.5)
    metrics = encode_metrics(reader.get_metrics_data())
    stamped = ExportMetricsServiceRequest.FromString(
        IdentityStamper(IDENTITY).rewrite(metrics.SerializeToString())
    )
    assert dict(attrs(stamped.resource_metrics[0].resource))["leap0.org.id"] == "org-1"
    assert stamped.resource_metrics[0].scope_metrics == metrics.resource_metrics[0].scope_metrics

    memory = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=Resource.create(SPOOFED))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger_provider.get_logger("l").emit(body="hi", attributes={"a": 1})
    logs = encode_logs(memory.get_finished_logs())
    stamped_logs = ExportLogsServiceRequest.FromString(
        IdentityStamper(IDENTITY).rewrite(logs.SerializeToString())
    )
    assert dict(attrs(stamped_logs.resource_logs[0].resource))["leap0.sandbox.id"] == "sbx-1"
    assert stamped_logs.resource_logs[0].scope_logs == logs.resource_logs[0].scope_logs


def test_unknown_fields_survive_at_every_level() -> None:
    request = sdk_spans(Resource.create({"service.name": "app", "leap0.sandbox.id": "evil"}))
    # Unknown fields (from a newer OTLP version): in the request, in ResourceSpans and in the Resource.
    unknown_top = b"\xa2\x06\x03abc"  # field 100, length-delimited
    unknown_varint = b"\xa8\x06\x2a"  # field 101, varint 42
    resource = request.resource_spans[0].resource.SerializeToString() + b"\xb2\x06\x02zz"  # field 102
    rs = ResourceSpans.FromString(request.resource_spans[0].SerializeToString())
    rs.ClearField("resource")
    inner = b"\x0a" + encode_varint(len(resource)) + resource + rs.SerializeToString() + unknown_varint
    raw = unknown_top + b"\x0a" + encode_varint(len(inner)) + inner
    stamped = IdentityStamper(IDENTITY).rewrite(raw)
    assert stamped.startswith(unknown_top)
    result = ExportTraceServiceRequest.FromString(stamped)
    assert dict(attrs(result.resource_spans[0].resource))["leap0.sandbox.id"] == "sbx-1"
    assert b"\xb2\x06\x02zz" in result.resource_spans[0].resource.SerializeToString()
    assert result.resource_spans[0].SerializeToString().endswith(unknown_varint)
    assert len(result.resource_spans[0].scope_spans[0].spans) == 3


def test_missing_resource_is_added_and_split_resource_merged() -> None:
    rs = ResourceSpans(schema_url="s")
    raw = ExportTraceServiceRequest(resource_spans=[rs]).SerializeToString()
    result = ExportTraceServiceRequest.FromString(IdentityStamper(IDENTITY).rewrite(raw))
    assert attrs(result.resource_spans[0].resource) == IDENTITY
    assert result.resource_spans[0].schema_url == "s"
    # A singular message field sent twice merges (protobuf semantics): both halves kept, identity once.
    half1 = ResourceProto(attributes=[]).SerializeToString()
    r1 = ResourceProto()
    r1.attributes.add(key="a").value.string_value = "1"
    r2 = ResourceProto()
    r2.attributes.add(key="leap0.org.id").value.string_value = "evil"
    inner = b"".join(
        b"\x0a" + encode_varint(len(part)) + part
        for part in (r1.SerializeToString(), half1, r2.SerializeToString())
    )
    raw = b"\x0a" + encode_varint(len(inner)) + inner
    result = ExportTraceServiceRequest.FromString(IdentityStamper(IDENTITY).rewrite(raw))
    assert attrs(result.resource_spans[0].resource) == [("a", "1"), *IDENTITY]


def test_empty_request_stays_empty() -> None:
    assert IdentityStamper(IDENTITY).rewrite(b"") == b""


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x0a\x05ab", "truncated"),
        (b"\x0a\x80", "truncated varint"),
        (b"\x0b", "wire type 3"),
        (b"\x00", "field number 0"),
        (b"\x0a\x03\x0a\x05a", "truncated"),  # a ResourceSpans whose resource overruns it
        (b"\x0a\x04\x0a\x02\x0a\x07", "invalid Resource"),  # a Resource that protobuf cannot parse
        (b"\x0a\x02\x08\xff", "truncated varint"),
        (b"\x09\x01", "truncated"),  # fixed64 without its 8 bytes
    ],
)
def test_malformed_requests_raise_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        IdentityStamper(IDENTITY).rewrite(raw)


def test_wire_walker_matches_protobuf_on_sdk_payload() -> None:
    payload = sdk_spans(Resource.create({"service.name": "x"})).SerializeToString()
    fields = list(iter_fields(payload))
    assert [f[0] for f in fields] == [1]
    assert fields[0][4] == len(payload)
    assert encode_varint(300) == b"\xac\x02"


def test_a_large_request_is_stamped_into_views_of_its_own_bytes() -> None:
    """Over 64 KiB the stamp copies nothing of what it leaves untouched: its pieces are views of the
    request's bytes (the queue keeps them as they are), and they concatenate to ``rewrite``'s result."""
    request = bytearray(sdk_spans(Resource.create(SPOOFED), n=2000).SerializeToString())
    assert len(request) > 64 * 1024
    stamper = IdentityStamper(IDENTITY)
    pieces = stamper.rewrite_pieces(request)
    assert b"".join(pieces) == stamper.rewrite(request)
    views = [p for p in pieces if isinstance(p, memoryview)]
    assert sum(len(v) for v in views) > len(request) - 1024  # all but the rewritten resource
    assert all(v.obj is request for v in views)
