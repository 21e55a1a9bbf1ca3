"""Self-observability of retries: every failed, retried delivery attempt shows up in the sidecar's own
``leap0.sidecar.requests.retried`` counter (issue 4, item 5), and what was retried still arrives once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sidecar_support import (
    IDENTITY,
    SidecarProcess,
    Upstream,
    post,
    resource_attributes,
    traces_request,
    wait_for,
)

pytestmark = pytest.mark.e2e

FAST_RETRY = {"LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL": "0.05", "LEAP0_SIDECAR_RETRY_MAX_INTERVAL": "0.2"}


def test_retried_attempts_are_counted_per_signal(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    # Three retryable answers (502, 503, 504) before the upstream recovers. Own metrics flow too, so a
    # scripted answer may hit a metrics request instead of the span: count retries over all signals.
    upstream.script.extend([(502, {}), (503, {}), (504, {})])
    sidecar = sidecar_factory(upstream.url, LEAP0_METRICS_INTERVAL="0.3", **FAST_RETRY)
    assert post(sidecar, traces_request("retried"))[0] == 200
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
