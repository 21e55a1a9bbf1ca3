"""The control plane's layout and command lines: pure functions of the data folder, the binaries' folder and
the ports, unit-tested without starting anything (tests/unit/controlplane)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
# The in-cluster name of the API server, the issuer of its service-account tokens (as kubeadm's).
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The names of the API server's serving certificate, as kubeadm's: its Service's names, the issuer's host
# among them, so an OIDC verifier of service-account tokens in a cluster reaches the issuer over TLS.
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/12"
# In order: each waits for the one before it to be healthy; they stop in the reverse order.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class Ports:
    apiserver: int
    etcd_client: int
    etcd_peer: int
    controller_manager: int
    scheduler: int


@dataclass(frozen=True)
class Layout:
    """Where everything of one run lives, under ``data_dir``."""

    data_dir: Path

    @property
    def pki(self) -> Path:
        return self.data_dir / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.data_dir / "etcd"

    def cert(self, name: str) -> Path:
        return self.pki / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.pki / f"{name}.key"

    @property
    def audit_policy(self) -> Path:
        return self.data_dir / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        return self.data_dir / "logs" / "audit.log"

    @property
    def sa_public(self) -> Path:
        return self.pki / "sa.pub"

    @property
    def sa_private(self) -> Path:
        return self.pki / "sa.key"

    def kubeconfig(self, user: str) -> Path:
        return self.data_dir / f"{user}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.data_dir / "logs" / f"{component}.log"

    def serving_dir(self, component: str) -> Path:
        """The folder where the controller-manager and the scheduler write their self-signed serving pair."""
        return self.data_dir / component


def server_url(ports: Ports) -> str:
    return f"https://{HOST}:{ports.apiserver}"


def etcd_url(ports: Ports) -> str:
    return f"http://{HOST}:{ports.etcd_client}"


def etcd_args(binaries: Path, layout: Layout, ports: Ports) -> list[str]:
    peer = f"http://{HOST}:{ports.etcd_peer}"
    return [
        str(binaries / "etcd"),
        "--name=leap0",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={etcd_url(ports)}",
        f"--advertise-client-urls={etcd_url(ports)}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=leap0={peer}",
        "--initial-cluster-state=new",
        # A test store: what a crash loses does not matter, and fsync on a shared disk is slow (as envtest).
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(binaries: Path, layout: Layout, ports: Ports) -> list[str]:
    """kube-apiserver as kubeadm runs it, on 127.0.0.1: RBAC (and the Node authorizer), the default admission
    plugins (PodSecurity and ServiceAccount among them) plus NodeRestriction, service-account tokens signed
    with the run's key, client certificates of the run's CA."""
    return [
        str(binaries / "kube-apiserver"),
        f"--etcd-servers={etcd_url(ports)}",
        f"--bind-address={HOST}",
        f"--advertise-address={HOST}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={layout.cert('apiserver')}",
        f"--tls-private-key-file={layout.key('apiserver')}",
        f"--client-ca-file={layout.cert('ca')}",
        # The aggregation layer's front proxy, as kubeadm: without it every component logs that the
        # requestheader CA bundle is missing.
        f"--requestheader-client-ca-file={layout.cert('front-proxy-ca')}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={layout.cert('front-proxy-client')}",
        f"--proxy-client-key-file={layout.key('front-proxy-client')}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={layout.sa_public}",
        f"--service-account-signing-key-file={layout.sa_private}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        # How it reaches a kubelet (exec, logs): with this client certificate, verifying the kubelet's serving
        # certificate against the run's CA (without it kube-apiserver would not check who answers).
        f"--kubelet-client-certificate={layout.cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={layout.key('apiserver-kubelet-client')}",
        f"--kubelet-certificate-authority={layout.cert('ca')}",
        # 127.0.0.1 may not be an Endpoints address: nothing here needs the `kubernetes` Service's endpoints.
        "--endpoint-reconciler-type=none",
        # Every request of a user other than the control plane's own (audit_policy), one JSON line each:
        # the tests read who was refused what (a 403 of the operator's ServiceAccount fails them).
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-maxsize=500",
        "--audit-log-maxbackup=1",
        "--profiling=false",
    ]


def audit_policy() -> dict[str, Any]:
    """Metadata (who, what, the answer's code) of every request once answered, except the control plane's
    own components and controllers, whose steady traffic would swamp the log."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [
            {
                "level": "None",
                "users": ["system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"],
            },
            {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
            {"level": "Metadata"},
        ],
    }


def forbidden(events: list[dict[str, Any]], user: str) -> list[str]:
    """The requests of ``user`` that authorization (RBAC) refused, one line each, from an audit log's events.
    A 403 of admission (PodSecurity, a quota) is not one: the user was allowed to ask."""
    lines = []
    for event in events:
        if event.get("user", {}).get("username") != user:
            continue
        if (event.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid":
            ref = event.get("objectRef", {})
            where = "/".join(filter(None, (ref.get("namespace"), ref.get("resource"), ref.get("name"))))
            code = event.get("responseStatus", {}).get("code")
            lines.append(f"{event.get('verb')} {where or event.get('requestURI')}: {code}")
    return lines


def controller_manager_args(binaries: Path, layout: Layout, ports: Ports) -> list[str]:
    """kube-controller-manager as kubeadm runs it: each controller with its own service account's
    credentials, the signing key (tokens of service accounts) and the root CA (their ca.crt)."""
    kubeconfig = layout.kubeconfig("kube-controller-manager")
    return [
        str(binaries / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.serving_dir('kube-controller-manager')}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        "--controllers=*,bootstrapsigner,tokencleaner",
        f"--root-ca-file={layout.cert('ca')}",
        f"--service-account-private-key-file={layout.sa_private}",
        f"--cluster-signing-cert-file={layout.cert('ca')}",
        f"--cluster-signing-key-file={layout.key('ca')}",
        "--profiling=false",
    ]


def scheduler_args(binaries: Path, layout: Layout, ports: Ports) -> list[str]:
    kubeconfig = layout.kubeconfig("kube-scheduler")
    return [
        str(binaries / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={layout.serving_dir('kube-scheduler')}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def command(component: str, binaries: Path, layout: Layout, ports: Ports) -> list[str]:
    builders = {
        "etcd": etcd_args,
        "kube-apiserver": apiserver_args,
        "kube-controller-manager": controller_manager_args,
        "kube-scheduler": scheduler_args,
    }
    return builders[component](binaries, layout, ports)


def health_url(component: str, ports: Ports) -> str:
    """Where a component says it is up (etcd over http; the others on their secure port)."""
    if component == "etcd":
        return f"{etcd_url(ports)}/health"
    if component == "kube-apiserver":
        return f"{server_url(ports)}/readyz"
    port = ports.controller_manager if component == "kube-controller-manager" else ports.scheduler
    return f"https://{HOST}:{port}/healthz"


def kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> dict[str, Any]:
    """A kubeconfig of one cluster, user and context (``leap0-control-plane``), the certificates inline."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    name = "leap0-control-plane"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


def token_kubeconfig(server: str, ca_pem: bytes, token: str, user: str) -> dict[str, Any]:
    """A kubeconfig authenticating with a bearer token (a service account's: ``kubectl create token``)."""
    name = "leap0-control-plane"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }
