"""The workspace claim the operator builds is accepted by the real API server, and a table of claims (valid
and not) gets the same answer from the real API server and the emulator; so does an update of a claim's
spec."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from controlplane_support import answer, both_answers, new_namespace
from kubernetes import client

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread
from leap0_dev.controlplane import ControlPlane
from leap0_operator.config import OperatorConfig
from leap0_operator.pod import build_workspace_claim
from leap0_operator.resolve import resolve

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

STORAGE = {"requests": {"storage": "1Gi"}}
CLAIMS: dict[str, dict[str, Any]] = {
    "valid": {"accessModes": ["ReadWriteOnce"], "resources": STORAGE, "storageClassName": "fast"},
    "no-access-modes": {"resources": STORAGE},
    "no-storage": {"accessModes": ["ReadWriteOnce"]},
    "zero-storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "0"}}},
    "unknown-mode": {"accessModes": ["WriteMany"], "resources": STORAGE},
    "once-pod-and-many": {"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"], "resources": STORAGE},
    "class-name": {"accessModes": ["ReadWriteOnce"], "resources": STORAGE, "storageClassName": "Fast_SSD"},
    "volume-mode": {"accessModes": ["ReadWriteOnce"], "resources": STORAGE, "volumeMode": "Raw"},
    "two-errors": {"accessModes": ["WriteMany"]},
}


def _claim(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def emulator_claims(apiserver: ServerThread) -> str:
    return new_namespace(apiserver, "pvc-table")


@pytest.fixture(scope="module")
def real_claims(control_plane: ControlPlane) -> str:
    return new_namespace(control_plane, "pvc-table")


@pytest.mark.parametrize("case", CLAIMS)
def test_the_emulator_answers_each_claim_as_the_real_api_server(
    case: str,
    control_plane: ControlPlane,
    real_claims: str,
    apiserver: ServerThread,
    emulator_claims: str,
) -> None:
    body = _claim(case, CLAIMS[case])
    real, emulated = both_answers(
        (control_plane, real_claims),
        (apiserver, emulator_claims),
        lambda api, namespace: client.CoreV1Api(api).create_namespaced_persistent_volume_claim(
            namespace, body
        ),
    )
    assert (real == {"accepted": True}) == (case == "valid"), real
    assert emulated == real


def test_a_claims_spec_is_immutable_on_both_servers(
    control_plane: ControlPlane, real_claims: str, apiserver: ServerThread, emulator_claims: str
) -> None:
    """A change of access modes is refused by both with the same first line (the real server adds a diff of
    the two specs, which the emulator does not compute)."""
    patch = {"spec": {"accessModes": ["ReadWriteMany"]}}
    answers = []
    for plane, namespace in ((control_plane, real_claims), (apiserver, emulator_claims)):
        with plane.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            core.create_namespaced_persistent_volume_claim(
                namespace, _claim("immutable", {"accessModes": ["ReadWriteOnce"], "resources": STORAGE})
            )
            got = answer(
                functools.partial(
                    core.patch_namespaced_persistent_volume_claim, "immutable", namespace, patch
                )
            )
        answers.append((got["code"], got["reason"], got["message"].split("\n")[0]))
    real, emulated = answers
    assert real[:2] == (422, "Invalid")
    assert real[2].startswith(
        'PersistentVolumeClaim "immutable" is invalid: spec: Forbidden: spec is immutable after creation '
        "except resources.requests and volumeAttributesClassName for bound claims"
    )
    assert emulated[:2] == real[:2]
    assert real[2].startswith(emulated[2])


def test_the_real_api_server_accepts_the_workspace_claim_the_operator_builds(
    control_plane: ControlPlane, control_plane_crds: Any, k8s_namespace: str
) -> None:
    spec = {"workspace": {"persistent": True, "storageClassName": "standard"}, "disk": 2048}
    body = {"apiVersion": contract.API_VERSION, "kind": contract.SANDBOX_KIND, "metadata": {"name": "sbx"}}
    with control_plane.api_client() as api_client:
        owner = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            contract.GROUP, contract.VERSION, k8s_namespace, contract.SANDBOX_PLURAL, {**body, "spec": spec}
        )
        claim = build_workspace_claim(owner=owner, effective=resolve(spec, None, OperatorConfig()))
        assert claim is not None
        core = client.CoreV1Api(api_client)
        assert answer(lambda: core.create_namespaced_persistent_volume_claim(k8s_namespace, claim)) == {
            "accepted": True
        }
        stored = core.read_namespaced_persistent_volume_claim("sbx-workspace", k8s_namespace)
    assert stored.metadata.owner_references[0].uid == owner["metadata"]["uid"]
    assert stored.spec.resources.requests == {"storage": "2Gi"}
    assert stored.status.phase == "Pending"  # no volume of that class here: the emulator binds at once
