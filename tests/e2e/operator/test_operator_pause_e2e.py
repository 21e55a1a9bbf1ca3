"""Pause and resume with the operator as a process against the embedded API server: the workspace claim, the
life cycle and its Events, the refusal without a persistent workspace, idleTimeout, onTimeout Pause, a
template's pausedRetention, restarts of the operator while paused and while resuming, and a pod deleted by
someone else while paused. A stand-in kubelet reports every new pod Running (with its own start time)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import operator_support as ops
import pytest
from kubernetes import client
from sdk_support import StandInKubelet
from support import REPO, kubectl, wait_for

import leap0_contract as contract

pytestmark = pytest.mark.e2e
PERSISTENT = {"persistent": True}


def patch_spec(api: client.ApiClient, namespace: str, name: str, **spec: Any) -> None:
    ops.custom(api).patch_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, name, {"spec": spec}
    )


def condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == ctype)


def identity(pod: Any) -> dict[str, str]:
    """The leap0.* identity the operator gives the pod's sidecar."""
    names = (contract.ENV_SANDBOX_ID, contract.ENV_ORG_ID, contract.ENV_TEMPLATE_ID)
    sidecar = next(c for c in pod.spec.init_containers if c.name == contract.TELEMETRY_CONTAINER)
    return {e.name: e.value for e in sidecar.env if e.name in names}


def test_pause_and_resume_keep_the_workspace_claim_and_identity_with_an_event_each(
    apiserver: Any,
    api: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., ops.Operator],
    running_kubelet: StandInKubelet,
) -> None:
    start_operator()
    with ops.OperatorCalls(apiserver) as calls:
        ops.create_sandbox(api, namespace, "ws", timeout=600, disk=64, workspace=PERSISTENT)
        first = ops.wait_phase(api, namespace, "ws", contract.PHASE_RUNNING)
        claim = ops.core(api).read_namespaced_persistent_volume_claim("ws-workspace", namespace)
        owner = ops.sandbox(api, namespace, "ws")["metadata"]["uid"]
        assert [(r.kind, r.uid, r.controller) for r in claim.metadata.owner_references] == [
            ("Sandbox", owner, True)
        ]
        assert claim.spec.resources.requests == {"storage": "64Mi"}
        assert first["workspace"] == {"persistent": True, "claimName": "ws-workspace"}
        pod = ops.core(api).read_namespaced_pod("ws", namespace)
        volume = next(v for v in pod.spec.volumes if v.name == contract.WORKSPACE_VOLUME)
        assert volume.persistent_volume_claim.claim_name == "ws-workspace"
        before = identity(pod)

        patch_spec(api, namespace, "ws", paused=True)
        stopped = ops.wait_phase(api, namespace, "ws", contract.PHASE_PAUSED)
        assert stopped["reason"] == contract.REASON_PAUSED
        assert stopped["pausedAt"]
        assert "expiresAt" not in stopped
        assert "podIP" not in stopped
        assert condition(stopped, contract.CONDITION_READY)["status"] == "False"
        assert condition(stopped, contract.CONDITION_PAUSED)["status"] == "True"
        wait_for(ops.pod_gone(api, namespace, "ws"), timeout=20, what="the pod deleted")
        # the claim and the NetworkPolicy stay
        ops.core(api).read_namespaced_persistent_volume_claim("ws-workspace", namespace)
        client.NetworkingV1Api(api).read_namespaced_network_policy("ws", namespace)
        table = kubectl(apiserver.kubeconfig, "-n", namespace, "get", "sbx", "ws").stdout.splitlines()
        assert table[1].split()[1] == "Paused"

        time.sleep(1.1)  # timestamps have second precision: the new start is later
        patch_spec(api, namespace, "ws", paused=False)
        again = ops.wait_phase(api, namespace, "ws", contract.PHASE_RUNNING)
        assert again["startedAt"] > first["startedAt"]
        assert again["resumedAt"] >= stopped["pausedAt"]
        assert "pausedAt" not in again
        assert condition(again, contract.CONDITION_PAUSED)["reason"] == contract.REASON_RESUMED
        resumed = ops.core(api).read_namespaced_pod("ws", namespace)
        assert resumed.metadata.uid != pod.metadata.uid
        assert identity(resumed) == before
        volume = next(v for v in resumed.spec.volumes if v.name == contract.WORKSPACE_VOLUME)
        assert volume.persistent_volume_claim.claim_name == "ws-workspace"
        reasons = [e[1] for e in ops.events_once(api, namespace, "ws", 4)]
        assert reasons == [
            contract.REASON_RUNNING,
            contract.REASON_PAUSED,
            contract.REASON_RESUMING,
            "Running",
        ]
    from leap0_operator.apicalls import permissions

    assert calls.seen <= permissions(), sorted(calls.seen - permissions())
    assert ("", "persistentvolumeclaims", "create") in calls.seen

    # the claim goes with its Sandbox
    ops.custom(api).delete_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, "sandboxes", "ws"
    )

    def claim_gone() -> bool:
        return not ops.core(api).list_namespaced_persistent_volume_claim(namespace).items

    wait_for(claim_gone, timeout=20, what="the claim deleted with its Sandbox")


