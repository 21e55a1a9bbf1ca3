"""The emulator's PodSecurity admission (leap0_dev.apiserver.podsecurity), pure: levels from the namespace's
labels, checks in upstream's order, upstream's words (compared with kube-apiserver itself in
tests/e2e/controlplane/test_podsecurity_e2e.py)."""

from __future__ import annotations

from typing import Any

from leap0_dev.apiserver.podsecurity import enforced, refusal, violations


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": list(containers), **spec}}


HARDENED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_no_label_is_privileged_and_an_unknown_level_is_restricted() -> None:
    assert enforced({}) == ("privileged", "latest")
    assert enforced({"pod-security.kubernetes.io/enforce": "strictest"}) == ("restricted", "latest")
    labels = {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.30",
    }
    assert enforced(labels) == ("baseline", "v1.30")
    assert refusal(pod({"name": "c", "securityContext": {"privileged": True}}), {}) is None


def test_a_plain_pod_meets_baseline_and_fails_four_restricted_checks_in_order() -> None:
    plain = pod({"name": "a"}, {"name": "b"})
    assert violations(plain, "baseline") == []
    assert [reason for reason, _ in violations(plain, "restricted")] == [
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "runAsNonRoot != true",
        "seccompProfile",
    ]
    message = refusal(plain, {"pod-security.kubernetes.io/enforce": "restricted"})
    assert message is not None
    assert message.startswith(
        'pods "p" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(containers "a", "b" must set securityContext.allowPrivilegeEscalation=false), '
    )


def test_a_hardened_pod_meets_restricted() -> None:
    assert violations(pod({"name": "c", "securityContext": HARDENED}), "restricted") == []


def test_restricted_replaces_baselines_own_checks_where_it_is_stricter() -> None:
    hostpath = pod(
        {"name": "c", "securityContext": HARDENED}, volumes=[{"name": "h", "hostPath": {"path": "/"}}]
    )
    assert violations(hostpath, "baseline") == [("hostPath volumes", 'volume "h"')]
    assert violations(hostpath, "restricted") == [
        ("restricted volume types", 'volume "h" uses restricted volume type "hostPath"')
    ]


def test_a_user_namespace_pod_may_run_as_root() -> None:
    root = pod({"name": "c", "securityContext": {**HARDENED, "runAsNonRoot": False, "runAsUser": 0}})
    assert [r for r, _ in violations(root, "restricted")] == ["runAsNonRoot != true", "runAsUser=0"]
    assert violations({**root, "spec": {**root["spec"], "hostUsers": False}}, "restricted") == []
