"""Helpers of the operator's end-to-end tests (``import operator_support as ops``): the test reads and writes
through the kubernetes client and plays the kubelet. The operator process fixtures are in
tests/e2e/operator/conftest.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes import client
from support import subprocess_env, wait_for

import leap0_contract as contract
from leap0_dev.apiserver.routing import parse_resource_path
from leap0_dev.apiserver.server import user_agent_product

API_ERRORS = (client.ApiException,)  # what the probes may raise before the object exists: "not yet"


class Operator:
    """``python -m leap0_operator`` serving one namespace, its log kept for failures."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path, *extra: str, **env: str) -> None:
        self.log = log
        if extra[:1] == ("kopf",):  # `kopf run -m leap0_operator ...`: settings from the environment only
            args = [sys.executable, "-m", "kopf", "run", "-m", "leap0_operator", "-n", namespace, *extra[1:]]
        else:
            args = [
                sys.executable, "-m", "leap0_operator", "-n", namespace,
                "--expired-retention", "2", "--retry-delay", "1", *extra,
            ]  # fmt: skip
            if "--peering" not in extra:
                args.append("--standalone")
        self._log_file = log.open("ab")
        self.process = subprocess.Popen(
            args,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=subprocess_env(KUBECONFIG=str(kubeconfig), **env),
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def sandbox(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = custom(api).get_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, name
    )
    return body


def sandboxes(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    listed = custom(api).list_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


def create_sandbox(api: client.ApiClient, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": contract.API_VERSION,
        "kind": contract.SANDBOX_KIND,
        "metadata": {"name": name},
        "spec": spec,
    }
    custom(api).create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, body
    )


def phase(
    api: client.ApiClient, namespace: str, name: str, wanted: str
) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = sandbox(api, namespace, name).get("status") or {}
        return status if status.get("phase") == wanted else None

    return probe


def wait_phase(
    api: client.ApiClient, namespace: str, name: str, wanted: str, timeout: float = 30
) -> dict[str, Any]:
    """Wait until the Sandbox's status says phase ``wanted``; that status."""
    status: dict[str, Any] = wait_for(
        phase(api, namespace, name, wanted), timeout=timeout, what=f"{name} {wanted}", ignore=API_ERRORS
    )
    return status


def pod_exists(api: client.ApiClient, namespace: str, name: str) -> Callable[[], Any]:
    return lambda: core(api).read_namespaced_pod(name, namespace)


def pod_gone(api: client.ApiClient, namespace: str, name: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            core(api).read_namespaced_pod(name, namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    return probe


def play_kubelet(api: client.ApiClient, namespace: str, name: str, *, sandbox_state: dict[str, Any]) -> None:
    """Write the pod status a kubelet would: the sidecar running and ready, the sandbox container as given."""
    ready = "running" in sandbox_state
    status = {
        "phase": "Running" if ready else "Failed",
        "podIP": "10.1.2.3",
        "startTime": "2026-01-01T00:00:00Z",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": str(ready)}],
        "initContainerStatuses": [
            {"name": "telemetry", "ready": True, "restartCount": 0, "image": "sidecar", "imageID": "",
             "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}},
        ],
        "containerStatuses": [
            {"name": "sandbox", "ready": ready, "restartCount": 0, "image": "python:3.12-slim", "imageID": "",
             "state": sandbox_state},
        ],
    }  # fmt: skip
    core(api).patch_namespaced_pod_status(name, namespace, {"status": status})


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:02Z"}}


class OperatorCalls:
    """Every resource request the operator process (user agent ``kopf``) makes, as the RBAC verb it needs."""

    VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}

    def __init__(self, apiserver: Any) -> None:
        self.server = apiserver.server
        self.seen: set[tuple[str, str, str]] = set()

    def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if user_agent_product(request.headers.get("User-Agent", "")) != "kopf":
            return None
        target = parse_resource_path(request.path)
        if target is None:  # discovery: allowed to every authenticated user
            return None
        resource = f"{target.plural}/{target.subresource}" if target.subresource else target.plural
        if request.method == "GET":
            watch = request.query.get("watch", "").lower() in ("1", "true")
            verb = "get" if target.name else "watch" if watch else "list"
        elif request.method == "DELETE":
            verb = "delete" if target.name else "deletecollection"
        else:
            verb = self.VERBS[request.method]
        self.seen.add((target.group, resource, verb))
        return None

    def __enter__(self) -> OperatorCalls:
        self.server.intercept = self
        return self

    def __exit__(self, *_: object) -> None:
        self.server.intercept = None


def operator_writes(apiserver: Any) -> int:
    with urllib.request.urlopen(f"{apiserver.url}/leap0/stats", timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
    return int(stats["mutations"].get("kopf", 0))


def sandbox_events(api: client.ApiClient, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about Sandbox ``name``, oldest first."""
    listed = core(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind=Sandbox,involvedObject.name={name}"
    )
    items = sorted(listed.items, key=lambda e: int(e.metadata.resource_version))
    return [(e.type, e.reason, e.message) for e in items]


def events_once(api: client.ApiClient, namespace: str, name: str, count: int) -> list[tuple[str, str, str]]:
    """The Sandbox's Events once there are ``count`` (an Event is posted just after its status write)."""

    def probe() -> list[tuple[str, str, str]] | None:
        events = sandbox_events(api, namespace, name)
        return events if len(events) >= count else None

    return wait_for(probe, timeout=20, what=f"{count} events on {name}", ignore=API_ERRORS)


def reason_is(api: client.ApiClient, namespace: str, name: str, reason: str) -> Callable[[], Any]:
    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = sandbox(api, namespace, name).get("status") or {}
        return status if status.get("reason") == reason else None

    return probe
