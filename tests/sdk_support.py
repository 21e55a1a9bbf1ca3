"""Helpers of the SDK's end-to-end tests (importable: ``tests`` is on pytest's pythonpath)."""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch

import leap0_contract as c


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


def not_ready_status(phase: str, reason: str, message: str) -> dict[str, Any]:
    """A status that is not Running, as the operator writes it: the reason and message, Ready False."""
    return {
        "phase": phase,
        "reason": reason,
        "message": message,
        "conditions": [{"type": c.CONDITION_READY, "status": "False", "reason": reason, "message": message}],
    }


def pending_status(reason: str, message: str) -> dict[str, Any]:
    """A start that waits (a scale-up, a Secret not there yet...)."""
    return not_ready_status(c.PHASE_PENDING, reason, message)


def failed_status(reason: str, message: str) -> dict[str, Any]:
    return not_ready_status(c.PHASE_FAILED, reason, message)


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


class OtlpReceiver:
    """A real OTLP/HTTP receiver for tests: keeps every POST (path, headers, body), decodes the protobuf."""

    def __init__(self) -> None:
        import http.server

        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # Node's exporters
                    body = b""
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        body += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()  # the empty line after the last chunk
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def spans(self) -> list[dict[str, Any]]:
        """Every span received: name, scope, attributes, status code."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        out = []
        for path, _, body in self.requests:
            if path != "/v1/traces":
                continue
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out.append(
                            {
                                "name": span.name,
                                "scope": ss.scope.name,
                                "attributes": {a.key: _any_value(a.value) for a in span.attributes},
                                "status": span.status.code,
                            }
                        )
        return out

    def histograms(self) -> dict[str, list[dict[str, Any]]]:
        """Histogram name -> data points (attributes, count, unit, scope)."""
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        out: dict[str, list[dict[str, Any]]] = {}
        for path, _, body in self.requests:
            if path != "/v1/metrics":
                continue
            req = ExportMetricsServiceRequest()
            req.ParseFromString(body)
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if not metric.HasField("histogram"):
                            continue
                        for point in metric.histogram.data_points:
                            out.setdefault(metric.name, []).append(
                                {
                                    "attributes": {a.key: _any_value(a.value) for a in point.attributes},
                                    "count": point.count,
                                    "unit": metric.unit,
                                    "scope": sm.scope.name,
                                }
                            )
        return out


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def kubelet_running_status(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod status a kubelet writes once every container (and native sidecar) runs and is ready."""
    spec = pod.get("spec") or {}

    def statuses(key: str) -> list[dict[str, Any]]:
        return [
            {
                "name": ctr["name"],
                "ready": True,
                "started": True,
                "restartCount": 0,
                "image": ctr.get("image", ""),
                "imageID": "",
                "state": {"running": {"startedAt": "2026-01-01T00:00:02Z"}},
            }
            for ctr in spec.get(key) or []
        ]

    return {
        "phase": "Running",
        "podIP": "10.1.2.3",
        "startTime": "2026-01-01T00:00:00Z",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        "initContainerStatuses": statuses("initContainers"),
        "containerStatuses": statuses("containers"),
    }


def kubelet_running_now(pod: dict[str, Any]) -> dict[str, Any]:
    """The running status a kubelet writes now (each new pod, a resumed one too, gets its own start time)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = kubelet_running_status(pod)
    status["startTime"] = now
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status[key]:
            cs["state"] = {"running": {"startedAt": now}}
    return status


def kubelet_image_pull_status(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod status of a sandbox container whose image cannot be pulled."""
    status = kubelet_running_status(pod)
    status["phase"] = "Pending"
    status["conditions"][1]["status"] = "False"
    for cs in status["containerStatuses"]:
        if cs["name"] == c.SANDBOX_CONTAINER:
            cs["ready"] = False
            cs["started"] = False
            cs["state"] = {
                "waiting": {"reason": "ErrImagePull", "message": f'pull access denied for "{cs["image"]}"'}
            }
    return status


@dataclass
class StandInKubelet:
    """Plays the kubelet of a namespace: writes ``behaviour(pod)`` as the status of every new pod."""

    api: client.ApiClient
    namespace: str
    behaviour: Callable[[dict[str, Any]], dict[str, Any]] = kubelet_running_status
    seen: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        core = client.CoreV1Api(self.api)
        while not self._stop.is_set():
            w = watch.Watch()
            with contextlib.suppress(Exception):
                for event in w.stream(
                    core.list_namespaced_pod, self.namespace, timeout_seconds=1, _preload_content=False
                ):
                    if self._stop.is_set():
                        break
                    pod = event["raw_object"]
                    uid = pod["metadata"].get("uid", "")
                    if event["type"] == "DELETED" or uid in self.seen:
                        continue
                    self.seen.append(uid)
                    with contextlib.suppress(client.ApiException):
                        core.patch_namespaced_pod_status(
                            pod["metadata"]["name"], self.namespace, {"status": self.behaviour(pod)}
                        )

    def start(self) -> StandInKubelet:
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
