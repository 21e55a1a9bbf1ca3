"""Watches against the real API server: the bookmark that ends a watch's initial events (what `kubectl wait`
and the SDK's wait rely on) comes as the emulator sends it; and after a real etcd compaction during a watch
outage the operator's resumed watches are refused (410 Gone) and it re-lists, recreating what went missing."""

from __future__ import annotations

import datetime
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import support
from kubernetes import client
from operator_support import API_ERRORS, Operator, create_sandbox, pod_exists

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread
from leap0_dev.controlplane import ControlPlane

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def watch_until_initial_events_end(api_client: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    """A watch of the namespace's Sandboxes asking for its initial events and bookmarks; the events up to the
    bookmark ending the initial events (type and name, or the bookmark's annotations)."""
    path = f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{namespace}/{contract.SANDBOX_PLURAL}"
    query = [("watch", "true"), ("allowWatchBookmarks", "true"), ("sendInitialEvents", "true"),
             ("resourceVersionMatch", "NotOlderThan"), ("timeoutSeconds", "60")]  # fmt: skip
    method, url, headers, body, post = api_client.param_serialize(
        "GET", path, query_params=query, auth_settings=["BearerToken"]
    )
    response = api_client.call_api(method, url, headers, body, post, _request_timeout=90).response
    seen: list[dict[str, Any]] = []
    try:
        for line in _lines(response):
            event = json.loads(line)
            meta = event["object"]["metadata"]
            if event["type"] == "BOOKMARK":
                seen.append({"type": "BOOKMARK", "annotations": meta.get("annotations")})
                if (meta.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true":
                    return seen
            else:
                seen.append({"type": event["type"], "name": meta["name"]})
    finally:
        response.release_conn()
    raise AssertionError(f"the watch ended without the initial-events-end bookmark: {seen}")


def _lines(response: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(4096, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line


def test_the_initial_events_end_with_the_same_bookmark_on_both(
    control_plane: ControlPlane, control_plane_crds: Any, k8s_namespace: str, apiserver: ServerThread,
    namespace: str,
) -> None:  # fmt: skip
    answers = []
    for server, where in ((control_plane, k8s_namespace), (apiserver, namespace)):
        with server.api_client() as api:
            for name in ("b", "a"):
                create_sandbox(api, where, name)
            answers.append(
                sorted(watch_until_initial_events_end(api, where), key=lambda e: e.get("name", "~"))
            )
    real, emulated = answers
    assert real == [
        {"type": "ADDED", "name": "a"},
        {"type": "ADDED", "name": "b"},
        {"type": "BOOKMARK", "annotations": {INITIAL_EVENTS_END: "true"}},
    ]
    assert emulated == real


@pytest.fixture(scope="module")
def uncached_control_plane(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """A control plane of its own whose API server serves watches from etcd (--watch-cache=false), so an etcd
    compaction reaches the watches at once (with the cache, only once the cache's window has moved on)."""
    with ControlPlane(
        control_plane.binaries,
        data_dir=tmp_path_factory.mktemp("uncached"),
        extra_args={"kube-apiserver": ["--watch-cache=false"]},
    ) as plane:
        support.kubectl(plane.kubeconfig, "apply", "--server-side", "-f", str(support.REPO / "crds"))
        support.kubectl(plane.kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
                        "crd/sandboxes.leap0.dev", "crd/sandboxtemplates.leap0.dev")  # fmt: skip
        yield plane


def _watches_ended_since(plane: ControlPlane, since: datetime.datetime) -> set[str]:
    """The resources of which a watch of the operator (kopf) ended after ``since`` (the audit log records a
    watch when it ends)."""
    ended = set()
    for event in plane.audit_events():
        kopf = event.get("verb") == "watch" and event.get("userAgent", "").startswith("kopf")
        if kopf and datetime.datetime.fromisoformat(event["stageTimestamp"]) > since:
            ended.add(event.get("objectRef", {}).get("resource", ""))
    return ended


def test_after_an_etcd_compaction_during_a_watch_outage_the_operator_relists(
    uncached_control_plane: ControlPlane, tmp_path: Path
) -> None:
    plane, namespace = uncached_control_plane, "relist"
    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        operator = Operator(plane.kubeconfig, namespace, tmp_path / "operator.log",
                            "--watch-timeout", "3", "--resync-period", "0")  # fmt: skip
        try:
            create_sandbox(api, namespace, "s0", timeout=600)
            old = support.wait_for(
                pod_exists(api, namespace, "s0"), timeout=60, what="the pod", ignore=API_ERRORS
            )

            # The outage: the operator stopped until the watch it had open of each resource has ended on the
            # server's side (kopf watches a resource with one stream at a time; a stopped process opens none).
            os.kill(operator.process.pid, signal.SIGSTOP)
            stopped = datetime.datetime.now(datetime.UTC)
            try:
                support.wait_for(
                    lambda: {"pods", contract.SANDBOX_PLURAL} <= _watches_ended_since(plane, stopped),
                    timeout=60, what="the operator's watches to end", interval=0.5,
                )  # fmt: skip
                core.delete_namespaced_pod("s0", namespace)
                core.create_namespaced_config_map(
                    namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="after-the-pod"))
                )
                compacted = plane.compact()
            finally:
                os.kill(operator.process.pid, signal.SIGCONT)

            new = support.wait_for(
                lambda: (pod := pod_exists(api, namespace, "s0")()).metadata.uid != old.metadata.uid and pod,
                timeout=60, what="the pod recreated", ignore=API_ERRORS,
            )  # fmt: skip
            assert int(new.metadata.resource_version) > compacted
            log = operator.log.read_text()
            assert "resync of pods (after a watch re-list)" in log, operator.tail()
            assert operator.process.poll() is None
        finally:
            operator.stop()
            print(operator.tail())
