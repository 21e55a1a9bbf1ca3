"""Self-observability of retries: every failed, retried delivery attempt shows up in the sidecar's own
``leap0.sidecar.requests.retried`` counter (issue 4, item 5), and what was retried still arrives once."""

from __future__ import annotations

import http.client
from collections.abc import Callable

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from sidecar_support import IDENTITY, SidecarProcess, Upstream, resource_attributes, wait_for

pytestmark = pytest.mark.e2e

FAST_RETRY = {"LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL": "0.05", "LEAP0_SIDECAR_RETRY_MAX_INTERVAL": "0.2"}


def _traces_request(name: str) -> bytes:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=name)
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    return request.SerializeToString()


def _post(sidecar: SidecarProcess, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.http_port, timeout=10)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"content-type": "application/x-protobuf"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_retried_attempts_are_counted_per_signal(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    # Three retryable answers (502, 503, 504) before the upstream recovers. Own metrics flow too, so a
    # scripted answer may hit a metrics request instead of the span: count retries over all signals.
    upstream.script.extend([(502, {}), (503, {}), (504, {})])
    sidecar = sidecar_factory(upstream.url, LEAP0_METRICS_INTERVAL="0.3", **FAST_RETRY)
    assert _post(sidecar, _traces_request("retried")) == 200
    wait_for(lambda: upstream.span_names() == ["retried"], what="the span after the retries")

    def retried() -> dict[str, int]:
        latest: dict[str, int] = {}
        for rm in upstream.resources("/v1/metrics"):
            assert resource_attributes(rm.resource).items() >= IDENTITY.items()
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "leap0.sidecar.requests.retried":
                        assert metric.sum.is_monotonic
                        for point in metric.sum.data_points:
                            latest[resource_attributes(point)["signal"]] = int(point.as_int)
        return latest

    counts = wait_for(
        lambda: (c := retried()) and sum(c.values()) == 3 and c,
        what="leap0.sidecar.requests.retried summing to the 3 retryable answers",
    )
    assert set(counts) <= {"traces", "metrics", "logs"}
    assert upstream.span_names() == ["retried"]  # retried, delivered once
