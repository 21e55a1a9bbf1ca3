"""The embedded API server serves PersistentVolumeClaims: bound at once (as a default StorageClass's
provisioner and the volume controller would make them), checked by kube-apiserver's PVC rules, printed by
kubectl as a cluster prints them, and collected with their owner."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from support import assert_collected_with_its_owner, kubectl

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

CLAIM_YAML = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: ws}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
"""


def claim(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def refusal(core: client.CoreV1Api, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_persistent_volume_claim(namespace, body)
    assert caught.value.status == 422
    message: str = json.loads(caught.value.body)["message"]
    return message


def test_discovery_lists_persistentvolumeclaims_with_their_short_name(apiserver: ServerThread) -> None:
    out = kubectl(apiserver.kubeconfig, "api-resources", "--api-group=", "-o", "wide").stdout
    row = next(line.split() for line in out.splitlines() if line.startswith("persistentvolumeclaims "))
    assert row[:4] == ["persistentvolumeclaims", "pvc", "v1", "true"]


def test_a_claim_applied_by_kubectl_is_bound_at_once_and_printed_as_a_cluster_prints_it(
    apiserver: ServerThread, namespace: str
) -> None:
    kc = apiserver.kubeconfig
    assert (
        "created"
        in kubectl(kc, "-n", namespace, "apply", "--validate=strict", "-f", "-", input=CLAIM_YAML).stdout
    )
    obj = json.loads(kubectl(kc, "-n", namespace, "get", "pvc", "ws", "-o", "json").stdout)
    assert obj["status"] == {
        "phase": "Bound",
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": "64Mi"},
    }
    assert obj["spec"]["volumeName"] == f"pvc-{obj['metadata']['uid']}"
    assert obj["spec"]["storageClassName"] == "standard"  # the default class, as DefaultStorageClass sets it
    assert obj["spec"]["volumeMode"] == "Filesystem"
    assert obj["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    table = kubectl(kc, "-n", namespace, "get", "pvc").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "STATUS",
        "VOLUME",
        "CAPACITY",
        "ACCESS",
        "MODES",
        "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS",
        "AGE",
    ]
    assert table[1].split()[:7] == [
        "ws",
        "Bound",
        obj["spec"]["volumeName"],
        "64Mi",
        "RWO",
        "standard",
        "<unset>",
    ]
    bad = CLAIM_YAML.replace("accessModes:", "accessModez:")
    result = kubectl(kc, "-n", namespace, "apply", "--validate=strict", "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert "accessModez" in result.stderr


def test_invalid_claims_are_refused_with_kube_apiservers_words(
    apiserver: ServerThread, namespace: str
) -> None:
    core = client.CoreV1Api(apiserver.api_client())
    storage = {"requests": {"storage": "1Gi"}}
    assert refusal(core, namespace, claim("a", resources=storage)).endswith(
        "spec.accessModes: Required value: at least 1 access mode is required"
    )
    assert refusal(core, namespace, claim("b", accessModes=["ReadWriteOnce"])).endswith(
        "spec.resources[storage]: Required value"
    )
    zero = claim("c", accessModes=["ReadWriteOnce"], resources={"requests": {"storage": "0"}})
    assert refusal(core, namespace, zero).endswith(
        'spec.resources[storage]: Invalid value: "0": must be greater than zero'
    )
    modes = claim("d", accessModes=["ReadWriteOncePod", "ReadOnlyMany"], resources=storage)
    assert "may not use ReadWriteOncePod with other access modes" in refusal(core, namespace, modes)
    unknown = claim("e", accessModes=["WriteMany"], resources=storage)
    assert 'spec.accessModes: Unsupported value: "WriteMany": supported values: "ReadOnlyMany"' in refusal(
        core, namespace, unknown
    )
    named = claim("f", accessModes=["ReadWriteOnce"], resources=storage, storageClassName="Fast_SSD")
    assert 'spec.storageClassName: Invalid value: "Fast_SSD": a lowercase RFC 1123 subdomain' in refusal(
        core, namespace, named
    )
    block = claim("g", accessModes=["ReadWriteOnce"], resources=storage, volumeMode="Raw")
    assert 'spec.volumeMode: Unsupported value: "Raw"' in refusal(core, namespace, block)


def test_a_bound_claim_may_only_grow(apiserver: ServerThread, namespace: str) -> None:
    core = client.CoreV1Api(apiserver.api_client())
    core.create_namespaced_persistent_volume_claim(
        namespace, claim("ws", accessModes=["ReadWriteOnce"], resources={"requests": {"storage": "1Gi"}})
    )
    with pytest.raises(client.ApiException) as changed:
        core.patch_namespaced_persistent_volume_claim(
            "ws", namespace, {"spec": {"accessModes": ["ReadWriteMany"]}}
        )
    assert "spec: Forbidden: spec is immutable after creation except resources.requests" in changed.value.body
    with pytest.raises(client.ApiException) as shrunk:
        core.patch_namespaced_persistent_volume_claim(
            "ws", namespace, {"spec": {"resources": {"requests": {"storage": "512Mi"}}}}
        )
    assert "field can not be less than status.capacity" in shrunk.value.body
    grown = core.patch_namespaced_persistent_volume_claim(
        "ws", namespace, {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    )
    assert grown.spec.resources.requests == {"storage": "2Gi"}


def test_a_claim_is_garbage_collected_with_its_owner(apiserver: ServerThread, namespace: str) -> None:
    assert_collected_with_its_owner(apiserver.kubeconfig, namespace, CLAIM_YAML, "ws", "pvc", 10)
