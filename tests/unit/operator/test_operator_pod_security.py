"""Pod Security: every sandbox pod meets ``baseline`` (sandbox container hardened), the sidecar meets
``restricted``, and a template's ``podSecurity: restricted`` makes the whole pod meet ``restricted``: checked
control by control against the standard (tests/pss_support.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from pss_support import BASELINE, CONTROLS, RESTRICTED, violations

import leap0_contract as contract
from leap0_operator.config import OperatorConfig
from leap0_operator.pod import build_pod
from leap0_operator.resolve import PodSecurity, pod_security, resolve

CONFIG = OperatorConfig(sidecar_image="sidecar:test")


def owner() -> dict[str, Any]:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.SANDBOX_KIND,
        "metadata": {"name": "sbx-1", "namespace": "team-a", "uid": "uid-1"},
    }


def build(spec: dict[str, Any], template: dict[str, Any] | None = None) -> dict[str, Any]:
    return build_pod(
        owner=owner(),
        effective=resolve(spec, template, CONFIG),
        org_id="acme",
        config=CONFIG,
    )


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod["spec"]
    (found,) = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name]
    return found


SPECS = [
    {},
    {"disk": 2048, "command": ["sleep", "infinity"]},
    {"telemetry": {"enabled": False}},
    {"command": ["sleep", "infinity"], "telemetry": {"logs": False}},
    {"env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "https://otel.example.com"}]},
    {"workspace": {"persistent": True}, "disk": 512},  # the workspace on a PersistentVolumeClaim
]
RESTRICTED_TEMPLATES = [
    {"podSecurity": "restricted"},
    {"podSecurity": "restricted", "runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 4000},
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("template", [None, {}, {"podSecurity": "baseline"}])
def test_every_sandbox_pod_meets_baseline(spec: dict[str, Any], template: dict[str, Any] | None) -> None:
    assert violations(build(spec, template), BASELINE) == []


def test_the_baseline_sandbox_container_is_hardened_but_may_run_as_root() -> None:
    pod = build({})
    assert container(pod, contract.SANDBOX_CONTAINER)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        # no raw sockets, and root cannot signal other users' processes (the sidecar's)
        "capabilities": {"drop": ["NET_RAW", "KILL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "securityContext" not in pod["spec"]  # the image's user, root included
    # so it does not meet restricted: the check can tell the two apart
    found = violations(pod, RESTRICTED)
    assert "Running as Non-root: spec.containers[0].securityContext.runAsNonRoot" in found
    assert (
        "Capabilities (v1.22+): spec.containers[0].securityContext.capabilities.drop must include ALL"
        in found
    )


@pytest.mark.parametrize("spec", SPECS)
def test_the_sidecar_meets_restricted_always(spec: dict[str, Any]) -> None:
    pod = build(spec)
    if spec.get("telemetry") == {"enabled": False}:
        assert "initContainers" not in pod["spec"]
        return
    alone = copy.deepcopy(pod)
    alone["spec"]["containers"] = []  # the sidecar with the pod's own (baseline) settings and volumes
    assert violations(alone, RESTRICTED) == []


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("template", RESTRICTED_TEMPLATES)
def test_a_restricted_template_makes_the_pod_meet_restricted(
    spec: dict[str, Any], template: dict[str, Any]
) -> None:
    assert violations(build(spec, template), RESTRICTED) == []


def test_restricted_ids_come_from_the_template_default_1000() -> None:
    pod = build({}, {"podSecurity": "restricted"})
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(pod, contract.SANDBOX_CONTAINER)["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    custom = build({}, {"podSecurity": "restricted", "runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 4000})
    ids = {k: custom["spec"]["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")}
    assert ids == {"runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 4000}
    # the sidecar keeps its own user
    assert container(custom, contract.TELEMETRY_CONTAINER)["securityContext"]["runAsUser"] == 65532
    # the only volumes are emptyDirs (the workspace and the supervisor's)
    assert [set(v) - {"name"} for v in custom["spec"]["volumes"]] == [{"emptyDir"}, {"emptyDir"}]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (None, PodSecurity()),
        ({"podSecurity": "baseline", "runAsUser": 5}, PodSecurity(run_as_user=5)),
        ({"podSecurity": "restricted"}, PodSecurity(level="restricted")),
        ({"podSecurity": "restricted", "fsGroup": 7}, PodSecurity(level="restricted", fs_group=7)),
        ({"podSecurity": "privileged", "runAsUser": 0}, PodSecurity()),  # what the schema refuses: defaults
    ],
)
def test_pod_security_of_a_template(template: dict[str, Any] | None, expected: PodSecurity) -> None:
    assert pod_security(template) == expected


# --- the checker itself: every control of the standard can fail ------------------------------------------
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(pod: dict[str, Any]) -> None:
        target: Any = pod
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
        target[keys[-1]] = value

    return apply


BREAKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "HostProcess": _set("spec.securityContext.windowsOptions.hostProcess", True),
    "Host Namespaces": _set("spec.hostPID", True),
    "Privileged Containers": _set("spec.containers.0.securityContext.privileged", True),
    "Capabilities": _set("spec.containers.0.securityContext.capabilities.add", ["NET_ADMIN"]),
    "HostPath Volumes": lambda pod: pod["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "Host Ports": _set("spec.containers.0.ports", [{"containerPort": 80, "hostPort": 80}]),
    "AppArmor": _set("spec.containers.0.securityContext.appArmorProfile", {"type": "Unconfined"}),
    "SELinux": _set("spec.securityContext.seLinuxOptions", {"type": "spc_t"}),
    "/proc Mount Type": _set("spec.containers.0.securityContext.procMount", "Unmasked"),
    "Seccomp": _set("spec.containers.0.securityContext.seccompProfile", {"type": "Unconfined"}),
    "Sysctls": _set("spec.securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}]),
    "Host Probes / Lifecycle Hooks": _set(
        "spec.containers.0.livenessProbe", {"httpGet": {"host": "10.0.0.1", "port": 80}}
    ),
    "Volume Types": lambda pod: pod["spec"]["volumes"].append(
        {"name": "n", "nfs": {"server": "s", "path": "/"}}
    ),
    "Privilege Escalation": _set("spec.containers.0.securityContext.allowPrivilegeEscalation", True),
    "Running as Non-root": _set("spec.containers.0.securityContext.runAsNonRoot", False),
    "Running as Non-root user": _set("spec.containers.0.securityContext.runAsUser", 0),
    "Seccomp (v1.19+)": lambda pod: (
        pod["spec"]["securityContext"].pop("seccompProfile"),
        container(pod, contract.SANDBOX_CONTAINER)["securityContext"].pop("seccompProfile"),
    ),
    "Capabilities (v1.22+)": _set("spec.containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}),
}


def test_every_control_has_a_breaking_case() -> None:
    assert set(BREAKS) == {c.name for c in CONTROLS}


@pytest.mark.parametrize("control", CONTROLS, ids=[c.name for c in CONTROLS])
def test_each_control_reports_what_breaks_it(control: Any) -> None:
    pod = build({}, {"podSecurity": "restricted"})
    assert violations(pod, RESTRICTED) == []
    BREAKS[control.name](pod)
    found = violations(pod, RESTRICTED)
    assert any(v.startswith(f"{control.name}: ") for v in found), found
    if control.level == BASELINE:
        assert any(v.startswith(f"{control.name}: ") for v in violations(pod, BASELINE))
    else:
        assert violations(pod, BASELINE) == []