def test_a_pause_without_a_persistent_workspace_is_refused_with_how_to_get_one(
    apiserver: Any,
    api: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., ops.Operator],
    running_kubelet: StandInKubelet,
) -> None:
    start_operator()
    ops.create_sandbox(api, namespace, "plain", timeout=600)
    ops.wait_phase(api, namespace, "plain", contract.PHASE_RUNNING)
    patch_spec(api, namespace, "plain", paused=True)

    def refused() -> dict[str, Any] | None:
        status: dict[str, Any] = ops.sandbox(api, namespace, "plain")["status"]
        kept = [c for c in status.get("conditions", []) if c["type"] == contract.CONDITION_PAUSED]
        return kept[0] if kept else None

    cond = wait_for(refused, timeout=20, what="the refusal", ignore=ops.API_ERRORS)
    assert (cond["status"], cond["reason"]) == ("False", contract.REASON_PAUSE_REFUSED)
    assert "spec.workspace.persistent: true" in cond["message"]
    assert ops.sandbox(api, namespace, "plain")["status"]["phase"] == contract.PHASE_RUNNING
    ops.core(api).read_namespaced_pod("plain", namespace)  # the pod, and its files, are untouched
    events = ops.events_once(api, namespace, "plain", 2)
    assert ("Warning", contract.REASON_PAUSE_REFUSED, cond["message"]) in events
    described = kubectl(apiserver.kubeconfig, "-n", namespace, "describe", "sbx", "plain").stdout
    assert "Warning  PauseRefused" in described
    # where the Sandbox itself says it has no persistent workspace, the API refuses the pause at once
    ops.create_sandbox(api, namespace, "said-so", timeout=600, workspace={"persistent": False})
    with pytest.raises(client.ApiException) as caught:
        patch_spec(api, namespace, "said-so", paused=True)
    assert caught.value.status == 422
    assert "spec.paused needs a persistent workspace" in caught.value.body


def test_idle_timeout_pauses_an_unused_sandbox_and_use_postpones_it(
    apiserver: Any,
    api: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., ops.Operator],
    running_kubelet: StandInKubelet,
) -> None:
    start_operator()
    ops.create_sandbox(api, namespace, "idle", timeout=600, workspace=PERSISTENT, idleTimeout=4)
    started = ops.wait_phase(api, namespace, "idle", contract.PHASE_RUNNING)
    # used every second for 6 s (more than its idleTimeout): still Running
    for _ in range(6):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ops.custom(api).patch_namespaced_custom_object(
            contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, "idle",
            {"metadata": {"annotations": {contract.ANNOTATION_LAST_ACTIVITY: now}}},
        )  # fmt: skip
        time.sleep(1)
        assert ops.sandbox(api, namespace, "idle")["status"]["phase"] == contract.PHASE_RUNNING
    # then left alone: paused by the operator, through spec.paused
    stopped = ops.wait_phase(api, namespace, "idle", contract.PHASE_PAUSED)
    assert stopped["reason"] == contract.REASON_IDLE_PAUSED
    assert "4s without use" in stopped["message"]
    assert ops.sandbox(api, namespace, "idle")["spec"]["paused"] is True
    assert stopped["pausedAt"] > started["startedAt"]
    wait_for(ops.pod_gone(api, namespace, "idle"), timeout=20, what="the pod deleted")


