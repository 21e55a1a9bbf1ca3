"""The bounded OTLP/JSON converter: the same protobuf as the protobuf library's own JSON mapping, a reason for
every malformed body, and one value at a time."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from leap0_contract import Signal
from leap0_sidecar import otlp
from leap0_sidecar.identity import IdentityStamper, WireError
from leap0_sidecar.queue import ExportQueue

TRACES: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
            "schemaUrl": "https://opentelemetry.io/schemas/1.21.0",
            "unknownAtResource": {"deep": [1, 2, {"x": None}]},
            "scopeSpans": [
                {
                    "scope": {"name": "lib", "version": "1"},
                    "spans": [
                        {
                            "traceId": "0102030405060708090a0b0c0d0e0f10",
                            "spanId": "0102030405060708",
                            "parentSpanId": "",
                            "name": "a",
                            "kind": 2,
                            "startTimeUnixNano": "1700000000000000000",
                            "attributes": [{"key": "n", "value": {"intValue": "3"}}],
                            "links": [
                                {"traceId": "1112131415161718191a1b1c1d1e1f20", "spanId": "1112131415161718"}
                            ],
                            "unknownInSpan": True,
                        },
                        {"name": "b \u00e9 \U0001f600", "status": {"code": 2, "message": "bad"}},
                    ],
                },
                {"scope": {"name": "other"}, "spans": []},
            ],
        },
        {"scope_spans": [{"spans": [{"name": "snake_case names"}]}]},
    ],
    "unknownAtTop": [[[]]],
}
METRICS: dict[str, Any] = {
    "resourceMetrics": [
        {
            "scopeMetrics": [
                {
                    "metrics": [
                        {
                            "name": "g",
                            "unit": "By",
                            "gauge": {"dataPoints": [{"asInt": "5", "timeUnixNano": "1"}]},
                        },
                        {
                            "name": "h",
                            "histogram": {
                                "aggregationTemporality": 2,
                                "dataPoints": [
                                    {
                                        "count": "2",
                                        "bucketCounts": ["1", "1"],
                                        "explicitBounds": [1.5],
                                        "exemplars": [
                                            {"asDouble": 1.0, "traceId": "0102030405060708090a0b0c0d0e0f10"}
                                        ],
                                    }
                                ],
                            },
                        },
                    ]
                }
            ]
        }
    ]
}
LOGS: dict[str, Any] = {
    "resourceLogs": [
        {
            "scopeLogs": [
                {
                    "logRecords": [
                        {"body": {"stringValue": "hello"}, "severityNumber": 9, "spanId": "0102030405060708"},
                        {"body": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}}},
                    ]
                }
            ]
        }
    ]
}
TYPES: dict[Signal, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}


def reference(signal: Signal, document: dict[str, Any]) -> Message:
    """The protobuf library's own JSON mapping of the whole document (ids converted as OTLP says)."""
    copy = json.loads(json.dumps(document))
    otlp._convert_ids(copy, "$")
    message = TYPES[signal]()
    json_format.ParseDict(copy, message, ignore_unknown_fields=True)
    return message


@pytest.mark.parametrize(("signal", "document"), [("traces", TRACES), ("metrics", METRICS), ("logs", LOGS)])
@pytest.mark.parametrize("indent", [None, 2])
def test_same_protobuf_as_the_library_json_mapping(
    signal: Signal, document: dict[str, Any], indent: int | None
) -> None:
    body = json.dumps(document, indent=indent, ensure_ascii=indent is None).encode()
    converted = TYPES[signal].FromString(otlp.json_to_protobuf(signal, body))
    assert converted == reference(signal, document)


