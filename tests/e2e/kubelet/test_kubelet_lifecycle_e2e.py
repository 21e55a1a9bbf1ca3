"""The operator's whole life cycle on the real control plane, the local runner its kubelet.

kube-apiserver validates and admits what the operator writes, kube-scheduler binds the pods to the session's
Node, the runner (as the kubelet) runs them and reports their status, kube-controller-manager collects what a
deleted Sandbox owned, and ``kubectl exec``/``logs`` go through the API server to the kubelet endpoint.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import create_sandbox, phase, pod_gone, sandbox
from support import kubectl, kubectl_path, wait_for

import leap0_contract as contract
from leap0_dev.controlplane import ControlPlane
from leap0_dev.controlplane.node import LocalNode

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

APP = (
    "import sys, time; print('app started', flush=True); print('to stderr', file=sys.stderr, flush=True); "
    "time.sleep(3600)"
)
START_S = 120  # a sandbox's start here: the scheduler, then two Python processes on a busy machine


def _pod(api: Any, namespace: str, name: str) -> client.V1Pod:
    pod: client.V1Pod = client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    return pod


def _running_pod(api: Any, namespace: str, name: str, not_uid: str | None = None) -> Callable[[], Any]:
    def probe() -> client.V1Pod | None:
        pod = _pod(api, namespace, name)
        if pod.metadata.uid == not_uid or pod.metadata.deletion_timestamp or pod.status.phase != "Running":
            return None
        return pod

    return probe


def test_a_sandbox_from_creation_to_garbage_collection(
    control_plane: ControlPlane,
    kubelet_node: LocalNode,
    k8s_namespace: str,
    real_api: Any,
    start_operator: Callable[..., AbstractContextManager[Any]],
    tmp_path: Path,
) -> None:
    ns, kc = k8s_namespace, control_plane.kubeconfig
    core, networking = client.CoreV1Api(real_api), client.NetworkingV1Api(real_api)
    with start_operator():
        create_sandbox(real_api, ns, "life", timeout=3600, command=["python", "-c", APP])

        # The NetworkPolicy, then the pod: both accepted by kube-apiserver's validation and admission.
        policy = wait_for(
            lambda: networking.read_namespaced_network_policy("life", ns),
            timeout=60,
            what="the sandbox's NetworkPolicy",
            ignore=(client.ApiException,),
        )
        owner = sandbox(real_api, ns, "life")["metadata"]["uid"]
        assert [ref.uid for ref in policy.metadata.owner_references] == [owner]
        status = wait_for(
            phase(real_api, ns, "life", contract.PHASE_RUNNING), timeout=START_S, what="Running"
        )
        assert status["podIP"] == "127.0.0.1"

        # Scheduled by kube-scheduler on the session's node, reported Running and Ready by the runner.
        pod = _pod(real_api, ns, "life")
        assert pod.spec.node_name == kubelet_node.name
        conditions = {c.type: c.status for c in pod.status.conditions}
        assert conditions["PodScheduled"] == conditions["Ready"] == "True"
        assert {s.name: s.ready for s in pod.status.container_statuses} == {contract.SANDBOX_CONTAINER: True}
        # the supervisor's copy (sandbox logs) has completed; the native sidecar runs
        assert {s.name: s.started for s in pod.status.init_container_statuses} == {
            contract.SUPERVISOR_INIT_CONTAINER: False,
            contract.TELEMETRY_CONTAINER: True,
        }
        (copied,) = [
            s for s in pod.status.init_container_statuses if s.name == contract.SUPERVISOR_INIT_CONTAINER
        ]
        assert copied.state.terminated.exit_code == 0
        scheduled = [e for e in core.list_namespaced_event(ns).items if e.reason == "Scheduled"]
        assert [(e.involved_object.kind, e.involved_object.name) for e in scheduled] == [("Pod", "life")]

        # kubectl exec and logs: through kube-apiserver to the kubelet endpoint (SPDY/WebSocket), run in the
        # container with its environment.
        exec_env = ["sh", "-c", 'echo "$OTEL_EXPORTER_OTLP_ENDPOINT $LEAP0_SANDBOX_ID"']
        out = kubectl(kc, "-n", ns, "exec", "life", "-c", "sandbox", "--", *exec_env).stdout
        assert out.startswith("http://127.0.0.1:")  # the app's endpoint: its own sidecar
        out = kubectl(kc, "-n", ns, "exec", "life", "-c", "telemetry", "--", *exec_env).stdout
        assert out.split()[-1] == "life"  # the sidecar's environment
        failed = kubectl(kc, "-n", ns, "exec", "life", "--", "sh", "-c", "echo oops >&2; exit 3", check=False)
        assert failed.returncode == 3
        assert "oops" in failed.stderr
        echoed = kubectl(kc, "-n", ns, "exec", "-i", "life", "--", "cat", input="from stdin\n")
        assert echoed.stdout == "from stdin\n"
        logs = kubectl(kc, "-n", ns, "logs", "life", "-c", "sandbox").stdout
        assert "app started" in logs
        assert "to stderr" in logs
        assert kubectl(kc, "-n", ns, "logs", "life", "-c", "sandbox", "--tail=1").stdout.count("\n") == 1

        # Events in `kubectl describe`, as a platform team reads them.
        describe = kubectl(kc, "-n", ns, "describe", "sbx", "life").stdout
        assert "Running" in describe.split("Events:")[1]
        assert "leap0-operator" in describe.split("Events:")[1]

        # Drift: the pod deleted behind the operator's back (the kubelet stops it and removes the object),
        # then recreated by the operator and run again. `kubectl logs -f` follows the app until it stops.
        followed = tmp_path / "follow.log"
        with open(followed, "wb") as out:
            follow = subprocess.Popen(
                [kubectl_path(), f"--kubeconfig={kc}", "-n", ns, "logs", "-f", "life", "-c", "sandbox"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(lambda: "app started" in followed.read_text(), timeout=60, what="kubectl logs -f")
            first_uid = pod.metadata.uid
            core.delete_namespaced_pod("life", ns)
            assert follow.wait(60) == 0  # the stream ended with the container
        finally:
            follow.kill()
            follow.wait()
        recreated = wait_for(
            _running_pod(real_api, ns, "life", not_uid=first_uid),
            timeout=START_S,
            what="the recreated pod Running",
            ignore=(client.ApiException,),
        )
        assert recreated.spec.node_name == kubelet_node.name
        wait_for(phase(real_api, ns, "life", contract.PHASE_RUNNING), timeout=START_S, what="Running again")
        events = kubectl(kc, "-n", ns, "describe", "sbx", "life").stdout.split("Events:")[1]
        assert contract.REASON_POD_DELETED in events

    # Restart: a new operator takes over the running sandbox without touching its pod, and serves new ones
    # to their end (a short sandbox expires: its pod is deleted, the kubelet finishes the deletion).
    with start_operator():
        create_sandbox(real_api, ns, "short", timeout=15)
        wait_for(phase(real_api, ns, "short", contract.PHASE_EXPIRED), timeout=START_S + 15, what="Expired")
        wait_for(pod_gone(real_api, ns, "short"), timeout=60, what="the expired sandbox's pod gone")
        assert _pod(real_api, ns, "life").metadata.uid == recreated.metadata.uid
        assert sandbox(real_api, ns, "life")["status"]["phase"] == contract.PHASE_RUNNING

        # Garbage collection by kube-controller-manager: the Sandbox deleted, its pod and NetworkPolicy go
        # (the pod gracefully, through the kubelet).
        client.CustomObjectsApi(real_api).delete_namespaced_custom_object(
            contract.GROUP, contract.VERSION, ns, contract.SANDBOX_PLURAL, "life"
        )
        wait_for(pod_gone(real_api, ns, "life"), timeout=90, what="the pod collected")

        def policy_gone() -> bool:
            try:
                networking.read_namespaced_network_policy("life", ns)
            except client.ApiException as exc:
                return exc.status == 404
            return False

        wait_for(policy_gone, timeout=60, what="the NetworkPolicy collected")
    assert kubelet_node.runner.find(ns, "life") is None  # and its processes stopped here


def test_a_sandbox_bigger_than_the_node_is_unschedulable_until_its_startup_timeout(
    control_plane: ControlPlane,
    kubelet_node: LocalNode,
    k8s_namespace: str,
    real_api: Any,
    start_operator: Callable[..., AbstractContextManager[Any]],
) -> None:
    ns = k8s_namespace
    template = {
        "apiVersion": contract.API_VERSION,
        "kind": contract.TEMPLATE_KIND,
        "metadata": {"name": "impatient"},
        "spec": {"startupTimeout": 20},
    }
    client.CustomObjectsApi(real_api).create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, ns, contract.TEMPLATE_PLURAL, template
    )
    assert kubelet_node.kubelet is not None
    vcpu = 8  # the largest sandbox: more than the node has
    assert int(kubelet_node.kubelet.resources["cpu"]) < vcpu, "the session's node must be smaller"
    with start_operator():
        create_sandbox(real_api, ns, "huge", template="impatient", vcpu=vcpu, timeout=600)
        pending = wait_for(phase(real_api, ns, "huge", contract.PHASE_PENDING), timeout=60, what="Pending")

        def unschedulable() -> dict[str, Any] | None:
            status: dict[str, Any] = sandbox(real_api, ns, "huge").get("status") or {}
            return status if status.get("reason") == contract.REASON_UNSCHEDULABLE else None

        pending = wait_for(unschedulable, timeout=60, what="Unschedulable from kube-scheduler")
        assert "Insufficient cpu" in pending["message"]  # kube-scheduler's own words
        assert pending["message"].startswith("0/1 nodes are available")
        failed = wait_for(phase(real_api, ns, "huge", contract.PHASE_FAILED), timeout=90, what="Failed")
        assert failed["reason"] == contract.REASON_STARTUP_TIMEOUT
        assert "Unschedulable" in failed["message"]
        wait_for(pod_gone(real_api, ns, "huge"), timeout=60, what="the unschedulable pod deleted")
        events = kubectl(control_plane.kubeconfig, "-n", ns, "describe", "sbx", "huge").stdout
        assert contract.REASON_UNSCHEDULABLE in events.split("Events:")[1]
        assert contract.REASON_STARTUP_TIMEOUT in events.split("Events:")[1]
