"""Pure pod-spec arithmetic for the local pod runner: env resolution, quantities, commands, pod status.

Everything here takes plain data (pod dicts as the API returns them) and returns plain data, so it is
unit-tested without a server or a process. ``leap0_dev.runner`` does the I/O.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath
from typing import Any

import leap0_contract as contract

Obj = dict[str, Any]
# (namespace, name, key) -> value, or None when the Secret/ConfigMap or the key does not exist.
Lookup = Callable[[str, str, str], str | None]

POD_IP = "127.0.0.1"

_SUFFIXES: dict[str, Decimal] = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")


class PodSpecError(ValueError):
    """The pod cannot be started as specified (the kubelet's CreateContainerConfigError)."""


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity ("500m", "1Gi", "2", "1e3") as a Decimal in base units."""
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if not match:
        raise PodSpecError(f"invalid quantity {value!r}")
    number, exponent, suffix = match.groups()
    try:
        amount = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
        raise PodSpecError(f"invalid quantity {value!r}") from exc
    if exponent:
        return amount * (Decimal(10) ** int(exponent[1:]))
    return amount * _SUFFIXES[suffix or ""]


@dataclass(frozen=True)
class Host:
    """What this machine offers: the values the kubelet uses where a container sets no limit."""

    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    memory_bytes: int = 0
    ephemeral_bytes: int = 0
    name: str = "localhost"


def container_by_name(pod: Obj, name: str) -> Obj | None:
    spec = pod.get("spec", {})
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        if container.get("name") == name:
            return dict(container)
    return None


def _limit(container: Obj, resource: str) -> Decimal | None:
    """``limits.cpu`` / ``requests.memory`` ... of a container, None when unset."""
    kind, _, name = resource.partition(".")
    value = container.get("resources", {}).get(kind, {}).get(name)
    return None if value is None else parse_quantity(value)


def resource_field_value(pod: Obj, ref: Mapping[str, Any], own_container: str, host: Host) -> str:
    """The value of a ``resourceFieldRef``, as the kubelet computes it (rounded up to the divisor)."""
    name = ref.get("containerName") or own_container
    container = container_by_name(pod, name)
    if container is None:
        raise PodSpecError(f"resourceFieldRef: no container {name!r} in the pod")
    resource = str(ref.get("resource", ""))
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor <= 0:
        raise PodSpecError(f"resourceFieldRef {resource}: divisor must be positive")
    value = _limit(container, resource)
    if value is None and resource.startswith("requests."):  # an unset request defaults to the limit
        value = _limit(container, "limits." + resource.partition(".")[2]) or Decimal(0)
    if value is None:  # an unset limit: the node's allocatable
        allocatable = {
            "limits.cpu": Decimal(host.cpus),
            "limits.memory": Decimal(host.memory_bytes),
            "limits.ephemeral-storage": Decimal(host.ephemeral_bytes),
        }
        if resource not in allocatable:
            raise PodSpecError(f"resourceFieldRef: unsupported resource {resource!r}")
        value = allocatable[resource]
    return str(math.ceil(value / divisor))


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def field_value(pod: Obj, path: str, host: Host) -> str:
    """The value of a ``fieldRef`` (the paths the downward API supports for env)."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple: dict[str, str | None] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName") or host.name,
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": POD_IP,
        "status.hostIPs": POD_IP,
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
    }
    if path in simple:
        return simple[path] or ""
    match = _SUBSCRIPT.match(path)
    if match:
        return str(meta.get(match.group(1), {}).get(match.group(2), ""))
    raise PodSpecError(f"fieldRef: unsupported fieldPath {path!r}")


_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, the rest stays as is."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(substitute, value)


