"""``leap0 dev up``: the operator's metrics URL and, with ``-v``, a one-line summary every minute.

The summary reads the operator's ``/metrics`` with the Prometheus client library's parser: the Sandboxes per
phase and the median startup time (interpolated in the histogram's buckets, as Prometheus'
``histogram_quantile`` does).
"""

from __future__ import annotations

import math
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterable

from prometheus_client.parser import text_string_to_metric_families

import leap0_contract as contract

SUMMARY_EVERY_S = 60.0
# The operator's metrics port in `leap0 dev up` (the chart's too), or a free one when taken.
DEFAULT_PORT = 8081


def free_port(preferred: int = DEFAULT_PORT) -> int:
    """``preferred`` when it can be bound on localhost, else any free port."""
    for candidate in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port for the operator's metrics")


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}{contract.OPERATOR_METRICS_PATH}"


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` buckets, interpolated linearly inside the
    bucket it falls in (Prometheus' rule); None without observations. In the ``+Inf`` bucket: the highest
    finite bound."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def summary(text: str) -> str:
    """One line from an exposition of the operator's metrics: phases and the startup median."""
    phases: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == contract.OPERATOR_METRIC_SANDBOXES:
                phases[sample.labels[contract.OPERATOR_LABEL_PHASE]] = sample.value
            elif sample.name == contract.OPERATOR_METRIC_STARTUP_DURATION + "_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
    counts = ", ".join(f"{phase} {phases.get(phase, 0):g}" for phase in contract.PHASES)
    median = histogram_quantile(0.5, buckets)
    started = "no startup yet" if median is None else f"startup p50 {median:.2f} s"
    return f"operator: sandboxes {counts}; {started}"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
        return text


def print_summaries(
    url: str, console: Callable[[str], None], stop: threading.Event, every: float = SUMMARY_EVERY_S
) -> None:
    """Until ``stop``: every ``every`` seconds, one summary line (or why there is none)."""
    while not stop.wait(every):
        try:
            console(summary(scrape(url)))
        except (OSError, ValueError) as exc:
            console(f"operator: metrics unavailable at {url} ({exc})")
