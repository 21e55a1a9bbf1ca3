"""CRUD basics of the embedded API server, through the real kubernetes client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.e2e


def _pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
    }


def test_create_sets_uid_resource_version_generation_and_timestamp(
    core: client.CoreV1Api, namespace: str
) -> None:
    first = core.create_namespaced_pod(namespace, _pod("a"))
    second = core.create_namespaced_pod(namespace, _pod("b"))
    assert first.metadata.uid
    assert first.metadata.uid != second.metadata.uid
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.metadata.generation == 1
    assert first.metadata.creation_timestamp is not None
    assert first.metadata.namespace == namespace  # taken from the URL


def test_create_answers_201(core: client.CoreV1Api, namespace: str) -> None:
    _, status, _ = core.create_namespaced_config_map_with_http_info(namespace, {"metadata": {"name": "cm"}})
    assert status == 201


def test_name_clash_is_409_already_exists(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, _pod("a"))
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod(namespace, _pod("a"))
    assert err.value.status == 409
    assert json.loads(err.value.body)["reason"] == "AlreadyExists"


def test_missing_object_is_404_with_a_status_body(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod("nope", namespace)
    assert err.value.status == 404
    body = json.loads(err.value.body)
    assert body["kind"] == "Status"
    assert body["reason"] == "NotFound"
    assert body["details"] == {"name": "nope", "kind": "pods"}


def test_generate_name(core: client.CoreV1Api, namespace: str) -> None:
    pod = _pod("")
    pod["metadata"] = {"generateName": "worker-"}
    created = core.create_namespaced_pod(namespace, pod)
    assert created.metadata.name.startswith("worker-")
    assert len(created.metadata.name) == len("worker-") + 5


def test_namespace_fixture_namespaces_exist_and_default_is_there(
    core: client.CoreV1Api, namespace: str
) -> None:
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", namespace} <= names


def test_create_in_a_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod("no-such-namespace", _pod("a"))
    assert err.value.status == 404


def test_a_body_of_another_kind_is_400(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map(
            namespace, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}
        )
    assert err.value.status == 400
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map(namespace, {"apiVersion": "apps/v1", "metadata": {"name": "x"}})
    assert err.value.status == 400


def test_the_default_namespace_may_not_be_deleted(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.delete_namespace("default")
    assert err.value.status == 403
    assert core.read_namespace("default").status.phase == "Active"
