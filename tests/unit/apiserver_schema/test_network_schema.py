"""spec.network and the template's podSecurity in the CRDs, checked the way kube-apiserver checks them
(the emulator's schema module: OpenAPI validation plus the CEL rules through cel-cpp, whose RE2 is the regex
engine of Kubernetes' own CEL)."""

from __future__ import annotations

import copy
import ipaddress
import json
import random
from typing import Any

import pytest

from leap0_dev.apiserver.schema import ResourceSchema
from leap0_dev.crds import load_crds

CRDS = {c["spec"]["names"]["kind"]: c for c in load_crds()}
SANDBOX = ResourceSchema(CRDS["Sandbox"], "v1alpha1")
TEMPLATE = ResourceSchema(CRDS["SandboxTemplate"], "v1alpha1")
CIDR_MESSAGE = "allowCidrs: must be an IPv4 or IPv6 CIDR such as 203.0.113.0/24 or 2001:db8::/32"


def sandbox(network: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {} if network is None else {"network": network}
    return {
        "apiVersion": "leap0.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": "sbx-1", "namespace": "team-a"},
        "spec": spec,
    }


def template(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "leap0.dev/v1alpha1",
        "kind": "SandboxTemplate",
        "metadata": {"name": "locked", "namespace": "team-a"},
        "spec": spec,
    }


def errors(schema: ResourceSchema, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in schema.prepare(obj, old)[1]]


VALID = [
    {"policy": "Internet"},
    {"policy": "DenyAll"},
    {"policy": "AllowAll"},
    {"policy": "Custom"},
    {"policy": "Custom", "allowCidrs": ["203.0.113.0/24", "198.51.100.7/32", "0.0.0.0/0"]},
    {"policy": "Custom", "allowCidrs": ["2001:db8::/32", "::/0", "::1/128", "fe80::1:2/64"]},
    {"policy": "Custom", "allowCidrs": ["2001:DB8:0:0:0:0:0:1/128", "1:2:3:4:5:6:7::/112"]},
]


@pytest.mark.parametrize("network", VALID)
@pytest.mark.parametrize("schema", [SANDBOX, TEMPLATE], ids=["Sandbox", "SandboxTemplate"])
def test_valid_networks_are_accepted(schema: ResourceSchema, network: dict[str, Any]) -> None:
    obj = sandbox(network) if schema is SANDBOX else template({"network": network})
    assert errors(schema, obj) == []


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        (
            {"policy": "Custom", "allowCidrs": ["not-a-cidr"]},
            [f'spec.network.allowCidrs[0]: Invalid value: "not-a-cidr": {CIDR_MESSAGE}'],
        ),
        (
            {"policy": "Custom", "allowCidrs": ["10.0.0.0/8", "10.0.0.1"]},  # an address without its prefix
            [f'spec.network.allowCidrs[1]: Invalid value: "10.0.0.1": {CIDR_MESSAGE}'],
        ),
        (
            {"policy": "Custom", "allowCidrs": ["10.0.0.0/33", "256.1.1.1/8", "::/129", "1::2::3/64"]},
            [
                f"spec.network.allowCidrs[{i}]: Invalid value: {json.dumps(cidr)}: {CIDR_MESSAGE}"
                for i, cidr in enumerate(["10.0.0.0/33", "256.1.1.1/8", "::/129", "1::2::3/64"])
            ],
        ),
        (
            {"policy": "Custom", "allowCidrs": ["10.0.0.0/8\n"]},  # RE2's $ is the end of the text
            [f'spec.network.allowCidrs[0]: Invalid value: "10.0.0.0/8\\n": {CIDR_MESSAGE}'],
        ),
        (
            {"policy": "Internet", "allowDomains": ["example.com"]},
            [
                "spec.network.allowDomains: Invalid value: allowDomains is not supported: "
                "a Kubernetes NetworkPolicy matches IP addresses, not domain names; "
                "use policy Custom with allowCidrs, or an egress proxy"
            ],
        ),
        (
            {"policy": "DenyAll", "allowCidrs": ["10.0.0.0/8"]},
            ["spec.network.allowCidrs: Invalid value: allowCidrs applies only to policy Custom"],
        ),
        (
            {"policy": "Everything"},
            [
                'spec.network.policy: Unsupported value: "Everything": supported values: "Internet", '
                '"DenyAll", "AllowAll", "Custom"'
            ],
        ),
    ],
)
def test_invalid_networks_are_refused_naming_the_field(network: dict[str, Any], expected: list[str]) -> None:
    assert [e for e in errors(SANDBOX, sandbox(network)) if not e.startswith("<nil>")] == expected
    on_template = [e for e in errors(TEMPLATE, template({"network": network})) if not e.startswith("<nil>")]
    assert on_template == expected


def test_a_network_needs_its_policy() -> None:
    found = errors(SANDBOX, sandbox({"allowCidrs": ["10.0.0.0/8"]}))
    assert found[0] == "spec.network.policy: Required value"


