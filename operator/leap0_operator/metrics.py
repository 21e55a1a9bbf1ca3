"""The operator's own Prometheus metrics, with the official client library (``prometheus_client``).

One :class:`Metrics` per process, on its own ``CollectorRegistry`` (nothing global, so tests and a second
instance never collide) with the library's standard process collector (``process_resident_memory_bytes``,
``process_cpu_seconds_total``, ...). Served at ``/metrics`` by the library's own HTTP server thread
(:meth:`Metrics.serve`) when ``--metrics-port`` is set.

Keeping it cheap: the hot path only increments counters and observes histograms (a lock and an addition
each). The per-phase Sandbox counts and the work queue's depth are not maintained on every event: they are
computed from the operator's own state when Prometheus scrapes (callbacks given to :meth:`Metrics.watch`).

The names are the contract's (``leap0_contract.OPERATOR_METRIC_*``); ``docs/operator.md`` lists them.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import leap0_contract as contract

# Sandbox creation to Running: an image already on the node starts in well under a second, a large image
# pulled on a fresh node takes minutes. 0.1 s .. 10 min.
STARTUP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# The operator's own share (Sandbox seen to pod created): milliseconds normally, seconds under a burst or
# when the API throttles.
POD_CREATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# expiresAt to the pod's deletion: the wake-up timer fires on time; lateness shows a backed-up queue.
EXPIRY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# A pause lasts as long as the app's graceful stop (at most the pod's 30 s grace period, then a kill); a
# resume as long as a start on a node that may need to attach the volume again.
PAUSE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0)
RESUME_BUCKETS = STARTUP_BUCKETS

PhaseCounts = Callable[[], Mapping[str, int]]


def phase_counts(phases: Iterable[str | None]) -> dict[str, int]:
    """Sandboxes per phase, every phase of the contract present (0 included). A Sandbox with no phase yet
    (just created, not reconciled) counts as ``Pending``; an unknown phase is counted under its own name."""
    counts = dict.fromkeys(contract.PHASES, 0)
    for phase in phases:
        key = phase or contract.PHASE_PENDING
        counts[key] = counts.get(key, 0) + 1
    return counts


def seconds_between(start: str | None, end: datetime.datetime) -> float | None:
    """Seconds from an RFC 3339 timestamp of the API (``2026-01-01T00:00:00Z``) to ``end``; None when the
    timestamp is missing or unreadable, never negative (clocks of the API server and the operator differ)."""
    if not start:
        return None
    try:
        began = datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        return None
    if began.tzinfo is None:
        began = began.replace(tzinfo=datetime.UTC)
    return max(0.0, (end - began).total_seconds())


class _PhaseCollector(Collector):
    """``leap0_sandboxes{phase}``, computed at scrape time from the operator's view."""

    def __init__(self) -> None:
        self.source: PhaseCounts | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            contract.OPERATOR_METRIC_SANDBOXES, _SANDBOXES_HELP, labels=[contract.OPERATOR_LABEL_PHASE]
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            contract.OPERATOR_METRIC_SANDBOXES, _SANDBOXES_HELP, labels=[contract.OPERATOR_LABEL_PHASE]
        )
        counts = phase_counts(()) if self.source is None else {**phase_counts(()), **self.source()}
        for phase, count in counts.items():
            family.add_metric([phase], count)
        yield family


_SANDBOXES_HELP = "Sandboxes known to the operator, by status phase (the operator's own view)"