def resolve_env(
    pod: Obj,
    container: Obj,
    host: Host,
    secrets: Lookup,
    config_maps: Lookup | None = None,
) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom is not supported, env in order."""
    namespace = pod.get("metadata", {}).get("namespace", "default")
    name = str(container.get("name", ""))
    env: dict[str, str] = {}
    for var in container.get("env", []):
        key = var["name"]
        if "value" in var or "valueFrom" not in var:
            env[key] = expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[key] = field_value(pod, source["fieldRef"]["fieldPath"], host)
        elif "resourceFieldRef" in source:
            env[key] = resource_field_value(pod, source["resourceFieldRef"], name, host)
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            is_secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if is_secret else "configMapKeyRef"]
            lookup = secrets if is_secret else config_maps
            value = lookup(namespace, ref["name"], ref["key"]) if lookup else None
            if value is None:
                if ref.get("optional"):
                    continue
                what = "secret" if is_secret else "configmap"
                raise PodSpecError(f'{what} "{ref["name"]}" key "{ref["key"]}" not found for env {key}')
            env[key] = value
        else:
            raise PodSpecError(f"env {key}: unsupported valueFrom {sorted(source)}")
    return env


_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")


def is_python(executable: str) -> bool:
    return bool(_PYTHON.match(PurePosixPath(executable).name))


def supervisor_child(argv: Sequence[str]) -> int | None:
    """Where the command of a ``leap0-supervisor run|exec ... -- COMMAND`` starts in ``argv`` (None when argv
    is not the supervisor's, or names no command)."""
    if not argv or PurePosixPath(argv[0]).name != contract.SUPERVISOR_BINARY or "--" not in argv:
        return None
    child = list(argv).index("--") + 1
    return child if child < len(argv) else None


def unwrap_supervisor(argv: Sequence[str]) -> list[str]:
    """The command the supervisor would run (argv itself when it is not the supervisor's): what runs here when
    the supervisor cannot (no Go to build it)."""
    child = supervisor_child(argv)
    return list(argv if child is None else argv[child:])


def local_argv(
    argv: Sequence[str],
    env: Mapping[str, str],
    python: str,
    mounts: Mapping[str, str] | None = None,
    substitutes: Mapping[str, str] | None = None,
) -> list[str] | None:
    """``argv`` as it runs on this machine, or None when it cannot.

    An executable the image would have (``substitutes``: the sidecar image's supervisor) becomes its local
    stand-in; paths in a volume become the local directory standing in for it (arguments too, and the words
    of a ``sh -c`` script: a container sees its volumes at their mount paths); Python runs with this machine's
    interpreter (the image's is not here), for the supervisor's command as well; another executable must
    exist here (one in a volume is written by an init container before it runs).
    """
    out = map_argv(argv, mounts or {})
    if not out:
        return None
    if argv[0] in (substitutes or {}):
        out[0] = (substitutes or {})[argv[0]]
    path = env.get("PATH") or os.environ.get("PATH")
    for index in (0, supervisor_child(argv)):
        if index is None:
            continue
        if is_python(out[index]):
            out[index] = python
        elif out[index] == argv[index] and shutil.which(out[index], path=path) is None:
            return None
    return out


def local_command(
    container: Obj,
    env: Mapping[str, str],
    python: str,
    mounts: Mapping[str, str] | None = None,
    substitutes: Mapping[str, str] | None = None,
) -> list[str] | None:
    """The container's command to run on this machine (:func:`local_argv` of its command and args), or None
    when only its image could run it (a container relying on its image's entrypoint, no command, too)."""
    command = [expand(str(c), env) for c in container.get("command", [])]
    args = [expand(str(a), env) for a in container.get("args", [])]
    if not command:
        return None
    return local_argv([*command, *args], env, python, mounts, substitutes)


def cpu_millicores(container: Obj) -> int | None:
    value = _limit(container, "limits.cpu")
    return None if value is None else math.ceil(value * 1000)


def memory_bytes(container: Obj) -> int | None:
    value = _limit(container, "limits.memory")
    return None if value is None else math.ceil(value)


def is_sidecar(container: Obj) -> bool:
    """A native sidecar: an init container with ``restartPolicy: Always``."""
    return container.get("restartPolicy") == "Always"


# --- status --------------------------------------------------------------------------------------------
@dataclass
class ContainerState:
    """What the runner knows of one container, turned into a containerStatus by :func:`container_status`."""

    name: str
    image: str = ""
    started_at: str | None = None
    running: bool = False
    ready: bool = False
    pid: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    finished_at: str | None = None
    waiting_reason: str | None = "ContainerCreating"
    waiting_message: str | None = None
    restart_count: int = 0
    last_terminated: Obj | None = None
    # An init container that runs to completion (not a native sidecar, not a main container).
    completes: bool = False


def exit_reason(returncode: int, oom_killed: bool) -> tuple[int, str]:
    """(exitCode, reason) of a finished process: 128+signal for a signal; OOMKilled if the cgroup says so."""
    code = 128 - returncode if returncode < 0 else returncode
    if oom_killed:
        return code, "OOMKilled"
    return code, "Completed" if code == 0 else "Error"


def _terminated(state: ContainerState) -> Obj:
    terminated: Obj = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "startedAt": state.started_at,
        "finishedAt": state.finished_at,
    }
    if state.message:
        terminated["message"] = state.message
    if state.pid is not None:
        terminated["containerID"] = f"local://{state.pid}"
    return terminated


