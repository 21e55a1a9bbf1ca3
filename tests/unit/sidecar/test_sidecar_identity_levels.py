"""An app's own ``leap0`` attributes are removed at every level of every signal, on payloads the OpenTelemetry
SDK encodes itself (resource, scope, span, event, link, log record, sum, gauge, histogram, exponential
histogram, exemplars) and hand-built where the SDK cannot express them (summary, metric metadata), and on
wire-format tricks a parser would read differently from a naive walker.

Each result is compared with a reference: the whole request decoded by protobuf, every attribute list
filtered, re-encoded. So nothing but the reserved attributes is lost, and none of them is left.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Metric,
    ResourceMetrics,
    ScopeMetrics,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link
from sidecar_support import reserved_attributes

from leap0_sidecar.identity import IdentityStamper, WireError, encode_varint, is_reserved_key

IDENTITY = [("leap0.sandbox.id", "sbx-1"), ("leap0.org.id", "org-1"), ("leap0.template.id", "default")]
# What an attacker sends at every level it can: the victim's identity, and spellings backends fold into it.
SPOOF = {"leap0.org.id": "victim-org", "leap0_sandbox_id": "victim-sbx", "leap0": "x", "keep": "me"}
KEPT = {"keep": "me"}


# --- the reference: decode everything, filter every attribute list, re-encode ----------------------------
def reference_scrub(message: Message) -> None:
    """Remove reserved keys from every ``repeated KeyValue`` below ``message`` (not inside AnyValue)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.full_name == KeyValue.DESCRIPTOR.full_name:
            kept = [kv for kv in value if not is_reserved_key(kv.key)]
            del value[:]
            value.extend(kept)
        elif field.message_type.full_name == AnyValue.DESCRIPTOR.full_name:
            continue
        elif field.is_repeated:
            for item in value:
                reference_scrub(item)
        else:
            reference_scrub(value)


def expected(request: Message) -> Message:
    """What the sidecar must send for ``request``: every reserved attribute gone, the identity on each
    resource (after the app's own attributes), nothing else changed."""
    result = type(request).FromString(request.SerializeToString())
    reference_scrub(result)
    for field in ("resource_spans", "resource_metrics", "resource_logs"):
        if field in result.DESCRIPTOR.fields_by_name:
            for resource_x in getattr(result, field):
                for key, value in IDENTITY:
                    resource_x.resource.attributes.add(key=key).value.string_value = value
    return result


def stamp(request: Message, signal: str) -> Message:
    raw = IdentityStamper(IDENTITY).rewrite(request.SerializeToString(), signal)  # type: ignore[arg-type]
    return type(request).FromString(raw)


def check(request: Message, signal: str) -> Message:
    result = stamp(request, signal)
    assert result == expected(request)
    assert reserved_attributes(request), "the attack is in the request"
    assert reserved_attributes(result) == []
    return result


def kv_dict(kvs: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


# --- the OpenTelemetry SDK's own payloads --------------------------------------------------------------
def test_traces_every_level_from_the_sdk() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "app", **SPOOF}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("lib", "1.0", attributes=SPOOF)  # scope attributes
    with tracer.start_as_current_span("parent") as parent:
        link = Link(parent.get_span_context(), attributes=SPOOF)
    with tracer.start_as_current_span("child", links=[link], attributes=SPOOF) as span:
        span.add_event("evt", SPOOF)
    request = encode_spans(memory.get_finished_spans())

    result = check(request, "traces")
    rs = result.resource_spans[0]
    resource = kv_dict(rs.resource.attributes)
    assert {k: v for k, v in resource.items() if is_reserved_key(k)} == dict(IDENTITY)
    assert resource["service.name"] == "app"
    assert resource["keep"] == "me"
    scope = rs.scope_spans[0]
    assert kv_dict(scope.scope.attributes) == KEPT
    child = next(s for s in scope.spans if s.name == "child")
    assert kv_dict(child.attributes) == KEPT
    assert kv_dict(child.events[0].attributes) == KEPT
    assert kv_dict(child.links[0].attributes) == KEPT
    assert child.links[0].span_id == next(s for s in scope.spans if s.name == "parent").span_id


def test_logs_every_level_from_the_sdk() -> None:
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create(SPOOF))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    provider.get_logger("lib", "1.0", attributes=SPOOF).emit(body="hello leap0.org.id", attributes=SPOOF)
    request = encode_logs(memory.get_finished_logs())

    result = check(request, "logs")
    scope_logs = result.resource_logs[0].scope_logs[0]
    assert kv_dict(scope_logs.scope.attributes) == KEPT
    record = scope_logs.log_records[0]
    assert kv_dict(record.attributes) == KEPT
    assert record.body.string_value == "hello leap0.org.id"  # the body is data: untouched


