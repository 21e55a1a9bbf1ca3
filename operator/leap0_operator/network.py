"""The sandbox pod's network policy, built from plain data (pure: no I/O).

``spec.network.policy`` (the Sandbox's, else its template's, else the operator's default) becomes one
``networking.k8s.io/v1`` NetworkPolicy per Sandbox, named after it, owned by it (garbage-collected with it),
selecting exactly its pod (label ``leap0.dev/sandbox-id``), with policy types Ingress and Egress and no
ingress rule, so nothing may connect to the pod (kubelet probes and ``kubectl exec`` do not go through it):

- ``Internet``: egress to every address except the private and special ranges below (RFC 1918, CGNAT,
  link-local with the cloud metadata servers, loopback, multicast, IPv6 ULA, link-local, IPv4-mapped and
  NAT64 local-use), plus DNS to the cluster DNS;
- ``DenyAll``: the cluster DNS only;
- ``Custom``: the cluster DNS plus ``spec.network.allowCidrs`` (any port);
- ``AllowAll``: no NetworkPolicy at all.

Under every policy the pod may also reach the operator's telemetry egress destinations on the OTLP ports
(``--telemetry-egress``), so a sidecar whose upstream is an in-cluster collector keeps exporting. Where the
cluster DNS lives is an operator setting (default: pods labelled ``k8s-app: kube-dns`` in ``kube-system``).

NetworkPolicies are enforced by the cluster's network plugin; a plugin that does not enforce them ignores them
(docs/network.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import leap0_contract as contract

API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"
OTLP_PORTS: tuple[int, ...] = (contract.OTLP_GRPC_PORT, contract.OTLP_HTTP_PORT)
DNS_PORT = 53
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace (1.22+)
DEFAULT_DNS_NAMESPACE = "kube-system"
DEFAULT_DNS_LABELS: Mapping[str, str] = {"k8s-app": "kube-dns"}  # kube-dns and CoreDNS alike

# What `Internet` leaves out. IPv4: "this network", RFC 1918, CGNAT (RFC 6598), loopback, link-local (the
# metadata servers of AWS, GCP, Azure, ... at 169.254.169.254), IETF protocol assignments, benchmarking,
# multicast, reserved and broadcast; and Azure's host endpoint 168.63.129.16 (a public address every Azure VM
# reaches: its wireserver and DNS, which hand out the VM's extensions and settings).
PRIVATE_IPV4: tuple[str, ...] = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "168.63.129.16/32",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
# IPv6: unspecified and loopback, NAT64 (the well-known prefix 64:ff9b::/96 of RFC 6052 and the local-use
# 64:ff9b:1::/48 of RFC 8215: a cloud's NAT64 gateway translates them to any IPv4 address, private ones
# included), Teredo (2001::/32) and 6to4 (2002::/16), which embed IPv4 addresses too, discard-only, unique
# local (fc00::/7, incl. AWS's metadata server fd00:ec2::254), the deprecated site-local, link-local and
# multicast. Not the IPv4-mapped range ::ffff:0:0/96: the API server refuses it in an ipBlock (Kubernetes
# 1.33+ validates CIDRs strictly), and a connection to a mapped address leaves the pod as IPv4, which the
# IPv4 list covers.
PRIVATE_IPV6: tuple[str, ...] = (
    "::/127",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
)

SOURCE_SANDBOX = "sandbox"
SOURCE_TEMPLATE = "template"
SOURCE_DEFAULT = "default"

_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class NetworkSpecError(ValueError):
    """A ``spec.network`` the operator cannot turn into a NetworkPolicy (the CRD's schema refuses it
    first; this covers CRDs older than the operator)."""


def parse_cidr(text: str) -> str:
    """The canonical form of an IPv4 or IPv6 CIDR (``10.1.2.3/8`` → ``10.0.0.0/8``); ValueError otherwise."""
    if not isinstance(text, str) or "/" not in text:
        raise ValueError(f"{text!r} is not a CIDR (an address, then /prefix)")
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a CIDR: {exc}") from None


def _labels(what: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{what}: expected a non-empty map of labels, got {value!r}")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key) or len(key) > 317:
            raise ValueError(f"{what}: {key!r} is not a label key")
        if not isinstance(val, str) or not _LABEL_VALUE.match(val):
            raise ValueError(f"{what}: {val!r} (label {key}) is not a label value")
        out[key] = val
    return out


@dataclasses.dataclass(frozen=True)
class Destination:
    """An in-cluster destination every sandbox may reach on its ports: pods (by namespace and/or pod labels;
    pod labels alone mean the sandbox's own namespace, as in a NetworkPolicy) or a CIDR."""

    namespace_labels: Mapping[str, str] | None = None
    pod_labels: Mapping[str, str] | None = None
    cidr: str | None = None
    ports: tuple[int, ...] = OTLP_PORTS

    def peer(self) -> dict[str, Any]:
        if self.cidr is not None:
            return {"ipBlock": {"cidr": self.cidr}}
        peer: dict[str, Any] = {}
        if self.namespace_labels is not None:
            peer["namespaceSelector"] = {"matchLabels": dict(self.namespace_labels)}
        if self.pod_labels is not None:
            peer["podSelector"] = {"matchLabels": dict(self.pod_labels)}
        return peer


_DESTINATION_KEYS = {"namespace", "namespaceSelector", "podSelector", "cidr", "ports"}


def parse_telemetry_egress(text: str | None) -> tuple[Destination, ...]:
    """The ``--telemetry-egress`` setting: a JSON list of destinations, each one of

    - ``{"namespace": "observability", "podSelector": {"app": "otel-collector"}}`` (``podSelector`` optional:
      without it, every pod of the namespace),
    - ``{"namespaceSelector": {"team": "platform"}, "podSelector": {...}}`` (namespaces by label),
    - ``{"podSelector": {"app": "gateway"}}`` (pods in the sandbox's own namespace),
    - ``{"cidr": "10.20.0.0/16"}``,

    with optional ``"ports": [4318]`` (default ``[4317, 4318]``, TCP). Empty or unset: none. Raises
    ValueError naming the entry and what is wrong.
    """
    if text is None or not text.strip():
        return ()
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"expected a JSON list of destinations: {exc}") from None
    if not isinstance(raw, list):
        raise ValueError(f"expected a JSON list of destinations, got {type(raw).__name__}")
    out: list[Destination] = []
    for index, entry in enumerate(raw):
        where = f"entry {index}"
        if not isinstance(entry, dict) or not entry:
            raise ValueError(f'{where}: expected an object such as {{"namespace": "observability"}}')
        unknown = sorted(set(entry) - _DESTINATION_KEYS)
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {sorted(_DESTINATION_KEYS)}"
            )
        ports_raw = entry.get("ports", list(OTLP_PORTS))
        if (
            not isinstance(ports_raw, list)
            or not ports_raw
            or not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports_raw)
        ):
            raise ValueError(f"{where}: ports must be a non-empty list of port numbers, got {ports_raw!r}")
        ports = tuple(dict.fromkeys(ports_raw))
        if "cidr" in entry:
            if set(entry) - {"cidr", "ports"}:
                raise ValueError(f"{where}: cidr cannot be combined with namespace or selectors")
            out.append(Destination(cidr=parse_cidr(entry["cidr"]), ports=ports))
            continue
        if "namespace" in entry and "namespaceSelector" in entry:
            raise ValueError(f"{where}: give namespace or namespaceSelector, not both")
        namespace_labels: dict[str, str] | None = None
        if "namespace" in entry:
            name = entry["namespace"]
            if not isinstance(name, str) or not _DNS_LABEL.match(name):
                raise ValueError(f"{where}: namespace {name!r} is not a namespace name")
            namespace_labels = {NAMESPACE_NAME_LABEL: name}
        elif "namespaceSelector" in entry:
            namespace_labels = _labels(f"{where}: namespaceSelector", entry["namespaceSelector"])
        pod_labels = (
            _labels(f"{where}: podSelector", entry["podSelector"]) if "podSelector" in entry else None
        )
        if namespace_labels is None and pod_labels is None:
            raise ValueError(f"{where}: give a namespace, namespaceSelector, podSelector or cidr")
        out.append(Destination(namespace_labels=namespace_labels, pod_labels=pod_labels, ports=ports))
    return tuple(out)


