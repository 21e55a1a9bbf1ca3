"""The local runner as the kubelet of a real control plane (``leap0 dev control-plane up --kubelet``).

:class:`Kubelet` makes this machine one Node of a real kube-apiserver, with the runner running its pods:

- **the Node**: registered with this machine's capacity (or ``--node-cpu``/``--node-memory``) as capacity and
  allocatable, the kubelet's conditions (Ready), address ``127.0.0.1`` (``InternalIP``) and the port of its
  kubelet endpoint (``status.daemonEndpoints.kubeletEndpoint.port``); its Lease in ``kube-node-lease`` renewed
  every 10 s (``renewTime`` with microseconds), its status every minute (:class:`NodeAgent`);
- **its pods**: the runner watches the pods bound to it (``spec.nodeName``, by the real scheduler), runs them
  and reports their status; a pod being deleted gets its grace period (SIGTERM, then SIGKILL), then the
  object is deleted with grace period 0 and its uid as precondition, as the kubelet does
  (:class:`KubeletRunner`);
- **the kubelet endpoint** the API server proxies ``kubectl exec``, ``kubectl logs`` and the SDKs' exec to:
  ``leap0-kubelet`` (``devtools/k8s/kubelet``, Go: TLS with client certificates, and the kubelet's own
  streaming code for SPDY and WebSockets), which hands each request to the runner's local endpoint
  (:mod:`.kubelet_endpoint`) with a bearer token.

The decisions (the Node, the Lease, the delete options, the log query) are pure functions in
:mod:`leap0_dev.nodespec`.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import secrets
import select
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import leap0_contract as contract
from leap0_dev import children, nodespec
from leap0_dev.podspec import Host, Obj, parse_quantity

from .config import REQUEST_TIMEOUT_S, Log, RunnerConfig, api_errors
from .kubelet_endpoint import KubeletEndpoint
from .pod import LocalPod
from .watch import Runner

TOKEN_ENV = "LEAP0_KUBELET_BACKEND_TOKEN"  # read by leap0-kubelet (devtools/k8s/kubelet/main.go)
SHIM_START_TIMEOUT_S = 30.0


class KubeletError(RuntimeError):
    """The kubelet cannot start (its endpoint, or registering the Node)."""


@dataclass
class KubeletSettings:
    """What makes the node: its name and size, and the kubelet endpoint's program and TLS material."""

    node_name: str
    shim: Path  # the leap0-kubelet program
    serving_cert: Path  # its serving certificate (for 127.0.0.1), signed by the API server's
    serving_key: Path  # --kubelet-certificate-authority
    client_ca: Path  # the CA of the API server's kubelet client certificate
    client_cn: str | None = nodespec.APISERVER_KUBELET_CLIENT  # the only caller accepted (None: any)
    cpu: str | None = None  # capacity (None: this machine's)
    memory: str | None = None
    pods: int = nodespec.DEFAULT_MAX_PODS
    lease_renew_s: float = nodespec.LEASE_RENEW_S
    status_report_s: float = nodespec.STATUS_REPORT_S
    log_file: Path | None = None  # leap0-kubelet's output (None: <runner workdir>/leap0-kubelet.log)


def _read(path: str) -> str:
    with contextlib.suppress(OSError):
        return Path(path).read_text().strip()
    return ""


def node_info(kubelet_version: str) -> nodespec.NodeInfo:
    """``status.nodeInfo`` of this machine."""
    uname = platform.uname()
    return nodespec.NodeInfo(
        kubelet_version=kubelet_version,
        runtime_version=f"{nodespec.RUNTIME_NAME}://{contract.PACKAGE_VERSION}",
        kernel=uname.release,
        os_image=nodespec.os_image(_read("/etc/os-release")),
        machine=uname.machine,
        machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
    )


def node_host(host: Host, resources: Obj) -> Host:
    """What the runner gives a container without a limit (``resourceFieldRef``): the node's allocatable."""
    cpus = max(1, math.ceil(parse_quantity(str(resources["cpu"]))))
    memory = int(parse_quantity(str(resources["memory"])))
    return replace(host, cpus=cpus, memory_bytes=memory)


