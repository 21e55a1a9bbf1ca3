"""``leap0 dev up -v``: the one-line summary of the operator's metrics."""

from __future__ import annotations

import datetime

import pytest
from prometheus_client import generate_latest

import leap0_contract as contract
from leap0_dev.operator_metrics import histogram_quantile, summary
from leap0_operator.metrics import Metrics, phase_counts


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(1.0, 0.0), (2.0, 10.0), (float("inf"), 10.0)], 1.5),  # the middle of the (1, 2] bucket
        (0.5, [(1.0, 10.0), (float("inf"), 10.0)], 0.5),
        (0.99, [(1.0, 1.0), (float("inf"), 2.0)], 1.0),  # in +Inf: the highest finite bound
        (0.5, [(1.0, 0.0), (float("inf"), 0.0)], None),  # nothing observed
        (0.5, [], None),
    ],
)
def test_quantile_interpolates_like_prometheus(
    q: float, buckets: list[tuple[float, float]], expected: float | None
) -> None:
    assert histogram_quantile(q, buckets) == expected


def test_summary_of_a_real_exposition() -> None:
    metrics = Metrics()
    metrics.watch(lambda: phase_counts(["Running", "Running", "Pending"]), lambda: 0)
    now = datetime.datetime(2026, 1, 1, 0, 0, 3, tzinfo=datetime.UTC)
    for _ in range(4):
        metrics.observe_running("2026-01-01T00:00:00Z", now)  # 3 s each: all in the (2, 5] bucket
    line = summary(generate_latest(metrics.registry).decode())
    assert (
        line == "operator: sandboxes Pending 1, Running 2, Paused 0, Failed 0, Expired 0; startup p50 3.50 s"
    )  # 2 + 3 x 2/4


def test_summary_before_any_startup() -> None:
    line = summary(generate_latest(Metrics().registry).decode())
    assert line.endswith("no startup yet")
    assert all(f"{phase} 0" in line for phase in contract.PHASES)
