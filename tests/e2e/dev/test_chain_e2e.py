"""The whole chain on one machine: kubectl apply → operator → pod → local runner → sidecar → OTLP receiver.

Also ``leap0 dev up`` itself: within a minute its console shows the seven sandbox metrics, the demo's spans
and the lines it prints (sandbox logs) with their leap0.* identity, and Ctrl-C stops everything.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from kubernetes import client
from support import (
    alive,
    demo_shown,
    dev_up_process,
    kubectl_path,
    wait_for,
)

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread
from leap0_dev.runner import Runner, RunnerConfig
from leap0_dev.sink import OtlpSink

pytestmark = pytest.mark.e2e

SANDBOX_METRICS = {
    "leap0.sandbox.cpu.utilization",
    "leap0.sandbox.cpu.limit",
    "leap0.sandbox.memory.utilization",
    "leap0.sandbox.memory.usage",
    "leap0.sandbox.memory.limit",
    "leap0.sandbox.filesystem.utilization",
    "leap0.sandbox.filesystem.usage",
}

APP = """
import time
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
provider = TracerProvider(resource=Resource.create({"service.name": "chain", "leap0.sandbox.id": "not-me"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
tracer = provider.get_tracer("chain")
while True:
    with tracer.start_as_current_span("chain.work"):
        sum(range(10000))
    time.sleep(0.5)
"""


def test_sandbox_telemetry_reaches_its_endpoint_with_its_identity_and_delete_stops_it(
    apiserver: ServerThread,
    namespace: str,
    operator: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    with apiserver.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        custom = client.CustomObjectsApi(api_client)
        core.patch_namespace(namespace, {"metadata": {"labels": {contract.NAMESPACE_ORG_LABEL: "acme"}}})
        config = RunnerConfig(
            otlp_grpc_port=0,
            otlp_http_port=0,
            health_port=0,
            metrics_interval=1,
            namespace=namespace,
            workdir=tmp_path / "pods",
            max_grace_seconds=3,
        )
        with OtlpSink() as upstream, Runner(apiserver.api_client(), config) as runner:
            sandbox = {
                "apiVersion": contract.API_VERSION,
                "kind": contract.SANDBOX_KIND,
                "metadata": {"name": "chain", "namespace": namespace},
                "spec": {
                    "memory": 512,
                    "timeout": 600,
                    "env": [{"name": contract.OTEL_EXPORTER_OTLP_ENDPOINT, "value": upstream.url}],
                    "command": ["python", "-c", APP],
                },
            }
            kubectl = [kubectl_path(), "--kubeconfig", str(apiserver.kubeconfig)]
            subprocess.run([*kubectl, "apply", "-f", "-"], input=yaml.safe_dump(sandbox).encode(), check=True)

            def phase() -> str | None:
                obj = custom.get_namespaced_custom_object(
                    contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, "chain"
                )
                return (obj.get("status") or {}).get("phase")

            wait_for(lambda: phase() == contract.PHASE_RUNNING, 60, "the Sandbox Running")
            identity = {
                contract.ATTR_SANDBOX_ID: "chain",
                contract.ATTR_ORG_ID: "acme",
                contract.ATTR_TEMPLATE_ID: contract.DEFAULT_TEMPLATE_ID,
            }

            def has_identity(resource: dict[str, Any]) -> bool:
                return all(resource.get(k) == v for k, v in identity.items())

            def seen_metrics() -> set[str]:
                return {p["name"] for p in upstream.metric_points() if has_identity(p["resource"])}

            wait_for(lambda: seen_metrics() >= SANDBOX_METRICS, 60, f"the seven metrics {SANDBOX_METRICS}")
            spans = wait_for(
                lambda: [s for s in upstream.spans() if s["name"] == "chain.work"], 30, "the app's spans"
            )
            assert all(has_identity(s["resource"]) for s in spans), spans[0]["resource"]
            limits = {p["name"]: p["value"] for p in upstream.metric_points()}
            assert limits["leap0.sandbox.memory.limit"] == 512 * 2**20
            assert limits["leap0.sandbox.cpu.limit"] == contract.DEFAULT_VCPU

            (pod,) = core.list_namespaced_pod(namespace).items
            pod_name = pod.metadata.name
            local = runner.find(namespace, pod_name)
            assert local is not None
            pids = [c.pid for c in local.containers if c.pid is not None]
            assert len(pids) == 2
            subprocess.run([*kubectl, "-n", namespace, "delete", "sandbox", "chain"], check=True)
            wait_for(lambda: not any(map(alive, pids)), 30, "the sandbox's processes to stop")


def test_leap0_dev_up_shows_metrics_and_spans_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    # Run as a user would, from a directory of their own with the default (relative) kubeconfig and workdir.
    with dev_up_process(tmp_path, "--metrics-interval=2") as (process, out):
        # the seven metrics, the demo's spans, and (sandbox logs) each line the demo prints as a log record
        wait_for(
            lambda: demo_shown(out, printed=True),
            60,
            f"the seven metrics, the demo's spans and its printed lines in:\n{out}",
        )
        children = [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
        assert children
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert "up: stopped" in out.read_text()
        wait_for(lambda: not any(map(alive, children)), 30, "every process dev up started to stop")