def test_ids_are_read_as_hex_wherever_they_are() -> None:
    """OTLP/JSON ids are hex strings, not protobuf's base64: spans, their links, exemplars, log records."""
    traces = ExportTraceServiceRequest.FromString(
        otlp.json_to_protobuf("traces", json.dumps(TRACES).encode())
    )
    span = traces.resource_spans[0].scope_spans[0].spans[0]
    assert (span.trace_id.hex(), span.span_id.hex()) == (
        "0102030405060708090a0b0c0d0e0f10",
        "0102030405060708",
    )
    assert (span.links[0].trace_id.hex(), span.links[0].span_id.hex()) == (
        "1112131415161718191a1b1c1d1e1f20",
        "1112131415161718",
    )
    metrics = ExportMetricsServiceRequest.FromString(
        otlp.json_to_protobuf("metrics", json.dumps(METRICS).encode())
    )
    exemplar = metrics.resource_metrics[0].scope_metrics[0].metrics[1].histogram.data_points[0].exemplars[0]
    assert exemplar.trace_id.hex() == "0102030405060708090a0b0c0d0e0f10"
    logs = ExportLogsServiceRequest.FromString(otlp.json_to_protobuf("logs", json.dumps(LOGS).encode()))
    assert logs.resource_logs[0].scope_logs[0].log_records[0].span_id.hex() == "0102030405060708"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "must be a JSON object"),
        (b"[" * 100_000, "must be a JSON object"),
        (b'{"a":' * 100_000, "unterminated object"),
        (b'{"resourceSpans": [', "ends before the JSON value does"),
        (b'{"resourceSpans": {}}', "$.resourceSpans must be an array"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "a"]}]}]}', "spans[0]"),
        (
            b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"droppedAttributesCount":'
            + b"9" * 5000
            + b"}]}]}]}",
            "4300",
        ),
        (b'{"resourceSpans":[{"sc\\ud800opeSpans":[]}]}', "lone surrogate"),
        (b'{"resourceSpans":[{"resource":{"attributes":[{"key":"\\udfff"}]}}]}', "lone surrogate"),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}', "not a hex string"),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":[1]}]}]}]}', "spans[0]"),
        (
            b'{"resourceSpans":[{"resource":' + b'{"a":' * 5000 + b"1" + b"}" * 5001 + b"]}",
            "nested too deeply",
        ),
        (b'{"resourceSpans":[]} trailing', "extra data"),
        (b'{"resourceSpans":[{"resource":{"attributes":[{"key":"\xff"}]}}]}', "can't decode"),
    ],
)
def test_every_malformed_body_is_a_json_error_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(otlp.JsonError) as info:
        otlp.json_to_protobuf("traces", body)
    assert reason in str(info.value)


def test_a_value_over_the_limit_is_refused_as_too_large_and_smaller_ones_pass() -> None:
    def body(size: int) -> bytes:
        span = {"name": "x" * size}
        return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span] * 3}]}]}).encode()

    assert (
        len(
            ExportTraceServiceRequest.FromString(otlp.json_to_protobuf("traces", body(200_000)))
            .resource_spans[0]
            .scope_spans[0]
            .spans
        )
        == 3
    )
    with pytest.raises(otlp.JsonTooLarge, match=r"spans\[0\] is \d+ bytes of JSON"):
        otlp.json_to_protobuf("traces", body(otlp.JSON_VALUE_LIMIT))


def test_media_type_ignores_parameters() -> None:
    assert otlp.media_type("application/x-protobuf; profile=json") == "application/x-protobuf"
    assert otlp.media_type(" Application/JSON ; charset=utf-8") == "application/json"


def test_field_numbers_above_the_protobuf_maximum_are_wire_errors() -> None:
    stamper = IdentityStamper([("leap0.sandbox.id", "s")])
    largest = b"\xf8\xff\xff\xff\x0f\x01"  # field 2^29-1, varint 1: an unknown field, kept
    assert stamper.rewrite(largest).endswith(largest)
    with pytest.raises(WireError, match="invalid field number 536870912"):
        stamper.rewrite(b"\x80\x80\x80\x80\x10\x01")  # field 2^29


def test_queue_reservations_share_the_bound() -> None:
    queue = ExportQueue(100)
    assert queue.reserve(60)
    assert not queue.reserve(41)
    assert not queue.offer("traces", b"x" * 41)
    queue.release(60)
    assert queue.offer("traces", b"x" * 41)
    assert queue.used == 41
