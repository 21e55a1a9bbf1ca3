"""The CRD schema (pruning, types, ranges, CEL) applied on create and update of custom resources."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from support import kubectl

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

G, V, P = contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL


def _sandbox(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{G}/{V}", "kind": "Sandbox", "metadata": {"name": name}, "spec": spec}


def _causes(err: pytest.ExceptionInfo[client.ApiException]) -> list[str]:
    body = json.loads(err.value.body)
    assert body["reason"] == "Invalid"
    return [c["field"] for c in body["details"]["causes"]]


def test_out_of_range_field_is_422_with_its_path(custom: client.CustomObjectsApi, namespace: str) -> None:
    with pytest.raises(client.ApiException) as err:
        custom.create_namespaced_custom_object(G, V, namespace, P, _sandbox("s", vcpu=99))
    assert err.value.status == 422
    assert "spec.vcpu" in _causes(err)


def test_unknown_fields_are_pruned(custom: client.CustomObjectsApi, namespace: str) -> None:
    obj = custom.create_namespaced_custom_object(G, V, namespace, P, _sandbox("s", timeout=60, bogus=True))
    assert obj["spec"] == {"timeout": 60}
    assert custom.get_namespaced_custom_object(G, V, namespace, P, "s")["spec"] == {"timeout": 60}


def test_spec_is_immutable_except_timeout(custom: client.CustomObjectsApi, namespace: str) -> None:
    custom.create_namespaced_custom_object(
        G, V, namespace, P, _sandbox("s", image="python:3.12-slim", timeout=60)
    )
    with pytest.raises(client.ApiException) as err:
        custom.patch_namespaced_custom_object(
            G, V, namespace, P, "s", {"spec": {"image": "python:3.13-slim"}}
        )
    assert err.value.status == 422
    obj = custom.patch_namespaced_custom_object(G, V, namespace, P, "s", {"spec": {"timeout": 600}})
    assert obj["spec"]["timeout"] == 600


def test_status_updates_are_checked_too(custom: client.CustomObjectsApi, namespace: str) -> None:
    custom.create_namespaced_custom_object(G, V, namespace, P, _sandbox("s"))
    with pytest.raises(client.ApiException) as err:
        custom.patch_namespaced_custom_object_status(G, V, namespace, P, "s", {"status": {"vcpu": "lots"}})
    assert err.value.status == 422
    assert "status.vcpu" in _causes(err)


def test_kubectl_apply_of_a_bad_sandbox_fails_with_the_field(apiserver: ServerThread, namespace: str) -> None:
    manifest = f"apiVersion: {G}/{V}\nkind: Sandbox\nmetadata: {{name: bad}}\nspec: {{memory: 513}}\n"
    result = kubectl(
        apiserver.kubeconfig,
        "-n",
        namespace,
        "apply",
        "--validate=false",
        "-f",
        "-",
        input=manifest,
        check=False,
    )
    assert result.returncode != 0
    assert "spec.memory" in result.stderr
    assert kubectl(apiserver.kubeconfig, "-n", namespace, "get", "sbx", "-o", "name").stdout == ""
