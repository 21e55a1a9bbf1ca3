"""List and watch: selectors, resourceVersions, 410 Gone, bookmarks, timeouts, content type."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch
from support import http, wait_for

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


def _cm(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": name}}


def _names(items: list[Any]) -> list[str]:
    return sorted(i.metadata.name for i in items)


def _events(api: client.CoreV1Api, namespace: str, expect: int = 0, **kwargs: Any) -> list[tuple[str, str]]:
    """One watch's events: the first ``expect`` of them (within a generous 60 s), or (expect=0) all until a
    1 s timeout ends it."""
    w = watch.Watch()
    out = []
    timeout = 60 if expect else 1
    for ev in w.stream(api.list_namespaced_config_map, namespace, timeout_seconds=timeout, **kwargs):
        out.append((ev["type"], ev["object"].metadata.name))
        if len(out) == expect:
            w.stop()
    return out


def _raw_watch(apiserver: ServerThread, path: str) -> tuple[int, dict[str, str], list[dict[str, Any]]]:
    status, headers, body = http(apiserver.url, "GET", path)
    return status, headers, [json.loads(line) for line in body.decode().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web", ["a", "b"]),
        ("app!=web", ["c", "d"]),
        ("app in (web,db)", ["a", "b", "c"]),
        ("app notin (web)", ["c", "d"]),
        ("tier", ["b", "c"]),
        ("!tier", ["a", "d"]),
        ("app=web,tier=front", ["b"]),
    ],
)
def test_list_with_label_selectors(
    core: client.CoreV1Api, namespace: str, selector: str, expected: list[str]
) -> None:
    core.create_namespaced_config_map(namespace, _cm("a", app="web"))
    core.create_namespaced_config_map(namespace, _cm("b", app="web", tier="front"))
    core.create_namespaced_config_map(namespace, _cm("c", app="db", tier="back"))
    core.create_namespaced_config_map(namespace, _cm("d"))
    assert _names(core.list_namespaced_config_map(namespace, label_selector=selector).items) == expected


def test_list_with_field_selectors(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, _cm("a"))
    core.create_namespaced_config_map(namespace, _cm("b"))
    assert _names(core.list_namespaced_config_map(namespace, field_selector="metadata.name=b").items) == ["b"]
    assert _names(core.list_namespaced_config_map(namespace, field_selector="metadata.name!=b").items) == [
        "a"
    ]
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={namespace}")
    assert _names(everywhere.items) == ["a", "b"]


def test_pods_select_by_status_phase(core: client.CoreV1Api, namespace: str) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    core.create_namespaced_pod(namespace, pod)
    assert _names(core.list_namespaced_pod(namespace, field_selector="status.phase=Pending").items) == ["p"]
    core.patch_namespaced_pod_status("p", namespace, {"status": {"phase": "Running"}})
    assert _names(core.list_namespaced_pod(namespace, field_selector="status.phase=Pending").items) == []


def test_unsupported_field_selector_is_400(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_config_map(namespace, field_selector="data.k=a")
    assert err.value.status == 400


def test_list_carries_the_cluster_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, _cm("a"))
    listed = core.list_namespaced_config_map(namespace)
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)


def test_list_pages_with_limit_and_continue(core: client.CoreV1Api, namespace: str) -> None:
    for name in "abcde":
        core.create_namespaced_config_map(namespace, _cm(name))
    first = core.list_namespaced_config_map(namespace, limit=2)
    assert _names(first.items) == ["a", "b"]
    assert first.metadata.remaining_item_count == 3
    rest = core.list_namespaced_config_map(namespace, limit=10, _continue=first.metadata._continue)
    assert _names(rest.items) == ["c", "d", "e"]
    assert not rest.metadata._continue


def test_watch_without_resource_version_starts_with_synthetic_added(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, _cm("a"))
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "changed"}})
    core.create_namespaced_config_map(namespace, _cm("b"))
    assert _events(core, namespace, expect=2) == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_from_a_resource_version_replays_only_newer_events(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, _cm("a"))
    since = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, _cm("b"))
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "changed"}})
    core.delete_namespaced_config_map("b", namespace)
    events = _events(core, namespace, expect=3, resource_version=since)  # older events would come first
    assert events == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_delivers_live_events(core: client.CoreV1Api, namespace: str) -> None:
    def later() -> None:
        time.sleep(0.3)
        core.create_namespaced_config_map(namespace, _cm("live"))

    thread = threading.Thread(target=later)
    thread.start()
    events = _events(core, namespace, expect=1)
    thread.join()
    assert events == [("ADDED", "live")]


def test_watch_with_a_selector_sees_objects_enter_and_leave_it(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, _cm("a"))
    since = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.patch_namespaced_config_map("a", namespace, {"metadata": {"labels": {"pick": "yes"}}})
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "2"}})
    core.patch_namespaced_config_map("a", namespace, {"metadata": {"labels": {"pick": None}}})
    core.create_namespaced_config_map(namespace, _cm("other"))
    events = _events(core, namespace, resource_version=since, label_selector="pick=yes")
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_watch_from_a_compacted_resource_version_is_410_gone() -> None:
    with ServerThread(history_size=3) as server:
        core = client.CoreV1Api(server.api_client())
        since = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(5):
            core.create_namespaced_config_map("default", _cm(f"c{i}"))
        status, _, events = _raw_watch(
            server, f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={since}"
        )
        assert status == 200
        assert events[0]["type"] == "ERROR"
        assert events[0]["object"]["code"] == 410
        assert "too old resource version" in events[0]["object"]["message"]
        with pytest.raises(client.ApiException) as err:
            _events(core, "default", resource_version=since)
        assert err.value.status == 410
        # Within the retained history a watch still resumes.
        recent = core.list_namespaced_config_map("default").metadata.resource_version
        core.create_namespaced_config_map("default", _cm("late"))
        assert _events(core, "default", expect=1, resource_version=recent) == [("ADDED", "late")]


def watching(apiserver: ServerThread, namespace: str) -> bool:
    """Whether a watch of the namespace's ConfigMaps is open on the server."""
    assert apiserver.server is not None
    watchers = apiserver.server.store.state(("", "configmaps")).watchers
    return any(w.namespace == namespace for w in list(watchers))


