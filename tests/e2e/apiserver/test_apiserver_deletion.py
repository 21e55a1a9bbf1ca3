"""Finalizers, deletionTimestamp, ownerReference garbage collection and namespace deletion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from support import wait_for

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

G, V, P = contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL


def _gone(read: Callable[[], Any]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            read()
        except client.ApiException as err:
            if err.status == 404:
                return True
            raise
        return False

    return check


def _owner(obj: dict[str, Any], block: bool = False) -> dict[str, Any]:
    ref = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
    }
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def _sandbox(custom: client.CustomObjectsApi, namespace: str, name: str, **meta: Any) -> dict[str, Any]:
    body = {"apiVersion": f"{G}/{V}", "kind": "Sandbox", "metadata": {"name": name, **meta}, "spec": {}}
    result: dict[str, Any] = custom.create_namespaced_custom_object(G, V, namespace, P, body)
    return result


def _dependent(core: client.CoreV1Api, namespace: str, name: str, *owners: dict[str, Any]) -> None:
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": name, "ownerReferences": list(owners)}}
    )


def test_delete_with_finalizers_sets_deletion_timestamp_until_the_last_one_goes(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    _sandbox(custom, namespace, "s", finalizers=["a.example/x", "b.example/y"])
    custom.delete_namespaced_custom_object(G, V, namespace, P, "s")
    obj = custom.get_namespaced_custom_object(G, V, namespace, P, "s")
    assert obj["metadata"]["deletionTimestamp"]
    assert obj["metadata"]["generation"] == 2
    custom.patch_namespaced_custom_object(
        G, V, namespace, P, "s", {"metadata": {"finalizers": ["b.example/y"]}}
    )
    assert custom.get_namespaced_custom_object(G, V, namespace, P, "s")["metadata"]["finalizers"] == [
        "b.example/y"
    ]
    custom.patch_namespaced_custom_object(G, V, namespace, P, "s", {"metadata": {"finalizers": None}})
    assert _gone(lambda: custom.get_namespaced_custom_object(G, V, namespace, P, "s"))()


def test_no_new_finalizers_on_an_object_being_deleted(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    _sandbox(custom, namespace, "s", finalizers=["a.example/x"])
    custom.delete_namespaced_custom_object(G, V, namespace, P, "s")
    with pytest.raises(client.ApiException) as err:
        custom.patch_namespaced_custom_object(
            G, V, namespace, P, "s", {"metadata": {"finalizers": ["a.example/x", "new.example/z"]}}
        )
    assert err.value.status == 422


def test_delete_answers_200_when_gone_and_202_when_waiting(apiserver: ServerThread, namespace: str) -> None:
    core = client.CoreV1Api(apiserver.api_client())
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "now"}})
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "later", "finalizers": ["x.example/y"]}}
    )
    _, status, _ = core.delete_namespaced_config_map_with_http_info("now", namespace)
    assert status == 200
    _, status, _ = core.delete_namespaced_config_map_with_http_info("later", namespace)
    assert status == 202


def test_background_deletion_collects_dependents(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    owner = _sandbox(custom, namespace, "owner")
    other = _sandbox(custom, namespace, "other")
    _dependent(core, namespace, "dep", _owner(owner))
    _dependent(core, namespace, "shared", _owner(owner), _owner(other))
    custom.delete_namespaced_custom_object(G, V, namespace, P, "owner")
    wait_for(_gone(lambda: core.read_namespaced_config_map("dep", namespace)))
    # A dependent with another live owner stays.
    assert core.read_namespaced_config_map("shared", namespace).metadata.name == "shared"


def test_foreground_deletion_waits_for_blocking_dependents(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    owner = _sandbox(custom, namespace, "owner")
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "dep",
                "ownerReferences": [_owner(owner, block=True)],
                "finalizers": ["x.example/y"],
            }
        },
    )
    custom.delete_namespaced_custom_object(G, V, namespace, P, "owner", propagation_policy="Foreground")
    obj = custom.get_namespaced_custom_object(G, V, namespace, P, "owner")
    assert obj["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in obj["metadata"]["finalizers"]
    wait_for(
        lambda: core.read_namespaced_config_map("dep", namespace).metadata.deletion_timestamp is not None
    )
    time.sleep(0.1)
    assert custom.get_namespaced_custom_object(G, V, namespace, P, "owner")  # still blocked by "dep"
    core.patch_namespaced_config_map("dep", namespace, {"metadata": {"finalizers": None}})
    wait_for(_gone(lambda: custom.get_namespaced_custom_object(G, V, namespace, P, "owner")))


def test_orphan_deletion_keeps_dependents_without_the_owner_reference(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    owner = _sandbox(custom, namespace, "owner")
    _dependent(core, namespace, "dep", _owner(owner))
    custom.delete_namespaced_custom_object(G, V, namespace, P, "owner", propagation_policy="Orphan")
    wait_for(_gone(lambda: custom.get_namespaced_custom_object(G, V, namespace, P, "owner")))
    dep = core.read_namespaced_config_map("dep", namespace)
    assert not dep.metadata.owner_references


def test_dependent_of_a_missing_owner_is_collected(core: client.CoreV1Api, namespace: str) -> None:
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "ghost",
        "uid": "00000000-0000-0000-0000-000000000000",
    }
    _dependent(core, namespace, "dep", ghost)
    wait_for(_gone(lambda: core.read_namespaced_config_map("dep", namespace)))


def test_delete_preconditions(core: client.CoreV1Api, namespace: str) -> None:
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
    with pytest.raises(client.ApiException) as err:
        core.delete_namespaced_config_map("cm", namespace, body=stale)
    assert err.value.status == 409
    fresh = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=cm.metadata.uid))
    core.delete_namespaced_config_map("cm", namespace, body=fresh)


def test_deleting_a_namespace_deletes_its_content_then_itself(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "cm", "finalizers": ["x.example/y"]}})
    core.delete_namespace("doomed")
    ns = core.read_namespace("doomed")
    assert ns.status.phase == "Terminating"
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "new"}})
    assert err.value.status == 403
    wait_for(lambda: core.read_namespaced_config_map("cm", "doomed").metadata.deletion_timestamp is not None)
    core.patch_namespaced_config_map("cm", "doomed", {"metadata": {"finalizers": None}})
    wait_for(_gone(lambda: core.read_namespace("doomed")))


def test_delete_collection_with_a_label_selector(core: client.CoreV1Api, namespace: str) -> None:
    for name, team in (("a", "x"), ("b", "x"), ("c", "y")):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": {"team": team}}})
    core.delete_collection_namespaced_config_map(namespace, label_selector="team=x")
    assert [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items] == ["c"]
