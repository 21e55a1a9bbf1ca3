"""The operator's /metrics as a platform team reads them, while sandboxes are created, run, fail and expire.

The operator runs as a process (``python -m leap0_operator --metrics-port``) against the embedded API server;
the test plays the kubelet by patching pod status, and scrapes the operator with Prometheus' own parser.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_support import dashboard_queries, dashboards, promql_label_names, promql_metric_names
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from support import operator_process, subprocess_env, wait_for

import leap0_contract as contract

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
RUNNING = {"running": {"startedAt": "2026-01-01T00:00:02Z"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(url: str) -> Samples | None:
    """Every sample of the operator's /metrics, or None while it does not answer yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def operator(apiserver: Any, namespace: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The operator serving ``namespace`` with metrics on a free port: (metrics URL, log file)."""
    port = free_port()
    log = tmp_path / "operator.log"
    args = ["--metrics-port", str(port), "--expired-retention", "600", "--retry-delay", "1"]
    with operator_process(apiserver.kubeconfig, namespace, log, *args):
        yield f"http://127.0.0.1:{port}{contract.OPERATOR_METRICS_PATH}", log


def create_sandbox(api: client.ApiClient, namespace: str, name: str, **spec: Any) -> None:
    body = {"apiVersion": contract.API_VERSION, "kind": contract.SANDBOX_KIND, "metadata": {"name": name}}
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, {**body, "spec": spec}
    )


def phase_of(api: client.ApiClient, namespace: str, name: str) -> str | None:
    body = client.CustomObjectsApi(api).get_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, name
    )
    phase: str | None = (body.get("status") or {}).get("phase")
    return phase


