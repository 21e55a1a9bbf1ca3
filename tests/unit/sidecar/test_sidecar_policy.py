"""Pure parts of the pipeline: retry policy, the byte-bounded queue, bounded gzip, OTLP/JSON, own metrics."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from leap0_sidecar import otlp
from leap0_sidecar.exporter import backoff_delay, is_retryable, parse_retry_after
from leap0_sidecar.http_receiver import BodyTooLarge, GzipError, gunzip_limited
from leap0_sidecar.queue import ExportQueue, Pieces, parts_of
from leap0_sidecar.self_metrics import Counters, build_request


def test_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-3", now) is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    assert backoff_delay(0, 1, 30, 0.5) == 1.0
    assert backoff_delay(3, 1, 30, 0.5) == 8.0
    assert backoff_delay(10, 1, 30, 0.5) == 30.0
    assert backoff_delay(1000, 1, 30, 0.0) == 15.0  # -50 %
    assert backoff_delay(2, 1, 30, 0.999) == pytest.approx(4 * 1.499)


def test_retryable_statuses_are_the_otlp_ones() -> None:
    assert [s for s in range(200, 600) if is_retryable(s)] == [429, 502, 503, 504]


async def test_queue_is_bounded_in_bytes_until_done() -> None:
    queue = ExportQueue(100)
    assert queue.offer("traces", b"a" * 60)
    assert not queue.offer("logs", b"b" * 50)  # would exceed 100 bytes
    assert queue.offer("logs", b"b" * 40)
    assert queue.count() == 2
    batch = queue.take("traces", 1000)
    assert batch == [b"a" * 60]
    assert not queue.offer("traces", b"c" * 10)  # in flight still counts
    queue.done(60)
    assert queue.offer("traces", b"c" * 10)
    assert queue.used == 50


def test_a_request_in_pieces_counts_its_bytes_and_is_sent_as_their_concatenation() -> None:
    queue = ExportQueue(100)
    body = bytearray(b"x" * 80)
    pieces = Pieces([b"head", memoryview(body)[10:50], b"tail"])
    assert queue.offer("traces", pieces)
    assert queue.used == 48
    assert not queue.offer("traces", b"y" * 53)
    assert queue.offer("traces", b"y" * 52)
    batch = queue.take("traces", 1000)
    assert b"".join(parts_of(batch)) == b"head" + b"x" * 40 + b"tail" + b"y" * 52


async def test_queue_batches_per_signal_up_to_a_size() -> None:
    queue = ExportQueue(1000)
    for i in range(5):
        queue.offer("traces", bytes([i]) * 30)
    queue.offer("metrics", b"m")
    assert [len(b) for b in queue.take("traces", 70)] == [30, 30]
    assert len(queue.take("traces", 10)) == 1  # at least one, even if bigger than the batch size
    assert len(queue.take("traces", 1000)) == 2
    assert queue.take("traces", 1000) == []
    await asyncio.wait_for(queue.wait("metrics"), 1)
    assert await queue.wait_empty(0.01) is False
    queue.take("metrics", 10)
    queue.done(queue.used)
    assert await queue.wait_empty(0.01) is True


def test_gunzip_is_bounded() -> None:
    assert gunzip_limited(gzip.compress(b"x" * 1000), 1000) == b"x" * 1000
    assert gunzip_limited(gzip.compress(b"a") + gzip.compress(b"b"), 10) == b"ab"  # two members
    with pytest.raises(BodyTooLarge):
        gunzip_limited(gzip.compress(b"\0" * 10_000_000), 1_000_000)
    with pytest.raises(BodyTooLarge):
        gunzip_limited(gzip.compress(b"a" * 6) + gzip.compress(b"b" * 6), 10)
    with pytest.raises(GzipError, match="truncated"):
        gunzip_limited(gzip.compress(b"x" * 1000)[:-10], 10_000)
    with pytest.raises(GzipError, match="invalid gzip"):
        gunzip_limited(b"plain", 10_000)


def test_otlp_json_ids_are_hex_and_enums_integers() -> None:
    document = {
        "resource_spans": [  # original field names are accepted too
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0102030405060708090a0b0c0d0e0f10",
                                "spanId": "0102030405060708",
                                "parentSpanId": "",
                                "kind": 3,
                                "links": [{"traceId": "ff" * 16, "spanId": "ee" * 8}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    raw = otlp.json_to_protobuf("traces", json.dumps(document).encode())
    span = ExportTraceServiceRequest.FromString(raw).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes(range(1, 17))
    assert span.span_id == bytes(range(1, 9))
    assert span.parent_span_id == b""
    assert span.kind == 3
    assert span.links[0].trace_id == b"\xff" * 16
    with pytest.raises(otlp.JsonError, match="must be 16 bytes"):
        otlp.json_to_protobuf(
            "traces", b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102"}]}]}]}'
        )
    with pytest.raises(otlp.JsonError, match="JSON object"):
        otlp.json_to_protobuf("logs", b"[]")


def test_error_bodies_are_google_rpc_status() -> None:
    raw = otlp.status_body(otlp.INVALID_ARGUMENT, "bad", json_encoding=False)
    assert status_pb2.Status.FromString(raw).message == "bad"
    as_json = json.loads(
        otlp.status_body(otlp.RESOURCE_EXHAUSTED, "full", json_encoding=True, retry_delay_s=2)
    )
    assert as_json["code"] == 8
    assert as_json["details"][0]["retryDelay"] == "2s"
    assert otlp.success_body(True) == b"{}"
    assert otlp.success_body(False) == b""


async def test_own_metrics_request() -> None:
    counters = Counters()
    counters.received("traces", "http")
    counters.received("traces", "http")
    counters.dropped("logs", "permanent_error")
    queue = ExportQueue(1000)
    queue.offer("traces", b"x" * 10)
    request = ExportMetricsServiceRequest.FromString(build_request(counters, queue, [("a", "b")], now_ns=5))
    metrics = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    received = metrics["leap0.sidecar.requests.received"]
    assert received.sum.is_monotonic
    point = received.sum.data_points[0]
    assert point.as_int == 2
    assert {kv.key: kv.value.string_value for kv in point.attributes} == {
        "signal": "traces",
        "transport": "http",
    }
    dropped = metrics["leap0.sidecar.requests.dropped"].sum.data_points[0]
    assert {kv.key: kv.value.string_value for kv in dropped.attributes} == {
        "signal": "logs",
        "reason": "permanent_error",
    }
    assert metrics["leap0.sidecar.queue.bytes"].gauge.data_points[0].as_int == 10
    assert metrics["leap0.sidecar.queue.capacity"].unit == "By"
    assert request.resource_metrics[0].resource.attributes[0].key == "a"


def test_otlp_json_logs_and_metric_exemplars() -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    logs = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": "1544712660300000000",
                                "severityNumber": 10,
                                "body": {"stringValue": "hello"},
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                            }
                        ]
                    }
                ]
            }
        ]
    }
    record = (
        ExportLogsServiceRequest.FromString(otlp.json_to_protobuf("logs", json.dumps(logs).encode()))
        .resource_logs[0]
        .scope_logs[0]
        .log_records[0]
    )
    assert (record.severity_number, record.body.string_value) == (10, "hello")
    assert record.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    metrics = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "m",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "asInt": "5",
                                            "exemplars": [{"asInt": "1", "spanId": "0102030405060708"}],
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    point = (
        ExportMetricsServiceRequest.FromString(otlp.json_to_protobuf("metrics", json.dumps(metrics).encode()))
        .resource_metrics[0]
        .scope_metrics[0]
        .metrics[0]
        .sum.data_points[0]
    )
    assert point.as_int == 5
    assert point.exemplars[0].span_id == bytes(range(1, 9))