def parse_labels(what: str, text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (the DNS pods' labels setting); ValueError naming ``what``."""
    pairs: dict[str, str] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{what}: expected key=value pairs separated by commas, got {item!r}")
        pairs[key.strip()] = value.strip()
    return _labels(what, pairs)


def parse_namespace(what: str, text: str) -> str:
    if not _DNS_LABEL.match(text):
        raise ValueError(f"{what}: {text!r} is not a namespace name")
    return text


@dataclasses.dataclass(frozen=True)
class DnsLocation:
    """Where the cluster DNS runs: pods with ``labels`` in ``namespace``, plus optional CIDRs (for example a
    NodeLocal DNSCache address such as ``169.254.20.10/32``), all on port 53 (UDP and TCP)."""

    namespace: str = DEFAULT_DNS_NAMESPACE
    labels: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_DNS_LABELS))
    cidrs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class NetworkSettings:
    """The operator's network settings: the default policy, the telemetry egress, the cluster DNS."""

    default_policy: str = contract.DEFAULT_NETWORK_POLICY
    telemetry_egress: tuple[Destination, ...] = ()
    dns: DnsLocation = dataclasses.field(default_factory=DnsLocation)


@dataclasses.dataclass(frozen=True)
class Network:
    """The effective network of one sandbox and where it came from: ``sandbox``, ``template``, ``default``."""

    policy: str
    allow_cidrs: tuple[str, ...] = ()
    source: str = SOURCE_DEFAULT