def test_metrics_every_point_kind_and_exemplars_from_the_sdk() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create(SPOOF),
        metric_readers=[reader],
        exemplar_filter=AlwaysOnExemplarFilter(),
        views=[
            View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation()),
            # Attributes a view drops from the point are kept on its exemplars (filtered_attributes).
            View(instrument_name="filtered", attribute_keys={"keep"}),
        ],
    )
    meter = provider.get_meter("lib", "1.0", attributes=SPOOF)
    meter.create_counter("orders").add(3, SPOOF)  # sum
    meter.create_up_down_counter("queue").add(-1, SPOOF)  # non-monotonic sum
    meter.create_gauge("temperature").set(21.5, SPOOF)  # gauge
    meter.create_histogram("latency").record(12.5, SPOOF)  # histogram
    meter.create_histogram("latency.exp").record(12.5, SPOOF)  # exponential histogram
    meter.create_counter("filtered").add(1, SPOOF)
    request = encode_metrics(reader.get_metrics_data())

    result = check(request, "metrics")
    scope_metrics = result.resource_metrics[0].scope_metrics[0]
    assert kv_dict(scope_metrics.scope.attributes) == KEPT
    metrics = {m.name: m for m in scope_metrics.metrics}
    kinds = {name: m.WhichOneof("data") for name, m in metrics.items()}
    assert kinds == {
        "orders": "sum",
        "queue": "sum",
        "temperature": "gauge",
        "latency": "histogram",
        "latency.exp": "exponential_histogram",
        "filtered": "sum",
    }
    for name, metric in metrics.items():
        points = getattr(metric, kinds[name]).data_points
        assert kv_dict(points[0].attributes) == KEPT, name
    exemplars = [
        e for m in metrics.values() for p in getattr(m, m.WhichOneof("data")).data_points for e in p.exemplars
    ]
    assert exemplars, "the SDK recorded exemplars"
    filtered = metrics["filtered"].sum.data_points[0].exemplars[0]
    # the view kept only `keep` on the point; the exemplar had the rest, reserved keys now removed
    request_exemplar = (
        next(m for m in request.resource_metrics[0].scope_metrics[0].metrics if m.name == "filtered")
        .sum.data_points[0]
        .exemplars[0]
    )
    assert "leap0.org.id" in kv_dict(request_exemplar.filtered_attributes)
    assert kv_dict(filtered.filtered_attributes) == {}


def test_summary_points_and_metric_metadata() -> None:
    """What the Python SDK cannot produce (summaries, metric metadata), built by hand."""

    def kvs() -> list[KeyValue]:
        return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in SPOOF.items()]

    metric = Metric(
        name="rpc.duration",
        metadata=kvs(),
        summary=Summary(
            data_points=[SummaryDataPoint(attributes=kvs(), count=2, sum=3.0, quantile_values=[])]
        ),
    )
    request = ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[metric])])]
    )
    result = check(request, "metrics")
    got = result.resource_metrics[0].scope_metrics[0].metrics[0]
    assert kv_dict(got.metadata) == KEPT
    assert kv_dict(got.summary.data_points[0].attributes) == KEPT
    assert got.summary.data_points[0].count == 2


# --- what a key is ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "reserved"),
    [
        ("leap0.org.id", True),
        ("leap0.sandbox.id", True),
        ("leap0.anything", True),
        ("leap0", True),
        ("leap0_org_id", True),  # Prometheus' and Loki's spelling of leap0.org.id
        ("leap0-org-id", True),
        ("leap0/x", True),
        ("leap0\u00e9", True),  # anything but a letter or digit after the prefix
        ("leap01", False),
        ("leap0x.org.id", False),
        ("Leap0.org.id", False),  # keys are case-sensitive
        ("app.leap0.org.id", False),
        ("service.name", False),
        ("", False),
    ],
)
def test_reserved_keys(key: str, reserved: bool) -> None:
    assert is_reserved_key(key) is reserved
    assert is_reserved_key(key.encode()) is reserved


# --- wire-format tricks ------------------------------------------------------------------------------------
def raw_traces(span_attributes: bytes, resource_x_extra: bytes = b"") -> bytes:
    """A trace request whose one span has ``span_attributes`` as its raw attribute fields (field 9)."""
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="s").SerializeToString() + span_attributes
    scope_spans = b"\x12" + encode_varint(len(span)) + span  # ScopeSpans.spans = 2
    resource_x = b"\x12" + encode_varint(len(scope_spans)) + scope_spans + resource_x_extra
    return b"\x0a" + encode_varint(len(resource_x)) + resource_x


