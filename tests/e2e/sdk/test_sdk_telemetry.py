"""SDK OpenTelemetry: spans and duration histograms per operation, the enablement rules, and "off means no
OpenTelemetry objects at all". In-memory exporters here; real OTLP/HTTP export is in test_sdk_seed.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sdk_support import OtlpReceiver, running_status, set_status, start_pod
from support import subprocess_env

from leap0 import Leap0Client, SandboxNotFoundError
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def histograms(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                assert sm.scope.name == "leap0-sdk-python"
                for metric in sm.metrics:
                    assert metric.unit == "ms"
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


def test_one_span_and_one_histogram_point_per_operation(
    apiserver: ServerThread, namespace: str, telemetry: Telemetry, exec_runner: Any
) -> None:
    with Leap0Client(
        namespace=namespace,
        kubeconfig=apiserver.kubeconfig,
        sdk_otel_enabled=True,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    ) as sdk:
        assert sdk.sdk_otel_enabled
        sandbox = sdk.sandboxes.create(wait=False)
        start_pod(apiserver.api_client(), namespace, sandbox.id)
        set_status(apiserver.api_client(), namespace, sandbox.id, running_status(sandbox.id))
        sdk.sandboxes.get(sandbox.id)
        sdk.sandboxes.list()
        sandbox.process.execute("echo hi")
        sandbox.filesystem.write("f.txt", "x")
        sandbox.filesystem.read("f.txt")
        sandbox.delete()
        with pytest.raises(SandboxNotFoundError):
            sdk.sandboxes.get(sandbox.id)

    spans = telemetry.spans.get_finished_spans()
    assert [s.name for s in spans] == [
        "sandboxes.create",
        "sandboxes.get",
        "sandboxes.list",
        "sandboxes.get",  # inside process.execute: the cached copy had no pod yet, so it is reread once
        "process.execute",
        "filesystem.write",
        "filesystem.read",
        "sandboxes.delete",
        "sandboxes.get",
    ]
    for span in spans:
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "leap0-sdk-python"
        assert span.kind == SpanKind.CLIENT
        if span.name != "sandboxes.list":
            assert span.attributes is not None
            assert span.attributes["leap0.sandbox.id"] == sandbox.id
    assert [s.status.status_code for s in spans[:-1]] == [StatusCode.OK] * 8
    failed = spans[-1]
    assert failed.status.status_code == StatusCode.ERROR
    assert "SandboxNotFoundError" in (failed.status.description or "")
    assert [e.name for e in failed.events] == ["exception"]

    hist = telemetry.histograms()
    assert set(hist) == {
        "sandboxes_create_duration",
        "sandboxes_get_duration",
        "sandboxes_list_duration",
        "sandboxes_delete_duration",
        "process_execute_duration",
        "filesystem_write_duration",
        "filesystem_read_duration",
    }
    get_points = {p.attributes["status"]: p.count for p in hist["sandboxes_get_duration"]}
    assert get_points == {"success": 2, "error": 1}
    assert [p.attributes for p in hist["sandboxes_create_duration"]] == [{"status": "success"}]
    assert all(p.sum >= 0 for points in hist.values() for p in points)


def _child(code: str, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


_OFF_PROBE = """
    import json, os, sys
    from leap0 import Leap0Client
    cases = [
        ({{"sdk_otel_enabled": False}}, {{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}}),
        ({{"sdk_otel_enabled": False}}, {{"LEAP0_SDK_OTEL_ENABLED": "true"}}),
        ({{}}, {{"LEAP0_SDK_OTEL_ENABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}}),
        ({{}}, {{}}),
    ]
    enabled = []
    for kwargs, env in cases:
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "LEAP0_SDK_OTEL_ENABLED"):
            os.environ.pop(name, None)
        os.environ.update(env)
        with Leap0Client(namespace={ns!r}, kubeconfig={kc!r}, **kwargs) as sdk:
            sandbox = sdk.sandboxes.create(wait=False)
            sdk.sandboxes.list()
            sandbox.delete()
            enabled.append(sdk.sdk_otel_enabled)
    otel = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    print(json.dumps({{"enabled": enabled, "otel": otel}}))
"""


def test_off_means_no_opentelemetry_object_at_all(apiserver: ServerThread, namespace: str) -> None:
    """Off by argument (even with an endpoint or the variable set), by the variable, or by default."""
    out = _child(_OFF_PROBE.format(ns=namespace, kc=str(apiserver.kubeconfig)), {})
    assert out == {"enabled": [False] * 4, "otel": []}


def test_applications_global_providers_are_used_when_set(
    apiserver: ServerThread, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = f"""
        import json
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        spans = InMemorySpanExporter()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tp)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        built = []
        for cls in (TracerProvider, MeterProvider):
            original = cls.__init__
            def init(self, *a, __original=original, **kw):
                built.append(type(self).__name__)
                __original(self, *a, **kw)
            cls.__init__ = init

        from leap0 import Leap0Client
        with Leap0Client(namespace={namespace!r}, kubeconfig={str(apiserver.kubeconfig)!r}) as sdk:
            sdk.sandboxes.list()
        names = [m.name for rm in reader.get_metrics_data().resource_metrics
                 for sm in rm.scope_metrics for m in sm.metrics]
        print(json.dumps({{"spans": [s.name for s in spans.get_finished_spans()], "metrics": names,
                          "built": built}}))
    """
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    with OtlpReceiver() as receiver:
        out = _child(code, {"LEAP0_SDK_OTEL_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
    assert out == {"spans": ["sandboxes.list"], "metrics": ["sandboxes_list_duration"], "built": []}
    assert receiver.requests == []  # nothing from providers of the SDK's own


def test_close_returns_when_the_collector_is_unreachable(apiserver: ServerThread, namespace: str) -> None:
    """The SDK's own exporters give up (after 2 s, retries included, unless OTEL_EXPORTER_OTLP_TIMEOUT says
    otherwise); the failure is logged by OpenTelemetry, never raised to the application."""
    with OtlpReceiver() as receiver:
        refused = receiver.url  # nothing listens there once it is stopped
    code = f"""
        import json
        from leap0 import Leap0Client
        sdk = Leap0Client(namespace={namespace!r}, kubeconfig={str(apiserver.kubeconfig)!r})
        sdk.sandboxes.list()
        sdk.close()
        print(json.dumps({{"closed": sdk.sdk_otel_enabled}}))
    """
    assert _child(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": refused}) == {"closed": True}
