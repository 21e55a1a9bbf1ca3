"""The operator process and sandbox networking, through the embedded API server: one NetworkPolicy per
Sandbox, created before its pod, owned by the Sandbox and collected with it; template precedence and the
operator's default; pod security from the template; the writes each sandbox costs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import operator_support as ops
import pytest
from aiohttp import web
from kubernetes import client
from netpol_support import internet, may_reach, pod
from pss_support import RESTRICTED, violations
from support import REPO, kubectl, wait_for

import leap0_contract as contract
from leap0_dev.apiserver.routing import parse_resource_path
from leap0_dev.apiserver.server import user_agent_product

pytestmark = pytest.mark.e2e

TELEMETRY_EGRESS = '[{"namespace": "observability", "podSelector": {"app": "otel-collector"}}]'


class OperatorWrites:
    """The operator's (user agent ``kopf``) writes, in order: (method, resource, object name in the path)."""

    def __init__(self, apiserver: Any) -> None:
        self.server = apiserver.server
        self.writes: list[tuple[str, str, str]] = []

    def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if request.method == "GET" or user_agent_product(request.headers.get("User-Agent", "")) != "kopf":
            return None
        target = parse_resource_path(request.path)
        if target is not None and target.plural != "kopfpeerings":
            resource = f"{target.plural}/{target.subresource}" if target.subresource else target.plural
            self.writes.append((request.method, resource, target.name or ""))
        return None

    def __enter__(self) -> OperatorWrites:
        self.server.intercept = self
        return self

    def __exit__(self, *_: object) -> None:
        self.server.intercept = None


def networking(api_client: client.ApiClient) -> client.NetworkingV1Api:
    return client.NetworkingV1Api(api_client)


def network_policy(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = api_client.sanitize_for_serialization(
        networking(api_client).read_namespaced_network_policy(name, namespace)
    )
    return got


def network_policy_names(api_client: client.ApiClient, namespace: str) -> set[str]:
    listed = networking(api_client).list_namespaced_network_policy(namespace)
    return {item.metadata.name for item in listed.items}


def create_template(api_client: client.ApiClient, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": contract.API_VERSION,
        "kind": contract.TEMPLATE_KIND,
        "metadata": {"name": name},
        "spec": spec,
    }
    ops.custom(api_client).create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.TEMPLATE_PLURAL, body
    )


def test_the_network_policy_comes_before_the_pod_is_owned_and_goes_with_the_sandbox(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    with OperatorWrites(apiserver) as recorded:
        start_operator("--telemetry-egress", TELEMETRY_EGRESS)
        ops.create_sandbox(api, namespace, "locked", timeout=600, network={"policy": "DenyAll"})
        wait_for(ops.pod_exists(api, namespace, "locked"), timeout=60, what="the pod", ignore=ops.API_ERRORS)
        pending = ops.wait_phase(api, namespace, "locked", "Pending", timeout=20)
    creates = [resource for method, resource, _ in recorded.writes if method == "POST"]
    assert creates == ["networkpolicies", "pods"]  # the policy first: the pod never runs unrestricted

    policy = network_policy(api, namespace, "locked")
    owner = ops.sandbox(api, namespace, "locked")
    (ref,) = policy["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "Sandbox",
        "locked",
        owner["metadata"]["uid"],
        True,
    )
    assert policy["spec"]["podSelector"] == {"matchLabels": {contract.LABEL_SANDBOX_ID: "locked"}}
    assert policy["metadata"]["annotations"][contract.ANNOTATION_NETWORK_POLICY] == "DenyAll"
    assert pending["network"] == {
        "policy": "DenyAll",
        "source": "sandbox",
        "networkPolicy": "locked",
        "message": "DenyAll: the cluster DNS only (NetworkPolicy locked)",
    }
    # What the stored policy means, with the operator's telemetry egress setting.
    me = pod("10.244.0.10", namespace, {contract.LABEL_SANDBOX_ID: "locked"})
    collector = pod("10.244.2.7", "observability", {"app": "otel-collector"})
    assert may_reach([policy], me, collector, 4318) is True
    assert may_reach([policy], me, internet("93.184.216.34"), 443) is False

    ops.custom(api).delete_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, "locked"
    )
    wait_for(
        ops.pod_gone(api, namespace, "locked"), timeout=20, what="the pod collected", ignore=ops.API_ERRORS
    )
    wait_for(
        lambda: "locked" not in network_policy_names(api, namespace),
        timeout=20,
        what="the NetworkPolicy collected",
        ignore=ops.API_ERRORS,
    )