def test_on_timeout_pause_pauses_at_the_timeout_which_counts_again_from_the_resume(
    api: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., ops.Operator],
    running_kubelet: StandInKubelet,
) -> None:
    start_operator()
    ops.create_sandbox(api, namespace, "tp", timeout=3, onTimeout="Pause", workspace=PERSISTENT)
    ops.wait_phase(api, namespace, "tp", contract.PHASE_RUNNING)
    first = ops.wait_phase(api, namespace, "tp", contract.PHASE_PAUSED)
    assert first["reason"] == contract.REASON_TIMEOUT_PAUSED
    assert ops.sandbox(api, namespace, "tp")["spec"]["paused"] is True
    # paused, it does not expire: still Paused well past its timeout
    time.sleep(4)
    assert ops.sandbox(api, namespace, "tp")["status"]["phase"] == contract.PHASE_PAUSED
    patch_spec(api, namespace, "tp", paused=False)
    back = ops.wait_phase(api, namespace, "tp", contract.PHASE_RUNNING)
    resumed = back["resumedAt"]
    assert back["expiresAt"] > resumed
    again = ops.wait_phase(api, namespace, "tp", contract.PHASE_PAUSED)
    assert again["reason"] == contract.REASON_TIMEOUT_PAUSED
    assert again["pausedAt"] >= resumed


def test_an_operator_restart_while_paused_and_while_resuming_loses_nothing(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:

    operator = start_operator()
    ops.create_sandbox(api, namespace, "rs", timeout=600, workspace=PERSISTENT)
    wait_for(ops.pod_exists(api, namespace, "rs"), timeout=30, what="the pod", ignore=ops.API_ERRORS)
    ops.play_kubelet(api, namespace, "rs", sandbox_state=ops.RUNNING)
    ops.wait_phase(api, namespace, "rs", contract.PHASE_RUNNING)
    patch_spec(api, namespace, "rs", paused=True)
    ops.wait_phase(api, namespace, "rs", contract.PHASE_PAUSED)
    wait_for(ops.pod_gone(api, namespace, "rs"), timeout=20, what="the pod deleted")

    # killed while paused: the restarted operator keeps it paused and creates no pod
    operator.stop(signal.SIGKILL)
    operator = start_operator()
    ops.create_sandbox(api, namespace, "probe", timeout=600)
    wait_for(
        ops.pod_exists(api, namespace, "probe"),
        timeout=30,
        what="the operator serving",
        ignore=ops.API_ERRORS,
    )
    assert ops.pod_gone(api, namespace, "rs")()
    assert ops.sandbox(api, namespace, "rs")["status"]["phase"] == contract.PHASE_PAUSED

    # resumed, then killed before the kubelet reports: the restarted operator carries the resume on
    patch_spec(api, namespace, "rs", paused=False)
    wait_for(ops.pod_exists(api, namespace, "rs"), timeout=30, what="the resumed pod", ignore=ops.API_ERRORS)
    resuming = wait_for(
        lambda: (
            (s := ops.sandbox(api, namespace, "rs")["status"]).get("reason") == contract.REASON_RESUMING and s
        ),
        timeout=20,
        what="Resuming",
    )
    operator.stop(signal.SIGKILL)
    start_operator()
    ops.play_kubelet(api, namespace, "rs", sandbox_state=ops.RUNNING)
    back = ops.wait_phase(api, namespace, "rs", contract.PHASE_RUNNING)
    assert back["resumedAt"] == resuming["resumedAt"]
    assert (
        len([p for p in ops.core(api).list_namespaced_pod(namespace).items if p.metadata.name == "rs"]) == 1
    )


def test_a_pod_deleted_by_someone_else_while_paused_is_not_recreated(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:

    operator = start_operator()
    ops.create_sandbox(api, namespace, "pd", timeout=600, workspace=PERSISTENT)
    wait_for(ops.pod_exists(api, namespace, "pd"), timeout=30, what="the pod", ignore=ops.API_ERRORS)
    ops.play_kubelet(api, namespace, "pd", sandbox_state=ops.RUNNING)
    ops.wait_phase(api, namespace, "pd", contract.PHASE_RUNNING)
    # paused while the operator is away, and its pod deleted by someone else meanwhile
    operator.stop()
    patch_spec(api, namespace, "pd", paused=True)
    ops.core(api).delete_namespaced_pod("pd", namespace)
    start_operator()
    stopped = ops.wait_phase(api, namespace, "pd", contract.PHASE_PAUSED)
    assert stopped["reason"] == contract.REASON_PAUSED
    writes = ops.operator_writes(apiserver)
    # nudges that make it look again (a label) recreate nothing and write nothing
    ops.custom(api).patch_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, "pd",
        {"metadata": {"labels": {"touched": "yes"}}},
    )  # fmt: skip
    time.sleep(2)
    assert ops.pod_gone(api, namespace, "pd")()
    assert ops.operator_writes(apiserver) == writes


def test_a_templates_paused_retention_deletes_a_sandbox_paused_that_long(
    api: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., ops.Operator],
    running_kubelet: StandInKubelet,
) -> None:
    body = {
        "apiVersion": contract.API_VERSION,
        "kind": contract.TEMPLATE_KIND,
        "metadata": {"name": "sleepy"},
        "spec": {"workspace": {"persistent": True}, "pausedRetention": 2},
    }
    ops.custom(api).create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.TEMPLATE_PLURAL, body
    )
    start_operator()
    ops.create_sandbox(api, namespace, "kept", template="sleepy", timeout=600)
    ops.wait_phase(api, namespace, "kept", contract.PHASE_RUNNING)
    patch_spec(api, namespace, "kept", paused=True)
    ops.wait_phase(api, namespace, "kept", contract.PHASE_PAUSED)
    wait_for(
        lambda: "kept" not in {s["metadata"]["name"] for s in ops.sandboxes(api, namespace)},
        timeout=20,
        what="the retention to delete it",
        ignore=ops.API_ERRORS,
    )


