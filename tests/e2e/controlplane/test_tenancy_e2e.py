"""Security between tenants on the real control plane (docs/security.md): the chart, installed by the real
`helm` with its optional ValidatingAdmissionPolicy, enforced by kube-apiserver itself (each request answered
as tests/vap_support.py, the fast tier's evaluator, says it is), and the operator as the chart's
ServiceAccount against a sandbox creator's attacks (a Secret it may not read, a template's locked network, a
NetworkPolicy deleted by hand), its RBAC (`get` on Secrets, nothing more) proven sufficient by the
audit log."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import support
from controlplane_support import answer, chart_operator
from kubernetes import client
from operator_support import (
    API_ERRORS,
    core,
    create_sandbox,
    custom,
    phase,
    pod_exists,
    pod_gone,
    reason_is,
    sandbox,
)
from vap_support import Request
from vap_support import answer as vap_answer

import leap0_contract as contract
from leap0_dev.controlplane import ControlPlane

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

TENANT_LABEL = "leap0.dev/tenant"
ADMISSION = ("admissionregistration.k8s.io", "v1")
CUSTOM = {"policy": "Custom", "allowCidrs": ["10.0.0.0/8"]}


@dataclass
class Tenancy:
    api: client.ApiClient  # the admin's
    tag: str
    release: str
    tenant: str  # labelled: templates default and python-locked, at most Internet
    platform: str  # anything
    late: str  # labelled once it holds a Sandbox the limits refuse
    user: str  # the operator's ServiceAccount, as the API server names it

    def admission(self, plural: str) -> list[dict[str, Any]]:
        """The release's policies or bindings, as the API server holds them."""
        found = client.CustomObjectsApi(self.api).list_cluster_custom_object(
            *ADMISSION, plural, label_selector=f"app.kubernetes.io/instance={self.release}"
        )
        return list(found["items"])

    def labels(self) -> dict[str, dict[str, str]]:
        return {
            ns.metadata.name: dict(ns.metadata.labels or {}) for ns in core(self.api).list_namespace().items
        }


