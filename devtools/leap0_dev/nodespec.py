"""Pure decisions of the local runner playing the kubelet against a real API server (``--kubelet``).

The Node it registers (capacity, allocatable, conditions, address, the kubelet endpoint's port, system info),
its Lease in ``kube-node-lease`` and the renewals, the delete options of a pod whose containers have stopped,
and the ``containerLogs`` query. Plain data in, plain data out: unit-tested in
``tests/unit/dev/test_nodespec.py``; ``leap0_dev.runner.kubelet`` does the API calls.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .podspec import Host, Obj, PodSpecError, parse_quantity

NODE_LEASE_NAMESPACE = "kube-node-lease"
NODE_ADDRESS = "127.0.0.1"
# The kubelet's defaults: a Lease of 40 s renewed every 10 s (a quarter of it); a node status report when
# something changed, and at least every minute here (the kubelet's nodeStatusReportFrequency is 5 minutes; a
# fresher heartbeat costs one small patch a minute).
LEASE_DURATION_S = 40
LEASE_RENEW_S = 10.0
STATUS_REPORT_S = 60.0
DEFAULT_MAX_PODS = 110
# The kubelet's client certificate of kube-apiserver (`--kubelet-client-certificate`): the only caller the
# kubelet endpoint accepts.
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
# What the Node says it runs (status.nodeInfo.containerRuntimeVersion, `kubectl get nodes -o wide`).
RUNTIME_NAME = "leap0-local-runner"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


class NodeSpecError(ValueError):
    """A setting of the node (``--node-cpu``, ``--node-memory``, ``--node-name``) that cannot be used."""


def micro_time(moment: datetime) -> str:
    """A ``metav1.MicroTime`` (a Lease's ``renewTime``/``acquireTime``): RFC 3339 with exactly six
    fractional digits, in UTC. The API server refuses a Lease time without them."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(moment: datetime) -> str:
    """A ``metav1.Time``: RFC 3339 to the second, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_name(hostname: str) -> str:
    """The kubelet's default node name: the host name in lower case; ``leap0-node`` when that is not a valid
    object name (DNS-1123 subdomain)."""
    name = hostname.strip().lower()
    return name if len(name) <= 253 and _DNS_SUBDOMAIN.match(name) else "leap0-node"


def check_node_name(name: str) -> str:
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise NodeSpecError(
            f"--node-name {name!r}: a node name must be a lower-case DNS subdomain (letters, digits, '-' "
            "and '.', starting and ending with a letter or digit, at most 253 characters)"
        )
    return name


def _quantity(option: str, value: str) -> Decimal:
    try:
        amount = parse_quantity(value)
    except PodSpecError as exc:
        raise NodeSpecError(f"{option} {value!r}: not a Kubernetes quantity (e.g. 4, 500m, 8Gi)") from exc
    if amount <= 0:
        raise NodeSpecError(f"{option} {value!r}: must be more than 0")
    return amount


def check_size(cpu: str | None, memory: str | None, pods: int) -> None:
    """Refuse a node size that is not one, naming the option."""
    if cpu is not None:
        _quantity("--node-cpu", cpu)
    if memory is not None:
        _quantity("--node-memory", memory)
    if pods < 1:
        raise NodeSpecError(f"--node-pods {pods}: must be at least 1")


def capacity(
    host: Host, cpu: str | None = None, memory: str | None = None, pods: int = DEFAULT_MAX_PODS
) -> Obj:
    """The Node's ``status.capacity``: this machine's CPUs, memory and disk, as a kubelet reports them, unless
    ``cpu``/``memory`` are given (a quantity each). ``allocatable`` is the same (no reservations here).

    Pods are not held to their requests here (only their limits, through cgroups), so a larger node than the
    machine is possible; and a smaller one makes the real scheduler refuse big sandboxes."""
    cpu_text = str(host.cpus) if cpu is None else cpu
    memory_text = f"{host.memory_bytes // 1024}Ki" if memory is None else memory
    check_size(cpu_text, memory_text, pods)
    result: Obj = {"cpu": cpu_text, "memory": memory_text, "pods": str(pods)}
    if host.ephemeral_bytes > 0:
        result["ephemeral-storage"] = f"{host.ephemeral_bytes // 1024}Ki"
    return result


@dataclass(frozen=True)
class NodeOptions:
    """The node's name (None: this host's, as a kubelet's) and size (None: this machine's)."""

    name: str | None = None
    cpu: str | None = None
    memory: str | None = None
    pods: int = DEFAULT_MAX_PODS

    def node_name(self) -> str:
        if self.name is not None:
            return check_node_name(self.name)
        return node_name(socket.gethostname())


@dataclass(frozen=True)
class NodeInfo:
    """``status.nodeInfo``: what the Node says about this machine and its kubelet."""

    kubelet_version: str  # the control plane's version: a kubelet of the same release
    runtime_version: str  # leap0-local-runner://<leap0 version>
    kernel: str = ""
    os_image: str = ""
    machine: str = ""  # uname's machine: x86_64, aarch64
    machine_id: str = ""
    boot_id: str = ""

    def as_status(self) -> Obj:
        return {
            "architecture": _ARCHES.get(self.machine, self.machine or "amd64"),
            "operatingSystem": "linux",
            "kernelVersion": self.kernel,
            "osImage": self.os_image,
            "kubeletVersion": self.kubelet_version,
            "kubeProxyVersion": "",
            "containerRuntimeVersion": self.runtime_version,
            "machineID": self.machine_id,
            "systemUUID": self.machine_id,
            "bootID": self.boot_id,
        }


def os_image(os_release: str) -> str:
    """``PRETTY_NAME`` of an ``/etc/os-release`` text (what a kubelet reports as ``osImage``)."""
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "PRETTY_NAME":
            return value.strip().strip('"')
    return "Linux"


def node_conditions(now: datetime, since: datetime) -> list[Obj]:
    """The kubelet's node conditions for a healthy node: Ready, and no memory, disk or PID pressure."""
    heartbeat, transition = rfc3339(now), rfc3339(since)

    def condition(kind: str, status: str, reason: str, message: str) -> Obj:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": transition,
        }

    return [
        condition(
            "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
        ),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]