def test_template_precedence_default_policy_and_pod_security(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    create_template(
        api, namespace, "locked-down", network={"policy": "Custom", "allowCidrs": ["203.0.113.0/24"]},
        podSecurity="restricted", runAsUser=1001,
    )  # fmt: skip
    start_operator("--default-network-policy", "DenyAll")
    ops.create_sandbox(api, namespace, "from-template", template="locked-down", timeout=600)
    ops.create_sandbox(
        api, namespace, "own-network", template="locked-down", timeout=600, network={"policy": "AllowAll"}
    )
    ops.create_sandbox(
        api, namespace, "narrower", template="locked-down", timeout=600, network={"policy": "DenyAll"}
    )
    ops.create_sandbox(api, namespace, "from-default", timeout=600)
    for name in ("from-template", "narrower", "from-default"):
        wait_for(ops.pod_exists(api, namespace, name), timeout=60, what="the pod", ignore=ops.API_ERRORS)

    templated = network_policy(api, namespace, "from-template")
    assert templated["metadata"]["annotations"][contract.ANNOTATION_NETWORK_POLICY] == "Custom"
    me = pod("10.244.0.10", namespace, {contract.LABEL_SANDBOX_ID: "from-template"})
    assert may_reach([templated], me, internet("203.0.113.50"), 5432) is True
    assert may_reach([templated], me, internet("198.51.100.1"), 443) is False
    assert ops.sandbox(api, namespace, "from-template")["status"]["network"]["source"] == "template"
    restricted = ops.core(api).read_namespaced_pod("from-template", namespace)
    assert restricted.spec.security_context.run_as_non_root is True
    assert restricted.spec.security_context.run_as_user == 1001
    assert restricted.spec.containers[0].security_context.capabilities.drop == ["ALL"]

    # the template's network is final: widening it fails the Sandbox, without a pod or a policy
    # (an operator that saw the Sandbox before the template had it wait, Pending/TemplateNotFound, first)
    refused = wait_for(
        ops.reason_is(api, namespace, "own-network", contract.REASON_FIELD_LOCKED), 20, "FieldLocked"
    )
    assert refused["phase"] == contract.PHASE_FAILED
    assert refused["message"].startswith('spec.network is locked by SandboxTemplate "locked-down"')
    assert ops.pod_gone(api, namespace, "own-network")()
    assert "own-network" not in network_policy_names(api, namespace)
    # narrowing it to DenyAll is allowed
    assert ops.sandbox(api, namespace, "narrower")["status"]["network"]["policy"] == "DenyAll"
    assert ops.sandbox(api, namespace, "narrower")["status"]["network"]["source"] == "sandbox"
    defaulted = network_policy(api, namespace, "from-default")
    assert defaulted["metadata"]["annotations"][contract.ANNOTATION_NETWORK_POLICY] == "DenyAll"
    assert ops.sandbox(api, namespace, "from-default")["status"]["network"]["source"] == "default"
    baseline = ops.core(api).read_namespaced_pod("from-default", namespace)
    assert baseline.spec.security_context is None or baseline.spec.security_context.run_as_non_root is None
    assert baseline.spec.containers[0].security_context.capabilities.drop == ["NET_RAW", "KILL"]


def test_a_network_policy_costs_exactly_one_more_write_per_sandbox(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    """The operator's writes from a Sandbox's creation to Running: AllowAll (no NetworkPolicy) against
    Internet (one NetworkPolicy). Printed, and the difference must be exactly the one create."""
    with OperatorWrites(apiserver) as recorded:
        start_operator()
        counts: dict[str, list[tuple[str, str]]] = {}
        for name, policy in (("open", "AllowAll"), ("public", "Internet")):
            start = len(recorded.writes)
            ops.create_sandbox(api, namespace, name, timeout=600, network={"policy": policy})
            wait_for(ops.pod_exists(api, namespace, name), timeout=60, what="the pod", ignore=ops.API_ERRORS)
            ops.wait_phase(api, namespace, name, "Pending", timeout=20)
            ops.play_kubelet(api, namespace, name, sandbox_state=ops.RUNNING)
            ops.wait_phase(api, namespace, name, "Running", timeout=20)

            # the Running Event is posted just after the status write the wait saw: count once it is
            def event_posted(since: int = start) -> bool:
                return any(m == "POST" and r == "events" for m, r, _ in recorded.writes[since:])

            wait_for(event_posted, 20, "the Running Event")
            counts[name] = [(method, resource) for method, resource, _ in recorded.writes[start:]]
    print(f"operator writes per sandbox, creation to Running: {counts}")
    assert len(counts["public"]) == len(counts["open"]) + 1
    assert [w for w in counts["public"] if w not in counts["open"]] == [("POST", "networkpolicies")]


def test_the_locked_down_example_meets_restricted_and_reaches_only_its_cidrs(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    start_operator()
    example = REPO / "examples" / "template-locked-down.yaml"
    kubectl(apiserver.kubeconfig, "-n", namespace, "apply", "--validate=strict", "-f", str(example))
    wait_for(
        ops.pod_exists(api, namespace, "locked-down-demo"), timeout=60, what="the pod", ignore=ops.API_ERRORS
    )
    stored = api.sanitize_for_serialization(ops.core(api).read_namespaced_pod("locked-down-demo", namespace))
    assert violations(stored, RESTRICTED) == []
    policy = network_policy(api, namespace, "locked-down-demo")
    me = pod("10.244.0.10", namespace, {contract.LABEL_SANDBOX_ID: "locked-down-demo"})
    assert may_reach([policy], me, internet("203.0.113.10"), 443) is True
    assert may_reach([policy], me, internet("2001:db8:100::1"), 443) is True
    assert may_reach([policy], me, internet("93.184.216.34"), 443) is False
    assert may_reach([policy], me, internet("169.254.169.254"), 80) is False
