"""The sidecar's own counters and their export as ``leap0.sidecar.*`` OTLP metrics.

Counts are of export requests (one OTLP export call of the app, or one metrics sample), per signal: counting
spans would mean decoding them, which the pipeline avoids. ``dropped`` carries a ``reason`` attribute:
``permanent_error`` (the upstream refused the data with a non-retryable status), ``queue_full`` (a metrics
sample that did not fit; the app's own requests are refused instead, see ``refused``), ``shutdown`` (still
queued when the shutdown deadline passed), ``export_disabled`` (no endpoint configured).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

import leap0_contract as contract
from leap0_contract import Signal
from leap0_sidecar.queue import ExportQueue

CounterKey = tuple[str, Signal, str]  # (metric name, signal, reason or transport or "")


class Stats:
    def __init__(self) -> None:
        self.start_ns = time.time_ns()
        self.counts: Counter[CounterKey] = Counter()

    def received(self, signal: Signal, transport: str) -> None:
        self.counts[(contract.METRIC_SIDECAR_RECEIVED, signal, transport)] += 1

    def forwarded(self, signal: Signal, n: int = 1) -> None:
        self.counts[(contract.METRIC_SIDECAR_FORWARDED, signal, "")] += n

    def retried(self, signal: Signal) -> None:
        self.counts[(contract.METRIC_SIDECAR_RETRIED, signal, "")] += 1

    def dropped(self, signal: Signal, reason: str, n: int = 1) -> None:
        self.counts[(contract.METRIC_SIDECAR_DROPPED, signal, reason)] += n

    def refused(self, signal: Signal, reason: str) -> None:
        self.counts[(contract.METRIC_SIDECAR_REFUSED, signal, reason)] += 1

    def get(self, name: str, signal: Signal, extra: str = "") -> int:
        return self.counts[(name, signal, extra)]


_EXTRA_ATTRIBUTE = {
    contract.METRIC_SIDECAR_RECEIVED: "transport",
    contract.METRIC_SIDECAR_DROPPED: "reason",
    contract.METRIC_SIDECAR_REFUSED: "reason",
}
_DESCRIPTIONS = {
    contract.METRIC_SIDECAR_RECEIVED: (
        "OTLP export requests received from the sandbox (and metrics samples taken)"
    ),
    contract.METRIC_SIDECAR_FORWARDED: "export requests delivered to the upstream endpoint",
    contract.METRIC_SIDECAR_RETRIED: "delivery attempts that failed with a retryable error and were retried",
    contract.METRIC_SIDECAR_DROPPED: "export requests given up, by reason",
    contract.METRIC_SIDECAR_REFUSED: (
        "export requests refused with a retryable answer (backpressure), not queued"
    ),
}


def _attr(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def build_request(
    stats: Stats,
    queue: ExportQueue,
    resource_attributes: Iterable[tuple[str, str]],
    now_ns: int | None = None,
) -> bytes:
    """A serialized ExportMetricsServiceRequest: the sidecar's counters (cumulative sums), queue gauges."""
    now = now_ns if now_ns is not None else time.time_ns()
    metrics: dict[str, metrics_pb2.Metric] = {}
    for (name, signal, extra), value in sorted(stats.counts.items()):
        metric = metrics.get(name)
        if metric is None:
            metric = metrics[name] = metrics_pb2.Metric(
                name=name, unit="{request}", description=_DESCRIPTIONS[name]
            )
            metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
            metric.sum.is_monotonic = True
        point = metric.sum.data_points.add(
            start_time_unix_nano=stats.start_ns, time_unix_nano=now, as_int=value
        )
        point.attributes.append(_attr("signal", signal))
        if extra:
            point.attributes.append(_attr(_EXTRA_ATTRIBUTE[name], extra))
    gauges = [
        metrics_pb2.Metric(
            name=contract.METRIC_SIDECAR_QUEUE_SIZE, unit="{request}", description="export requests waiting"
        ),
        metrics_pb2.Metric(
            name=contract.METRIC_SIDECAR_QUEUE_BYTES, unit="By", description="bytes queued or in flight"
        ),
        metrics_pb2.Metric(
            name=contract.METRIC_SIDECAR_QUEUE_CAPACITY, unit="By", description="the queue's bound in bytes"
        ),
    ]
    for signal in contract.SIGNALS:
        point = gauges[0].gauge.data_points.add(time_unix_nano=now, as_int=queue.count(signal))
        point.attributes.append(_attr("signal", signal))
    gauges[1].gauge.data_points.add(time_unix_nano=now, as_int=queue.used)
    gauges[2].gauge.data_points.add(time_unix_nano=now, as_int=queue.capacity)
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add(
        resource=Resource(attributes=[_attr(k, v) for k, v in resource_attributes]),
    )
    rm.scope_metrics.add(
        scope=InstrumentationScope(name=contract.SIDECAR_SCOPE_NAME), metrics=[*metrics.values(), *gauges]
    )
    return request.SerializeToString()
