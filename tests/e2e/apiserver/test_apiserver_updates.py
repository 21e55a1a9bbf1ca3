"""Updates and patches as the real API server documents them, through the kubernetes client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from support import http

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

G, V, P = contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL


def _pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {"name": "main", "image": "busybox:1.36", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "busybox:1.36"},
            ]
        },
    }


def _sandbox(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": contract.SANDBOX_KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def _reason(err: pytest.ExceptionInfo[client.ApiException]) -> str:
    return str(json.loads(err.value.body)["reason"])


def test_put_with_a_stale_resource_version_is_409_conflict(core: client.CoreV1Api, namespace: str) -> None:
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    stale = cm.metadata.resource_version
    cm.data = {"a": "2"}
    updated = core.replace_namespaced_config_map("cm", namespace, cm)
    assert int(updated.metadata.resource_version) > int(stale)
    cm.data = {"a": "3"}
    cm.metadata.resource_version = stale
    with pytest.raises(client.ApiException) as err:
        core.replace_namespaced_config_map("cm", namespace, cm)
    assert err.value.status == 409
    assert _reason(err) == "Conflict"
    assert core.read_namespaced_config_map("cm", namespace).data == {"a": "2"}


def test_merge_patch_carrying_a_stale_resource_version_is_409(core: client.CoreV1Api, namespace: str) -> None:
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("cm", namespace, {"data": {"a": "2"}})
    with pytest.raises(client.ApiException) as err:
        core.patch_namespaced_config_map(
            "cm",
            namespace,
            {"metadata": {"resourceVersion": cm.metadata.resource_version}, "data": {"a": "3"}},
        )
    assert err.value.status == 409


def test_json_patch_with_a_failing_test_op_is_422(core: client.CoreV1Api, namespace: str) -> None:
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    rv = cm.metadata.resource_version
    ok = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace", "path": "/data/a", "value": "2"},
    ]
    assert core.patch_namespaced_config_map("cm", namespace, ok).data == {"a": "2"}
    with pytest.raises(client.ApiException) as err:
        core.patch_namespaced_config_map("cm", namespace, ok)  # rv moved on: the test op fails
    assert err.value.status == 422


def test_merge_patch_on_a_custom_resource(custom: client.CustomObjectsApi, namespace: str) -> None:
    custom.create_namespaced_custom_object(
        G, V, namespace, P, _sandbox("s", image="python:3.12-slim", timeout=60)
    )
    patched = custom.patch_namespaced_custom_object(G, V, namespace, P, "s", {"spec": {"timeout": 120}})
    assert patched["spec"] == {"image": "python:3.12-slim", "timeout": 120}


def test_strategic_merge_patch_merges_lists_by_name(apiserver: ServerThread, namespace: str) -> None:
    apps = client.AppsV1Api(apiserver.api_client())
    template = {"metadata": {"labels": {"app": "x"}}, "spec": _pod("p")["spec"]}
    deployment = {
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template},
    }
    apps.create_namespaced_deployment(namespace, deployment)
    main = {"name": "main", "env": [{"name": "B", "value": "2"}], "image": "busybox:2"}
    patch = {"spec": {"template": {"spec": {"containers": [main]}}}}
    got = apps.patch_namespaced_deployment(
        "d", namespace, patch
    )  # the client sends strategic merge for dicts
    by_name = {c.name: c for c in got.spec.template.spec.containers}
    assert set(by_name) == {"main", "side"}
    assert by_name["main"].image == "busybox:2"
    assert [(e.name, e.value) for e in by_name["main"].env] == [("A", "1"), ("B", "2")]
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}}
    got = apps.patch_namespaced_deployment("d", namespace, patch)
    assert [c.name for c in got.spec.template.spec.containers] == ["main"]


def test_pod_image_may_change_by_strategic_merge(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, _pod("p"))
    pod = core.patch_namespaced_pod(
        "p", namespace, {"spec": {"containers": [{"name": "side", "image": "busybox:2"}]}}
    )
    assert [(c.name, c.image) for c in pod.spec.containers] == [
        ("main", "busybox:1.36"),
        ("side", "busybox:2"),
    ]


def test_strategic_merge_patch_delete_directive_and_conditions_by_type(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, _pod("p"))
    conditions = [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]
    core.patch_namespaced_pod_status("p", namespace, {"status": {"conditions": conditions}})
    pod = core.patch_namespaced_pod_status(
        "p", namespace, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    assert {c.type: c.status for c in pod.status.conditions} == {"Ready": "True", "PodScheduled": "True"}
    pod = core.patch_namespaced_pod_status(
        "p", namespace, {"status": {"conditions": [{"type": "PodScheduled", "$patch": "delete"}]}}
    )
    assert [c.type for c in pod.status.conditions] == ["Ready"]


def test_strategic_merge_patch_is_refused_for_custom_resources(
    apiserver: ServerThread, namespace: str
) -> None:
    custom = client.CustomObjectsApi(apiserver.api_client())
    custom.create_namespaced_custom_object(G, V, namespace, P, _sandbox("s"))
    status, _, body = http(
        apiserver.url,
        "PATCH",
        f"/apis/{G}/{V}/namespaces/{namespace}/{P}/s",
        json.dumps({"spec": {"timeout": 5}}),
        {"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert status == 415
    assert json.loads(body)["kind"] == "Status"


def test_pod_spec_is_immutable_except_images(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, _pod("p"))
    with pytest.raises(client.ApiException) as err:
        core.patch_namespaced_pod("p", namespace, {"spec": {"restartPolicy": "Never"}})
    assert err.value.status == 422


def test_status_subresource_is_separate_from_the_main_resource(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    custom.create_namespaced_custom_object(
        G, V, namespace, P, {**_sandbox("s", timeout=60), "status": {"phase": "X"}}
    )
    obj = custom.get_namespaced_custom_object(G, V, namespace, P, "s")
    assert "status" not in obj  # status is dropped on create
    # On /status only status changes are kept.
    obj = custom.patch_namespaced_custom_object_status(
        G, V, namespace, P, "s", {"spec": {"timeout": 99}, "status": {"phase": "Running"}}
    )
    assert obj["status"] == {"phase": "Running"}
    assert obj["spec"] == {"timeout": 60}
    # On the main resource status changes are ignored.
    obj = custom.patch_namespaced_custom_object(
        G, V, namespace, P, "s", {"spec": {"timeout": 120}, "status": {"phase": "Hacked"}}
    )
    assert obj["status"] == {"phase": "Running"}
    assert obj["spec"] == {"timeout": 120}


def test_generation_moves_on_spec_changes_only(custom: client.CustomObjectsApi, namespace: str) -> None:
    obj = custom.create_namespaced_custom_object(G, V, namespace, P, _sandbox("s", timeout=60))
    assert obj["metadata"]["generation"] == 1
    obj = custom.patch_namespaced_custom_object(G, V, namespace, P, "s", {"metadata": {"labels": {"a": "b"}}})
    assert obj["metadata"]["generation"] == 1
    obj = custom.patch_namespaced_custom_object_status(
        G, V, namespace, P, "s", {"status": {"phase": "Running"}}
    )
    assert obj["metadata"]["generation"] == 1
    obj = custom.patch_namespaced_custom_object(G, V, namespace, P, "s", {"spec": {"timeout": 61}})
    assert obj["metadata"]["generation"] == 2


def test_generation_of_a_kind_without_status_moves_on_any_non_metadata_change(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    cm = core.patch_namespaced_config_map("cm", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert cm.metadata.generation == 1
    cm = core.patch_namespaced_config_map("cm", namespace, {"data": {"a": "2"}})
    assert cm.metadata.generation == 2


def test_a_no_op_patch_keeps_the_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    again = core.patch_namespaced_config_map("cm", namespace, {"data": {"a": "1"}})
    assert again.metadata.resource_version == cm.metadata.resource_version


def test_server_side_apply_creates_then_updates(apiserver: ServerThread, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/applied?fieldManager=test"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}
    headers = {"Content-Type": "application/apply-patch+yaml"}
    status, _, raw = http(apiserver.url, "PATCH", path, json.dumps(body), headers)
    assert status == 201
    assert json.loads(raw)["metadata"]["managedFields"][0]["manager"] == "test"
    status, _, raw = http(
        apiserver.url, "PATCH", path, json.dumps({**body, "data": {"a": "1", "b": "2"}}), headers
    )
    assert status == 200
    assert json.loads(raw)["data"] == {"a": "1", "b": "2"}


def test_secret_string_data_is_stored_base64_encoded(core: client.CoreV1Api, namespace: str) -> None:
    secret = core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert secret.data == {"k": "dg=="}
    assert secret.type == "Opaque"
    assert secret.string_data is None


def test_dry_run_stores_nothing(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}}, dry_run="All")
    assert created.metadata.name == "cm"
    assert core.list_namespaced_config_map(namespace).items == []


def test_pod_status_is_a_separate_subresource(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, _pod("p"))
    pod = core.patch_namespaced_pod(
        "p", namespace, {"status": {"phase": "Running"}, "metadata": {"labels": {"a": "b"}}}
    )
    assert pod.status.phase == "Pending"  # status changes through the main resource are ignored
    assert pod.metadata.labels == {"a": "b"}
    pod = core.patch_namespaced_pod_status(
        "p", namespace, {"status": {"phase": "Running"}, "metadata": {"labels": {"a": "c"}}}
    )
    assert pod.status.phase == "Running"
    assert pod.metadata.labels == {"a": "b"}  # metadata changes through /status are ignored
