"""The main loop calls the metrics sampler every LEAP0_METRICS_INTERVAL and forwards its bytes, with identity,
through the same queue as the app's telemetry (in-process, with a stand-in sampler: the real one is tested by
its own suite)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from sidecar_support import IDENTITY, IDENTITY_ENV, Upstream, resource_attributes

from leap0_sidecar.app import Sidecar
from leap0_sidecar.config import load

pytestmark = pytest.mark.e2e


class StandInSampler:
    def __init__(self, app_running: bool = True) -> None:
        self.calls = 0
        self.running = app_running

    def app_running(self) -> bool:
        return self.running

    def sample(self) -> bytes:
        self.calls += 1
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="leap0.sandbox.id").value.string_value = "stale"
        metric = rm.scope_metrics.add().metrics.add(name="leap0.sandbox.cpu.limit", unit="{cpu}")
        metric.gauge.data_points.add(as_double=0.5, time_unix_nano=self.calls)
        return request.SerializeToString()


class BrokenSampler:
    def sample(self) -> bytes:
        raise RuntimeError("cgroup vanished")

    def app_running(self) -> bool:
        return True


def metric_names(upstream: Upstream) -> list[str]:
    return [m.name for rm in upstream.resources("/v1/metrics") for sm in rm.scope_metrics for m in sm.metrics]


async def poll(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    for _ in range(int(within_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {within_s} s")


def config(upstream: Upstream, interval: str = "0.1"):  # type: ignore[no-untyped-def]
    return load(
        {
            **IDENTITY_ENV,
            "OTEL_EXPORTER_OTLP_ENDPOINT": upstream.url,
            "LEAP0_OTLP_GRPC_ENDPOINT": "127.0.0.1:0",
            "LEAP0_OTLP_HTTP_ENDPOINT": "127.0.0.1:0",
            "LEAP0_HEALTH_ENDPOINT": "off",
            "LEAP0_METRICS_INTERVAL": interval,
        }
    )


async def test_sampler_is_called_every_interval_and_forwarded_with_identity() -> None:
    upstream = Upstream()
    upstream.start()
    sampler = StandInSampler()
    sidecar = Sidecar(config(upstream), sampler)
    try:
        await sidecar.start()
        await poll(lambda: metric_names(upstream).count("leap0.sandbox.cpu.limit") >= 3)
        await sidecar.shutdown()
    finally:
        upstream.stop()
    assert sampler.calls >= 3
    sandbox = [
        rm
        for rm in upstream.resources("/v1/metrics")
        if any(m.name == "leap0.sandbox.cpu.limit" for sm in rm.scope_metrics for m in sm.metrics)
    ]
    for rm in sandbox:
        assert resource_attributes(rm.resource).items() >= IDENTITY.items()
    assert "leap0.sidecar.requests.forwarded" in metric_names(upstream)
    # the last sample is taken at shutdown, so nothing between the last interval and the exit is lost (its
    # point's time is the stand-in's call count; a sample under way when shutdown began may be given up)
    times = [
        point.time_unix_nano
        for rm in sandbox
        for sm in rm.scope_metrics
        for m in sm.metrics
        for point in m.gauge.data_points
    ]
    assert max(times) == sampler.calls


async def test_a_failing_sampler_does_not_stop_the_sidecar(caplog: pytest.LogCaptureFixture) -> None:
    upstream = Upstream()
    upstream.start()
    sidecar = Sidecar(config(upstream), BrokenSampler())
    try:
        await sidecar.start()
        await poll(lambda: metric_names(upstream).count("leap0.sidecar.queue.bytes") >= 2)
        await sidecar.shutdown()
    finally:
        upstream.stop()
    assert caplog.text.count("the sandbox metrics sample failed") == 1


async def test_no_last_sample_once_the_apps_processes_have_ended(caplog: pytest.LogCaptureFixture) -> None:
    """At shutdown (a native sidecar gets SIGTERM after the app has exited) a sample would measure nothing:
    none is taken (the last interval's stays the last), and the sidecar's own counters still go."""
    caplog.set_level("INFO", logger="leap0_sidecar")
    upstream = Upstream()
    upstream.start()
    sampler = StandInSampler(app_running=False)
    sidecar = Sidecar(config(upstream, interval="3600"), sampler)
    try:
        await sidecar.start()
        await sidecar.shutdown()
    finally:
        upstream.stop()
    assert sampler.calls == 0
    assert "leap0.sandbox.cpu.limit" not in metric_names(upstream)
    assert "leap0.sidecar.requests.received" in metric_names(upstream)
    assert "no last sandbox metrics sample: the sandbox's processes have ended" in caplog.text
