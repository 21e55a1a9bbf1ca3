"""Pause and resume on the real control plane, the local runner its kubelet: the workspace claim is bound to a
PersistentVolume by kube-controller-manager's volume controller (statically: a PersistentVolume of the
claim's class made by the test, as an admin would), kube-scheduler places the pod only once the claim is
bound, and a file written through kube-apiserver's exec before a pause is read back after the resume."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from kubernetes import client
from support import wait_for

import leap0_contract as c
from leap0 import Leap0Client
from leap0_dev.controlplane import ControlPlane
from leap0_dev.controlplane.node import LocalNode

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

START_S = 180.0  # the scheduler, the volume binding, then two Python processes on a busy machine


@pytest.fixture
def volume(real_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(the StorageClass name, the PersistentVolume's name): one hostPath volume of 64 MiB of its own class,
    so only the test's claim can bind to it; deleted afterwards (reclaim policy Retain: nothing provisions or
    deletes volumes here)."""
    core = client.CoreV1Api(real_api)
    storage_class = f"leap0-static-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": storage_class},
        "spec": {
            "capacity": {"storage": "64Mi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "hostPath": {"path": str(tmp_path_factory.mktemp("pv")), "type": "Directory"},
        },
    }
    core.create_persistent_volume(body)
    yield storage_class, storage_class
    core.delete_persistent_volume(storage_class)


def test_pause_and_resume_keep_the_file_on_a_volume_the_controller_manager_bound(
    control_plane: ControlPlane,
    kubelet_node: LocalNode,
    k8s_namespace: str,
    real_api: Any,
    start_operator: Callable[..., AbstractContextManager[Any]],
    volume: tuple[str, str],
) -> None:
    storage_class, pv_name = volume
    core = client.CoreV1Api(real_api)
    with (
        start_operator(),
        Leap0Client(
            namespace=k8s_namespace, kubeconfig=control_plane.kubeconfig, sdk_otel_enabled=False
        ) as sdk,
    ):
        sandbox = sdk.sandboxes.create(
            workspace={"persistent": True, "storageClassName": storage_class},
            disk=64,
            timeout=3600,
            wait_timeout=START_S,
        )
        claim = core.read_namespaced_persistent_volume_claim(f"{sandbox.id}-workspace", k8s_namespace)
        assert (claim.status.phase, claim.spec.volume_name) == ("Bound", pv_name)
        assert claim.metadata.owner_references[0].uid == sandbox.uid
        first_pod = core.read_namespaced_pod(sandbox.id, k8s_namespace).metadata.uid

        sandbox.filesystem.write("/workspace/notes.txt", "written before the pause\n")
        sandbox.pause(wait_timeout=START_S)
        assert sandbox.phase == c.PHASE_PAUSED

        def pod_gone() -> bool:
            try:
                core.read_namespaced_pod(sandbox.id, k8s_namespace)
            except client.ApiException as exc:
                return exc.status == 404
            return False

        wait_for(pod_gone, timeout=60, what="the paused sandbox's pod gone (the kubelet finished it)")
        bound = core.read_namespaced_persistent_volume_claim(f"{sandbox.id}-workspace", k8s_namespace)
        assert (bound.status.phase, bound.spec.volume_name) == ("Bound", pv_name)  # kept while paused

        # auto-resume: the read resumes it, on the same claim
        assert sandbox.filesystem.read_text("/workspace/notes.txt") == "written before the pause\n"
        assert sandbox.phase == c.PHASE_RUNNING
        resumed = core.read_namespaced_pod(sandbox.id, k8s_namespace)
        assert resumed.metadata.uid != first_pod
        claims = [
            v.persistent_volume_claim.claim_name for v in resumed.spec.volumes if v.persistent_volume_claim
        ]
        assert claims == [f"{sandbox.id}-workspace"]
        sandbox.delete()
