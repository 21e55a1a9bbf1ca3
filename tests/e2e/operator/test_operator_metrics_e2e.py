"""The operator's /metrics as a platform team reads them, while sandboxes are created, run, fail and expire.

The operator runs as a process (``python -m leap0_operator --metrics-port``) against the embedded API server;
the test plays the kubelet by patching pod status, and scrapes the operator with Prometheus' own parser.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import operator_support as ops
import pytest
from chart_support import dashboard_queries, dashboards, promql_label_names, promql_metric_names
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, operator_process, subprocess_env, wait_for

import leap0_contract as contract

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples | None:
    """Every sample of the operator's /metrics, or None while it does not answer yet."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
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


def test_metrics_follow_sandboxes_through_running_failed_and_expired(
    apiserver: Any, namespace: str, operator: tuple[str, Path]
) -> None:
    url, _ = operator
    before: Samples = wait_for(lambda: scrape(url), timeout=60, what="the operator's /metrics")
    for each in contract.PHASES:  # every phase is there from the start, at 0
        assert (contract.OPERATOR_METRIC_SANDBOXES, frozenset({("phase", each)})) in before
        assert value(before, contract.OPERATOR_METRIC_SANDBOXES, phase=each) == 0
    assert value(before, contract.OPERATOR_METRIC_STARTUP_DURATION + "_count") == 0
    assert value(before, contract.PROCESS_METRIC_RSS) > 0

    with apiserver.api_client() as api:
        for name in ("web", "worker"):
            ops.create_sandbox(api, namespace, name, timeout=600)
        ops.create_sandbox(api, namespace, "brief", timeout=600)
        # Failed for good: it lifts the network its template locks.
        locked = {"apiVersion": contract.API_VERSION, "kind": contract.TEMPLATE_KIND,
                  "metadata": {"name": "locked"}, "spec": {"network": {"policy": "DenyAll"}}}  # fmt: skip
        ops.custom(api).create_namespaced_custom_object(
            contract.GROUP, contract.VERSION, namespace, contract.TEMPLATE_PLURAL, locked
        )
        ops.create_sandbox(api, namespace, "lifted", template="locked", network={"policy": "AllowAll"})
        for name in ("web", "worker", "brief"):
            wait_for(
                ops.pod_exists(api, namespace, name),
                timeout=30,
                what=f"the pod of {name}",
                ignore=ops.API_ERRORS,
            )
        # Expired now (a timeout already past), once its pod exists, however long that took.
        ops.custom(api).patch_namespaced_custom_object(
            contract.GROUP,
            contract.VERSION,
            namespace,
            contract.SANDBOX_PLURAL,
            "brief",
            {"spec": {"timeout": 1}},
        )
        for name in ("web", "worker"):
            ops.play_kubelet(api, namespace, name, sandbox_state=ops.RUNNING)
        for name, wanted in (
            ("web", "Running"),
            ("worker", "Running"),
            ("lifted", "Failed"),
            ("brief", "Expired"),
        ):
            ops.wait_phase(api, namespace, name, wanted, timeout=30)
        wait_for(ops.pod_gone(api, namespace, "brief"), timeout=30, what="the expired pod deleted")

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
    # Reconciles: the locked network failed one Sandbox, once; everything else went through.
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
            ops.create_sandbox(api, namespace, "via-kopf", timeout=600)

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
    ops.create_sandbox(api, namespace, "nap", timeout=600, workspace={"persistent": True})
    ops.wait_phase(api, namespace, "nap", contract.PHASE_RUNNING, timeout=30)
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
