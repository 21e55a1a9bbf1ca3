"""Helpers of the SDK's end-to-end tests (importable: ``tests`` is on pytest's pythonpath)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch

from leap0 import constants as c


def start_pod(api: client.ApiClient, namespace: str, name: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {c.LABEL_SANDBOX_ID: name}},
        "spec": {"containers": [{"name": c.SANDBOX_CONTAINER, "image": c.DEFAULT_IMAGE}]},
    }
    with contextlib.suppress(client.ApiException):
        client.CoreV1Api(api).create_namespaced_pod(namespace, pod)


def set_status(api: client.ApiClient, namespace: str, name: str, status: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        c.GROUP,
        c.VERSION,
        namespace,
        c.SANDBOX_PLURAL,
        name,
        {"status": status},
        _content_type="application/merge-patch+json",
    )


def running_status(name: str) -> dict[str, Any]:
    return {
        "phase": c.PHASE_RUNNING,
        "reason": c.REASON_RUNNING,
        "podName": name,
        "podIP": "127.0.0.1",
        "conditions": [{"type": c.CONDITION_READY, "status": "True", "reason": c.REASON_RUNNING}],
    }


def failed_status(reason: str, message: str) -> dict[str, Any]:
    return {
        "phase": c.PHASE_FAILED,
        "reason": reason,
        "message": message,
        "conditions": [{"type": c.CONDITION_READY, "status": "False", "reason": reason, "message": message}],
    }


@dataclass
class StandInOperator:
    """Reacts to new Sandboxes: ``behaviour(name) -> status`` (None: leave it Pending), after ``delay`` s."""

    api: client.ApiClient
    namespace: str
    behaviour: Callable[[str], dict[str, Any] | None]
    delay: float = 0.2
    seen: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while not self._stop.is_set():
            w = watch.Watch()
            with contextlib.suppress(Exception):
                for event in w.stream(
                    custom.list_namespaced_custom_object,
                    c.GROUP,
                    c.VERSION,
                    self.namespace,
                    c.SANDBOX_PLURAL,
                    timeout_seconds=1,
                ):
                    if self._stop.is_set():
                        break
                    obj = event["raw_object"]
                    name = obj["metadata"]["name"]
                    if event["type"] != "ADDED" or name in self.seen:
                        continue
                    self.seen.append(name)
                    threading.Timer(self.delay, self._react, args=(name,)).start()

    def _react(self, name: str) -> None:
        status = self.behaviour(name)
        if status is None or self._stop.is_set():
            return
        if status.get("phase") == c.PHASE_RUNNING:
            start_pod(self.api, self.namespace, name)
        with contextlib.suppress(client.ApiException):
            set_status(self.api, self.namespace, name, status)

    def stop(self) -> None:
        self._stop.set()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (test helper with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
