"""A short mutation fuzz of the OTLP/HTTP receiver (fixed seed): thousands of mutated protobuf and JSON
bodies, with good requests sent alongside.

Never a 5xx for bad input, never a crash, and every good request arrives exactly once at a real upstream that
decodes protobuf and answers 400 to what it cannot decode (as the Collector does): what the sidecar accepts
but the upstream cannot parse must cost nothing but itself.
"""

from __future__ import annotations

import http.client
import json
import random
from collections.abc import Callable

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from sidecar_support import SidecarProcess, Upstream, traces_request
from support import wait_for

pytestmark = pytest.mark.e2e

SEED = 20261203
MUTANTS = 3000  # about 10 s on the development machine
GOOD_EVERY = 15  # one good request after this many mutants
ANSWERS_TO_BAD_INPUT = {200, 400, 413, 415}


def _attributes() -> list[KeyValue]:
    return [KeyValue(key=f"k{i}", value=AnyValue(string_value=f"value-{i}")) for i in range(3)]


def _seeds() -> list[tuple[str, bytes, str]]:
    """Valid requests of each signal, in each encoding: (path, body, content type)."""
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="fuzz"))])
    metrics = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=resource,
                scope_metrics=[
                    ScopeMetrics(
                        metrics=[
                            Metric(
                                name="fuzz.gauge",
                                gauge=Gauge(
                                    data_points=[NumberDataPoint(as_double=1.5, attributes=_attributes())]
                                ),
                            )
                        ]
                    )
                ],
            )
        ]
    ).SerializeToString()
    logs = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=resource,
                scope_logs=[
                    ScopeLogs(
                        log_records=[LogRecord(body=AnyValue(string_value="fuzz"), attributes=_attributes())]
                    )
                ],
            )
        ]
    ).SerializeToString()
    traces = traces_request("fuzz-a", "fuzz-b", padding=30)
    span_json = {
        "traceId": "0102030405060708090a0b0c0d0e0f10",
        "spanId": "0102030405060708",
        "name": "fuzz-json",
        "kind": 1,
        "attributes": [{"key": "k", "value": {"stringValue": "v"}}, {"key": "n", "value": {"intValue": "7"}}],
    }
    traces_json = json.dumps(
        {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [span_json]}]}]}
    ).encode()
    logs_json = json.dumps(
        {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "x"}, "traceId": ""}]}]}]}
    ).encode()
    protobuf, as_json = "application/x-protobuf", "application/json"
    return [
        ("/v1/traces", traces, protobuf),
        ("/v1/metrics", metrics, protobuf),
        ("/v1/logs", logs, protobuf),
        ("/v1/traces", traces_json, as_json),
        ("/v1/logs", logs_json, as_json),
    ]


_JSON_PIECES = [
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b":",
    b",",
    b"null",
    b"1e999",
    b"-",
    b"\\ud800",
    b"\\u0000",
    b"9" * 50,
]


def mutate(data: bytes, rng: random.Random, json_body: bool) -> bytes:
    """A few random edits: flipped, inserted, deleted, duplicated bytes, truncation, JSON tokens."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        position = rng.randrange(len(out) + 1)
        if choice < 0.25 and out:
            out[min(position, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif choice < 0.4:
            out[position:position] = bytes([rng.randrange(256)])
        elif choice < 0.55 and out:
            del out[position : position + rng.randint(1, 8)]
        elif choice < 0.7:
            start = rng.randrange(len(out) + 1)
            out[position:position] = out[start : start + rng.randint(1, 32)]
        elif choice < 0.8:
            del out[position:]
        elif json_body:
            out[position:position] = rng.choice(_JSON_PIECES)
        else:  # a varint with the continuation bit, or a large length
            out[position:position] = rng.choice([b"\xff", b"\x80\x80\x80\x80\x80", b"\x0a\xff\xff\xff\x0f"])
    return bytes(out)


def test_mutated_bodies_never_cost_a_5xx_a_crash_or_a_good_request(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    sidecar = sidecar_factory(
        upstream.url,
        LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL="0.05",
        LEAP0_SIDECAR_RETRY_MAX_INTERVAL="0.3",
        LEAP0_SIDECAR_BATCH_LINGER="0.05",
    )
    rng = random.Random(SEED)
    seeds = _seeds()
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.http_port, timeout=30)
    answers: dict[int, int] = {}
    good: list[str] = []

    def send(path: str, body: bytes, content_type: str) -> int:
        nonlocal conn
        conn.request("POST", path, body=body, headers={"content-type": content_type})
        response = conn.getresponse()
        response.read()
        if response.will_close:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", sidecar.http_port, timeout=30)
        return response.status

    for index in range(MUTANTS):
        path, body, content_type = seeds[index % len(seeds)]
        mutant = mutate(body, rng, content_type == "application/json")
        status = send(path, mutant, content_type)
        answers[status] = answers.get(status, 0) + 1
        assert status in ANSWERS_TO_BAD_INPUT, (status, path, content_type, mutant.hex())
        if index % GOOD_EVERY == 0:
            name = f"good-{index}"
            assert send("/v1/traces", traces_request(name), "application/x-protobuf") == 200
            good.append(name)
    conn.close()
    assert sidecar.ready()  # alive and serving
    assert answers.get(400, 0) > MUTANTS // 10, answers  # (the fuzz reaches both the parser's errors
    assert answers.get(200, 0) > MUTANTS // 10, answers  # and bodies the sidecar accepts)

    def arrived() -> list[str]:
        return [name for name in upstream.span_names() if name.startswith("good-")]

    wait_for(lambda: len(arrived()) >= len(good), timeout=60, what="every good request")
    wait_for(lambda: sidecar.ready() and not sidecar.health_state()["queue_bytes"], what="the queue drained")
    assert sorted(arrived()) == sorted(good)  # each exactly once
    assert upstream.rejected > 0  # (accepted mutants the upstream could not decode were among them)
    assert "Traceback" not in sidecar.logs()
