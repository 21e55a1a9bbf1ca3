"""OpenAPI v3 documents: what kubectl looks up in them before `kubectl apply`."""

from __future__ import annotations

from typing import Any

from leap0_dev.apiserver.openapi import openapi_v3_document, openapi_v3_root
from leap0_dev.crds import load_crds

CRDS = load_crds()


def patch_ops(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    ops = [p["patch"] for p in doc["paths"].values() if "patch" in p]
    return [op for op in ops if op["x-kubernetes-group-version-kind"]["kind"] == kind]


def resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


def test_root_lists_every_group_version_with_a_hash() -> None:
    root = openapi_v3_root(CRDS)
    assert {"api/v1", "apis/leap0.dev/v1alpha1", "apis/kopf.dev/v1", "apis/coordination.k8s.io/v1"} <= set(
        root["paths"]
    )
    url = root["paths"]["apis/leap0.dev/v1alpha1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/leap0.dev/v1alpha1?hash=")
    assert openapi_v3_root(CRDS) == root, "stable hashes, so kubectl's cache stays valid"


def test_unknown_group_version_is_none() -> None:
    assert openapi_v3_document(CRDS, "nope.example", "v1") is None
    assert openapi_v3_document(CRDS, "leap0.dev", "v9") is None


def test_sandbox_patch_operation_declares_field_validation() -> None:
    doc = openapi_v3_document(CRDS, "leap0.dev", "v1alpha1")
    assert doc is not None
    ops = patch_ops(doc, "Sandbox")
    assert ops, "kubectl finds the kind's PATCH operation by its x-kubernetes-group-version-kind"
    for op in ops:
        assert op["x-kubernetes-group-version-kind"] == {
            "group": "leap0.dev",
            "kind": "Sandbox",
            "version": "v1alpha1",
        }
        assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in op["parameters"])
    assert patch_ops(doc, "SandboxTemplate")


def test_sandbox_schema_is_the_crd_schema_with_object_meta() -> None:
    doc = openapi_v3_document(CRDS, "leap0.dev", "v1alpha1")
    assert doc is not None
    schema = doc["components"]["schemas"]["dev.leap0.v1alpha1.Sandbox"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "leap0.dev", "kind": "Sandbox", "version": "v1alpha1"}
    ]
    assert schema["properties"]["spec"]["properties"]["vcpu"] == {
        "type": "integer",
        "description": "Logical CPUs of the sandbox container (its CPU limit and request).",
        "minimum": 1,
        "maximum": 8,
    }
    meta_ref = schema["properties"]["metadata"]["allOf"][0]["$ref"]
    assert "name" in resolve(doc, meta_ref)["properties"]
    listed = doc["components"]["schemas"]["dev.leap0.v1alpha1.SandboxList"]
    assert listed["properties"]["items"]["items"]["$ref"] == "#/components/schemas/dev.leap0.v1alpha1.Sandbox"


def test_every_reference_resolves() -> None:
    for group, version in [("", "v1"), ("leap0.dev", "v1alpha1"), ("coordination.k8s.io", "v1")]:
        doc = openapi_v3_document(CRDS, group, version)
        assert doc is not None
        refs: list[str] = []

        def walk(node: Any, found: list[str] = refs) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("$ref"), str):
                    found.append(node["$ref"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(doc)
        missing = {r for r in refs if r.rsplit("/", 1)[-1] not in doc["components"]["schemas"]}
        assert not missing, missing


def test_core_secret_and_namespace_for_kubectl() -> None:
    doc = openapi_v3_document(CRDS, "", "v1")
    assert doc is not None
    for kind in ("Secret", "Namespace", "Pod", "ConfigMap"):
        ops = patch_ops(doc, kind)
        assert ops, kind
        assert any(p["name"] == "fieldValidation" for p in ops[0]["parameters"])
    secret = doc["components"]["schemas"]["io.k8s.api.core.v1.Secret"]
    assert secret["properties"]["data"]["additionalProperties"] == {"format": "byte", "type": "string"}
    assert secret["properties"]["kind"]["type"] == "string"
    assert "enum" not in secret["properties"]["kind"]
    containers = doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    port = doc["components"]["schemas"]["io.k8s.api.core.v1.HTTPGetAction"]["properties"]["port"]
    assert resolve(doc, port["allOf"][0]["$ref"]) == {
        "type": "string",
        "format": "int-or-string",
        "x-kubernetes-int-or-string": True,
    }


def test_documents_are_copies() -> None:
    doc = openapi_v3_document(CRDS, "leap0.dev", "v1alpha1")
    assert doc is not None
    doc["paths"].clear()
    again = openapi_v3_document(CRDS, "leap0.dev", "v1alpha1")
    assert again is not None
    assert again["paths"]
