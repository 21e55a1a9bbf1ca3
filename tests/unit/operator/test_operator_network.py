"""The NetworkPolicy builder: each policy's meaning (what the sandbox pod may reach), checked by evaluating
the generated objects under NetworkPolicy semantics (tests/netpol_support.py), plus precedence, settings and
schema validity (kubernetes-validate, strict, Kubernetes 1.30)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from netpol_support import Endpoint, internet, may_reach, may_receive, pod

import leap0_contract as contract
from leap0_operator.network import (
    DnsLocation,
    Network,
    NetworkSettings,
    NetworkSpecError,
    build_network_policy,
    describe,
    parse_labels,
    parse_telemetry_egress,
    resolve_network,
)

NS = "team-a"
SETTINGS = NetworkSettings(
    telemetry_egress=parse_telemetry_egress(
        '[{"namespace": "observability", "podSelector": {"app": "otel-collector"}}]'
    )
)
SANDBOX = pod("10.244.0.10", NS, {contract.LABEL_SANDBOX_ID: "sbx-1"})
OTHER_SANDBOX = pod("10.244.0.11", NS, {contract.LABEL_SANDBOX_ID: "sbx-2"})
KUBE_DNS = pod("10.244.1.5", "kube-system", {"k8s-app": "kube-dns"})
NOT_DNS = pod("10.244.1.6", "kube-system", {"k8s-app": "metrics-server"})
COLLECTOR = pod("10.244.2.7", "observability", {"app": "otel-collector"})
GRAFANA = pod("10.244.2.8", "observability", {"app": "grafana"})
DATABASE = pod("10.20.3.4", "data", {"app": "postgres"})


def owner(name: str = "sbx-1", namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.SANDBOX_KIND,
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
    }


def policies(
    policy: str, cidrs: tuple[str, ...] = (), settings: NetworkSettings = SETTINGS
) -> list[dict[str, Any]]:
    built = build_network_policy(owner=owner(), network=Network(policy, cidrs), settings=settings)
    return [] if built is None else [built]


# (policy, allowCidrs, destination, port, protocol, allowed)
MEANING: list[tuple[str, tuple[str, ...], Endpoint, int, str, bool]] = [
    # Internet: public addresses on any port, never private or special ranges
    ("Internet", (), internet("93.184.216.34"), 443, "TCP", True),
    ("Internet", (), internet("203.0.113.9"), 22, "TCP", True),
    ("Internet", (), internet("8.8.8.8"), 53, "UDP", True),
    ("Internet", (), internet("2606:4700::1111"), 443, "TCP", True),
    ("Internet", (), internet("169.254.169.254"), 80, "TCP", False),  # the cloud metadata server
    ("Internet", (), internet("fd00:ec2::254"), 80, "TCP", False),  # AWS's IPv6 metadata server
    ("Internet", (), internet("10.0.0.1"), 443, "TCP", False),
    ("Internet", (), internet("172.16.5.4"), 5432, "TCP", False),
    ("Internet", (), internet("172.31.255.255"), 80, "TCP", False),
    ("Internet", (), internet("192.168.1.1"), 80, "TCP", False),
    ("Internet", (), internet("100.64.0.1"), 80, "TCP", False),
    ("Internet", (), internet("127.0.0.1"), 80, "TCP", False),
    ("Internet", (), internet("0.0.0.0"), 80, "TCP", False),
    ("Internet", (), internet("224.0.0.251"), 5353, "UDP", False),
    ("Internet", (), internet("255.255.255.255"), 67, "UDP", False),
    ("Internet", (), internet("::1"), 80, "TCP", False),
    ("Internet", (), internet("fe80::1"), 80, "TCP", False),
    ("Internet", (), internet("fc00::1"), 80, "TCP", False),
    ("Internet", (), internet("::ffff:10.0.0.1"), 80, "TCP", False),  # IPv4-mapped private address
    ("Internet", (), internet("::ffff:169.254.169.254"), 80, "TCP", False),
    ("Internet", (), internet("ff02::1"), 80, "UDP", False),
    # IPv6 prefixes that carry an IPv4 address the network translates or tunnels to: a private one included
    ("Internet", (), internet("64:ff9b::a00:1"), 443, "TCP", False),  # NAT64 (RFC 6052) of 10.0.0.1
    ("Internet", (), internet("64:ff9b::a9fe:a9fe"), 80, "TCP", False),  # NAT64 of the metadata server
    ("Internet", (), internet("64:ff9b:1::a00:1"), 443, "TCP", False),  # local-use NAT64 (RFC 8215)
    ("Internet", (), internet("2002:a00:1::1"), 443, "TCP", False),  # 6to4 of 10.0.0.1
    ("Internet", (), internet("2001:0:4136:e378:8000:63bf:f5ff:fffe"), 443, "TCP", False),  # Teredo
    ("Internet", (), internet("168.63.129.16"), 80, "TCP", False),  # Azure's host endpoint (wireserver)
    ("Internet", (), internet("168.63.129.17"), 80, "TCP", True),  # only that one address
    ("Internet", (), internet("2001:db8::1"), 443, "TCP", True),  # next to Teredo's /32, not in it
    ("Internet", (), internet("2003::1"), 443, "TCP", True),  # next to 6to4's /16
    ("Internet", (), OTHER_SANDBOX, 8080, "TCP", False),  # pod addresses are private
    ("Internet", (), DATABASE, 5432, "TCP", False),
    ("Internet", (), KUBE_DNS, 53, "UDP", True),
    ("Internet", (), KUBE_DNS, 53, "TCP", True),
    ("Internet", (), KUBE_DNS, 8080, "TCP", False),
    ("Internet", (), NOT_DNS, 53, "UDP", False),
    ("Internet", (), COLLECTOR, 4317, "TCP", True),
    ("Internet", (), COLLECTOR, 4318, "TCP", True),
    ("Internet", (), COLLECTOR, 8888, "TCP", False),
    ("Internet", (), COLLECTOR, 4318, "UDP", False),
    ("Internet", (), GRAFANA, 4318, "TCP", False),
    # DenyAll: the cluster DNS and the telemetry egress only
    ("DenyAll", (), internet("93.184.216.34"), 443, "TCP", False),
    ("DenyAll", (), internet("8.8.8.8"), 53, "UDP", False),
    ("DenyAll", (), internet("2606:4700::1111"), 443, "TCP", False),
    ("DenyAll", (), internet("169.254.169.254"), 80, "TCP", False),
    ("DenyAll", (), KUBE_DNS, 53, "UDP", True),
    ("DenyAll", (), KUBE_DNS, 53, "TCP", True),
    ("DenyAll", (), NOT_DNS, 53, "UDP", False),
    ("DenyAll", (), COLLECTOR, 4318, "TCP", True),
    ("DenyAll", (), COLLECTOR, 4317, "TCP", True),
    ("DenyAll", (), GRAFANA, 3000, "TCP", False),
    ("DenyAll", (), OTHER_SANDBOX, 8080, "TCP", False),
    # Custom: DNS, telemetry and exactly the CIDRs (any port), IPv4 and IPv6
    ("Custom", ("203.0.113.0/24", "2001:db8::/32"), internet("203.0.113.9"), 5432, "TCP", True),
    ("Custom", ("203.0.113.0/24", "2001:db8::/32"), internet("203.0.113.9"), 53, "UDP", True),
    ("Custom", ("203.0.113.0/24", "2001:db8::/32"), internet("203.0.114.1"), 443, "TCP", False),
    ("Custom", ("203.0.113.0/24", "2001:db8::/32"), internet("2001:db8::5"), 443, "TCP", True),
    ("Custom", ("203.0.113.0/24", "2001:db8::/32"), internet("2001:db9::1"), 443, "TCP", False),
    ("Custom", ("203.0.113.0/24", "2001:db8::/32"), internet("93.184.216.34"), 443, "TCP", False),
    ("Custom", ("203.0.113.0/24", "2001:db8::/32"), internet("169.254.169.254"), 80, "TCP", False),
    ("Custom", ("203.0.113.0/24", "2001:db8::/32"), KUBE_DNS, 53, "UDP", True),
    ("Custom", ("203.0.113.0/24", "2001:db8::/32"), COLLECTOR, 4318, "TCP", True),
    ("Custom", ("10.20.0.0/16",), DATABASE, 5432, "TCP", True),  # a private range, on purpose
    ("Custom", ("10.20.0.0/16",), internet("10.21.0.1"), 5432, "TCP", False),
    ("Custom", (), internet("203.0.113.9"), 443, "TCP", False),  # no CIDRs: DNS and telemetry only
    ("Custom", (), KUBE_DNS, 53, "UDP", True),
    # AllowAll: no NetworkPolicy, nothing is restricted
    ("AllowAll", (), internet("169.254.169.254"), 80, "TCP", True),
    ("AllowAll", (), internet("10.0.0.1"), 443, "TCP", True),
    ("AllowAll", (), OTHER_SANDBOX, 8080, "TCP", True),
]


@pytest.mark.parametrize(("policy", "cidrs", "destination", "port", "protocol", "allowed"), MEANING)
def test_what_each_policy_lets_the_sandbox_reach(
    policy: str, cidrs: tuple[str, ...], destination: Endpoint, port: int, protocol: str, allowed: bool
) -> None:
    assert may_reach(policies(policy, cidrs), SANDBOX, destination, port, protocol) is allowed


@pytest.mark.parametrize("policy", ["Internet", "DenyAll", "Custom"])
@pytest.mark.parametrize("source", [OTHER_SANDBOX, COLLECTOR, KUBE_DNS, internet("93.184.216.34")])
def test_nothing_may_connect_to_the_sandbox(policy: str, source: Endpoint) -> None:
    built = policies(policy, ("203.0.113.0/24",) if policy == "Custom" else ())
    for port in (22, 8080, contract.OTLP_HTTP_PORT, contract.SIDECAR_HEALTH_PORT):
        assert may_receive(built, SANDBOX, source, port) is False


def test_allow_all_builds_no_policy_and_says_so() -> None:
    assert build_network_policy(owner=owner(), network=Network("AllowAll"), settings=SETTINGS) is None
    assert (
        describe(Network("AllowAll"), "sbx-1")
        == "AllowAll: no NetworkPolicy, the pod's traffic is not restricted"
    )
    assert may_receive([], SANDBOX, OTHER_SANDBOX, 8080) is True


def test_a_policy_selects_exactly_its_own_sandbox() -> None:
    mine = policies("DenyAll")
    # The other sandbox's pod (same namespace) is not isolated by sbx-1's policy.
    assert may_reach(mine, OTHER_SANDBOX, internet("10.0.0.1"), 443) is True
    # Two sandboxes' policies together: each pod gets its own (union per selected pod).
    theirs = build_network_policy(owner=owner("sbx-2"), network=Network("Internet"), settings=SETTINGS)
    assert theirs is not None
    both = [*mine, theirs]
    assert may_reach(both, SANDBOX, internet("93.184.216.34"), 443) is False
    assert may_reach(both, OTHER_SANDBOX, internet("93.184.216.34"), 443) is True
    # The same labels in another namespace are not selected.
    elsewhere = pod("10.244.9.9", "team-b", {contract.LABEL_SANDBOX_ID: "sbx-1"})
    assert may_reach(both, elsewhere, internet("10.0.0.1"), 443) is True


def test_shape_name_owner_selector_and_types() -> None:
    (built,) = policies("Internet")
    assert built["apiVersion"] == "networking.k8s.io/v1"
    assert built["kind"] == "NetworkPolicy"
    assert built["metadata"]["name"] == "sbx-1"
    assert built["metadata"]["namespace"] == NS
    assert built["metadata"]["labels"][contract.LABEL_SANDBOX_ID] == "sbx-1"
    assert built["metadata"]["annotations"] == {contract.ANNOTATION_NETWORK_POLICY: "Internet"}
    assert built["metadata"]["ownerReferences"] == [
        {
            "apiVersion": contract.API_VERSION,
            "kind": contract.SANDBOX_KIND,
            "name": "sbx-1",
            "uid": "uid-sbx-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert built["spec"]["podSelector"] == {"matchLabels": {contract.LABEL_SANDBOX_ID: "sbx-1"}}
    assert built["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in built["spec"]


def test_no_telemetry_egress_means_no_telemetry_rule() -> None:
    bare = policies("DenyAll", settings=NetworkSettings())
    assert may_reach(bare, SANDBOX, COLLECTOR, 4318) is False
    assert may_reach(bare, SANDBOX, KUBE_DNS, 53, "UDP") is True


@pytest.mark.parametrize(
    ("text", "reachable", "unreachable"),
    [
        ('[{"namespace": "observability"}]', [COLLECTOR, GRAFANA], [KUBE_DNS]),
        (
            '[{"namespaceSelector": {"team": "platform"}}]',
            [pod("10.244.5.5", "obs", team="platform")],
            [COLLECTOR],
        ),
        (
            '[{"namespaceSelector": {"team": "platform"}, "podSelector": {"app": "gw"}}]',
            [pod("10.244.5.5", "obs", {"app": "gw"}, team="platform")],
            [pod("10.244.5.6", "obs", {"app": "x"}, team="platform")],
        ),
        (
            '[{"podSelector": {"app": "gw"}}]',
            [pod("10.244.0.50", NS, {"app": "gw"})],
            [pod("10.244.5.5", "o", {"app": "gw"})],
        ),
        ('[{"cidr": "10.30.0.0/16"}]', [internet("10.30.1.2")], [internet("10.31.1.2"), COLLECTOR]),
        ('[{"cidr": "fd12:3456::/48"}]', [internet("fd12:3456::9")], [internet("fd12:3457::9")]),
    ],
)
def test_telemetry_egress_destinations_under_deny_all(
    text: str, reachable: list[Endpoint], unreachable: list[Endpoint]
) -> None:
    built = policies("DenyAll", settings=NetworkSettings(telemetry_egress=parse_telemetry_egress(text)))
    for destination in reachable:
        for port in (4317, 4318):
            assert may_reach(built, SANDBOX, destination, port) is True, destination
        assert may_reach(built, SANDBOX, destination, 443) is False, destination
    for destination in unreachable:
        assert may_reach(built, SANDBOX, destination, 4318) is False, destination


def test_telemetry_egress_ports_can_be_narrowed() -> None:
    settings = NetworkSettings(
        telemetry_egress=parse_telemetry_egress('[{"namespace": "observability", "ports": [4318]}]')
    )
    built = policies("DenyAll", settings=settings)
    assert may_reach(built, SANDBOX, COLLECTOR, 4318) is True
    assert may_reach(built, SANDBOX, COLLECTOR, 4317) is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "expected a JSON list of destinations"),
        ('{"namespace": "x"}', "expected a JSON list of destinations, got dict"),
        ("[1]", "entry 0: expected an object"),
        ('[{"namespace": "x", "color": "red"}]', "entry 0: unknown key(s) color"),
        ('[{"cidr": "10.0.0.0/8", "namespace": "x"}]', "entry 0: cidr cannot be combined"),
        ('[{"cidr": "not-a-cidr"}]', "'not-a-cidr' is not a CIDR"),
        ('[{"namespace": "x", "namespaceSelector": {"a": "b"}}]', "namespace or namespaceSelector, not both"),
        ('[{"namespace": "Not_A_Namespace"}]', "is not a namespace name"),
        ('[{"podSelector": {}}]', "podSelector: expected a non-empty map of labels"),
        ('[{"podSelector": {"app": "has space"}}]', "is not a label value"),
        ('[{"namespace": "x", "ports": [0]}]', "ports must be a non-empty list of port numbers"),
        ('[{"namespace": "x", "ports": "4318"}]', "ports must be a non-empty list of port numbers"),
        ('[{"ports": [4318]}]', "give a namespace, namespaceSelector, podSelector or cidr"),
    ],
)
def test_bad_telemetry_egress_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_telemetry_egress(text)


def test_empty_telemetry_egress_is_none() -> None:
    assert parse_telemetry_egress(None) == ()
    assert parse_telemetry_egress("  ") == ()
    assert parse_telemetry_egress("[]") == ()


def test_dns_location_is_a_setting() -> None:
    coredns = pod("10.244.7.7", "dns", {"app": "coredns"})
    settings = NetworkSettings(
        dns=DnsLocation(
            namespace="dns", labels=parse_labels("dns labels", "app=coredns"), cidrs=("169.254.20.10/32",)
        )
    )
    built = policies("DenyAll", settings=settings)
    assert may_reach(built, SANDBOX, coredns, 53, "UDP") is True
    assert may_reach(built, SANDBOX, KUBE_DNS, 53, "UDP") is False
    assert may_reach(built, SANDBOX, internet("169.254.20.10"), 53, "UDP") is True  # NodeLocal DNSCache
    assert may_reach(built, SANDBOX, internet("169.254.20.10"), 80) is False
    with pytest.raises(ValueError, match="dns labels: expected key=value"):
        parse_labels("dns labels", "k8s-app")


# --- precedence: the Sandbox's network, else the template's, else the operator's default -----------------
@pytest.mark.parametrize(
    ("spec", "template", "default", "expected"),
    [
        ({}, None, "Internet", Network("Internet", (), "default")),
        ({}, {}, "DenyAll", Network("DenyAll", (), "default")),
        ({}, {"network": {"policy": "DenyAll"}}, "Internet", Network("DenyAll", (), "template")),
        (
            {},
            {"network": {"policy": "Custom", "allowCidrs": ["203.0.113.7/24", "2001:DB8::/32"]}},
            "Internet",
            Network("Custom", ("203.0.113.0/24", "2001:db8::/32"), "template"),
        ),
        (
            {"network": {"policy": "AllowAll"}},
            {"network": {"policy": "Custom", "allowCidrs": ["203.0.113.0/24"]}},
            "DenyAll",
            Network("AllowAll", (), "sandbox"),
        ),
        (
            {"network": {"policy": "Custom", "allowCidrs": ["10.0.0.0/8"]}},
            {"network": {"policy": "DenyAll"}},
            "Internet",
            Network("Custom", ("10.0.0.0/8",), "sandbox"),
        ),
        ({"network": {"policy": "Internet"}}, None, "DenyAll", Network("Internet", (), "sandbox")),
    ],
)
def test_precedence(
    spec: dict[str, Any], template: dict[str, Any] | None, default: str, expected: Network
) -> None:
    assert resolve_network(spec, template, default) == expected


def test_template_precedence_changes_what_the_pod_may_reach() -> None:
    template = {"network": {"policy": "DenyAll"}}
    network = resolve_network({}, template, "Internet")
    built = build_network_policy(owner=owner(), network=network, settings=SETTINGS)
    assert built is not None
    assert may_reach([built], SANDBOX, internet("93.184.216.34"), 443) is False
    own = resolve_network({"network": {"policy": "Internet"}}, template, "DenyAll")
    built = build_network_policy(owner=owner(), network=own, settings=SETTINGS)
    assert built is not None
    assert may_reach([built], SANDBOX, internet("93.184.216.34"), 443) is True


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"network": {"policy": "Internet", "allowDomains": ["example.com"]}},
            "allowDomains is not supported",
        ),
        (
            {"network": {"policy": "Custom", "allowCidrs": ["10.0.0.0/8", "nope"]}},
            r"spec.network.allowCidrs\[1\]",
        ),
        ({"network": {"policy": "DenyAll", "allowCidrs": ["10.0.0.0/8"]}}, "applies only to policy Custom"),
        ({"network": {"policy": "Open"}}, "spec.network.policy must be one of"),
    ],
)
def test_a_network_the_operator_cannot_build_is_an_error(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(NetworkSpecError, match=message):
        resolve_network(spec, None, "Internet")


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        (
            Network("Internet"),
            "Internet: public addresses and the cluster DNS; no private ranges, no metadata server "
            "(NetworkPolicy sbx-1)",
        ),
        (Network("DenyAll"), "DenyAll: the cluster DNS only (NetworkPolicy sbx-1)"),
        (Network("Custom", ("10.0.0.0/8",)), "Custom: the cluster DNS and 1 CIDR (NetworkPolicy sbx-1)"),
        (
            Network("Custom", ("10.0.0.0/8", "::/0")),
            "Custom: the cluster DNS and 2 CIDRs (NetworkPolicy sbx-1)",
        ),
    ],
)
def test_describe(network: Network, expected: str) -> None:
    assert describe(network, "sbx-1") == expected


# --- every generated NetworkPolicy is valid for Kubernetes 1.30 (strict: no unknown fields) --------------
VARIANTS = [
    ("Internet", (), SETTINGS),
    ("DenyAll", (), SETTINGS),
    ("DenyAll", (), NetworkSettings()),
    ("Custom", (), SETTINGS),
    ("Custom", ("203.0.113.0/24", "2001:db8::/32", "10.0.0.0/8"), SETTINGS),
    (
        "Internet",
        (),
        NetworkSettings(
            telemetry_egress=parse_telemetry_egress(
                '[{"cidr": "10.30.0.0/16", "ports": [4318]}, {"namespaceSelector": {"team": "p"}},'
                ' {"podSelector": {"app": "gw"}}]'
            ),
            dns=DnsLocation(
                namespace="dns", labels={"app": "coredns"}, cidrs=("169.254.20.10/32", "fd00::a/128")
            ),
        ),
    ),
]


@pytest.mark.parametrize(("policy", "cidrs", "settings"), VARIANTS)
def test_every_generated_policy_validates_for_kubernetes_1_30(
    policy: str, cidrs: tuple[str, ...], settings: NetworkSettings
) -> None:
    built = build_network_policy(owner=owner(), network=Network(policy, cidrs), settings=settings)
    assert built is not None
    kubernetes_validate.validate(built, "1.30.0", strict=True)


def test_the_validator_catches_a_broken_policy() -> None:
    (built,) = policies("Internet")
    built["spec"]["egress"][0]["too"] = built["spec"]["egress"][0].pop("to")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(built, "1.30.0", strict=True)