def node_status(resources: Obj, port: int, info: NodeInfo, now: datetime, since: datetime) -> Obj:
    """The Node's ``status``: capacity = allocatable, the conditions, the address the API server dials
    (127.0.0.1 alone: an ``InternalIP``, so no host name has to resolve) and the kubelet endpoint's port."""
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": node_conditions(now, since),
        "addresses": [{"type": "InternalIP", "address": NODE_ADDRESS}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": info.as_status(),
    }


def node_manifest(name: str, resources: Obj, port: int, info: NodeInfo, now: datetime) -> Obj:
    """The Node as the kubelet registers it: the well-known labels, no taints (the node lifecycle controller
    adds ``node.kubernetes.io/not-ready`` until Ready, as for any node), and its status."""
    arch = _ARCHES.get(info.machine, info.machine or "amd64")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch,
            },
        },
        "spec": {},
        "status": node_status(resources, port, info, now, now),
    }


def lease_manifest(name: str, node_uid: str, now: datetime) -> Obj:
    """The node's Lease in ``kube-node-lease``, owned by the Node (so deleted with it), as a kubelet's."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": NODE_LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_S,
            "renewTime": micro_time(now),
        },
    }


def lease_renewal(name: str, now: datetime) -> Obj:
    """The merge patch renewing the Lease."""
    return {
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_S,
            "renewTime": micro_time(now),
        }
    }


def final_delete_options(uid: str) -> Obj:
    """What the kubelet sends once a deleted pod's containers have stopped: grace period 0 (the object goes
    now), and the pod's uid as a precondition (never a newer pod of the same name)."""
    return {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": uid},
    }


def stop_grace_seconds(pod: Obj, cap: float) -> float:
    """Seconds between SIGTERM and SIGKILL for a pod being deleted: the deletion's grace period
    (``metadata.deletionGracePeriodSeconds``, e.g. ``kubectl delete --grace-period``), else the pod's
    ``terminationGracePeriodSeconds`` (30 by default), at most ``cap``."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    grace = meta.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds", 30)
    return max(0.0, min(float(grace), cap))


# --- containerLogs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogQuery:
    """The kubelet's ``/containerLogs`` query (the API server passes ``kubectl logs``'s options on)."""

    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since: float | None = None  # unix time: lines started at or after it (sinceSeconds, sinceTime)
    timestamps: bool = False


_TRUE = frozenset({"true", "1"})


def parse_log_query(query: Mapping[str, str], now: float = 0.0) -> LogQuery:
    """The query's options (``now``: the unix time ``sinceSeconds`` counts back from); a bad value is a
    ``ValueError`` naming the parameter."""

    def number(name: str) -> int | None:
        text = query.get(name)
        if text is None or text == "":
            return None
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not an integer") from None
        if value < 0 or (name in ("limitBytes", "sinceSeconds") and value == 0):
            positive = name in ("limitBytes", "sinceSeconds")
            raise ValueError(f"{name}: must be {'greater than 0' if positive else 'at least 0'}")
        return value

    since_seconds = number("sinceSeconds")
    since_time = query.get("sinceTime") or None
    if since_seconds is not None and since_time is not None:
        raise ValueError("at most one of sinceSeconds or sinceTime may be specified")
    since = None if since_seconds is None else now - since_seconds
    if since_time is not None:
        try:
            since = datetime.fromisoformat(since_time.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ValueError(f"sinceTime: {since_time!r} is not an RFC 3339 time") from None
    return LogQuery(
        follow=query.get("follow", "").lower() in _TRUE,
        previous=query.get("previous", "").lower() in _TRUE,
        tail_lines=number("tailLines"),
        limit_bytes=number("limitBytes"),
        since=since,
        timestamps=query.get("timestamps", "").lower() in _TRUE,
    )


def line_starts_back(block: bytes, needed: int, file_end: bool) -> tuple[int, int | None]:
    """Scan one block of a file backwards for the start of the ``needed``-th line from the end (the blocks are
    read from the end, one at a time, so memory stays one block whatever ``tailLines`` asks). Returns how
    many line starts the block holds and, once ``needed`` is reached, the index in the block where that line
    starts. ``file_end``: the block ends the file, whose final newline ends the last line instead of starting
    one."""
    index = len(block) - 1 if file_end and block.endswith(b"\n") else len(block)
    found = 0
    while needed > 0:
        index = block.rfind(b"\n", 0, index)
        if index < 0:
            return found, None
        found += 1
        if found == needed:
            return found, index + 1
    return 0, len(block)


def log_status_error(message: str, code: int) -> dict[str, Any]:
    """A ``metav1.Status`` body for a refused ``containerLogs`` request."""
    reasons = {400: "BadRequest", 404: "NotFound"}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reasons.get(code, "InternalError"),
        "code": code,
    }