def ended(state: ContainerState) -> bool:
    """A container that ended for good (not running, no restart pending)."""
    return state.exit_code is not None and not state.running and state.waiting_reason is None


def container_status(state: ContainerState) -> Obj:
    # An init container that completed with 0 is reported ready, as the kubelet does.
    completed = state.completes and ended(state) and state.exit_code == 0
    status: Obj = {
        "name": state.name,
        "image": state.image,
        "imageID": "",
        "ready": (state.ready and state.running) or completed,
        "started": state.running,
        "restartCount": state.restart_count,
    }
    if state.pid is not None:
        status["containerID"] = f"local://{state.pid}"
    if state.running:
        status["state"] = {"running": {"startedAt": state.started_at}}
    elif state.exit_code is not None and state.waiting_reason is None:
        status["state"] = {"terminated": _terminated(state)}
    else:
        waiting: Obj = {"reason": state.waiting_reason or "ContainerCreating"}
        if state.waiting_message:
            waiting["message"] = state.waiting_message
        status["state"] = {"waiting": waiting}
    status["lastState"] = {"terminated": state.last_terminated} if state.last_terminated else {}
    return status


def _condition(kind: str, ok: bool, now: str, reason: str | None = None) -> Obj:
    condition: Obj = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": now}
    if reason and not ok:
        condition["reason"] = reason
    return condition