def test_network_is_immutable_on_the_sandbox() -> None:
    old = sandbox({"policy": "DenyAll"})
    for change in (
        {"policy": "AllowAll"},
        {"policy": "Custom", "allowCidrs": ["10.0.0.0/8"]},
        None,
    ):
        new = copy.deepcopy(old)
        if change is None:
            del new["spec"]["network"]
        else:
            new["spec"]["network"] = change
        assert errors(SANDBOX, new, old) == ["spec: Invalid value: spec.network is immutable"]
    # A spec-less Sandbox cannot get a network later either.
    bare = sandbox(None)
    del bare["spec"]
    later = sandbox({"policy": "AllowAll"})
    assert errors(SANDBOX, later, bare) == [
        "spec: Invalid value: spec is immutable after creation, except timeout, paused, idleTimeout and "
        "onTimeout"
    ]


def test_template_network_and_pod_security_may_change() -> None:
    old = template({"network": {"policy": "DenyAll"}, "podSecurity": "baseline"})
    new = template({"network": {"policy": "Internet"}, "podSecurity": "restricted", "runAsUser": 2000})
    assert errors(TEMPLATE, new, old) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"podSecurity": "baseline"}, []),
        ({"podSecurity": "restricted", "runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 2000}, []),
        (
            {"podSecurity": "privileged"},
            ['spec.podSecurity: Unsupported value: "privileged": supported values: "baseline", "restricted"'],
        ),
        (
            {"podSecurity": "restricted", "runAsUser": 0},
            ["spec.runAsUser: Invalid value: 0: spec.runAsUser in body should be greater than or equal to 1"],
        ),
        (
            {"runAsGroup": 0, "fsGroup": 0},
            [
                f"spec.{f}: Invalid value: 0: spec.{f} in body should be greater than or equal to 1"
                for f in ("runAsGroup", "fsGroup")
            ],
        ),
    ],
)
def test_template_pod_security(spec: dict[str, Any], expected: list[str]) -> None:
    assert [e for e in errors(TEMPLATE, template(spec)) if not e.startswith("<nil>")] == expected


def test_a_template_may_not_give_the_sandbox_the_sidecars_uid_or_gid() -> None:
    """An app running as the sidecar's user could signal it (docs/security.md)."""
    spec = {"podSecurity": "restricted", "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}
    found = errors(TEMPLATE, template(spec))
    assert len(found) == 3
    assert found[0].startswith("spec.runAsUser: Invalid value: 65532: 65532 is the telemetry sidecar's UID")
    assert [e.split(":")[0] for e in found] == ["spec.runAsUser", "spec.runAsGroup", "spec.fsGroup"]


def test_locked_fields_are_known_field_names() -> None:
    assert errors(TEMPLATE, template({"lockedFields": ["network", "image", "env"]})) == []
    assert errors(TEMPLATE, template({"lockedFields": []})) == []
    error = errors(TEMPLATE, template({"lockedFields": ["network", "spec.network"]}))[0]
    assert error.startswith(
        'spec.lockedFields[1]: Unsupported value: "spec.network": supported values: "image"'
    )
    (error,) = errors(TEMPLATE, template({"lockedFields": ["network", "network"]}))
    assert error == 'spec.lockedFields[1]: Duplicate value: "network"'


def _random_candidates(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            out.append(f"{ipaddress.IPv4Address(rng.getrandbits(32))}/{rng.randint(0, 34)}")
        elif kind == 1:
            mask = rng.choice([(1 << 128) - 1, 0xFFFF << 112])
            address = ipaddress.IPv6Address(rng.getrandbits(128) & mask)
            text = address.compressed if rng.random() < 0.7 else address.exploded
            out.append(f"{text}/{rng.randint(0, 130)}")
        else:  # mangled: a character dropped, doubled or replaced
            base = f"{ipaddress.IPv4Address(rng.getrandbits(32))}/{rng.randint(0, 32)}"
            if kind == 3:
                base = f"{ipaddress.IPv6Address(rng.getrandbits(128)).compressed}/{rng.randint(0, 128)}"
            i = rng.randrange(len(base))
            dropped, doubled = base[:i] + base[i + 1 :], base[:i] + base[i] + base[i:]
            base = rng.choice([dropped, doubled, base[:i] + ":" + base[i + 1 :]])
            out.append(base)
    return out


def _python_says_cidr(text: str) -> bool:
    if "/" not in text or text.strip() != text:
        return False
    address, _, prefix = text.partition("/")
    if not prefix.isdigit() or (len(prefix) > 1 and prefix.startswith("0")):
        return False
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "." not in address or ":" not in address  # IPv4-in-IPv6 forms are not accepted by the rule


def test_the_cidr_rule_agrees_with_pythons_ipaddress() -> None:
    for text in _random_candidates(12, 600):
        refused = errors(SANDBOX, sandbox({"policy": "Custom", "allowCidrs": [text]}))
        assert (not refused) == (_python_says_cidr(text) and len(text) <= 43), (text, refused)


def test_the_cidr_rule_runs_on_kubernetes_1_30() -> None:
    """CEL's isCIDR()/cidr() arrived in Kubernetes 1.31; the project supports 1.30, so the rule uses
    matches() (RE2), available since CEL validation rules exist (1.25)."""
    text = str(CRDS["Sandbox"]) + str(CRDS["SandboxTemplate"])
    for function in ("isCIDR", "cidr(", "ip("):
        assert function not in text
    assert "self.matches(" in text