class KubeletRunner(Runner):
    """The runner watching the pods bound to one node, finishing their deletion as the kubelet does."""

    def __init__(self, api_client: Any, config: RunnerConfig, policy_client: Any | None = None) -> None:
        super().__init__(api_client, config)
        if policy_client is not None:
            from kubernetes import client

            # Recording the NetworkPolicies is the network plugin's part (a kubelet may not read them), and
            # telling that a claim is gone (its folder removed) the storage side's.
            self.networking = client.NetworkingV1Api(policy_client)
            self.claims = client.CoreV1Api(policy_client)

    def stop_deleted(self, local: LocalPod) -> None:
        local.stop(nodespec.stop_grace_seconds(local.pod, self.config.max_grace_seconds))
        self._report_final(local)
        self._delete(local.namespace, local.name, local.uid)

    def release_deleted(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self._delete(str(meta.get("namespace", "default")), str(meta["name"]), str(meta.get("uid", "")))

    def _report_final(self, local: LocalPod) -> None:
        """The containers' final states (terminated, with their exit codes), before the object goes."""
        with contextlib.suppress(*api_errors()):
            self.core.patch_namespaced_pod_status(
                local.name,
                local.namespace,
                {"status": local.tick()},
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT_S,
            )

    def _delete(self, namespace: str, name: str, uid: str) -> None:
        try:
            core: Any = self.core  # the call takes a plain dict
            core.delete_namespaced_pod(
                name, namespace, body=nodespec.final_delete_options(uid), _request_timeout=REQUEST_TIMEOUT_S
            )
        except api_errors() as exc:  # gone already (404), or a newer pod of the same name (409)
            if getattr(exc, "status", None) not in (404, 409):
                self.config.log(f"runner: deleting pod {namespace}/{name}: {exc}")


class NodeAgent:
    """Registers the Node and its Lease, then keeps both fresh from a daemon thread."""

    def __init__(
        self, api_client: Any, settings: KubeletSettings, resources: Obj, info: nodespec.NodeInfo, log: Log
    ) -> None:
        from kubernetes import client

        self.core: Any = client.CoreV1Api(api_client)  # Any: the calls take plain dicts
        self.coordination: Any = client.CoordinationV1Api(api_client)
        self.settings = settings
        self.name = settings.node_name
        self.resources = resources
        self.info = info
        self.log = log
        self.port = 0
        self.uid = ""
        self.since = datetime.now(UTC)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, port: int) -> None:
        """Create the Node (or take over one of the same name left by an earlier run) and its Lease."""
        from kubernetes.client import ApiException

        self.port = port
        now = datetime.now(UTC)
        self.since = now
        manifest = nodespec.node_manifest(self.name, self.resources, port, self.info, now)
        try:
            node = self.core.create_node(manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise KubeletError(
                    f"cannot register Node {self.name}: {exc.status} {exc.reason}: {exc.body}"
                ) from exc
            node = self.core.patch_node(
                self.name,
                {"metadata": {"labels": manifest["metadata"]["labels"]}},
                _content_type="application/merge-patch+json",
            )
        self.uid = str(node.metadata.uid)
        self.report_status()  # the status too: a Node left by an earlier run has an old port
        self.renew_lease()

    def report_status(self) -> None:
        status = nodespec.node_status(self.resources, self.port, self.info, datetime.now(UTC), self.since)
        self.core.patch_node_status(
            self.name, {"status": status}, _content_type="application/strategic-merge-patch+json"
        )

    def renew_lease(self) -> None:
        from kubernetes.client import ApiException

        now = datetime.now(UTC)
        try:
            self.coordination.patch_namespaced_lease(
                self.name,
                nodespec.NODE_LEASE_NAMESPACE,
                nodespec.lease_renewal(self.name, now),
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coordination.create_namespaced_lease(
                nodespec.NODE_LEASE_NAMESPACE, nodespec.lease_manifest(self.name, self.uid, now)
            )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="leap0-kubelet-node", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _beat(self) -> None:
        next_status = time.monotonic() + self.settings.status_report_s
        failing = False
        while not self._stop.wait(self.settings.lease_renew_s):
            try:
                self.renew_lease()
                if time.monotonic() >= next_status:
                    self.report_status()
                    next_status = time.monotonic() + self.settings.status_report_s
                if failing:
                    self.log(f"kubelet: node {self.name}: heartbeats reach the API server again")
                failing = False
            except Exception as exc:  # the API may be down for a while: keep trying
                if not failing:
                    self.log(f"kubelet: node {self.name}: heartbeat failed ({exc}); retrying")
                failing = True


def start_shim(
    settings: KubeletSettings, backend: str, token: str, log_file: IO[bytes]
) -> tuple[subprocess.Popen[bytes], int]:
    """Start leap0-kubelet on a free port of 127.0.0.1; returns the process and its port."""
    argv = [
        str(settings.shim),
        "-listen=127.0.0.1:0",
        f"-tls-cert-file={settings.serving_cert}",
        f"-tls-private-key-file={settings.serving_key}",
        f"-client-ca-file={settings.client_ca}",
        f"-client-cn={settings.client_cn or ''}",
        f"-backend={backend}",
    ]
    process: subprocess.Popen[bytes] = children.popen(
        argv,
        stdin=subprocess.PIPE,  # it stops when this pipe closes
        stdout=subprocess.PIPE,
        stderr=log_file,
        env={**os.environ, TOKEN_ENV: token},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + SHIM_START_TIMEOUT_S
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(process.stdout.fileno(), 256)
            if not chunk:
                break
            line += chunk
    text = line.decode(errors="replace").strip()
    if not text.startswith("listening on "):
        stop_shim(process)
        raise KubeletError(f"{settings.shim} did not start (its output: {text!r}; its log: {log_file.name})")
    return process, int(text.rsplit(":", 1)[1])


def stop_shim(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        children.kill_group(process.pid)
        process.wait(5)
    children.kill_group(process.pid)
    children.forget(process.pid)
    if process.stdout is not None:
        process.stdout.close()


class Kubelet:
    """One Node of a real control plane, its pods run here. ``start()`` / ``stop()``, or ``with``.

    ``api_client`` acts for the node (a ``system:node:<name>`` user: the Node authorizer and the
    NodeRestriction admission hold it to its own Node, Lease and pods); ``policy_client`` reads the
    NetworkPolicies the runner records (None: ``api_client``)."""

    def __init__(
        self,
        api_client: Any,
        settings: KubeletSettings,
        config: RunnerConfig | None = None,
        *,
        kubelet_version: str = "",
        policy_client: Any | None = None,
    ) -> None:
        self.settings = settings
        self.config = replace(config or RunnerConfig(), field_selector=f"spec.nodeName={settings.node_name}")
        self.runner = KubeletRunner(api_client, self.config, policy_client)
        self.resources = nodespec.capacity(self.runner.host, settings.cpu, settings.memory, settings.pods)
        self.runner.host = node_host(self.runner.host, self.resources)
        self.node = NodeAgent(
            api_client, settings, self.resources, node_info(kubelet_version), self.config.log
        )
        self.endpoint = KubeletEndpoint(self.runner, secrets.token_urlsafe(32))
        self.shim: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._log_file: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        if self.settings.log_file is not None:
            return self.settings.log_file
        workdir = self.config.workdir or Path(tempfile.gettempdir()) / "leap0-runner"
        return workdir / "leap0-kubelet.log"

    def start(self) -> Kubelet:
        try:
            backend = self.endpoint.start()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - open until stop()
            self.shim, self.port = start_shim(self.settings, backend, self.endpoint.token, self._log_file)
            self.node.register(self.port)
            self.node.start()
            self.runner.start()
        except BaseException:
            self.stop()
            raise
        self.config.log(
            f"kubelet: node {self.settings.node_name} registered ({self.resources['cpu']} CPUs, "
            f"{self.resources['memory']} memory); kubelet endpoint https://127.0.0.1:{self.port}"
        )
        return self

    def stop(self) -> None:
        """The pods first (as the runner stops them), then the heartbeats, the endpoint and its program. The
        Node stays registered, as a stopped kubelet's does (the node lifecycle controller marks it)."""
        self.runner.stop()
        self.node.stop()
        if self.shim is not None:
            stop_shim(self.shim)
            self.shim = None
        self.endpoint.stop()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Kubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
