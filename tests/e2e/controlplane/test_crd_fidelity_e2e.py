"""The CRDs on the real API server, and one table of Sandbox and SandboxTemplate manifests run against both
the real API server and the emulator (`leap0 dev apiserver`): the same accept or refuse, with the same
status code, message and causes (field and message) for each. A difference is a bug of the emulator (or of
the CRD, when the real server refuses what it should accept)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
import support
from controlplane_support import answer, new_namespace
from kubernetes import client

from leap0_dev.apiserver import ServerThread
from leap0_dev.controlplane import ControlPlane

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

GROUP, VERSION = "leap0.dev", "v1alpha1"
PLURALS = {"Sandbox": "sandboxes", "SandboxTemplate": "sandboxtemplates"}
# After a type, enum, required or size error the server runs no CEL rule, and says so in a cause of its own.
NOT_CHECKED = (
    "<nil>",
    "Invalid value: null: some validation rules were not checked because the object was invalid; correct the "
    "existing errors to complete validation",
)


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    spec: dict[str, Any] | None
    refused: tuple[
        tuple[str, str], ...
    ] = ()  # each cause, in the server's order: (field, message); none: accepted
    update: dict[str, Any] | None = None  # a spec to replace the created one with (refused: the update is)
    name: str = ""  # the object's name (default: the case's id)


SANDBOX_CASES = [
    Case("sbx-empty-spec", "Sandbox", {}),
    Case("sbx-no-spec", "Sandbox", None),
    Case(
        "sbx-full",
        "Sandbox",
        {
            "template": "small.v1",
            "image": "python:3.12-slim",
            "vcpu": 8,
            "memory": 8192,
            "disk": 1024,
            "timeout": 28800,
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}},
            ],
            "command": ["python"],
            "args": ["-c", "print(1)"],
            "telemetry": {"enabled": False},
            "network": {"policy": "Custom", "allowCidrs": ["203.0.113.0/24", "2001:db8::/32"]},
        },
    ),
    Case(
        "sbx-vcpu-too-big",
        "Sandbox",
        {"vcpu": 9},
        (("spec.vcpu", "Invalid value: 9: spec.vcpu in body should be less than or equal to 8"),),
    ),
    Case(
        "sbx-vcpu-zero",
        "Sandbox",
        {"vcpu": 0},
        (("spec.vcpu", "Invalid value: 0: spec.vcpu in body should be greater than or equal to 1"),),
    ),
    Case(
        "sbx-vcpu-string",
        "Sandbox",
        {"vcpu": "two"},
        (
            ("spec.vcpu", 'Invalid value: "string": spec.vcpu in body must be of type integer: "string"'),
            NOT_CHECKED,
        ),
    ),
    Case(
        "sbx-memory-odd-and-small",
        "Sandbox",
        {"memory": 511},
        (
            ("spec.memory", "Invalid value: 511: spec.memory in body should be a multiple of 2"),
            ("spec.memory", "Invalid value: 511: spec.memory in body should be greater than or equal to 512"),
        ),
    ),
    Case(
        "sbx-timeout-too-long",
        "Sandbox",
        {"timeout": 28801},
        (
            (
                "spec.timeout",
                "Invalid value: 28801: spec.timeout in body should be less than or equal to 28800",
            ),
        ),
    ),
    Case(
        "sbx-template-not-a-name",
        "Sandbox",
        {"template": "Not_A_Name"},
        (
            (
                "spec.template",
                'Invalid value: "Not_A_Name": spec.template in body should match '
                "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
            ),
        ),
    ),
    Case(
        "sbx-image-with-space",
        "Sandbox",
        {"image": "python 3"},
        (("spec.image", "Invalid value: \"python 3\": spec.image in body should match '^\\S+$'"),),
    ),
    Case(
        "sbx-env-value-and-valuefrom",
        "Sandbox",
        {"env": [{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
        (("spec.env[0]", "Invalid value: value and valueFrom are mutually exclusive"),),
    ),
    Case(
        "sbx-env-duplicate-name",
        "Sandbox",
        {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        (("spec.env[1]", 'Duplicate value: {"name":"A"}'),),
    ),
    Case(
        "sbx-env-bad-name",
        "Sandbox",
        {"env": [{"name": "1A", "value": "1"}]},
        (
            (
                "spec.env[0].name",
                "Invalid value: \"1A\": spec.env[0].name in body should match '^[-._a-zA-Z][-._a-zA-Z0-9]*$'",
            ),
        ),
    ),
    Case(
        "sbx-env-no-name",
        "Sandbox",
        {"env": [{"value": "1"}]},
        (("spec.env[0].name", "Required value"), NOT_CHECKED),
    ),
    Case(
        "sbx-network-unknown-policy",
        "Sandbox",
        {"network": {"policy": "Sometimes"}},
        (
            (
                "spec.network.policy",
                'Unsupported value: "Sometimes": supported values: '
                '"Internet", "DenyAll", "AllowAll", "Custom"',
            ),
            NOT_CHECKED,
        ),
    ),
    Case(
        "sbx-network-bad-cidr",
        "Sandbox",
        {"network": {"policy": "Custom", "allowCidrs": ["10.0.0.0/33"]}},
        (
            (
                "spec.network.allowCidrs[0]",
                'Invalid value: "10.0.0.0/33": allowCidrs: must be an IPv4 or IPv6 CIDR such as '
                "203.0.113.0/24 or 2001:db8::/32",
            ),
        ),
    ),
    Case(
        "sbx-network-cidrs-without-custom",
        "Sandbox",
        {"network": {"policy": "Internet", "allowCidrs": ["203.0.113.0/24"]}},
        (("spec.network.allowCidrs", "Invalid value: allowCidrs applies only to policy Custom"),),
    ),
    Case(
        "sbx-network-domains",
        "Sandbox",
        {"network": {"policy": "Custom", "allowDomains": ["example.com"]}},
        (
            (
                "spec.network.allowDomains",
                "Invalid value: allowDomains is not supported: a Kubernetes NetworkPolicy matches IP "
                "addresses, not domain names; use policy Custom with allowCidrs, or an egress proxy",
            ),
        ),
    ),
    Case(
        "sbx-network-no-policy",
        "Sandbox",
        {"network": {"allowCidrs": ["203.0.113.0/24"]}},
        (("spec.network.policy", "Required value"), NOT_CHECKED),  # the allowCidrs rule did not run
    ),
    Case(
        "sbx-name-too-long",
        "Sandbox",
        {},
        (
            (
                "<nil>",
                "Invalid value: metadata.name must be at most 63 characters (it becomes a label value on the "
                "sandbox's pod)",
            ),
        ),
        name="s" * 64,
    ),
    Case("sbx-update-timeout", "Sandbox", {"vcpu": 2, "timeout": 60}, update={"vcpu": 2, "timeout": 600}),
    Case(
        "sbx-update-vcpu",
        "Sandbox",
        {"vcpu": 2},
        (("spec", "Invalid value: spec.vcpu is immutable"),),
        update={"vcpu": 4},
    ),
    Case(
        "sbx-update-add-network",
        "Sandbox",
        {"timeout": 60},
        (("spec", "Invalid value: spec.network is immutable"),),
        update={"timeout": 60, "network": {"policy": "DenyAll"}},
    ),
]

TEMPLATE_CASES = [
    Case(
        "tpl-full",
        "SandboxTemplate",
        {
            "image": "python:3.12-slim",
            "vcpu": 2,
            "memory": 2048,
            "timeout": 600,
            "startupTimeout": 120,
            "podSecurity": "restricted",
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "runtimeClassName": "gvisor",
            "nodeSelector": {"pool": "sandboxes"},
            "tolerations": [{"key": "sandbox", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}],
            "network": {"policy": "DenyAll"},
        },
    ),
    Case(
        "tpl-privileged",
        "SandboxTemplate",
        {"podSecurity": "privileged"},
        (
            (
                "spec.podSecurity",
                'Unsupported value: "privileged": supported values: "baseline", "restricted"',
            ),
            NOT_CHECKED,
        ),
    ),
    Case(
        "tpl-startup-timeout-zero",
        "SandboxTemplate",
        {"startupTimeout": 0},
        (
            (
                "spec.startupTimeout",
                "Invalid value: 0: spec.startupTimeout in body should be greater than or equal to 1",
            ),
        ),
    ),
    Case(
        "tpl-root-user",
        "SandboxTemplate",
        {"podSecurity": "restricted", "runAsUser": 0},
        (
            (
                "spec.runAsUser",
                "Invalid value: 0: spec.runAsUser in body should be greater than or equal to 1",
            ),
        ),
    ),
    Case(
        "tpl-toleration-operator",
        "SandboxTemplate",
        {"tolerations": [{"key": "k", "operator": "Maybe"}]},
        (
            (
                "spec.tolerations[0].operator",
                'Unsupported value: "Maybe": supported values: "Exists", "Equal"',
            ),
            NOT_CHECKED,
        ),
    ),
]

CASES = SANDBOX_CASES + TEMPLATE_CASES


def manifest(case: Case, namespace: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": case.kind,
        "metadata": {"name": case.name or case.id, "namespace": namespace},
    }
    if spec is not None:
        body["spec"] = spec
    return body


def outcome(api_client: Any, namespace: str, case: Case) -> dict[str, Any]:
    """What the server answered the case's create (and then update)."""
    custom = client.CustomObjectsApi(api_client)
    plural = PLURALS[case.kind]

    def call() -> None:
        created = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, manifest(case, namespace, case.spec)
        )
        if case.update is not None:
            body = manifest(case, namespace, case.update)
            body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
            custom.replace_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, body["metadata"]["name"], body
            )

    return answer(call, namespace)