class Metrics:
    """The operator's metrics. The reconciler and the API layer call the ``observe_*``/``count_*`` hooks."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._phases = _PhaseCollector()
        self.registry.register(self._phases)
        self.startup = Histogram(
            contract.OPERATOR_METRIC_STARTUP_DURATION,
            "Seconds from a Sandbox's creation to the operator writing its Running status",
            buckets=STARTUP_BUCKETS,
            registry=self.registry,
        )
        self.pod_create = Histogram(
            contract.OPERATOR_METRIC_POD_CREATE_DURATION,
            "Seconds from the operator seeing a Sandbox without a pod to that pod being created",
            buckets=POD_CREATE_BUCKETS,
            registry=self.registry,
        )
        self.reconciles = Counter(
            contract.OPERATOR_METRIC_RECONCILES,
            "Reconciles by result: ok, retry (an API error that may recover), failed (the Sandbox failed "
            "for good or the reconcile raised)",
            [contract.OPERATOR_LABEL_RESULT],
            registry=self.registry,
        )
        for result in contract.RECONCILE_RESULTS:
            self.reconciles.labels(result)
        self.api_requests = Counter(
            contract.OPERATOR_METRIC_API_REQUESTS,
            "The operator's own Kubernetes API requests (not kopf's watches) by method, resource and HTTP "
            f"status code ({contract.API_CODE_NO_RESPONSE!r}: no answer)",
            [contract.OPERATOR_LABEL_METHOD, contract.OPERATOR_LABEL_RESOURCE, contract.OPERATOR_LABEL_CODE],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            contract.OPERATOR_METRIC_QUEUE_DEPTH,
            "Sandboxes waiting in the reconcile queue",
            registry=self.registry,
        )
        self.expiry_lateness = Histogram(
            contract.OPERATOR_METRIC_EXPIRY_LATENESS,
            "Seconds from a Sandbox's expiresAt to the deletion of its pod",
            buckets=EXPIRY_BUCKETS,
            registry=self.registry,
        )
        self.pause = Histogram(
            contract.OPERATOR_METRIC_PAUSE_DURATION,
            "Seconds from the operator deciding a pause (spec.paused, idleTimeout, onTimeout Pause) to the "
            "sandbox's pod being gone",
            buckets=PAUSE_BUCKETS,
            registry=self.registry,
        )
        self.resume = Histogram(
            contract.OPERATOR_METRIC_RESUME_DURATION,
            "Seconds from the operator seeing a paused sandbox's spec.paused turned false to its Running "
            "status",
            buckets=RESUME_BUCKETS,
            registry=self.registry,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # --- state read at scrape time ------------------------------------------------------------------
    def watch(self, phases: PhaseCounts, queue_depth: Callable[[], int]) -> None:
        """Read the per-phase counts and the queue depth from these callbacks at each scrape."""
        self._phases.source = phases
        self.queue_depth.set_function(lambda: float(queue_depth()))

    # --- hooks ------------------------------------------------------------------------------------------
    def count_reconcile(self, result: str) -> None:
        self.reconciles.labels(result).inc()

    def count_api_request(self, method: str, resource: str, code: int | str) -> None:
        self.api_requests.labels(method.upper(), resource, str(code)).inc()

    def count_api_call(self, method: str, url: str, code: int | None) -> None:
        """One of the operator's API requests, as ``k8s.Api`` reports it: its URL and HTTP status (None: no
        answer came)."""
        status = contract.API_CODE_NO_RESPONSE if code is None else code
        self.count_api_request(method, api_resource(url), status)

    def observe_running(self, created: str | None, now: datetime.datetime) -> None:
        """A Sandbox created at ``created`` (its creationTimestamp) became Running at ``now``."""
        seconds = seconds_between(created, now)
        if seconds is not None:
            self.startup.observe(seconds)

    def observe_pod_created(self, seconds: float) -> None:
        self.pod_create.observe(max(0.0, seconds))

    def observe_expiry(self, expires_at: str | None, now: datetime.datetime) -> None:
        """The pod of a Sandbox due at ``expires_at`` (its status.expiresAt) was deleted at ``now``."""
        seconds = seconds_between(expires_at, now)
        if seconds is not None:
            self.expiry_lateness.observe(seconds)

    def observe_pause(self, seconds: float) -> None:
        self.pause.observe(max(0.0, seconds))

    def observe_resume(self, seconds: float) -> None:
        self.resume.observe(max(0.0, seconds))

    def observe_resumed(self, resumed_at: str, now: datetime.datetime) -> None:
        """A sandbox resumed at ``resumed_at`` (status.resumedAt, recorded before a restart) is Running."""
        seconds = seconds_between(resumed_at, now)
        if seconds is not None:
            self.resume.observe(seconds)

    # --- serving ----------------------------------------------------------------------------------------
    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` (the client library's own HTTP server, in a daemon thread); the bound port."""
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        bound: int = self._server.server_port
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def api_resource(url: str) -> str:
    """The resource an API path addresses, as ``leap0_api_requests_total`` labels it: ``pods``,
    ``sandboxes``, ``sandboxes/status``, ``namespaces`` (a namespace itself)."""
    parts = [p for p in url.split("?", 1)[0].split("/") if p]
    if parts[:1] == ["api"]:
        parts = parts[2:]  # api, v1
    elif parts[:1] == ["apis"]:
        parts = parts[3:]  # apis, group, version
    if parts[:1] == ["namespaces"] and len(parts) >= 3:
        parts = parts[2:]
    if not parts:
        return ""
    return f"{parts[0]}/{parts[2]}" if len(parts) > 2 else parts[0]
