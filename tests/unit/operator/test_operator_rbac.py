"""operator/rbac.yaml grants exactly the API calls the operator lists (apicalls.API_CALLS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import leap0_contract as contract
from leap0_operator.apicalls import API_CALLS, permissions, rbac_rules

RBAC = Path(__file__).resolve().parents[3] / "operator" / "rbac.yaml"


def _docs() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc}


def test_cluster_role_grants_exactly_the_listed_calls() -> None:
    granted = {
        (group, resource, verb)
        for rule in _docs()["ClusterRole"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == permissions()
    assert _docs()["ClusterRole"]["rules"] == rbac_rules()


def test_no_wildcards_and_secrets_only_read_one_by_one() -> None:
    """The operator reads the metadata of the Secrets a sandbox's env names (get, one by one): it cannot list
    or watch Secrets, nor write them."""
    for group, resource, verb in permissions():
        assert "*" not in (group, resource, verb)
        if resource == "secrets":
            assert (group, verb) == ("", "get")


def test_binding_ties_the_role_to_the_service_account() -> None:
    docs = _docs()
    binding = docs["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == docs["ClusterRole"]["metadata"]["name"]
    (subject,) = binding["subjects"]
    account = docs["ServiceAccount"]["metadata"]
    assert (subject["kind"], subject["name"], subject["namespace"]) == (
        "ServiceAccount",
        account["name"],
        account["namespace"],
    )


def test_every_call_says_why_and_covers_what_the_operator_does() -> None:
    assert all(call.why for call in API_CALLS)
    needed = {
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "pods", "watch"),
        (contract.GROUP, "sandboxes/status", "patch"),
        (contract.GROUP, "sandboxes", "delete"),
        (contract.GROUP, "sandboxtemplates", "list"),
        ("kopf.dev", "kopfpeerings", "patch"),
    }
    assert needed <= permissions()
