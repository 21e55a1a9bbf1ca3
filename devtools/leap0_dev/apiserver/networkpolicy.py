"""NetworkPolicy validation of the embedded API server: the ``ipBlock`` rules of kube-apiserver.

kube-apiserver (1.33+, ``StrictIPCIDRValidation``) refuses an ``ipBlock`` whose ``cidr`` or an ``except``
entry is not a CIDR, has an IPv4-mapped IPv6 address (``::ffff:0:0/96``) or bits set beyond its prefix
length, and an ``except`` entry that is not a strict subset of the block's ``cidr``. The emulator refuses the
same, with the same fields and messages (``tests/unit/apiserver/test_networkpolicy_validation.py``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

Cause = tuple[str, str, str]  # (field, reason type, message)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NOT_A_CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def _invalid(path: str, value: Any, message: str) -> Cause:
    return (path, "FieldValueInvalid", f'Invalid value: "{value}": {message}')


def _cidr(path: str, value: Any, causes: list[Cause]) -> Network | None:
    """The network of a CIDR field (None when it is not one), its strict-validation errors added."""
    try:
        network = ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        causes.append(_invalid(path, value, _NOT_A_CIDR))
        return None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        causes.append(_invalid(path, value, "must not have an IPv4-mapped IPv6 address"))
    elif ipaddress.ip_interface(str(value)).ip != network.network_address:
        causes.append(_invalid(path, value, "must not have bits set beyond the prefix length"))
    return network


def _as_parsed(network: Network) -> Network:
    """An IPv4-mapped IPv6 network as Go's net package holds it: the IPv4 network."""
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        prefix = max(0, network.prefixlen - 96)
        return ipaddress.IPv4Network((network.network_address.ipv4_mapped, prefix), strict=False)
    return network


def _strict_subset(inner: Network, outer: Network, inner_prefix: int, outer_prefix: int) -> bool:
    """``outer`` contains ``inner``'s address and has a shorter prefix (the real check compares the prefix
    lengths as written: /96 and more for an IPv4-mapped entry)."""
    parsed = _as_parsed(inner)
    if parsed.version != outer.version:
        return False
    return parsed.network_address in outer and outer_prefix < inner_prefix


def ip_block_causes(path: str, block: Any) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(block, dict) or not block.get("cidr"):
        return [(f"{path}.cidr", "FieldValueRequired", "Required value")]
    cidr = _cidr(f"{path}.cidr", block["cidr"], causes)
    if cidr is None:
        return causes
    for i, text in enumerate(block.get("except") or []):
        entry = f"{path}.except[{i}]"
        excluded = _cidr(entry, text, causes)
        if excluded is not None and not _strict_subset(excluded, cidr, excluded.prefixlen, cidr.prefixlen):
            causes.append(_invalid(entry, text, "must be a strict subset of `cidr`"))
    return causes


def causes(policy: dict[str, Any]) -> list[Cause]:
    """The validation errors of a NetworkPolicy's ``ipBlock`` peers, in the real server's order."""
    found: list[Cause] = []
    spec = policy.get("spec") or {}
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            for j, peer in enumerate((rule or {}).get(peers_key) or []):
                if isinstance(peer, dict) and "ipBlock" in peer:
                    found += ip_block_causes(
                        f"spec.{direction}[{i}].{peers_key}[{j}].ipBlock", peer["ipBlock"]
                    )
    return found
