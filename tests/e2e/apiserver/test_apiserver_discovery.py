"""Discovery, /version, CRDs served from crds/ and CRDs created through the API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from support import http, wait_for

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


def _get(apiserver: ServerThread, path: str) -> Any:
    status, _, body = http(apiserver.url, "GET", path)
    assert status == 200, body
    return json.loads(body)


def test_version_reports_1_30_or_later(apiserver: ServerThread) -> None:
    info = client.VersionApi(apiserver.api_client()).get_code()
    assert (int(info.major), int(info.minor)) >= (1, 30)


def test_core_discovery_lists_the_resources_the_product_touches(apiserver: ServerThread) -> None:
    assert client.CoreApi(apiserver.api_client()).get_api_versions().versions == ["v1"]
    v1 = client.CoreV1Api(apiserver.api_client()).get_api_resources()
    assert v1.group_version == "v1"
    names = {r.name for r in v1.resources}
    expected = {
        "namespaces",
        "pods",
        "pods/status",
        "pods/log",
        "pods/exec",
        "secrets",
        "events",
        "configmaps",
    }
    assert expected | {"serviceaccounts"} <= names
    pods = next(r for r in v1.resources if r.name == "pods")
    assert pods.namespaced
    assert pods.kind == "Pod"
    assert "watch" in pods.verbs


def test_group_discovery_lists_the_crds_and_builtin_groups(apiserver: ServerThread) -> None:
    groups = {g.name: g for g in client.ApisApi(apiserver.api_client()).get_api_versions().groups}
    for name in (contract.GROUP, "coordination.k8s.io", "events.k8s.io", "apiextensions.k8s.io"):
        assert name in groups
    assert groups[contract.GROUP].preferred_version.group_version == contract.API_VERSION
    doc = _get(apiserver, f"/apis/{contract.API_VERSION}")
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["sandboxes"]["kind"] == "Sandbox"
    assert by_name["sandboxes"]["shortNames"] == ["sbx"]
    assert "sandboxes/status" in by_name
    assert "sandboxtemplates" in by_name
    assert _get(apiserver, "/apis/coordination.k8s.io/v1")["resources"][0]["name"] == "leases"


def test_unknown_paths_are_404_status(apiserver: ServerThread) -> None:
    status, _, body = http(apiserver.url, "GET", "/apis/nope.example/v1")
    assert status == 404
    assert json.loads(body)["kind"] == "Status"


def test_crds_from_the_crd_folder_are_listed_established(apiserver: ServerThread) -> None:
    ext = client.ApiextensionsV1Api(apiserver.api_client())
    crd = ext.read_custom_resource_definition(f"{contract.SANDBOX_PLURAL}.{contract.GROUP}")
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"


def test_creating_a_crd_serves_its_resource_and_deleting_it_stops(apiserver: ServerThread) -> None:
    ext = client.ApiextensionsV1Api(apiserver.api_client())
    custom = client.CustomObjectsApi(apiserver.api_client())
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    try:
        assert _get(apiserver, "/apis/example.com/v1")["resources"][0]["name"] == "widgets"
        body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "size": 3}
        custom.create_cluster_custom_object("example.com", "v1", "widgets", body)
        assert custom.get_cluster_custom_object("example.com", "v1", "widgets", "w")["size"] == 3
    finally:
        ext.delete_custom_resource_definition("widgets.example.com")
    wait_for(lambda: http(apiserver.url, "GET", "/apis/example.com/v1")[0] == 404, 30, "the group to go")


def test_invalid_crd_is_422(apiserver: ServerThread) -> None:
    ext = client.ApiextensionsV1Api(apiserver.api_client())
    bad = {
        "metadata": {"name": "wrong.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"plural": "things", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": True, "storage": True}]},
    }  # fmt: skip
    with pytest.raises(client.ApiException) as err:
        ext.create_custom_resource_definition(bad)
    assert err.value.status == 422