def _network_of(value: Any, where: str, source: str) -> Network:
    if not isinstance(value, Mapping):
        raise NetworkSpecError(f"{where}: expected an object with a policy, got {value!r}")
    if value.get("allowDomains"):
        raise NetworkSpecError(
            f"{where}.allowDomains is not supported: a Kubernetes NetworkPolicy matches IP addresses, not "
            "domain names; use policy Custom with allowCidrs, or an egress proxy"
        )
    policy = value.get("policy")
    if policy not in contract.NETWORK_POLICIES:
        raise NetworkSpecError(
            f"{where}.policy must be one of {', '.join(contract.NETWORK_POLICIES)}, got {policy!r}"
        )
    cidrs_raw = value.get("allowCidrs") or []
    if cidrs_raw and policy != contract.NETWORK_CUSTOM:
        raise NetworkSpecError(f"{where}.allowCidrs applies only to policy {contract.NETWORK_CUSTOM}")
    cidrs: list[str] = []
    for index, text in enumerate(cidrs_raw):
        try:
            cidrs.append(parse_cidr(text))
        except ValueError as exc:
            raise NetworkSpecError(f"{where}.allowCidrs[{index}]: {exc}") from None
    return Network(policy=str(policy), allow_cidrs=tuple(dict.fromkeys(cidrs)), source=source)


def resolve_network(
    spec: Mapping[str, Any], template: Mapping[str, Any] | None, default_policy: str
) -> Network:
    """The Sandbox's ``spec.network``, else its template's, else the operator's default policy. A network is
    taken whole (its policy with its CIDRs), never merged field by field. Raises :class:`NetworkSpecError`."""
    if spec.get("network") is not None:
        return _network_of(spec["network"], "spec.network", SOURCE_SANDBOX)
    if template is not None and template.get("network") is not None:
        return _network_of(template["network"], "the template's spec.network", SOURCE_TEMPLATE)
    return Network(policy=default_policy, source=SOURCE_DEFAULT)


def policy_name(sandbox_name: str) -> str:
    """The NetworkPolicy of Sandbox ``x`` is named ``x`` (as its pod)."""
    return sandbox_name


def _dns_rule(dns: DnsLocation) -> dict[str, Any]:
    peers: list[dict[str, Any]] = [
        {
            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: dns.namespace}},
            "podSelector": {"matchLabels": dict(dns.labels)},
        }
    ]
    peers += [{"ipBlock": {"cidr": cidr}} for cidr in dns.cidrs]
    return {
        "to": peers,
        "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
    }


def _telemetry_rules(destinations: Sequence[Destination]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for destination in destinations:
        ports = [{"protocol": "TCP", "port": port} for port in destination.ports]
        rules.append({"to": [destination.peer()], "ports": ports})
    return rules


def egress_rules(network: Network, settings: NetworkSettings) -> list[dict[str, Any]]:
    """The egress rules of a policy other than ``AllowAll``: DNS, telemetry, then what the policy adds."""
    rules = [_dns_rule(settings.dns), *_telemetry_rules(settings.telemetry_egress)]
    if network.policy == contract.NETWORK_INTERNET:
        rules.append(
            {
                "to": [
                    {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_IPV4)}},
                    {"ipBlock": {"cidr": "::/0", "except": list(PRIVATE_IPV6)}},
                ]
            }
        )
    elif network.policy == contract.NETWORK_CUSTOM and network.allow_cidrs:
        rules.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in network.allow_cidrs]})
    return rules


