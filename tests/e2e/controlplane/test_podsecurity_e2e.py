"""PodSecurity admission: a table of pods (the operator's own, built by its pure pod builder, and pods
breaking each Pod Security Standard check) created in namespaces enforcing `baseline` and `restricted`, on
the real API server and on the emulator: the same admission or refusal, with the same message."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from controlplane_support import both_answers
from kubernetes import client

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread
from leap0_dev.controlplane import ControlPlane
from leap0_operator.config import OperatorConfig
from leap0_operator.pod import build_pod
from leap0_operator.resolve import resolve

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

LEVELS = ("baseline", "restricted")


def sandbox_pod(name: str, template: dict[str, Any] | None) -> dict[str, Any]:
    meta = {"name": name, "namespace": "x", "uid": "00000000-0000-0000-0000-000000000001"}
    owner = {"apiVersion": contract.API_VERSION, "kind": contract.SANDBOX_KIND, "metadata": meta}
    config = OperatorConfig()
    pod = build_pod(owner=owner, effective=resolve({}, template, config), org_id="acme", config=config)
    pod["metadata"].pop("namespace", None)
    pod["metadata"].pop("ownerReferences", None)  # no such Sandbox: the garbage collector would delete it
    return pod


def plain(name: str, **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox", **container}]}}  # fmt: skip


def with_spec(pod: dict[str, Any], **spec: Any) -> dict[str, Any]:
    changed = copy.deepcopy(pod)
    changed["spec"].update(spec)
    return changed


HARDENED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}

PODS = {
    "sandbox-baseline": sandbox_pod("sandbox-baseline", None),
    "sandbox-restricted": sandbox_pod(
        "sandbox-restricted",
        {"podSecurity": "restricted"},  # a template's spec
    ),
    "plain": plain("plain"),
    "hardened": plain("hardened", securityContext=HARDENED),
    "privileged": plain("privileged", securityContext={"privileged": True}),
    "caps": plain("caps", securityContext={**HARDENED, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}),
    "host": with_spec(
        plain("host", ports=[{"containerPort": 8080, "hostPort": 8080}]),
        hostNetwork=True,
        hostPID=True,
        volumes=[{"name": "root", "hostPath": {"path": "/"}}],
    ),
    "root": with_spec(
        plain("root", securityContext={**HARDENED, "runAsUser": 0}), securityContext={"runAsNonRoot": False}
    ),
    "seccomp-unconfined": plain(
        "seccomp-unconfined", securityContext={**HARDENED, "seccompProfile": {"type": "Unconfined"}}
    ),
    "two-containers": with_spec(
        plain("two-containers"),
        containers=[{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}],
        initContainers=[{"name": "init", "image": "busybox", "securityContext": HARDENED}],
    ),
    "volumes": with_spec(
        plain("volumes", securityContext=HARDENED),
        volumes=[{"name": "n", "nfs": {"server": "nfs.example", "path": "/"}}, {"name": "e", "emptyDir": {}}],
    ),
    "sysctls-selinux": with_spec(
        plain(
            "sysctls-selinux", securityContext={**HARDENED, "seLinuxOptions": {"type": "spc_t", "user": "u"}}
        ),
        securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
    ),
    "probe-host": plain(
        "probe-host", securityContext=HARDENED, livenessProbe={"httpGet": {"host": "10.0.0.1", "port": 80}}
    ),
}


def _namespaces(api_client: Any, tag: str) -> dict[str, str]:
    core = client.CoreV1Api(api_client)
    names = {}
    for level in LEVELS:
        name = f"pss-{tag}-{level}"
        labels = {"pod-security.kubernetes.io/enforce": level}
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
        names[level] = name
    return names


@pytest.fixture(scope="module")
def real_levels(control_plane: ControlPlane) -> dict[str, str]:
    with control_plane.api_client() as api_client:
        return _namespaces(api_client, "real")


@pytest.fixture(scope="module")
def emulator_levels(apiserver: ServerThread) -> dict[str, str]:
    with apiserver.api_client() as api_client:
        return _namespaces(api_client, "emu")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("pod", PODS)
def test_the_emulator_admits_and_refuses_pods_as_the_real_api_server(
    pod: str,
    level: str,
    control_plane: ControlPlane,
    real_levels: dict[str, str],
    apiserver: ServerThread,
    emulator_levels: dict[str, str],
) -> None:
    body = PODS[pod]
    # dry runs: admission answers as for a real create, and no pod is left for the session's kubelet Node
    # to run (the table's sandbox pods would take its CPU from the life-cycle tests)
    real, emulated = both_answers(
        (control_plane, real_levels[level]),
        (apiserver, emulator_levels[level]),
        lambda api, namespace: client.CoreV1Api(api).create_namespaced_pod(namespace, body, dry_run="All"),
    )
    admitted = real == {"accepted": True}
    if pod in ("sandbox-restricted", "hardened") or (pod, level) == ("sandbox-baseline", "baseline"):
        assert admitted, real  # every sandbox pod meets baseline; a restricted template's, restricted
    if (pod, level) == ("sandbox-baseline", "restricted"):
        assert not admitted
    assert emulated == real
