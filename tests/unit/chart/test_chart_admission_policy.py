"""The chart's optional ValidatingAdmissionPolicy (docs/security.md, "The admission policy"): rendered from
the values, valid for every Kubernetes version the chart claims, and deciding each request as kube-apiserver
would (tests/vap_support.py evaluates its CEL): templates per namespace, the most permissive network, and
never a status write, a deletion or an update that leaves template and network alone (the GC, finalizers,
the operator's pause)."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import (
    claimed_kube_versions,
    helm,
    lint_problems,
    of_kind,
    render,
    validate_object,
)
from vap_support import Request, denials

VALUES: dict[str, Any] = {
    "admissionPolicy": {
        "enabled": True,
        "rules": [
            {
                "name": "tenants",
                "namespaceSelector": {"matchLabels": {"leap0.dev/tenant": "true"}},
                "allowedTemplates": ["default", "python-locked"],
                "maxNetworkPolicy": "Internet",
            },
            {
                "name": "platform",
                "namespaces": ["platform-sandboxes"],
                "allowedTemplates": ["*"],
                "maxNetworkPolicy": "AllowAll",
            },
        ],
    }
}
LABELS = {"team-a": {"leap0.dev/tenant": "true"}, "platform-sandboxes": {}, "elsewhere": {}}


class Admission:
    """The rendered policies and their bindings, answering requests."""

    def __init__(self, values: dict[str, Any] = VALUES) -> None:
        objects = render(values)
        self.policies = of_kind(objects, "ValidatingAdmissionPolicy")
        self.bindings = of_kind(objects, "ValidatingAdmissionPolicyBinding")

    def __call__(self, request: Request) -> list[str]:
        return denials(self.policies, self.bindings, {}, LABELS, request)


def sandbox(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "leap0.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": "s"}, "spec": spec}


def create(obj: dict[str, Any], namespace: str = "team-a", kind: str = "Sandbox") -> Request:
    resource = "sandboxes" if kind == "Sandbox" else "sandboxtemplates"
    return Request("CREATE", kind, resource, namespace, obj)


@pytest.fixture(scope="module")
def admission() -> Admission:
    return Admission()


def test_off_by_default_and_valid_when_on() -> None:
    assert of_kind(render(), "ValidatingAdmissionPolicy") == []
    objects = render(VALUES)
    names = sorted(
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if o["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ConfigMap")
    )
    # one policy and its binding per rule, cluster-scoped and named after the release; no parameter object
    # (kube-apiserver looks one up before the matchConditions: a missing one would block finalizer removal)
    assert names == [
        ("ValidatingAdmissionPolicy", "leap0-leap0-operator-sandbox-limits-platform"),
        ("ValidatingAdmissionPolicy", "leap0-leap0-operator-sandbox-limits-tenants"),
        ("ValidatingAdmissionPolicyBinding", "leap0-leap0-operator-sandbox-limits-platform"),
        ("ValidatingAdmissionPolicyBinding", "leap0-leap0-operator-sandbox-limits-tenants"),
    ]
    for obj in objects:
        validate_object(obj, claimed_kube_versions())
    assert lint_problems(VALUES) == []
    binding = next(
        b
        for b in of_kind(objects, "ValidatingAdmissionPolicyBinding")
        if b["metadata"]["name"].endswith("platform")
    )
    assert binding["spec"]["policyName"] == binding["metadata"]["name"]
    assert "paramRef" not in binding["spec"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "platform-sandboxes"
    ]


def test_the_reported_attack_a_template_and_network_the_namespace_does_not_allow(
    admission: Admission,
) -> None:
    """create_sandbox(template=..., network={"policy": "AllowAll"}) from a client of the namespace."""
    (denied,) = admission(create(sandbox(template="gpu-unrestricted", network={"policy": "AllowAll"})))
    assert (
        denied == 'spec.template: "gpu-unrestricted" may not be used in namespace team-a '
        "(allowed: default,python-locked)"
    )
    (denied,) = admission(create(sandbox(network={"policy": "AllowAll"})))
    assert denied == (
        "spec.network.policy: AllowAll is more permissive than Internet, the most namespace team-a allows "
        "(DenyAll < Internet < Custom < AllowAll)"
    )
    assert admission(create(sandbox(network={"policy": "Custom", "allowCidrs": ["10.0.0.0/8"]})))


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"template": "python-locked"},
        {"network": {"policy": "DenyAll"}},
        {"network": {"policy": "Internet"}},
    ],
)
def test_what_the_namespace_allows_is_admitted(admission: Admission, spec: dict[str, Any]) -> None:
    assert admission(create(sandbox(**spec))) == []


def test_templates_are_capped_too_and_other_namespaces_are_not_limited(admission: Admission) -> None:
    template = {
        "apiVersion": "leap0.dev/v1alpha1",
        "kind": "SandboxTemplate",
        "metadata": {"name": "t"},
        "spec": {"network": {"policy": "AllowAll"}},
    }
    assert admission(create(template, kind="SandboxTemplate"))
    assert (
        admission(create(sandbox(template="anything", network={"policy": "AllowAll"}), "platform-sandboxes"))
        == []
    )
    assert admission(create(sandbox(template="anything", network={"policy": "AllowAll"}), "elsewhere")) == []


def test_status_writes_deletions_and_metadata_updates_are_never_blocked(admission: Admission) -> None:
    """A Sandbox made before the policy (or before it was tightened) must still get its status, lose its
    finalizers, be paused by the operator (spec.paused) and be deleted by the garbage collector."""
    old = sandbox(network={"policy": "AllowAll"}, template="gpu-unrestricted", timeout=600)
    old["metadata"]["finalizers"] = ["leap0.dev/finalizer"]
    new = {**old, "metadata": {"name": "s"}, "status": {"phase": "Running"}}
    paused = {**old, "spec": {**old["spec"], "paused": True, "timeout": 900}}
    for request in (
        Request("UPDATE", "Sandbox", "sandboxes/status", "team-a", new, old),
        Request("UPDATE", "Sandbox", "sandboxes", "team-a", new, old),  # finalizer removed, spec alone
        Request("UPDATE", "Sandbox", "sandboxes", "team-a", paused, old),  # paused, a longer timeout
        Request("DELETE", "Sandbox", "sandboxes", "team-a", None, old),
    ):
        assert admission(request) == [], request


def test_an_update_that_adds_or_changes_the_network_is_checked(admission: Admission) -> None:
    """Presence counts: adding a field is a change (a Template without a network getting AllowAll)."""
    before = {
        "apiVersion": "leap0.dev/v1alpha1",
        "kind": "SandboxTemplate",
        "metadata": {"name": "t"},
        "spec": {"image": "x"},
    }
    after = {**before, "spec": {"image": "x", "network": {"policy": "AllowAll"}}}
    assert admission(Request("UPDATE", "SandboxTemplate", "sandboxtemplates", "team-a", after, before))
    no_spec = {**before, "spec": None}
    del no_spec["spec"]
    assert admission(Request("UPDATE", "SandboxTemplate", "sandboxtemplates", "team-a", after, no_spec))


def test_rules_whose_names_collide_once_cut_are_refused() -> None:
    long = {"namespaces": ["a"], "allowedTemplates": ["a"], "maxNetworkPolicy": "DenyAll"}
    values = {
        "fullnameOverride": "x" * 40,
        "admissionPolicy": {
            "enabled": True,
            "rules": [{"name": "a" * 30, **long}, {"name": "a" * 29 + "b", **long}],
        },
    }
    with pytest.raises(helm.HelmRenderError, match="name them apart"):
        render(values)


def test_bad_rules_are_refused_by_the_schema() -> None:
    bad = {
        "admissionPolicy": {
            "enabled": True,
            "rules": [{"name": "x", "allowedTemplates": ["a"], "maxNetworkPolicy": "Everything"}],
        }
    }
    with pytest.raises(helm.HelmValuesError):
        render(bad)
    no_namespaces = {
        "admissionPolicy": {
            "enabled": True,
            "rules": [{"name": "x", "allowedTemplates": ["a"], "maxNetworkPolicy": "DenyAll"}],
        }
    }
    with pytest.raises(helm.HelmValuesError):
        render(no_namespaces)