def pod_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def play_kubelet_running(api: client.ApiClient, namespace: str, name: str) -> None:
    status = {
        "phase": "Running",
        "podIP": "10.1.2.3",
        "startTime": "2026-01-01T00:00:00Z",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        "initContainerStatuses": [
            {"name": contract.TELEMETRY_CONTAINER, "ready": True, "restartCount": 0, "image": "sidecar",
             "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}},
        ],
        "containerStatuses": [
            {"name": contract.SANDBOX_CONTAINER, "ready": True, "restartCount": 0, "image": "python",
             "imageID": "", "state": RUNNING},
        ],
    }  # fmt: skip
    client.CoreV1Api(api).patch_namespaced_pod_status(name, namespace, {"status": status})


def test_metrics_follow_sandboxes_through_running_failed_and_expired(
    apiserver: Any, namespace: str, operator: tuple[str, Path]
) -> None:
    url, _ = operator
    before: Samples = wait_for(lambda: scrape(url), timeout=60, what="the operator's /metrics")
    for phase in contract.PHASES:  # every phase is there from the start, at 0
        assert (contract.OPERATOR_METRIC_SANDBOXES, frozenset({("phase", phase)})) in before
        assert value(before, contract.OPERATOR_METRIC_SANDBOXES, phase=phase) == 0
    assert value(before, contract.OPERATOR_METRIC_STARTUP_DURATION + "_count") == 0
    assert value(before, contract.PROCESS_METRIC_RSS) > 0

    with apiserver.api_client() as api:
        for name in ("web", "worker"):
            create_sandbox(api, namespace, name, timeout=600)
        create_sandbox(api, namespace, "brief", timeout=2)
        create_sandbox(api, namespace, "orphan", template="does-not-exist")
        for name in ("web", "worker", "brief"):
            wait_for(lambda n=name: pod_exists(api, namespace, n), timeout=30, what=f"the pod of {name}")
        for name in ("web", "worker"):
            play_kubelet_running(api, namespace, name)
        for name, wanted in (("web", "Running"), ("worker", "Running"), ("orphan", "Failed")):
            wait_for(
                lambda n=name, w=wanted: phase_of(api, namespace, n) == w, timeout=30, what=f"{name} {wanted}"
            )
        wait_for(lambda: phase_of(api, namespace, "brief") == "Expired", timeout=30, what="brief Expired")
        wait_for(lambda: not pod_exists(api, namespace, "brief"), timeout=30, what="the expired pod deleted")

    def settled() -> Samples | None:
        samples = scrape(url)
        wanted = {"Running": 2, "Failed": 1, "Expired": 1, "Pending": 0}
        if samples and all(
            value(samples, contract.OPERATOR_METRIC_SANDBOXES, phase=p) == n for p, n in wanted.items()
        ):
            return samples
        return None

    after: Samples = wait_for(
        settled, timeout=30, what="the phase gauge to show 2 Running, 1 Failed, 1 Expired"
    )

    # Startup: the two sandboxes that reached Running; the operator's share: the three pods it created.
    assert value(after, contract.OPERATOR_METRIC_STARTUP_DURATION + "_count") == 2
    assert value(after, contract.OPERATOR_METRIC_STARTUP_DURATION + "_bucket", le="600.0") == 2
    assert value(after, contract.OPERATOR_METRIC_POD_CREATE_DURATION + "_count") == 3
    # Expiry: one pod deleted at (or a little after) its expiresAt.
    assert value(after, contract.OPERATOR_METRIC_EXPIRY_LATENESS + "_count") == 1
    assert value(after, contract.OPERATOR_METRIC_EXPIRY_LATENESS + "_bucket", le="300.0") == 1
    # Reconciles: the unknown template failed one Sandbox, once; everything else went through.
    reconciles = contract.OPERATOR_METRIC_RECONCILES
    assert value(after, reconciles, result=contract.RECONCILE_FAILED) == 1
    assert value(after, reconciles, result=contract.RECONCILE_OK) >= 4
    assert value(after, reconciles, result=contract.RECONCILE_RETRY) == 0
    # The operator's own API requests, by method, resource and code.
    requests = contract.OPERATOR_METRIC_API_REQUESTS
    assert value(after, requests, method="POST", resource="pods", code="201") == 3
    assert value(after, requests, method="DELETE", resource="pods", code="200") == 1
    assert value(after, requests, method="PATCH", resource="sandboxes/status", code="200") >= 4
    assert value(after, requests, method="GET", resource="namespaces", code="200") >= 1
    assert value(after, contract.OPERATOR_METRIC_QUEUE_DEPTH) == 0
    assert value(after, contract.PROCESS_METRIC_CPU) > 0

    # The operator dashboard queries only what this process serves (names and labels, from this scrape).
    served = {name for name, _ in after}
    labels = {label for _, pairs in after for label, _ in pairs} | {"job", "instance"}
    queried: set[str] = set()
    for query in dashboard_queries(dashboards()["leap0-operator.json"]):
        queried |= promql_metric_names(query)
        assert promql_label_names(query) <= labels, query
    assert queried <= served, queried - served
    assert contract.OPERATOR_METRIC_STARTUP_DURATION + "_bucket" in queried


def test_kopf_run_serves_the_metrics_when_the_environment_asks(
    apiserver: Any, namespace: str, tmp_path: Path
) -> None:
    """``kopf run -m leap0_operator`` has no flags of ours: LEAP0_OPERATOR_METRICS_PORT turns them on."""
    port = free_port()
    url = f"http://127.0.0.1:{port}{contract.OPERATOR_METRICS_PATH}"
    env = subprocess_env(
        KUBECONFIG=str(apiserver.kubeconfig), **{contract.ENV_OPERATOR_METRICS_PORT: str(port)}
    )
    with (tmp_path / "kopf.log").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "-m", "leap0_operator", "-n", namespace, "--standalone"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        with apiserver.api_client() as api:
            create_sandbox(api, namespace, "via-kopf", timeout=600)

            def pod_counted() -> Samples | None:
                samples = scrape(url)
                pods = ("POST", "pods", "201")
                labels = dict(zip(("method", "resource", "code"), pods, strict=True))
                return (
                    samples
                    if samples and value(samples, contract.OPERATOR_METRIC_API_REQUESTS, **labels)
                    else None
                )

            samples: Samples = wait_for(pod_counted, timeout=60, what="the pod POST counted at /metrics")
        assert value(samples, contract.OPERATOR_METRIC_POD_CREATE_DURATION + "_count") == 1
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_paused_sandboxes_are_counted_and_pause_and_resume_are_timed(
    apiserver: Any, namespace: str, operator: tuple[str, Path], running_kubelet: Any
) -> None:
    url, _ = operator
    api = apiserver.api_client()
    create_sandbox(api, namespace, "nap", timeout=600, workspace={"persistent": True})
    wait_for(lambda: phase_of(api, namespace, "nap") == contract.PHASE_RUNNING, 30, "Running")
    custom = client.CustomObjectsApi(api)

    def set_paused(paused: bool) -> None:
        custom.patch_namespaced_custom_object(
            contract.GROUP,
            contract.VERSION,
            namespace,
            contract.SANDBOX_PLURAL,
            "nap",
            {"spec": {"paused": paused}},
        )

    set_paused(True)

    def paused_and_timed() -> Samples | None:
        samples = scrape(url)
        if samples is None:
            return None
        count = value(samples, contract.OPERATOR_METRIC_PAUSE_DURATION + "_count")
        paused = value(samples, contract.OPERATOR_METRIC_SANDBOXES, phase=contract.PHASE_PAUSED)
        return samples if (count, paused) == (1, 1) else None

    wait_for(paused_and_timed, 30, "one paused sandbox and one pause timed")
    set_paused(False)

    def resumed_and_timed() -> Samples | None:
        samples = scrape(url)
        if samples is None:
            return None
        count = value(samples, contract.OPERATOR_METRIC_RESUME_DURATION + "_count")
        return samples if count == 1 else None

    samples = wait_for(resumed_and_timed, 30, "one resume timed")
    assert value(samples, contract.OPERATOR_METRIC_SANDBOXES, phase=contract.PHASE_PAUSED) == 0
    assert value(samples, contract.OPERATOR_METRIC_SANDBOXES, phase=contract.PHASE_RUNNING) == 1
    # a resume is not a second startup
    assert value(samples, contract.OPERATOR_METRIC_STARTUP_DURATION + "_count") == 1
