"""Check a pod manifest against the Pod Security Standards, control by control (table-driven).

Each :class:`Control` is one row of the published standard (kubernetes.io, "Pod Security Standards"; the
``pod-security-admission`` checks of the same names), with the fields it restricts and the values it allows.
``violations(pod, "baseline")`` runs the baseline controls, ``violations(pod, "restricted")`` the baseline and
the restricted ones (restricted is cumulative), and returns one message per violation naming the control and
the field. "Containers" are ``containers``, ``initContainers`` and ``ephemeralContainers``, as in the
standard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

BASELINE = "baseline"
RESTRICTED = "restricted"

# Capabilities baseline allows adding (the container runtimes' default set).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"

Check = Callable[[Mapping[str, Any]], list[str]]


@dataclasses.dataclass(frozen=True)
class Control:
    name: str
    level: str
    fields: str  # the restricted fields, as the standard lists them
    check: Check


def _spec(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("spec") or {}


def _containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    spec = _spec(pod)
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for index, container in enumerate(spec.get(key) or ()):
            yield f"spec.{key}[{index}]", container


def _sc(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("securityContext") or {}


def _pod_sc(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _sc(_spec(pod))


# --- baseline ----------------------------------------------------------------------------------------------
def host_process(pod: Mapping[str, Any]) -> list[str]:
    found = []
    if (_pod_sc(pod).get("windowsOptions") or {}).get("hostProcess"):
        found.append("spec.securityContext.windowsOptions.hostProcess")
    for path, c in _containers(pod):
        if (_sc(c).get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{path}.securityContext.windowsOptions.hostProcess")
    return found


def host_namespaces(pod: Mapping[str, Any]) -> list[str]:
    return [f"spec.{key}" for key in ("hostNetwork", "hostPID", "hostIPC") if _spec(pod).get(key)]


def privileged(pod: Mapping[str, Any]) -> list[str]:
    return [f"{path}.securityContext.privileged" for path, c in _containers(pod) if _sc(c).get("privileged")]


def capabilities_baseline(pod: Mapping[str, Any]) -> list[str]:
    found = []
    for path, c in _containers(pod):
        for cap in (_sc(c).get("capabilities") or {}).get("add") or ():
            if cap not in BASELINE_CAPABILITIES:
                found.append(f"{path}.securityContext.capabilities.add: {cap}")
    return found


def host_path_volumes(pod: Mapping[str, Any]) -> list[str]:
    return [
        f"spec.volumes[{i}].hostPath"
        for i, v in enumerate(_spec(pod).get("volumes") or ())
        if "hostPath" in v
    ]


def host_ports(pod: Mapping[str, Any]) -> list[str]:
    found = []
    for path, c in _containers(pod):
        for i, port in enumerate(c.get("ports") or ()):
            if port.get("hostPort"):
                found.append(f"{path}.ports[{i}].hostPort")
    return found


def app_armor(pod: Mapping[str, Any]) -> list[str]:
    found = []
    allowed_types = {"RuntimeDefault", "Localhost"}
    profile = _pod_sc(pod).get("appArmorProfile")
    if profile is not None and profile.get("type") not in allowed_types:
        found.append("spec.securityContext.appArmorProfile.type")
    for path, c in _containers(pod):
        profile = _sc(c).get("appArmorProfile")
        if profile is not None and profile.get("type") not in allowed_types:
            found.append(f"{path}.securityContext.appArmorProfile.type")
    for key, value in ((pod.get("metadata") or {}).get("annotations") or {}).items():
        allowed = value in ("", "runtime/default") or str(value).startswith("localhost/")
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and not allowed:
            found.append(f"metadata.annotations[{key}]")
    return found


def se_linux(pod: Mapping[str, Any]) -> list[str]:
    found = []

    def check(where: str, options: Mapping[str, Any] | None) -> None:
        if options is None:
            return
        if options.get("type", "") not in SELINUX_TYPES:
            found.append(f"{where}.seLinuxOptions.type")
        for key in ("user", "role"):
            if options.get(key):
                found.append(f"{where}.seLinuxOptions.{key}")

    check("spec.securityContext", _pod_sc(pod).get("seLinuxOptions"))
    for path, c in _containers(pod):
        check(f"{path}.securityContext", _sc(c).get("seLinuxOptions"))
    return found


def proc_mount(pod: Mapping[str, Any]) -> list[str]:
    return [
        f"{path}.securityContext.procMount"
        for path, c in _containers(pod)
        if _sc(c).get("procMount") not in (None, "Default")
    ]


def seccomp_baseline(pod: Mapping[str, Any]) -> list[str]:
    found = []
    if (_pod_sc(pod).get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("spec.securityContext.seccompProfile.type")
    for path, c in _containers(pod):
        if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"{path}.securityContext.seccompProfile.type")
    return found


def sysctls(pod: Mapping[str, Any]) -> list[str]:
    return [
        f"spec.securityContext.sysctls: {s.get('name')}"
        for s in _pod_sc(pod).get("sysctls") or ()
        if s.get("name") not in SAFE_SYSCTLS
    ]


def host_probes_and_lifecycle(pod: Mapping[str, Any]) -> list[str]:
    found = []
    for path, c in _containers(pod):
        handlers = {f"{p}": c.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")}
        lifecycle = c.get("lifecycle") or {}
        handlers.update({f"lifecycle.{k}": lifecycle.get(k) for k in ("postStart", "preStop")})
        for where, handler in handlers.items():
            for kind in ("httpGet", "tcpSocket"):
                if ((handler or {}).get(kind) or {}).get("host"):
                    found.append(f"{path}.{where}.{kind}.host")
    return found


# --- restricted --------------------------------------------------------------------------------------------
def restricted_volumes(pod: Mapping[str, Any]) -> list[str]:
    found = []
    for i, volume in enumerate(_spec(pod).get("volumes") or ()):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"spec.volumes[{i}]: {', '.join(sorted(kinds - RESTRICTED_VOLUME_TYPES))}")
    return found


def allow_privilege_escalation(pod: Mapping[str, Any]) -> list[str]:
    return [
        f"{path}.securityContext.allowPrivilegeEscalation"
        for path, c in _containers(pod)
        if _sc(c).get("allowPrivilegeEscalation") is not False
    ]


def run_as_non_root(pod: Mapping[str, Any]) -> list[str]:
    pod_level = _pod_sc(pod).get("runAsNonRoot")
    found = ["spec.securityContext.runAsNonRoot"] if pod_level is False else []
    for path, c in _containers(pod):
        own = _sc(c).get("runAsNonRoot")
        if own is False or (own is None and pod_level is not True):
            found.append(f"{path}.securityContext.runAsNonRoot")
    return found


def run_as_user(pod: Mapping[str, Any]) -> list[str]:
    found = ["spec.securityContext.runAsUser"] if _pod_sc(pod).get("runAsUser") == 0 else []
    found += [
        f"{path}.securityContext.runAsUser" for path, c in _containers(pod) if _sc(c).get("runAsUser") == 0
    ]
    return found


def seccomp_restricted(pod: Mapping[str, Any]) -> list[str]:
    allowed = {"RuntimeDefault", "Localhost"}
    pod_type = (_pod_sc(pod).get("seccompProfile") or {}).get("type")
    found = (
        ["spec.securityContext.seccompProfile.type"]
        if pod_type is not None and pod_type not in allowed
        else []
    )
    for path, c in _containers(pod):
        own = (_sc(c).get("seccompProfile") or {}).get("type")
        if (own is not None and own not in allowed) or (own is None and pod_type not in allowed):
            found.append(f"{path}.securityContext.seccompProfile.type")
    return found


def capabilities_restricted(pod: Mapping[str, Any]) -> list[str]:
    found = []
    for path, c in _containers(pod):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or ()):
            found.append(f"{path}.securityContext.capabilities.drop must include ALL")
        for cap in caps.get("add") or ():
            if cap != "NET_BIND_SERVICE":
                found.append(f"{path}.securityContext.capabilities.add: {cap}")
    return found


CONTROLS: tuple[Control, ...] = (
    Control("HostProcess", BASELINE, "*.securityContext.windowsOptions.hostProcess", host_process),
    Control("Host Namespaces", BASELINE, "spec.hostNetwork, spec.hostPID, spec.hostIPC", host_namespaces),
    Control("Privileged Containers", BASELINE, "containers[*].securityContext.privileged", privileged),
    Control(
        "Capabilities", BASELINE, "containers[*].securityContext.capabilities.add", capabilities_baseline
    ),
    Control("HostPath Volumes", BASELINE, "spec.volumes[*].hostPath", host_path_volumes),
    Control("Host Ports", BASELINE, "containers[*].ports[*].hostPort", host_ports),
    Control("AppArmor", BASELINE, "*.securityContext.appArmorProfile.type, apparmor annotations", app_armor),
    Control("SELinux", BASELINE, "*.securityContext.seLinuxOptions.{type,user,role}", se_linux),
    Control("/proc Mount Type", BASELINE, "containers[*].securityContext.procMount", proc_mount),
    Control("Seccomp", BASELINE, "*.securityContext.seccompProfile.type", seccomp_baseline),
    Control("Sysctls", BASELINE, "spec.securityContext.sysctls[*].name", sysctls),
    Control(
        "Host Probes / Lifecycle Hooks",
        BASELINE,
        "containers[*].*.{httpGet,tcpSocket}.host",
        host_probes_and_lifecycle,
    ),
    Control("Volume Types", RESTRICTED, "spec.volumes[*]", restricted_volumes),
    Control(
        "Privilege Escalation",
        RESTRICTED,
        "containers[*].securityContext.allowPrivilegeEscalation",
        allow_privilege_escalation,
    ),
    Control("Running as Non-root", RESTRICTED, "*.securityContext.runAsNonRoot", run_as_non_root),
    Control("Running as Non-root user", RESTRICTED, "*.securityContext.runAsUser", run_as_user),
    Control("Seccomp (v1.19+)", RESTRICTED, "*.securityContext.seccompProfile.type", seccomp_restricted),
    Control(
        "Capabilities (v1.22+)",
        RESTRICTED,
        "containers[*].securityContext.capabilities",
        capabilities_restricted,
    ),
)


def controls(level: str) -> tuple[Control, ...]:
    if level == BASELINE:
        return tuple(c for c in CONTROLS if c.level == BASELINE)
    if level == RESTRICTED:
        return CONTROLS
    raise ValueError(f"unknown Pod Security Standard level {level!r}")


def violations(pod: Mapping[str, Any], level: str) -> list[str]:
    """Every violation of the ``level`` standard, as ``"<control>: <field>"``; empty when the pod meets it."""
    return [f"{control.name}: {field}" for control in controls(level) for field in control.check(pod)]