def build_network_policy(
    *, owner: Mapping[str, Any], network: Network, settings: NetworkSettings
) -> dict[str, Any] | None:
    """The NetworkPolicy of the Sandbox ``owner`` (its body: ``apiVersion``, ``kind``, ``metadata`` with
    ``name``, ``namespace`` and ``uid``), or None for ``AllowAll``."""
    # kopf is imported here, not with the module: config.py reads this module's settings before
    # ``leap0-operator`` hides the unused Kubernetes clients from kopf (__main__.py), and importing kopf
    # earlier would load them (about 50 MiB of RSS).
    import kopf

    if network.policy == contract.NETWORK_ALLOW_ALL:
        return None
    name = str(owner["metadata"]["name"])
    policy: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": policy_name(name),
            "namespace": str(owner["metadata"]["namespace"]),
            "labels": {
                contract.LABEL_SANDBOX_ID: name,
                contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
            },
            "annotations": {contract.ANNOTATION_NETWORK_POLICY: network.policy},
        },
        "spec": {
            "podSelector": {"matchLabels": {contract.LABEL_SANDBOX_ID: name}},
            "policyTypes": ["Ingress", "Egress"],
            "egress": egress_rules(network, settings),
        },
    }
    kopf.append_owner_reference(policy, owner=kopf.Body(cast(kopf.RawBody, owner)), block_owner_deletion=True)
    return policy


def describe(network: Network, sandbox_name: str) -> str:
    """One sentence for the Sandbox's status: what the pod may reach, and through which NetworkPolicy."""
    where = f"NetworkPolicy {policy_name(sandbox_name)}"
    if network.policy == contract.NETWORK_ALLOW_ALL:
        return "AllowAll: no NetworkPolicy, the pod's traffic is not restricted"
    if network.policy == contract.NETWORK_INTERNET:
        return (
            f"Internet: public addresses and the cluster DNS; no private ranges, no metadata server ({where})"
        )
    if network.policy == contract.NETWORK_DENY_ALL:
        return f"DenyAll: the cluster DNS only ({where})"
    count = len(network.allow_cidrs)
    return f"Custom: the cluster DNS and {count} CIDR{'' if count == 1 else 's'} ({where})"


def network_status(network: Network, sandbox_name: str) -> dict[str, Any]:
    """``status.network``: the policy, where it came from, its CIDRs (``Custom``), the NetworkPolicy's name
    (none for ``AllowAll``) and :func:`describe`'s sentence. It records the network whole, so the
    NetworkPolicy can be restored from it for the sandbox's whole life."""
    status: dict[str, Any] = {
        "policy": network.policy,
        "source": network.source,
        "message": describe(network, sandbox_name),
    }
    if network.policy == contract.NETWORK_CUSTOM:
        status["allowCidrs"] = list(network.allow_cidrs)
    if network.policy != contract.NETWORK_ALLOW_ALL:
        status["networkPolicy"] = policy_name(sandbox_name)
    return status


def network_from_status(status: Mapping[str, Any]) -> Network | None:
    """The network recorded in ``status.network`` when the pod was created; None when none is recorded, or
    for a ``Custom`` one recorded before its CIDRs were (by an older operator: restoring it without them
    would cut the sandbox off, so it is left as it is)."""
    recorded = status.get("network")
    if not isinstance(recorded, Mapping) or recorded.get("policy") not in contract.NETWORK_POLICIES:
        return None
    cidrs = recorded.get("allowCidrs")
    if recorded["policy"] == contract.NETWORK_CUSTOM and not isinstance(cidrs, list):
        return None
    return Network(
        policy=str(recorded["policy"]),
        allow_cidrs=tuple(str(c) for c in cidrs) if isinstance(cidrs, list) else (),
        source=str(recorded.get("source") or SOURCE_DEFAULT),
    )


def _normalized(spec: Any, key: str = "") -> Any:
    """A NetworkPolicy spec as the API server keeps it: a port's protocol defaults to TCP. Nothing else is
    normalized: an empty selector means something (``namespaceSelector: {}`` is every namespace)."""
    if isinstance(spec, Mapping):
        out = {k: _normalized(v, k) for k, v in spec.items()}
        if key == "ports":
            out.setdefault("protocol", "TCP")
        return out
    if isinstance(spec, list):
        return [_normalized(v, key) for v in spec]
    return spec


def policy_digest(policy: Mapping[str, Any]) -> str:
    """A digest of a NetworkPolicy's spec: equal digests, equal isolation."""
    spec = policy.get("spec") if isinstance(policy.get("spec"), Mapping) else {}
    text = json.dumps(_normalized(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def trim_policy(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a sandbox's NetworkPolicy: its name, version and the digest of its spec."""
    meta = body.get("metadata") if isinstance(body.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion") if meta.get(k)},
        "digest": policy_digest(body),
    }
