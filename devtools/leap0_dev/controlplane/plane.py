"""The real control plane's processes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

::

    plane = ControlPlane(binaries_folder, port=0).start()   # blocks until each one is healthy
    plane.kubeconfig        # the admin kubeconfig (written once the API answers)
    plane.api_client()      # a kubernetes ApiClient as the admin
    plane.stop()            # SIGTERM in the reverse order, SIGKILL after a grace; no process left behind

Each component is a child of :mod:`leap0_dev.children` (a process group of its own, the parent-death signal,
the reaper), so none outlives the process that started it, however it ends. Start waits for each one's health
endpoint and fails fast, with the end of its log, when one exits meanwhile. Everything of a run (certificates,
kubeconfigs, etcd's data, logs) is under ``data_dir``: a temporary folder removed by :meth:`stop` unless one
was given.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import yaml

from leap0_dev import children

from . import pki
from .plan import (
    APISERVER_DNS_NAMES,
    COMPONENTS,
    HOST,
    Layout,
    Ports,
    audit_policy,
    command,
    etcd_url,
    forbidden,
    health_url,
    kubeconfig,
    server_url,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

START_TIMEOUT = 180.0  # per component; a cold API server on two busy cores takes tens of seconds
STOP_GRACE = 15.0
ADMIN = "kubernetes-admin"


class ControlPlaneError(RuntimeError):
    pass


@dataclass(frozen=True)
class KubeletCredentials:
    kubeconfig: Path  # as system:node:NAME
    serving_cert: Path  # for 127.0.0.1, signed by the run's CA
    serving_key: Path
    client_ca: Path  # the CA of kube-apiserver's kubelet client certificate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class ControlPlane:
    """One control plane. ``port`` is the API server's (0: a free one); ``kubeconfig`` where the admin
    kubeconfig goes (default ``<data_dir>/admin.kubeconfig``); ``data_dir`` kept when given; ``extra_args``
    more flags for a component (by its name in :data:`COMPONENTS`)."""

    def __init__(
        self,
        binaries: Path,
        *,
        port: int = 0,
        kubeconfig: Path | None = None,
        data_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
        extra_args: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.binaries = Path(binaries)
        self._own_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="leap0-control-plane-")) if data_dir is None else data_dir
        )
        self.layout = Layout(self.data_dir)
        self.ports = Ports(
            apiserver=port or free_port(),
            etcd_client=free_port(),
            etcd_peer=free_port(),
            controller_manager=free_port(),
            scheduler=free_port(),
        )
        self.kubeconfig = (kubeconfig or self.layout.kubeconfig("admin")).resolve()
        self._log = log or (lambda line: None)
        # More flags per component (``{"kube-apiserver": ["--watch-cache=false"]}``), after the planned ones
        # (the last of a flag wins).
        self.extra_args = {name: list(args) for name, args in (extra_args or {}).items()}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: list[IO[bytes]] = []
        self._ca: pki.KeyPair | None = None
        self._admin: pki.KeyPair | None = None
        self._lock = threading.Lock()

    # --- what callers use --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return server_url(self.ports)

    @property
    def etcd_url(self) -> str:
        return etcd_url(self.ports)

    @property
    def ca_pem(self) -> bytes:
        assert self._ca is not None, "start() first"
        return self._ca.cert

    @property
    def ca_file(self) -> Path:
        return self.layout.cert("ca")

    def api_client(self) -> ApiClient:
        """A kubernetes ApiClient as the admin (system:masters), configured explicitly (no global state)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.layout.cert("ca"))
        configuration.cert_file = str(self.layout.cert("admin"))
        configuration.key_file = str(self.layout.key("admin"))
        return client.ApiClient(configuration)

    def user_kubeconfig(self, path: Path, user: str, groups: tuple[str, ...] = ()) -> Path:
        """Write a kubeconfig for a user of the run's CA (``system:node:NAME`` in ``system:nodes`` for a
        kubelet, say): a client certificate with ``user`` as common name and ``groups`` as organizations."""
        assert self._ca is not None, "start() first"
        pair = pki.issue(self._ca, user, groups)
        _write_yaml(path, kubeconfig(self.url, self._ca.cert, pair.cert, pair.key, user))
        return path

    def kubelet_credentials(self, node_name: str) -> KubeletCredentials:
        """What a kubelet of node ``node_name`` needs (``leap0 dev control-plane up --kubelet``): a kubeconfig
        as ``system:node:NAME`` in ``system:nodes`` (the Node authorizer and NodeRestriction hold it to its
        node), a serving certificate for 127.0.0.1 signed by the run's CA (which the API server verifies,
        ``--kubelet-certificate-authority``), and the CA of the API server's kubelet client certificate."""
        assert self._ca is not None, "start() first"
        folder = self.data_dir / "kubelet"
        user = f"system:node:{node_name}"
        config = self.user_kubeconfig(folder / "kubelet.kubeconfig", user, ("system:nodes",))
        serving = pki.issue(self._ca, user, ("system:nodes",), ip_addresses=(HOST,), server=True)
        _write(folder / "kubelet.crt", serving.cert)
        _write(folder / "kubelet.key", serving.key, private=True)
        return KubeletCredentials(
            config, folder / "kubelet.crt", folder / "kubelet.key", self.layout.cert("ca")
        )

    def running(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, process in self._processes.items()}

    def exited(self) -> str | None:
        """The name of a component that has exited, if any (a healthy control plane has none)."""
        return next((name for name, process in self._processes.items() if process.poll() is not None), None)

    def log_tail(self, component: str, lines: int = 30) -> str:
        path = self.layout.log(component)
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audited request so far (the audit log's JSON lines): each with ``user``, ``verb``,
        ``objectRef``, ``responseStatus``..."""
        path = self.layout.audit_log
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def forbidden(self, user: str) -> list[str]:
        """The requests of ``user`` that RBAC refused so far, one line each (``list ns/secrets: 403``)."""
        return forbidden(self.audit_events(), user)

    def compact(self) -> int:
        """Compact etcd up to its current revision (what the API server does every 5 minutes), so a watch or
        list from an older resourceVersion gets 410 Gone. Returns the revision compacted to."""
        revision = int(
            self._etcd("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"]
        )
        self._etcd("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    # --- start and stop ----------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        try:
            self._prepare()
            for component in COMPONENTS:
                self._start(component)
                self._wait_healthy(component)
                if component == "kube-apiserver":
                    assert self._ca is not None
                    assert self._admin is not None
                    admin = kubeconfig(self.url, self._ca.cert, self._admin.cert, self._admin.key, ADMIN)
                    _write_yaml(self.kubeconfig, admin)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every component, the last started first: SIGTERM to its process group, SIGKILL after
        :data:`STOP_GRACE` seconds. Idempotent."""
        with self._lock:
            processes = list(self._processes.items())
            self._processes.clear()
        for _name, process in reversed(processes):
            if process.poll() is None:
                children.kill_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    children.kill_group(process.pid, signal.SIGKILL)
                    process.wait(10)
            children.kill_group(process.pid, signal.SIGKILL)  # whatever it started
            children.forget(process.pid)
        for file in self._log_files:
            file.close()
        self._log_files.clear()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- inside --------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        layout = self.layout
        for folder in (layout.pki, layout.log("x").parent, layout.etcd_data):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(layout.etcd_data, 0o700)
        ca = self._ca = pki.new_ca()
        _write(layout.cert("ca"), ca.cert)
        _write(layout.key("ca"), ca.key, private=True)
        serving = pki.issue(
            ca,
            "kube-apiserver",
            dns_names=APISERVER_DNS_NAMES,
            ip_addresses=(HOST,),
            server=True,
        )
        _write(layout.cert("apiserver"), serving.cert)
        _write(layout.key("apiserver"), serving.key, private=True)
        kubelet_client = pki.issue(ca, "kube-apiserver-kubelet-client", ("system:masters",))
        _write(layout.cert("apiserver-kubelet-client"), kubelet_client.cert)
        _write(layout.key("apiserver-kubelet-client"), kubelet_client.key, private=True)
        front_proxy = pki.new_ca("front-proxy-ca")
        _write(layout.cert("front-proxy-ca"), front_proxy.cert)
        proxy_client = pki.issue(front_proxy, "front-proxy-client")
        _write(layout.cert("front-proxy-client"), proxy_client.cert)
        _write(layout.key("front-proxy-client"), proxy_client.key, private=True)
        _write(layout.audit_policy, yaml.safe_dump(audit_policy()).encode())
        sa = pki.signing_key()
        _write(layout.sa_public, sa.cert)
        _write(layout.sa_private, sa.key, private=True)
        admin = self._admin = pki.issue(ca, ADMIN, ("system:masters",))
        _write(layout.cert("admin"), admin.cert)
        _write(layout.key("admin"), admin.key, private=True)
        for user in ("kube-controller-manager", "kube-scheduler"):
            pair = pki.issue(ca, f"system:{user}")
            _write_yaml(layout.kubeconfig(user), kubeconfig(self.url, ca.cert, pair.cert, pair.key, user))

    def _start(self, component: str) -> None:
        argv = [
            *command(component, self.binaries, self.layout, self.ports),
            *self.extra_args.get(component, []),
        ]
        log = self.layout.log(component).open("ab")
        self._log_files.append(log)
        self._log(f"control-plane: starting {component} (log {self.layout.log(component)})")
        process = children.popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        with self._lock:
            self._processes[component] = process

    def _wait_healthy(self, component: str) -> None:
        url = health_url(component, self.ports)
        process = self._processes[component]
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ControlPlaneError(
                    f"{component} exited with code {process.returncode} while starting; the end of its log "
                    f"({self.layout.log(component)}):\n{self.log_tail(component)}"
                )
            try:
                status, body = self._get(url)
                if status == 200:
                    self._log(f"control-plane: {component} is healthy ({url})")
                    return
                last = f"{status} {body[:300]}"
            except (OSError, urllib.error.URLError) as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise ControlPlaneError(
            f"{component} not healthy at {url} after {START_TIMEOUT:.0f} s (last answer: {last}); the end of "
            f"its log:\n{self.log_tail(component)}"
        )

    def _get(self, url: str) -> tuple[int, str]:
        context: ssl.SSLContext | None = None
        if url.startswith("https://"):
            if url.startswith(self.url):  # the API server: verify it, as the admin
                assert self._ca is not None
                context = ssl.create_default_context(cadata=self._ca.cert.decode())
                context.load_cert_chain(self.layout.cert("admin"), self.layout.key("admin"))
            else:  # the controller-manager and scheduler serve a self-signed pair; /healthz needs no user
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                return int(response.status), response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def _etcd(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A call of etcd's JSON gateway (the gRPC KV API over HTTP, on the client URL)."""
        request = urllib.request.Request(
            f"{self.etcd_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def _write_yaml(path: Path, document: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a kubeconfig), readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(yaml.safe_dump(document, sort_keys=False))
    os.chmod(partial, 0o600)
    with contextlib.suppress(FileNotFoundError):
        os.replace(partial, path)
