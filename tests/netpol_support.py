"""Answer "may this pod reach IP:port?" from NetworkPolicy objects, under Kubernetes' NetworkPolicy semantics.

An independent reading of the API's documented semantics (kubernetes.io, "Network Policies", and the
``networking.k8s.io/v1`` reference), used to check what the operator's policies *mean*, not their shape:

- a pod is isolated for egress (ingress) when at least one policy in its namespace selects it (podSelector)
  and lists ``Egress`` (``Ingress``) in ``policyTypes``; without ``policyTypes`` a policy is ``Ingress``, plus
  ``Egress`` when it has egress rules; a pod no policy isolates may send (receive) anything;
- an isolated pod's connection is allowed when any rule of any policy selecting it allows it (a union; order
  and policy count do not matter);
- a rule without ``to`` (``from``) matches every peer, without ``ports`` every port and protocol;
- a peer is an ``ipBlock`` (the address is in ``cidr`` and in none of its ``except``; an IPv4 block never
  matches an IPv6 address and the other way round), or pods: ``podSelector`` alone selects pods of the
  policy's namespace, ``namespaceSelector`` alone every pod of the selected namespaces, both together the
  selected pods of the selected namespaces (an empty selector ``{}`` selects all);
- a port entry's protocol defaults to TCP; no ``port`` means every port of that protocol; ``endPort`` makes a
  range; named ports are resolved against the destination pod's container ports.

A destination is an address, optionally of a pod (its namespace, the namespace's labels, its labels). This
helper evaluates policies; it does not pretend to be a network plugin (no Service DNAT, no node traffic).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """An address, and the pod behind it when there is one (``namespace`` set)."""

    ip: str
    namespace: str | None = None
    namespace_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pod_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    named_ports: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def ns_labels(self) -> dict[str, str]:
        """The namespace's labels, with the ``kubernetes.io/metadata.name`` label every namespace carries."""
        labels = dict(self.namespace_labels)
        if self.namespace is not None:
            labels.setdefault(NAMESPACE_NAME_LABEL, self.namespace)
        return labels


def internet(ip: str) -> Endpoint:
    """An address outside the cluster."""
    return Endpoint(ip)


def pod(ip: str, namespace: str, labels: Mapping[str, str] | None = None, **ns_labels: str) -> Endpoint:
    return Endpoint(ip, namespace, dict(ns_labels), dict(labels or {}))


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (``matchLabels`` and ``matchExpressions`` with In, NotIn, Exists, DoesNotExist)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, op, values = expression["key"], expression["operator"], expression.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


def _ip_block_matches(block: Mapping[str, Any], ip: str) -> bool:
    address: Any = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a connection to ::ffff:a.b.c.d leaves the pod as IPv4 to a.b.c.d
    network = ipaddress.ip_network(block["cidr"], strict=False)
    if network.version != address.version or address not in network:
        return False
    return not any(
        address in ipaddress.ip_network(excluded, strict=False) for excluded in block.get("except") or ()
    )


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return _ip_block_matches(peer["ipBlock"], other.ip)
    if other.namespace is None:  # not a pod: only ipBlocks can match it
        return False
    ns_selector = peer.get("namespaceSelector")
    pod_selector = peer.get("podSelector")
    if ns_selector is None and pod_selector is None:
        raise ValueError(f"a peer needs ipBlock, namespaceSelector or podSelector: {peer!r}")
    if ns_selector is None:
        in_namespace = other.namespace == policy_namespace
    else:
        in_namespace = selector_matches(ns_selector, other.ns_labels())
    if not in_namespace:
        return False
    return pod_selector is None or selector_matches(pod_selector, other.pod_labels)


def _port_matches(entry: Mapping[str, Any], port: int, protocol: str, destination: Endpoint) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        resolved = destination.named_ports.get(wanted)
        return resolved is not None and resolved == port
    end = entry.get("endPort")
    return wanted <= port <= end if end is not None else wanted == port


def _policy_types(policy: Mapping[str, Any]) -> set[str]:
    spec = policy.get("spec") or {}
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def _selecting(
    policies: Iterable[Mapping[str, Any]], subject: Endpoint, direction: str
) -> list[Mapping[str, Any]]:
    assert subject.namespace is not None, "the subject of a NetworkPolicy is a pod"
    found = []
    for policy in policies:
        assert policy.get("apiVersion") == "networking.k8s.io/v1"
        assert policy.get("kind") == "NetworkPolicy"
        if (policy.get("metadata") or {}).get("namespace") != subject.namespace:
            continue
        spec = policy.get("spec") or {}
        if selector_matches(spec.get("podSelector", {}), subject.pod_labels) and direction in _policy_types(
            policy
        ):
            found.append(policy)
    return found


def _allowed(
    policies: Sequence[Mapping[str, Any]],
    subject: Endpoint,
    other: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str,
    direction: str,
) -> bool:
    selecting = _selecting(policies, subject, direction)
    if not selecting:
        return True  # not isolated in this direction
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in selecting:
        namespace = str(policy["metadata"]["namespace"])
        for rule in (policy.get("spec") or {}).get(rules_key) or ():
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(p, namespace, other) for p in peers):
                continue
            ports = rule.get("ports")
            if ports and not any(_port_matches(p, port, protocol, destination) for p in ports):
                continue
            return True
    return False


def may_reach(
    policies: Sequence[Mapping[str, Any]],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """May ``source`` (a pod) open a connection to ``destination`` on ``port``/``protocol``? Both ends'
    policies count: the source's egress, and, when the destination is a pod, its ingress."""
    if not _allowed(policies, source, destination, destination, port, protocol, "Egress"):
        return False
    if destination.namespace is not None:
        return _allowed(policies, destination, source, destination, port, protocol, "Ingress")
    return True


def may_receive(
    policies: Sequence[Mapping[str, Any]],
    subject: Endpoint,
    source: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """May ``source`` open a connection to the pod ``subject`` on ``port`` (``subject``'s ingress only)?"""
    return _allowed(policies, subject, source, subject, port, protocol, "Ingress")