def test_the_example_applies_and_gets_its_claim(
    apiserver: Any,
    api: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., ops.Operator],
    running_kubelet: StandInKubelet,
) -> None:
    example = REPO / "examples" / "sandbox-paused-when-idle.yaml"
    kubectl(apiserver.kubeconfig, "-n", namespace, "apply", "--validate=strict", "-f", str(example))
    start_operator()
    status = ops.wait_phase(api, namespace, "agent-workspace", contract.PHASE_RUNNING)
    assert (status["idleTimeout"], status["workspace"]["claimName"]) == (900, "agent-workspace-workspace")
    claim = ops.core(api).read_namespaced_persistent_volume_claim("agent-workspace-workspace", namespace)
    assert claim.spec.resources.requests == {"storage": "1024Mi"}


def test_a_sandbox_named_after_someone_elses_claim_does_not_get_it(
    api: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., ops.Operator],
    running_kubelet: StandInKubelet,
) -> None:
    """The attack: another app's volume `db-workspace` in the namespace; a user who may only create Sandboxes
    names one `db` with a persistent workspace. The operator must not mount that claim."""
    claim = {
        "metadata": {"name": "db-workspace", "labels": {"app": "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    ops.core(api).create_namespaced_persistent_volume_claim(namespace, claim)
    start_operator()
    ops.create_sandbox(api, namespace, "db", timeout=600, workspace=PERSISTENT)
    failed = ops.wait_phase(api, namespace, "db", contract.PHASE_FAILED, timeout=30)
    assert failed["reason"] == contract.REASON_WORKSPACE_CONFLICT
    assert "db-workspace exists and is not this Sandbox's" in failed["message"]
    assert ops.pod_gone(api, namespace, "db")()
    # the app's claim is untouched, and stays when the Sandbox goes
    ops.custom(api).delete_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, "sandboxes", "db"
    )
    time.sleep(1)
    kept = ops.core(api).read_namespaced_persistent_volume_claim("db-workspace", namespace)
    assert kept.metadata.labels == {"app": "db"}