def qos_class(pod: Obj) -> str:
    containers = [*pod.get("spec", {}).get("initContainers", []), *pod.get("spec", {}).get("containers", [])]
    resources = [c.get("resources", {}) for c in containers]
    if not any(r.get("limits") or r.get("requests") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits", {}), r.get("requests", {})
        for name in ("cpu", "memory"):
            if name not in limits:
                return "Burstable"
            if parse_quantity(requests.get(name, limits[name])) != parse_quantity(limits[name]):
                return "Burstable"
    return "Guaranteed"


def init_failed(init: Sequence[ContainerState]) -> bool:
    """An init container that runs to completion ended with an error (the pod cannot go on: restartPolicy
    Never, the only one sandbox pods have)."""
    return any(s.completes and ended(s) and s.exit_code != 0 for s in init)


def pod_phase(pod: Obj, main: Sequence[ContainerState], init: Sequence[ContainerState] = ()) -> str:
    """Pending until every main container has started; Succeeded/Failed when they are all done for good (or an
    init container failed, under restartPolicy Never)."""
    policy = pod.get("spec", {}).get("restartPolicy", "Always")
    if policy == "Never" and init_failed(init):
        return "Failed"
    finished = [s for s in main if s.exit_code is not None and not s.running and s.waiting_reason is None]
    if main and len(finished) == len(main):
        if all(s.exit_code == 0 for s in finished) and policy != "Always":
            return "Succeeded"
        if policy == "Never":
            return "Failed"
    if any(s.running or s.restart_count or s.exit_code is not None for s in main) and all(
        s.started_at for s in main
    ):
        return "Running"
    return "Pending"


def pod_status(
    pod: Obj,
    init: Sequence[ContainerState],
    main: Sequence[ContainerState],
    start_time: str,
    now: str,
) -> Obj:
    """The pod's ``status`` as a kubelet would report it for these container states (``init``: the init
    containers in the spec's order, native sidecars and those that run to completion)."""
    phase = pod_phase(pod, main, init)
    sidecars = [s for s in init if not s.completes]
    initialized = all(s.running or s.restart_count for s in sidecars) and all(
        ended(s) and s.exit_code == 0 for s in init if s.completes
    )
    containers_ready = bool(main) and all(s.running and s.ready for s in main)
    ready = containers_ready and all(s.running and s.ready for s in sidecars)
    done = phase in ("Succeeded", "Failed")
    status: Obj = {
        "phase": phase,
        "conditions": [
            _condition("PodReadyToStartContainers", True, now),
            _condition("Initialized", initialized or done, now, "ContainersNotInitialized"),
            _condition("ContainersReady", containers_ready, now, "ContainersNotReady"),
            _condition("Ready", ready, now, "PodCompleted" if done else "ContainersNotReady"),
            _condition("PodScheduled", True, now),
        ],
        "hostIP": POD_IP,
        "hostIPs": [{"ip": POD_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": start_time,
        "qosClass": qos_class(pod),
        "containerStatuses": [container_status(s) for s in main],
    }
    if init:
        status["initContainerStatuses"] = [container_status(s) for s in init]
    return status


def comparable(status: Obj) -> Obj:
    """A status without its timestamps of transition, to decide whether it changed."""
    copy = dict(status)
    copy["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions", [])
    ]
    return copy


def rewrite_local_endpoints(env: Mapping[str, str], ports: Mapping[int, int]) -> dict[str, str]:
    """Point values naming ``127.0.0.1:PORT``/``localhost:PORT`` at the ports given to this pod instead.

    Pods share this machine's network here, so each pod's sidecar gets ports of its own and the sandbox's
    ``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318`` must follow.
    """
    out: dict[str, str] = {}
    for key, value in env.items():
        for old, new in ports.items():
            value = re.sub(rf"(?<![\w.])(127\.0\.0\.1|localhost):{old}(?!\d)", f"127.0.0.1:{new}", value)
        out[key] = value
    return out


def map_paths(env: Mapping[str, str], mounts: Mapping[str, str]) -> dict[str, str]:
    """Values that are a mount path (or under one) point at the local directory standing in for the volume."""
    out: dict[str, str] = {}
    for key, value in env.items():
        for mount_path, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                value = local + value[len(mount_path.rstrip("/")) :]
                break
        out[key] = value
    return out


def map_argv(argv: Sequence[str], mounts: Mapping[str, str]) -> list[str]:
    """A command line whose paths under a mount (a whole argument, or a word inside a ``sh -c`` script such
    as ``cat /workspace/notes.txt``) point at the local directory standing in for the volume."""
    if not mounts:
        return list(argv)
    ordered = sorted(mounts.items(), key=lambda m: -len(m[0]))
    pattern = re.compile(
        "|".join(rf"(?<![\w./-]){re.escape(path.rstrip('/'))}(?=/|$|[\s'\"`;|&)])" for path, _ in ordered)
    )
    local = {path.rstrip("/"): target for path, target in ordered}
    return [pattern.sub(lambda m: local[m.group(0)], arg) for arg in argv]


def claim_dir_name(namespace: str, claim: str, uid: str) -> str:
    """The folder standing in for a PersistentVolumeClaim's volume: one per claim (its uid: a claim deleted
    and created again gets a new, empty one), shared by every pod that mounts it, kept between them."""
    return f"{namespace}_{claim}_{uid[:8]}"


def claim_names(pod: Obj) -> dict[str, str]:
    """Volume name -> the PersistentVolumeClaim it mounts, for the pod's ``persistentVolumeClaim`` volumes."""
    out: dict[str, str] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        source = volume.get("persistentVolumeClaim")
        if isinstance(source, Mapping) and source.get("claimName"):
            out[str(volume["name"])] = str(source["claimName"])
    return out


# --- NetworkPolicies: recorded, not enforced (the local runner has no pod network) -------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (``matchLabels``, ``matchExpressions``) against labels; ``{}`` selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or ():
        key, op, values = expression.get("key"), expression.get("operator"), expression.get("values") or ()
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def selecting_policies(pod: Obj, policies: Sequence[Obj]) -> list[Obj]:
    """The NetworkPolicies of the pod's namespace whose ``podSelector`` selects it."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return [
        p
        for p in policies
        if (p.get("metadata") or {}).get("namespace", meta.get("namespace")) == meta.get("namespace")
        and selector_matches((p.get("spec") or {}).get("podSelector"), labels)
    ]


def describe_policies(policies: Sequence[Obj]) -> str:
    """``sbx-1 (DenyAll)``, several joined by commas; ``none`` when empty."""
    if not policies:
        return "none"
    parts = []
    for policy in policies:
        meta = policy.get("metadata") or {}
        mode = (meta.get("annotations") or {}).get(contract.ANNOTATION_NETWORK_POLICY)
        parts.append(f"{meta.get('name')} ({mode})" if mode else str(meta.get("name")))
    return ", ".join(parts)
