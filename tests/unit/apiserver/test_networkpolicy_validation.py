"""The emulator refuses the NetworkPolicy ipBlocks kube-apiserver refuses, with its fields and messages."""

from __future__ import annotations

from typing import Any

import pytest

from leap0_dev.apiserver import networkpolicy

MAPPED = "must not have an IPv4-mapped IPv6 address"
SUBSET = "must be a strict subset of `cidr`"
BITS = "must not have bits set beyond the prefix length"
NOT_CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def policy(block: dict[str, Any], direction: str = "egress") -> dict[str, Any]:
    peers = "to" if direction == "egress" else "from"
    return {"spec": {"podSelector": {}, direction: [{peers: [{"podSelector": {}}, {"ipBlock": block}]}]}}


def messages(block: dict[str, Any], direction: str = "egress") -> list[str]:
    return [f"{field}: {message}" for field, _, message in networkpolicy.causes(policy(block, direction))]


PATH = "spec.egress[0].to[1].ipBlock"


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16"]}, []),
        ({"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}, []),
        # What kube-apiserver 1.36 answered the operator's first Internet policy (found by the kubelet tier):
        (
            {"cidr": "::/0", "except": ["::/127", "::ffff:0:0/96"]},
            [
                f'{PATH}.except[1]: Invalid value: "::ffff:0:0/96": {MAPPED}',
                f'{PATH}.except[1]: Invalid value: "::ffff:0:0/96": {SUBSET}',
            ],
        ),
        ({"cidr": "::ffff:10.0.0.0/104"}, [f'{PATH}.cidr: Invalid value: "::ffff:10.0.0.0/104": {MAPPED}']),
        ({"cidr": "10.0.0.1/8"}, [f'{PATH}.cidr: Invalid value: "10.0.0.1/8": {BITS}']),
        ({"cidr": "10.0.0.0/33"}, [f'{PATH}.cidr: Invalid value: "10.0.0.0/33": {NOT_CIDR}']),
        ({"cidr": ""}, [f"{PATH}.cidr: Required value"]),
        (
            {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]},
            [f'{PATH}.except[0]: Invalid value: "10.0.0.0/8": {SUBSET}'],
        ),
        (
            {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]},
            [f'{PATH}.except[0]: Invalid value: "11.0.0.0/16": {SUBSET}'],
        ),
        (
            {"cidr": "10.0.0.0/8", "except": ["fc00::/7"]},
            [f'{PATH}.except[0]: Invalid value: "fc00::/7": {SUBSET}'],
        ),
    ],
)
def test_ip_blocks_as_kube_apiserver_judges_them(block: dict[str, Any], expected: list[str]) -> None:
    assert messages(block) == expected


def test_ingress_blocks_are_checked_too() -> None:
    assert messages({"cidr": "1.2.3.4/8"}, "ingress") == [
        f'spec.ingress[0].from[1].ipBlock.cidr: Invalid value: "1.2.3.4/8": {BITS}'
    ]
