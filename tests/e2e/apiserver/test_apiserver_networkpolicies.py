"""The embedded API server serves networking.k8s.io/v1 NetworkPolicies (built-in schema, discovery, kubectl),
and the Sandbox CRD's network rules refuse bad specs at `kubectl apply` time."""

from __future__ import annotations

import json

import pytest
from support import assert_collected_with_its_owner, kubectl

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

POLICY_YAML = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-dns}
spec:
  podSelector: {matchLabels: {leap0.dev/sandbox-id: demo}}
  policyTypes: [Ingress, Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
"""


def test_discovery_lists_networkpolicies(apiserver: ServerThread) -> None:
    out = kubectl(apiserver.kubeconfig, "api-resources", "--api-group=networking.k8s.io", "-o", "name").stdout
    assert out.split() == ["networkpolicies.networking.k8s.io"]


def test_kubectl_applies_gets_and_deletes_a_networkpolicy(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    assert (
        "created"
        in kubectl(kc, "-n", namespace, "apply", "--validate=strict", "-f", "-", input=POLICY_YAML).stdout
    )
    table = kubectl(kc, "-n", namespace, "get", "netpol").stdout.splitlines()
    assert table[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert table[1].split()[:2] == ["only-dns", "leap0.dev/sandbox-id=demo"]
    obj = json.loads(kubectl(kc, "-n", namespace, "get", "networkpolicy", "only-dns", "-o", "json").stdout)
    assert obj["spec"]["egress"][0]["ports"] == [
        {"protocol": "UDP", "port": 53},
        {"protocol": "TCP", "port": 53},
    ]
    kubectl(kc, "-n", namespace, "delete", "netpol", "only-dns")
    assert kubectl(kc, "-n", namespace, "get", "netpol", "-o", "name").stdout.strip() == ""


def test_unknown_fields_of_a_networkpolicy_are_refused_under_strict_validation(
    apiserver: ServerThread, namespace: str
) -> None:
    bad = POLICY_YAML.replace("policyTypes:", "policyTypo:")
    result = kubectl(
        apiserver.kubeconfig, "-n", namespace, "apply", "--validate=strict", "-f", "-", input=bad, check=False
    )
    assert result.returncode != 0
    assert "policyTypo" in result.stderr


def test_a_networkpolicy_is_garbage_collected_with_its_owner(apiserver: ServerThread, namespace: str) -> None:
    assert_collected_with_its_owner(apiserver.kubeconfig, namespace, POLICY_YAML, "only-dns", "netpol", 30)


def _sandbox(network: str) -> str:
    return f"""
apiVersion: leap0.dev/v1alpha1
kind: Sandbox
metadata: {{name: net}}
spec: {{network: {network}}}
"""


@pytest.mark.parametrize(
    ("network", "words"),
    [
        (
            '{policy: Custom, allowCidrs: ["203.0.113.0/24", not-a-cidr]}',
            ["spec.network.allowCidrs[1]", "CIDR"],
        ),
        (
            "{policy: Internet, allowDomains: [example.com]}",
            ["spec.network.allowDomains", "not domain names"],
        ),
        (
            '{policy: DenyAll, allowCidrs: ["10.0.0.0/8"]}',
            ["spec.network.allowCidrs", "only to policy Custom"],
        ),
        ("{policy: Anything}", ["spec.network.policy", "Unsupported value"]),
    ],
)
def test_kubectl_apply_refuses_a_bad_network_naming_the_field(
    apiserver: ServerThread, namespace: str, network: str, words: list[str]
) -> None:
    result = kubectl(
        apiserver.kubeconfig, "-n", namespace, "apply", "-f", "-", input=_sandbox(network), check=False
    )
    assert result.returncode != 0
    for word in words:
        assert word in result.stderr
    assert kubectl(apiserver.kubeconfig, "-n", namespace, "get", "sbx", "-o", "name").stdout.strip() == ""


def test_kubectl_apply_cannot_change_a_sandboxs_network(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    kubectl(kc, "-n", namespace, "apply", "-f", "-", input=_sandbox("{policy: DenyAll}"))
    result = kubectl(
        kc, "-n", namespace, "apply", "-f", "-", input=_sandbox("{policy: AllowAll}"), check=False
    )
    assert result.returncode != 0
    assert "spec.network is immutable" in result.stderr
