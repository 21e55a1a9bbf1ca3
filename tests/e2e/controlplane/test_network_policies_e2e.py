"""The NetworkPolicies the operator builds (leap0_operator.network, a pure builder) are accepted by the real
API server, every policy with every kind of setting; and a table of invalid ipBlocks gets the same answer from
the real API server and the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from controlplane_support import answer, both_answers, new_namespace
from kubernetes import client

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread
from leap0_dev.controlplane import ControlPlane
from leap0_operator.network import (
    DnsLocation,
    Network,
    NetworkSettings,
    build_network_policy,
    parse_telemetry_egress,
)

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

SETTINGS = NetworkSettings(
    telemetry_egress=parse_telemetry_egress(
        '[{"namespace": "observability", "podSelector": {"app": "otel-collector"}},'
        ' {"cidr": "203.0.113.7/32", "ports": [4318]}, {"cidr": "2001:db8::7/128"}]'
    ),
    dns=DnsLocation(cidrs=("169.254.20.10/32", "fd00::a/128")),
)
NETWORKS = [
    Network(contract.NETWORK_INTERNET),
    Network(contract.NETWORK_DENY_ALL),
    Network(contract.NETWORK_CUSTOM, ("203.0.113.0/24", "2001:db8::/32", "0.0.0.0/0", "::/0")),
    Network(contract.NETWORK_CUSTOM, ()),
]


def _sandbox(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    body = {"apiVersion": contract.API_VERSION, "kind": contract.SANDBOX_KIND, "metadata": {"name": name}}
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, body
    )
    return created


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: f"{n.policy}-{len(n.allow_cidrs)}")
@pytest.mark.parametrize("settings", [NetworkSettings(), SETTINGS], ids=["defaults", "egress-and-dns-cidrs"])
def test_the_real_api_server_accepts_every_policy_the_operator_builds(
    network: Network,
    settings: NetworkSettings,
    control_plane: ControlPlane,
    control_plane_crds: Any,
    k8s_namespace: str,
) -> None:
    with control_plane.api_client() as api_client:
        owner = _sandbox(client.CustomObjectsApi(api_client), k8s_namespace, "sbx")
        policy = build_network_policy(owner=owner, network=network, settings=settings)
        assert policy is not None
        networking = client.NetworkingV1Api(api_client)
        assert answer(lambda: networking.create_namespaced_network_policy(k8s_namespace, policy)) == {
            "accepted": True
        }
        stored = networking.read_namespaced_network_policy("sbx", k8s_namespace).to_dict()
    assert stored["metadata"]["owner_references"][0]["uid"] == owner["metadata"]["uid"]


def _policy(name: str, block: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": block}]}]},
    }


IP_BLOCKS = {
    "mapped-except": {"cidr": "::/0", "except": ["::ffff:0:0/96", "fc00::/7"]},
    "mapped-cidr": {"cidr": "::ffff:10.0.0.0/104"},
    "bits-beyond-prefix": {"cidr": "10.0.0.1/8"},
    "except-outside": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16", "10.0.0.0/8"]},
    "except-other-family": {"cidr": "0.0.0.0/0", "except": ["fc00::/7"]},
    "not-a-cidr": {"cidr": "10.0.0.0/33", "except": ["nonsense"]},
    "valid": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16"]},
}


@pytest.fixture(scope="module")
def emulator_netpol_namespace(apiserver: ServerThread) -> str:
    return new_namespace(apiserver, "netpol-table")


@pytest.fixture(scope="module")
def real_netpol_namespace(control_plane: ControlPlane) -> str:
    return new_namespace(control_plane, "netpol-table")


@pytest.mark.parametrize("case", IP_BLOCKS)
def test_the_emulator_answers_each_ip_block_as_the_real_api_server(
    case: str,
    control_plane: ControlPlane,
    real_netpol_namespace: str,
    apiserver: ServerThread,
    emulator_netpol_namespace: str,
) -> None:
    body = _policy(case, IP_BLOCKS[case])
    real, emulated = both_answers(
        (control_plane, real_netpol_namespace),
        (apiserver, emulator_netpol_namespace),
        lambda api, namespace: client.NetworkingV1Api(api).create_namespaced_network_policy(namespace, body),
    )
    assert (real == {"accepted": True}) == (case == "valid"), real
    assert emulated == real