def test_watch_stream_is_json_and_ends_after_timeout_seconds(
    apiserver: ServerThread, core: client.CoreV1Api, namespace: str
) -> None:
    """The server ends the stream itself when timeoutSeconds run out (the client would wait 30 s for a byte);
    until then, what happens arrives on it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        watch = pool.submit(
            _raw_watch, apiserver, f"/api/v1/namespaces/{namespace}/configmaps?watch=true&timeoutSeconds=2"
        )
        wait_for(lambda: watching(apiserver, namespace), what="the watch open")
        core.create_namespaced_config_map(namespace, _cm("during"))
        status, headers, events = watch.result(timeout=60)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "during")]


def test_send_initial_events_ends_with_the_initial_events_end_bookmark(
    apiserver: ServerThread, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, _cm("a"))
    core.create_namespaced_config_map(namespace, _cm("b"))
    path = (
        f"/api/v1/namespaces/{namespace}/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
        "&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
    )
    _, _, events = _raw_watch(apiserver, path)
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("BOOKMARK", None),
    ]
    bookmark = events[-1]["object"]
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(
        events[1]["object"]["metadata"]["resourceVersion"]
    )


def test_periodic_bookmarks_when_allowed() -> None:
    with ServerThread(bookmark_interval=0.2) as server:
        path = "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=1"
        _, _, events = _raw_watch(server, path)
        assert events
        assert {e["type"] for e in events} == {"BOOKMARK"}
        path = "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1"
        assert _raw_watch(server, path)[2] == []


def test_malformed_query_parameters_are_400_statuses(apiserver: ServerThread, namespace: str) -> None:
    for query in ("limit=many", "labelSelector=a%20in%20()", "watch=1&resourceVersion=abc"):
        status, _, body = http(apiserver.url, "GET", f"/api/v1/namespaces/{namespace}/configmaps?{query}")
        assert status == 400, query
        assert json.loads(body)["kind"] == "Status"


def test_an_object_leaving_a_selection_is_deleted_as_it_was(core: client.CoreV1Api, namespace: str) -> None:
    """kube-apiserver's watch cache sends the previous content (which matched the selector) at the change's
    resourceVersion: a watcher that filters on the label (kopf's handlers do) still recognises it."""
    core.create_namespaced_config_map(namespace, _cm("a", app="web"))
    since = core.list_namespaced_config_map(namespace).metadata.resource_version
    changed = core.patch_namespaced_config_map("a", namespace, {"metadata": {"labels": {"app": None}}})
    w = watch.Watch()
    seen = []
    for ev in w.stream(
        core.list_namespaced_config_map, namespace, label_selector="app=web", resource_version=since,
        timeout_seconds=5,
    ):  # fmt: skip
        seen.append((ev["type"], ev["object"].metadata.labels, ev["object"].metadata.resource_version))
        w.stop()
    assert seen == [("DELETED", {"app": "web"}, changed.metadata.resource_version)]
