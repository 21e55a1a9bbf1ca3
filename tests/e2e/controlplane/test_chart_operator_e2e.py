"""The Helm chart installed with the real `helm` on the real control plane, cluster-wide and namespaced, and
the operator running as a local process with a token of the chart's ServiceAccount: every API call it makes
is checked against the chart's RBAC by the real API server (its audit log shows any refusal, which fails the
test), its NetworkPolicies, pods and Events are accepted, the garbage collector removes what a Sandbox owned,
and the namespaces' PodSecurity admission admits or refuses its pods."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import support
from controlplane_support import chart_operator, helm
from kubernetes import client
from operator_support import API_ERRORS, create_sandbox, custom, phase, pod_exists, pod_gone, sandbox

import leap0_contract as contract
from leap0_dev.controlplane import ControlPlane

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

ENFORCE = "pod-security.kubernetes.io/enforce"


@dataclass
class Install:
    mode: str
    release: str
    namespace: str  # the release's
    user: str  # the operator's ServiceAccount, as the API server names it
    plain: str  # the namespaces the operator serves: no PodSecurity label,
    baseline: str  # enforce baseline,
    restricted: str  # enforce restricted
    api: client.ApiClient  # the admin's


@pytest.fixture(scope="module", params=["cluster-wide", "namespaced"])
def install(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    control_plane_crds: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Install]:
    mode: str = request.param
    tag = uuid.uuid4().hex[:6]
    work = tmp_path_factory.mktemp(f"chart-{mode}")
    served = {"plain": f"plain-{tag}", "baseline": f"baseline-{tag}", "restricted": f"restricted-{tag}"}
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    for level, name in served.items():
        labels = {ENFORCE: level} if level != "plain" else {}
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    release, namespace = f"leap0-{tag}", f"leap0-system-{tag}"
    values = ["--set", "replicas=0"]  # the Deployment stays; the operator runs here, as its ServiceAccount
    if mode == "namespaced":
        values += ["--set-json", f"watchNamespaces={json.dumps(list(served.values()))}"]
    with chart_operator(control_plane, work, release, namespace, values, list(served.values())) as user:
        yield Install(
            mode, release, namespace, user, served["plain"], served["baseline"], served["restricted"], api
        )
    api.close()


def test_helm_installs_the_chart_and_its_rbac_scopes_the_operator(
    install: Install, control_plane: ControlPlane, tmp_path: Path
) -> None:
    status = json.loads(helm(control_plane, tmp_path, "status", install.release, "-n", install.namespace,
                             "-o", "json").stdout)  # fmt: skip
    assert status["info"]["status"] == "deployed"

    def can(verb: str, resource: str, namespace: str, *more: str) -> bool:
        result = support.kubectl(control_plane.kubeconfig, "auth", "can-i", verb, resource, "-n", namespace,
                                 f"--as={install.user}", *more, check=False)  # fmt: skip
        return result.stdout.strip() == "yes"

    assert can("create", "pods", install.plain)
    assert can("patch", "sandboxes.leap0.dev", install.restricted, "--subresource=status")
    assert not can("list", "secrets", "kube-system")  # it reads the Secrets a sandbox names, one by one
    assert not can("update", "sandboxes.leap0.dev", install.plain)  # the spec is the user's
    assert can("create", "pods", "default") == (install.mode == "cluster-wide")


def test_a_sandbox_gets_its_network_policy_pod_and_events_and_they_go_with_it(install: Install) -> None:
    api, namespace = install.api, install.plain
    create_sandbox(api, namespace, "web", timeout=600)
    pod = support.wait_for(pod_exists(api, namespace, "web"), timeout=60, what="the pod", ignore=API_ERRORS)
    networking = client.NetworkingV1Api(api)
    policy = networking.read_namespaced_network_policy("web", namespace)
    assert policy.metadata.annotations["leap0.dev/network-policy"] == contract.NETWORK_INTERNET
    support.wait_for(phase(api, namespace, "web", "Pending"), timeout=60, what="Pending")
    uid = sandbox(api, namespace, "web")["metadata"]["uid"]
    assert pod.metadata.owner_references[0].uid == uid

    def events() -> list[Any]:
        found = client.CoreV1Api(api).list_namespaced_event(
            namespace, field_selector="involvedObject.kind=Sandbox,involvedObject.name=web"
        )
        return list(found.items)

    (first, *_) = support.wait_for(events, timeout=60, what="the Sandbox's Events", interval=0.5)
    assert first.involved_object.uid == uid
    assert first.reason

    custom(api).delete_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, "web"
    )
    support.wait_for(pod_gone(api, namespace, "web"), timeout=60, what="the pod collected", interval=0.5)

    def policy_gone() -> bool:
        return not networking.list_namespaced_network_policy(namespace).items

    support.wait_for(policy_gone, timeout=60, what="the NetworkPolicy collected", interval=0.5)


def test_podsecurity_admits_sandbox_pods_at_their_level_and_a_refusal_fails_the_sandbox(
    install: Install,
) -> None:
    api = install.api
    strict = {"apiVersion": contract.API_VERSION, "kind": contract.TEMPLATE_KIND,
              "metadata": {"name": "strict"}, "spec": {"podSecurity": "restricted"}}  # fmt: skip
    custom(api).create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, install.restricted, contract.TEMPLATE_PLURAL, strict
    )
    create_sandbox(api, install.baseline, "base")  # every sandbox pod meets baseline
    create_sandbox(api, install.restricted, "strict", template="strict")
    create_sandbox(api, install.restricted, "loose")  # a baseline pod where restricted is enforced
    support.wait_for(pod_exists(api, install.baseline, "base"), timeout=60, what="baseline admitted",
                     ignore=API_ERRORS)  # fmt: skip
    support.wait_for(pod_exists(api, install.restricted, "strict"), timeout=60, what="restricted admitted",
                     ignore=API_ERRORS)  # fmt: skip
    status = support.wait_for(phase(api, install.restricted, "loose", "Failed"), timeout=60, what="Failed")
    assert status["reason"] == contract.REASON_POD_SECURITY_VIOLATION
    assert 'pods "loose" is forbidden: violates PodSecurity "restricted:latest": ' in status["message"]
    with pytest.raises(client.ApiException):
        client.CoreV1Api(api).read_namespaced_pod("loose", install.restricted)


def test_rbac_refused_none_of_the_operators_calls(install: Install, control_plane: ControlPlane) -> None:
    """Last in the module: everything above ran as the chart's ServiceAccount."""
    made = {(e["verb"], e.get("objectRef", {}).get("resource")) for e in control_plane.audit_events()
            if e["user"]["username"] == install.user}  # fmt: skip
    for call in [("create", "pods"), ("create", "networkpolicies"), ("create", "events"),
                 ("patch", "sandboxes"), ("list", "sandboxtemplates")]:  # fmt: skip
        assert call in made, f"the operator never made {call}: the check would prove nothing"
    assert control_plane.forbidden(install.user) == []