def expected(case: Case) -> dict[str, Any]:
    if not case.refused:
        return {"accepted": True}
    details = ", ".join(f"{f}: {m}" for f, m in case.refused)
    if len(case.refused) > 1:
        details = f"[{details}]"
    return {
        "code": 422,
        "reason": "Invalid",
        "message": f'{case.kind}.{GROUP} "{case.name or case.id}" is invalid: {details}',
        "causes": sorted(case.refused),
    }


@pytest.fixture(scope="module")
def real_namespace(control_plane: ControlPlane, control_plane_crds: Any) -> str:
    return new_namespace(control_plane, "crd-table")


@pytest.fixture(scope="module")
def emulator_namespace(apiserver: ServerThread) -> str:
    return new_namespace(apiserver, "crd-table")


def test_the_crds_apply_server_side_with_no_warning(
    control_plane: ControlPlane, control_plane_crds: subprocess.CompletedProcess[str]
) -> None:
    """Every CEL rule within the cost budget and every schema structural: the real API server says nothing
    (it warns, or refuses the CRD, otherwise), and re-applying changes nothing."""
    assert control_plane_crds.stderr == "", control_plane_crds.stderr
    assert "serverside-applied" in control_plane_crds.stdout
    again = support.kubectl(
        control_plane.kubeconfig, "apply", "--server-side", "-f", str(support.REPO / "crds")
    )
    assert again.stderr == ""
    crds = json.loads(support.kubectl(control_plane.kubeconfig, "get", "crd", "-o", "json").stdout)["items"]
    for crd in crds:
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", crd["metadata"]["name"]
        assert conditions.get("NonStructuralSchema") is None, crd["metadata"]["name"]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_emulator_answers_each_manifest_as_the_real_api_server(
    case: Case,
    control_plane: ControlPlane,
    real_namespace: str,
    apiserver: ServerThread,
    emulator_namespace: str,
) -> None:
    with control_plane.api_client() as api_client:
        real = outcome(api_client, real_namespace, case)
    with apiserver.api_client() as api_client:
        emulated = outcome(api_client, emulator_namespace, case)
    assert real == expected(case), "the real API server"
    assert emulated == real, "the emulator differs from the real API server"