def attribute(*fields: bytes) -> bytes:
    body = b"".join(fields)
    return b"\x4a" + encode_varint(len(body)) + body  # Span.attributes = 9


def key(text: str) -> bytes:
    return b"\x0a" + encode_varint(len(text)) + text.encode()


def value(text: str) -> bytes:
    any_value = AnyValue(string_value=text).SerializeToString()
    return b"\x12" + encode_varint(len(any_value)) + any_value


def span_keys(raw: bytes) -> list[tuple[str, str]]:
    request = ExportTraceServiceRequest.FromString(raw)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    return [(kv.key, kv.value.string_value) for kv in span.attributes]


def test_a_key_sent_twice_is_judged_by_the_last_one_as_parsers_do() -> None:
    raw = raw_traces(
        attribute(key("harmless"), key("leap0.org.id"), value("victim-org"))
        + attribute(key("leap0.org.id"), key("harmless"), value("kept"))
    )
    assert span_keys(raw) == [("leap0.org.id", "victim-org"), ("harmless", "kept")]
    stamped = IdentityStamper(IDENTITY).rewrite(raw, "traces")
    assert span_keys(stamped) == [("harmless", "kept")]


def test_a_non_canonical_tag_is_decoded_not_matched_by_bytes() -> None:
    # field 9 wire type 2 as a two-byte varint (0xca 0x00): still Span.attributes for every parser
    body = key("leap0.org.id") + value("victim-org")
    raw = raw_traces(b"\xca\x00" + encode_varint(len(body)) + body)
    assert span_keys(raw) == [("leap0.org.id", "victim-org")]
    assert span_keys(IdentityStamper(IDENTITY).rewrite(raw, "traces")) == []


def test_values_and_other_fields_naming_leap0_are_untouched_byte_for_byte() -> None:
    nested = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="leap0.org.id")]))
    span = Span(
        name="GET https://leap0.dev/leap0.org.id",
        attributes=[
            KeyValue(key="url", value=AnyValue(string_value="https://leap0.dev/?leap0.org.id=1")),
            KeyValue(key="map", value=nested),  # a map value is data, flattened as map.leap0...
        ],
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    stamper = IdentityStamper(IDENTITY)
    raw = request.SerializeToString()
    stamped = stamper.rewrite(raw, "traces")
    # only the resource was added: the scope data is the very same bytes
    assert stamped.endswith(request.resource_spans[0].scope_spans[0].SerializeToString())
    assert (
        ExportTraceServiceRequest.FromString(stamped).resource_spans[0].scope_spans[0]
        == (request.resource_spans[0].scope_spans[0])
    )


def test_the_sidecars_own_metrics_keep_their_leap0_attributes() -> None:
    """Own requests (no signal given) get only the identity set: leap0.metrics.source stays."""
    request = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics()])
    request.resource_metrics[0].resource.attributes.add(key="leap0.metrics.source").value.string_value = "x"
    stamped = ExportMetricsServiceRequest.FromString(
        IdentityStamper(IDENTITY).rewrite(request.SerializeToString())
    )
    assert kv_dict(stamped.resource_metrics[0].resource.attributes) == {
        "leap0.metrics.source": "x",
        **dict(IDENTITY),
    }
    as_app = IdentityStamper(IDENTITY).rewrite(request.SerializeToString(), "metrics")
    assert kv_dict(
        ExportMetricsServiceRequest.FromString(as_app).resource_metrics[0].resource.attributes
    ) == (dict(IDENTITY))


def test_a_corrupt_span_holding_leap0_is_an_error_naming_it() -> None:
    truncated = b"\x4a\x10" + key("leap0.org.id")  # declares 16 bytes, has 14
    with pytest.raises(WireError, match="invalid Span"):
        IdentityStamper(IDENTITY).rewrite(raw_traces(truncated), "traces")


def test_several_scopes_and_resources_each_scrubbed() -> None:
    def request_with(n: int) -> ExportTraceServiceRequest:
        spans = [
            Span(name=f"s{i}", attributes=[KeyValue(key="leap0.org.id", value=AnyValue(string_value="v"))])
            for i in range(n)
        ]
        return ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(scope_spans=[ScopeSpans(spans=spans), ScopeSpans(spans=spans[:1])])
                for _ in range(2)
            ]
        )

    check(request_with(3), "traces")
    # a batch (concatenated requests) too
    batch = request_with(2).SerializeToString() + request_with(1).SerializeToString()
    result = ExportTraceServiceRequest.FromString(IdentityStamper(IDENTITY).rewrite(batch, "traces"))
    assert len(result.resource_spans) == 4
    assert all(not s.attributes for rs in result.resource_spans for ss in rs.scope_spans for s in ss.spans)
