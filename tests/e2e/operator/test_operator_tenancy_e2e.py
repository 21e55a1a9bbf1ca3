"""The operator process against attacks of a Sandbox's creator, through the embedded API server and kubectl
(docs/security.md): a Secret of the namespace read through a Sandbox's env, a NetworkPolicy deleted or edited
by hand while the sandbox runs. Each attack is reproduced and shown to fail."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import operator_support as ops
import pytest
from kubernetes import client
from support import kubectl, wait_for

import leap0_contract as contract
from leap0_operator.network import policy_digest

pytestmark = pytest.mark.e2e


def secret_ref(var: str, secret: str, key: str = "value") -> dict[str, Any]:
    return {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def create_secret(
    api: client.ApiClient,
    namespace: str,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    owner: Any = None,
) -> None:
    metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": contract.API_VERSION,
                "kind": contract.SANDBOX_KIND,
                "name": owner[0],
                "uid": owner[1],
            }
        ]
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": {"value": "s3cret"}}
    ops.core(api).create_namespaced_secret(namespace, body)


def reason(api: client.ApiClient, namespace: str, name: str, wanted: str) -> Callable[[], bool]:
    return lambda: ops.sandbox(api, namespace, name).get("status", {}).get("reason") == wanted


def test_a_sandbox_reaches_only_secrets_it_owns_or_that_are_labelled_for_sandboxes(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    """The reported attack: env STOLEN from any Secret of the namespace, printed by `kubectl exec`."""
    create_secret(api, namespace, "db-creds")
    create_secret(api, namespace, "shared-token", labels={contract.LABEL_SANDBOX_ENV: "true"})
    start_operator()
    ops.create_sandbox(api, namespace, "thief", timeout=600, env=[secret_ref("STOLEN", "db-creds")])
    ops.create_sandbox(api, namespace, "allowed", timeout=600, env=[secret_ref("TOKEN", "shared-token")])
    ops.create_sandbox(api, namespace, "early", timeout=600, env=[secret_ref("HEADERS", "early-otlp")])

    ops.wait_phase(api, namespace, "thief", "Failed", timeout=30)
    status = ops.sandbox(api, namespace, "thief")["status"]
    assert status["reason"] == contract.REASON_SECRET_NOT_ALLOWED
    assert status["message"].startswith('env STOLEN (Secret "db-creds"): a sandbox may reference only')
    assert ops.pod_gone(api, namespace, "thief")()  # no pod: nothing to exec into
    described = kubectl(apiserver.kubeconfig, "describe", "sbx", "thief", "-n", namespace).stdout
    assert "SecretNotAllowed" in described

    wait_for(ops.pod_exists(api, namespace, "allowed"), timeout=30, what="the pod", ignore=ops.API_ERRORS)
    env = {e.name: e for e in ops.core(api).read_namespaced_pod("allowed", namespace).spec.containers[0].env}
    assert env["TOKEN"].value_from.secret_key_ref.name == "shared-token"

    # a Secret that does not exist yet: Pending, then the pod once it exists (owned by the Sandbox)
    wait_for(reason(api, namespace, "early", contract.REASON_SECRET_NOT_FOUND), timeout=30, what="waiting")
    assert ops.sandbox(api, namespace, "early")["status"]["phase"] == "Pending"
    assert ops.pod_gone(api, namespace, "early")()
    uid = ops.sandbox(api, namespace, "early")["metadata"]["uid"]
    create_secret(api, namespace, "early-otlp", owner=("early", uid))
    wait_for(ops.pod_exists(api, namespace, "early"), timeout=60, what="the pod", ignore=ops.API_ERRORS)


def test_a_deleted_or_edited_network_policy_is_restored(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    """The reported gap: a NetworkPolicy deleted or opened by hand stayed so while the sandbox ran."""
    start_operator()
    ops.create_sandbox(api, namespace, "isolated", timeout=600, network={"policy": "DenyAll"})
    wait_for(ops.pod_exists(api, namespace, "isolated"), timeout=60, what="the pod", ignore=ops.API_ERRORS)
    ops.play_kubelet(api, namespace, "isolated", sandbox_state=ops.RUNNING)
    ops.wait_phase(api, namespace, "isolated", "Running", timeout=30)
    networking = client.NetworkingV1Api(api)

    def live() -> dict[str, Any]:
        got: dict[str, Any] = api.sanitize_for_serialization(
            networking.read_namespaced_network_policy("isolated", namespace)
        )
        return got

    original = live()
    kubectl(apiserver.kubeconfig, "delete", "networkpolicy", "isolated", "-n", namespace)
    wait_for(
        lambda: live()["metadata"]["uid"] != original["metadata"]["uid"],
        30,
        "restored",
        ignore=ops.API_ERRORS,
    )
    assert policy_digest(live()) == policy_digest(original)

    # opened: every egress allowed; and the pod no longer selected
    opened = json.dumps({"spec": {"egress": [{}], "podSelector": {"matchLabels": {"nothing": "here"}}}})
    kubectl(
        apiserver.kubeconfig,
        "patch",
        "networkpolicy",
        "isolated",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        opened,
    )
    wait_for(lambda: policy_digest(live()) == policy_digest(original), 30, "the edit reverted")
    assert live()["spec"]["podSelector"] == {"matchLabels": {contract.LABEL_SANDBOX_ID: "isolated"}}

    # relabelled so that the operator's watch loses it, then opened: found and put back whole
    kubectl(
        apiserver.kubeconfig,
        "label",
        "networkpolicy",
        "isolated",
        "-n",
        namespace,
        f"{contract.LABEL_SANDBOX_ID}-",
    )
    wait_for(
        lambda: live()["metadata"].get("labels", {}).get(contract.LABEL_SANDBOX_ID) == "isolated",
        30,
        "the label back",
    )
    events = kubectl(apiserver.kubeconfig, "get", "events", "-n", namespace, "-o", "json").stdout
    restored = [
        e for e in json.loads(events)["items"] if e["reason"] == contract.REASON_NETWORK_POLICY_RESTORED
    ]
    assert len(restored) >= 3
    assert {e["type"] for e in restored} == {"Warning"}
    assert "NetworkPolicy isolated was deleted while the sandbox lives; restored it" in {
        e["message"] for e in restored
    }