def sandbox_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.SANDBOX_KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def template_body(name: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": contract.API_VERSION, "kind": contract.TEMPLATE_KIND}
    body["metadata"] = {"name": name}
    if spec is not None:
        body["spec"] = spec
    return body


def plural(kind: str) -> str:
    return contract.SANDBOX_PLURAL if kind == contract.SANDBOX_KIND else contract.TEMPLATE_PLURAL


def create(api: client.ApiClient, namespace: str, body: dict[str, Any], dry_run: bool = False) -> Any:
    return custom(api).create_namespaced_custom_object(
        contract.GROUP,
        contract.VERSION,
        namespace,
        plural(body["kind"]),
        body,
        dry_run="All" if dry_run else None,
    )


def replace(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> Any:
    """A dry-run update (``PUT``) of ``body``: admission runs, nothing is stored."""
    name = body["metadata"]["name"]
    return custom(api).replace_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, plural(body["kind"]), name, body, dry_run="All"
    )


def refused_on(api: client.ApiClient, namespace: str) -> Callable[[], bool]:
    """A sentinel: a dry-run Sandbox naming a template no rule allows is refused by the policy. kube-apiserver
    starts enforcing a new policy or binding (or a namespace's new labels) asynchronously, within seconds: a
    request made at once may pass (kubernetes PR #132502), so every check waits for this first."""
    sentinel = sandbox_body("sentinel", template="sentinel-never-allowed")
    return lambda: answer(lambda: create(api, namespace, sentinel, dry_run=True)).get("code") == 403


@pytest.fixture(scope="module")
def tenancy(
    control_plane: ControlPlane, control_plane_crds: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tenancy]:
    tag = uuid.uuid4().hex[:6]
    work = tmp_path_factory.mktemp("tenancy")
    api = control_plane.api_client()
    tenant, platform, late = f"tenant-{tag}", f"platform-{tag}", f"late-{tag}"
    for name, labels in ((tenant, {TENANT_LABEL: tag}), (platform, {}), (late, {})):
        core(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    # The docs' worked example, for namespaces of this module only (the session's other tests run beside it).
    tenants = {
        "name": "tenants",
        "namespaceSelector": {"matchLabels": {TENANT_LABEL: tag}},
        "allowedTemplates": ["default", "python-locked"],
        "maxNetworkPolicy": "Internet",
    }
    anything = {
        "name": "platform",
        "namespaces": [platform],
        "allowedTemplates": ["*"],
        "maxNetworkPolicy": "AllowAll",
    }
    policy = {"enabled": True, "rules": [tenants, anything]}
    release, namespace = f"leap0-{tag}", f"leap0-system-{tag}"
    values = [
        *("--set", "replicas=0", "--set", "defaultTemplate.create=false"),
        *("--set-json", f"watchNamespaces={json.dumps([tenant, platform, late])}"),
        *("--set-json", f"admissionPolicy={json.dumps(policy)}"),
    ]
    served = [tenant, platform, late]
    with chart_operator(
        control_plane, work, release, namespace, values, served, refused_on(api, tenant)
    ) as user:
        yield Tenancy(api, tag, release, tenant, platform, late, user)
    api.close()


def edited(obj: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    change(new)
    return new


def test_kube_apiserver_enforces_each_rule_as_the_fast_tier_says(tenancy: Tenancy) -> None:
    """Every request, as a dry run, answered by kube-apiserver exactly as tests/vap_support.py answers it from
    the policies and bindings the API server holds (code, reason, message): creates, then updates of objects
    that exist, presence compared on UPDATE, an update leaving template and network alone (metadata, timeout,
    a pause) and a status write never blocked, even for a Sandbox the limits refuse today."""
    api, t = tenancy.api, tenancy
    # Before the updates: a template without a network and one without a spec (the tenant's), and a Sandbox
    # made before its namespace was limited.
    create(api, t.tenant, template_body("plain", {"image": "python:3.12-slim"}))
    create(api, t.tenant, template_body("bare", None))
    create(api, t.tenant, template_body("closed", {"network": {"policy": "DenyAll"}}))
    create_sandbox(api, t.late, "before", timeout=600, network={"policy": "AllowAll"})
    core(api).patch_namespace(t.late, {"metadata": {"labels": {TENANT_LABEL: t.tag}}})
    support.wait_for(refused_on(api, t.late), timeout=60, what="the late namespace limited", interval=0.5)

    no_spec = sandbox_body("no-spec")
    del no_spec["spec"]
    creates = [
        (
            403,
            t.tenant,
            sandbox_body("wide-open", template="gpu-unrestricted", network={"policy": "AllowAll"}),
        ),
        (403, t.tenant, sandbox_body("wide", network={"policy": "AllowAll"})),
        (403, t.tenant, sandbox_body("custom", network={"policy": "Custom", "allowCidrs": ["10.0.0.0/8"]})),
        (0, t.tenant, sandbox_body("internet", network={"policy": "Internet"})),
        (0, t.tenant, sandbox_body("deny", template="python-locked", network={"policy": "DenyAll"})),
        (0, t.tenant, sandbox_body("plain-default")),
        (0, t.tenant, no_spec),
        (403, t.tenant, template_body("open", {"network": {"policy": "AllowAll"}})),
        (0, t.tenant, template_body("shut", {"network": {"policy": "DenyAll"}})),
        (
            0,
            t.platform,
            sandbox_body("anything", template="gpu-unrestricted", network={"policy": "AllowAll"}),
        ),
    ]
    objects = custom(api)

    def live(namespace: str, kind: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = objects.get_namespaced_custom_object(
            contract.GROUP, contract.VERSION, namespace, plural(kind), name
        )
        return found

    plain, bare = (
        live(t.tenant, contract.TEMPLATE_KIND, "plain"),
        live(t.tenant, contract.TEMPLATE_KIND, "bare"),
    )
    closed = live(t.tenant, contract.TEMPLATE_KIND, "closed")
    before = live(t.late, contract.SANDBOX_KIND, "before")
    updates = [
        # presence: a network added where there was none, a spec where there was none
        (403, t.tenant, plain, edited(plain, lambda o: o["spec"].update(network={"policy": "AllowAll"}))),
        (0, t.tenant, plain, edited(plain, lambda o: o["spec"].update(network={"policy": "Internet"}))),
        (403, t.tenant, bare, edited(bare, lambda o: o.update(spec={"network": {"policy": "AllowAll"}}))),
        (0, t.tenant, plain, edited(plain, lambda o: o["metadata"].update(labels={"team": "a"}))),
        # the Sandbox the limits refuse today: its metadata (a finalizer, labels), its timeout and a pause
        # (the operator's idle pause writes spec.paused) pass, the fields the policy limits left as they were
        # (the CRD keeps them so); a template's network changed is checked
        (0, t.late, before, edited(before, lambda o: o["metadata"].update(finalizers=["example.com/hold"]))),
        (0, t.late, before, edited(before, lambda o: o["metadata"].update(labels={"seen": "yes"}))),
        (0, t.late, before, edited(before, lambda o: o["spec"].update(timeout=900, paused=True))),
        (403, t.tenant, closed, edited(closed, lambda o: o["spec"].update(network=CUSTOM))),
    ]

    labels = t.labels()
    policies = t.admission("validatingadmissionpolicies")
    bindings = t.admission("validatingadmissionpolicybindings")
    assert sorted(b["spec"]["policyName"] for b in bindings) == sorted(
        p["metadata"]["name"] for p in policies
    )
    assert len(policies) == 2
    for policy in policies:  # its CEL type-checks against the CRDs' schemas with no warning
        assert not policy["status"].get("typeChecking", {}).get("expressionWarnings"), policy["status"]

    def check(code: int, real: dict[str, Any], request: Request, what: str) -> dict[str, Any]:
        real.pop("causes", None)
        assert real == vap_answer(policies, bindings, {}, labels, request), what
        assert real.get("code", 0) == code, (what, real)
        return real

    answers = []
    for code, namespace, body in creates:
        what = f"create {body['kind']} {namespace}/{body['metadata']['name']}"
        real = answer(lambda namespace=namespace, body=body: create(api, namespace, body, dry_run=True))
        request = Request("CREATE", body["kind"], plural(body["kind"]), namespace, body)
        answers.append(check(code, real, request, what))
    for code, namespace, old, new in updates:
        what = f"update {new['kind']} {namespace}/{new['metadata']['name']}: {new}"
        real = answer(lambda namespace=namespace, new=new: replace(api, namespace, new))
        request = Request("UPDATE", new["kind"], plural(new["kind"]), namespace, new, old)
        check(code, real, request, what)
    running = {"status": {"phase": "Running"}}
    real = answer(
        lambda: objects.patch_namespaced_custom_object_status(
            contract.GROUP,
            contract.VERSION,
            t.late,
            contract.SANDBOX_PLURAL,
            "before",
            running,
            dry_run="All",
        )
    )
    request = Request("UPDATE", "Sandbox", "sandboxes/status", t.late, {**before, **running}, before)
    check(0, real, request, "the status of the Sandbox the limits refuse")
    name = f"{t.release}-leap0-operator-sandbox-limits-tenants"
    assert answers[0]["message"] == (
        f"sandboxes.leap0.dev \"wide-open\" is forbidden: ValidatingAdmissionPolicy '{name}' with binding "
        f"'{name}' denied request: spec.template: \"gpu-unrestricted\" may not be used in namespace "
        f"{t.tenant} (allowed: default,python-locked)"
    )


def test_the_operator_and_the_garbage_collector_are_never_blocked(tenancy: Tenancy) -> None:
    """A Sandbox the limits refuse today (created before its namespace was limited) still gets a longer
    timeout and its status from the operator, and is deleted in the foreground: the garbage collector removes
    its pod and NetworkPolicy and then its own finalizer, the operator (the chart's ServiceAccount) its."""
    api, t = tenancy.api, tenancy
    core(api).patch_namespace(t.late, {"metadata": {"labels": {TENANT_LABEL: None}}})
    older = sandbox_body("older", timeout=600, network={"policy": "Custom", "allowCidrs": ["192.0.2.0/24"]})

    def created() -> bool:  # once the API server has seen the label go (asynchronously, as it came)
        return "accepted" in answer(lambda: create(api, t.late, older))

    support.wait_for(created, timeout=60, what="the late namespace unlimited", interval=0.5)
    support.wait_for(pod_exists(api, t.late, "older"), timeout=60, what="the pod", ignore=API_ERRORS)
    networking = client.NetworkingV1Api(api)
    support.wait_for(
        lambda: networking.read_namespaced_network_policy("older", t.late),
        timeout=60,
        what="the NetworkPolicy",
        ignore=API_ERRORS,
    )
    core(api).patch_namespace(t.late, {"metadata": {"labels": {TENANT_LABEL: t.tag}}})
    support.wait_for(refused_on(api, t.late), timeout=60, what="the late namespace limited", interval=0.5)
    # its timeout may still change (what the policy limits stays as it was) ...
    longer = {"spec": {"timeout": 900}}
    custom(api).patch_namespaced_custom_object(
        contract.GROUP, contract.VERSION, t.late, contract.SANDBOX_PLURAL, "older", longer
    )
    # ... the operator still writes its status (Pending: no node here) ...
    support.wait_for(phase(api, t.late, "older", "Pending"), timeout=60, what="Pending")
    # ... and a foreground deletion goes through the GC's and the operator's finalizer updates
    custom(api).delete_namespaced_custom_object(
        contract.GROUP,
        contract.VERSION,
        t.late,
        contract.SANDBOX_PLURAL,
        "older",
        propagation_policy="Foreground",
    )
    support.wait_for(pod_gone(api, t.late, "older"), timeout=90, what="the pod collected", interval=0.5)

    def gone() -> bool:
        return answer(lambda: sandbox(api, t.late, "older")).get("code") == 404

    support.wait_for(gone, timeout=90, what="the Sandbox deleted (its finalizers removed)", interval=0.5)


def secret_env(var: str, secret: str) -> dict[str, Any]:
    return {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": "value"}}}


def test_a_creator_gains_nothing_through_the_operator(tenancy: Tenancy) -> None:
    """The operator as the chart's ServiceAccount: a Secret neither owned nor labelled is refused with no pod
    (and a labelled one is used: `get` on Secrets is enough), a template's locked network cannot be lifted
    where the admission policy allows any network, and a NetworkPolicy deleted by hand comes back."""
    api, ns = tenancy.api, tenancy.platform
    for name, labels in (("db-creds", {}), ("shared-token", {contract.LABEL_SANDBOX_ENV: "true"})):
        secret = {"metadata": {"name": name, "labels": labels}, "stringData": {"value": "s3cret"}}
        core(api).create_namespaced_secret(ns, secret)
    create_sandbox(api, ns, "thief", timeout=600, env=[secret_env("STOLEN", "db-creds")])
    create_sandbox(api, ns, "allowed", timeout=600, env=[secret_env("TOKEN", "shared-token")])
    create(api, ns, template_body("locked", {"network": {"policy": "DenyAll"}}))
    create_sandbox(api, ns, "lifted", timeout=600, template="locked", network={"policy": "AllowAll"})

    status = support.wait_for(phase(api, ns, "thief", "Failed"), timeout=60, what="Failed", ignore=API_ERRORS)
    assert status["reason"] == contract.REASON_SECRET_NOT_ALLOWED
    assert status["message"].startswith('env STOLEN (Secret "db-creds"): a sandbox may reference only')
    # The template was created a moment before: an operator that sees the Sandbox before the template has it
    # wait (Pending, TemplateNotFound) first, then looks again when the template arrives.
    status = support.wait_for(
        reason_is(api, ns, "lifted", contract.REASON_FIELD_LOCKED),
        timeout=60,
        what="FieldLocked",
        ignore=API_ERRORS,
    )
    assert status["phase"] == contract.PHASE_FAILED
    assert status["message"].startswith('spec.network is locked by SandboxTemplate "locked"')
    pod = support.wait_for(pod_exists(api, ns, "allowed"), timeout=60, what="the pod", ignore=API_ERRORS)
    refs = {
        e.name: e.value_from.secret_key_ref.name for e in pod.spec.containers[0].env or [] if e.value_from
    }
    assert refs["TOKEN"] == "shared-token"
    networking = client.NetworkingV1Api(api)
    for name in ("thief", "lifted"):  # nothing made for them
        assert pod_gone(api, ns, name)()
        assert answer(lambda name=name: networking.read_namespaced_network_policy(name, ns))["code"] == 404

    support.wait_for(
        lambda: sandbox(api, ns, "allowed").get("status", {}).get("podName"),
        timeout=60,
        what="the pod's name",
    )
    original = networking.read_namespaced_network_policy("allowed", ns)
    networking.delete_namespaced_network_policy("allowed", ns)

    def restored() -> Any:
        live = networking.read_namespaced_network_policy("allowed", ns)
        return live if live.metadata.uid != original.metadata.uid else None

    live = support.wait_for(
        restored, timeout=60, what="the NetworkPolicy restored", ignore=API_ERRORS, interval=0.5
    )
    assert live.spec.to_dict() == original.spec.to_dict()


def test_rbac_refused_none_of_the_operators_calls(tenancy: Tenancy, control_plane: ControlPlane) -> None:
    """Last in the module: everything above ran as the chart's ServiceAccount, and RBAC refused nothing; of
    Secrets it only ever read one by one."""
    made = {
        (e["verb"], e.get("objectRef", {}).get("resource"))
        for e in control_plane.audit_events()
        if e["user"]["username"] == tenancy.user
    }
    for call in [
        ("get", "secrets"),
        ("create", "pods"),
        ("create", "networkpolicies"),
        ("patch", "sandboxes"),
    ]:
        assert call in made, f"the operator never made {call}: the check would prove nothing"
    assert control_plane.forbidden(tenancy.user) == []
    assert {verb for verb, resource in made if resource == "secrets"} == {"get"}
