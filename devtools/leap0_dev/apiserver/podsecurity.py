"""PodSecurity admission, as kube-apiserver 1.36 enforces it on pod creation: the namespace's
``pod-security.kubernetes.io/enforce`` level (``privileged``, ``baseline``, ``restricted``), the Pod Security
Standards' checks of k8s.io/pod-security-admission at their latest version, in the same order and with the
same words, so a refusal reads as a cluster's: ``pods "x" is forbidden: violates PodSecurity
"restricted:latest": allowPrivilegeEscalation != false (container "c" must set
securityContext.allowPrivilegeEscalation=false), ...``. Pure functions over the pod as JSON.

Not modelled: the ``warn`` and ``audit`` modes (no warnings, no audit annotations), exemptions (the default
admission configuration has none), updates of existing pods, pod controllers (Deployments and the like are
not checked upstream either, only warned about) and ``enforce-version`` (every version is judged by the latest
checks; the message names the version the label gives).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION_LABEL = "pod-security.kubernetes.io/enforce-version"
PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"

Pod = Mapping[str, Any]
Result = tuple[str, str] | None  # (forbidden reason, forbidden detail), or None when allowed


def _join_quote(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _spec(pod: Pod) -> Mapping[str, Any]:
    return pod.get("spec") or {}


def _pod_sc(pod: Pod) -> Mapping[str, Any]:
    return _spec(pod).get("securityContext") or {}


def _containers(pod: Pod) -> Iterator[Mapping[str, Any]]:
    """Init containers, containers, ephemeral containers: upstream's visitContainers order."""
    spec = _spec(pod)
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _sc(container: Mapping[str, Any]) -> Mapping[str, Any] | None:
    sc = container.get("securityContext")
    return sc if isinstance(sc, Mapping) else None


def _windows(pod: Pod) -> bool:
    return ((_spec(pod).get("os") or {}).get("name")) == "windows"


def _user_namespace(pod: Pod) -> bool:
    """relaxPolicyForUserNamespacePod: ``hostUsers: false``."""
    return _spec(pod).get("hostUsers") is False


def _containers_phrase(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_join_quote(names)}"


# --- baseline -------------------------------------------------------------------------------------------
def _app_armor_profile(pod: Pod) -> Result:
    allowed = ("RuntimeDefault", "Localhost")
    setters: list[str] = []
    values: set[str] = set()
    pod_profile = _pod_sc(pod).get("appArmorProfile")
    if isinstance(pod_profile, Mapping) and pod_profile.get("type") not in allowed:
        setters.append("pod")
        values.add(str(pod_profile.get("type") or ""))
    bad = []
    for c in _containers(pod):
        profile = (_sc(c) or {}).get("appArmorProfile")
        if isinstance(profile, Mapping) and profile.get("type") not in allowed:
            bad.append(c.get("name", ""))
            values.add(str(profile.get("type") or ""))
    if bad:
        setters.append(_containers_phrase(bad))
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    prefix = "container.apparmor.security.beta.kubernetes.io/"
    forbidden = sorted(
        f"{k}={_go_quote(v)}"
        for k, v in annotations.items()
        if k.startswith(prefix) and not (v == "" or v == "runtime/default" or v.startswith("localhost/"))
    )
    value_list = [*sorted(values), *forbidden]
    if forbidden:
        setters.append(_plural("annotation", "annotations", len(forbidden)))
    if not setters:
        return None
    reason = _plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(value_list))
    return reason, f"{' and '.join(setters)} must not set AppArmor profile type to {_join_quote(value_list)}"


def _go_quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


_BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
        "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip


def _capabilities_baseline(pod: Pod) -> Result:
    bad: list[str] = []
    added: set[str] = set()
    for c in _containers(pod):
        caps = (_sc(c) or {}).get("capabilities")
        if not isinstance(caps, Mapping):
            continue
        extra = [str(a) for a in caps.get("add") or [] if a not in _BASELINE_CAPABILITIES]
        if extra:
            bad.append(c.get("name", ""))
            added.update(extra)
    if not bad:
        return None
    where = "securityContext.capabilities.add"
    detail = f"{_containers_phrase(bad)} must not include {_join_quote(sorted(added))} in {where}"
    return "non-default capabilities", detail


def _host_namespaces(pod: Pod) -> Result:
    spec = _spec(pod)
    found = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key) is True]
    return ("host namespaces", ", ".join(found)) if found else None


def _host_path_volumes(pod: Pod) -> Result:
    names = [v.get("name", "") for v in _spec(pod).get("volumes") or [] if v.get("hostPath") is not None]
    if not names:
        return None
    return "hostPath volumes", f"{_plural('volume', 'volumes', len(names))} {_join_quote(names)}"


def _host_ports(pod: Pod) -> Result:
    bad: list[str] = []
    ports: set[str] = set()
    for c in _containers(pod):
        used = [str(p.get("hostPort")) for p in c.get("ports") or [] if p.get("hostPort") not in (None, 0)]
        if used:
            bad.append(c.get("name", ""))
            ports.update(used)
    if not bad:
        return None
    detail = (
        f"{_containers_phrase(bad)} {_plural('uses', 'use', len(bad))} "
        f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}"
    )
    return "hostPort", detail


def _host_probes_and_lifecycle(pod: Pod) -> Result:
    bad: set[str] = set()
    hosts: set[str] = set()

    def hosts_of(handler: Any) -> list[str]:
        if not isinstance(handler, Mapping):
            return []
        found = []
        for kind in ("httpGet", "tcpSocket"):
            host = (handler.get(kind) or {}).get("host")
            if host:
                found.append(str(host))
        return found

    for c in _containers(pod):
        lifecycle = c.get("lifecycle") or {}
        for handler in (c.get("livenessProbe"), c.get("readinessProbe"), c.get("startupProbe"),
                        lifecycle.get("postStart"), lifecycle.get("preStop")):  # fmt: skip
            found = hosts_of(handler)
            if found:
                bad.add(c.get("name", ""))
                hosts.update(found)
    if not bad:
        return None
    detail = (
        f"{_containers_phrase(sorted(bad))} {_plural('uses', 'use', len(bad))} "
        f"{_plural('probe or lifecycle host', 'probe or lifecycle hosts', len(hosts))} "
        f"{_join_quote(sorted(hosts))}"
    )
    return "probe or lifecycle host", detail


def _privileged(pod: Pod) -> Result:
    bad = [c.get("name", "") for c in _containers(pod) if (_sc(c) or {}).get("privileged") is True]
    if not bad:
        return None
    return "privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true"


def _proc_mount(pod: Pod) -> Result:
    """Baseline's procMount: a pod in a user namespace may set it."""
    return None if _user_namespace(pod) else _proc_mount_any(pod)


def _proc_mount_any(pod: Pod) -> Result:
    """Restricted's procMount: no pod may."""
    bad: list[str] = []
    kinds: set[str] = set()
    for c in _containers(pod):
        mount = (_sc(c) or {}).get("procMount")
        if mount is not None and mount != "Default":
            bad.append(c.get("name", ""))
            kinds.add(str(mount))
    if not bad:
        return None
    return (
        "procMount",
        f"{_containers_phrase(bad)} must not set securityContext.procMount to {_join_quote(sorted(kinds))}",
    )


_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})


def _se_linux_options(pod: Pod) -> Result:
    setters: list[str] = []
    types: set[str] = set()
    flags = {"user": False, "role": False}

    def valid(options: Mapping[str, Any]) -> bool:
        ok = True
        if str(options.get("type") or "") not in _SELINUX_TYPES:
            ok = False
            types.add(str(options.get("type") or ""))
        for key in ("user", "role"):
            if options.get(key):
                ok = False
                flags[key] = True
        return ok

    pod_options = _pod_sc(pod).get("seLinuxOptions")
    if isinstance(pod_options, Mapping) and not valid(pod_options):
        setters.append("pod")
    bad = []
    for c in _containers(pod):
        options = (_sc(c) or {}).get("seLinuxOptions")
        if isinstance(options, Mapping) and not valid(options):
            bad.append(c.get("name", ""))
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    data = []
    if types:
        data.append(f"{_plural('type', 'types', len(types))} {_join_quote(sorted(types))}")
    data += [f"{key} may not be set" for key in ("user", "role") if flags[key]]
    return (
        "seLinuxOptions",
        f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}",
    )


def _valid_seccomp(kind: Any) -> bool:
    return kind in ("Localhost", "RuntimeDefault")


def _seccomp_setters(pod: Pod) -> tuple[list[str], set[str], bool, list[str]]:
    """(bad setters, bad types, whether the pod sets a valid profile, containers setting none)."""
    setters: list[str] = []
    values: set[str] = set()
    pod_set = False
    profile = _pod_sc(pod).get("seccompProfile")
    if isinstance(profile, Mapping):
        if not _valid_seccomp(profile.get("type")):
            setters.append("pod")
            values.add(str(profile.get("type") or ""))
        else:
            pod_set = True
    bad, unset = [], []
    for c in _containers(pod):
        own = (_sc(c) or {}).get("seccompProfile")
        if isinstance(own, Mapping):
            if not _valid_seccomp(own.get("type")):
                bad.append(c.get("name", ""))
                values.add(str(own.get("type") or ""))
        elif not pod_set:
            unset.append(c.get("name", ""))
    if bad:
        setters.append(_containers_phrase(bad))
    return setters, values, pod_set, unset


def _seccomp_words(values: set[str]) -> str:
    return f"must not set securityContext.seccompProfile.type to {_join_quote(sorted(values))}"


def _seccomp_baseline(pod: Pod) -> Result:
    setters, values, _, _ = _seccomp_setters(pod)
    if not setters:
        return None
    detail = f"{' and '.join(setters)} {_seccomp_words(values)}"
    return "seccompProfile", detail


_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
    }
)  # fmt: skip


def _sysctls(pod: Pod) -> Result:
    found = [
        str(s.get("name", "")) for s in _pod_sc(pod).get("sysctls") or [] if s.get("name") not in _SYSCTLS
    ]
    return ("forbidden sysctls", ", ".join(found)) if found else None


def _windows_host_process(pod: Pod) -> Result:
    setters = []
    if ((_pod_sc(pod).get("windowsOptions") or {}).get("hostProcess")) is True:
        setters.append("pod")
    bad = [c.get("name", "") for c in _containers(pod)
           if (((_sc(c) or {}).get("windowsOptions") or {}).get("hostProcess")) is True]  # fmt: skip
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return (
        "hostProcess",
        f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true",
    )


# --- restricted -----------------------------------------------------------------------------------------
def _allow_privilege_escalation(pod: Pod) -> Result:
    if _windows(pod):
        return None
    bad = [
        c.get("name", "")
        for c in _containers(pod)
        if (_sc(c) or {}).get("allowPrivilegeEscalation") is not False
    ]
    if not bad:
        return None
    detail = f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false"
    return "allowPrivilegeEscalation != false", detail


def _capabilities_restricted(pod: Pod) -> Result:
    if _windows(pod):
        return None
    missing_drop: list[str] = []
    adding: list[str] = []
    forbidden: set[str] = set()
    for c in _containers(pod):
        caps = (_sc(c) or {}).get("capabilities")
        if not isinstance(caps, Mapping):
            missing_drop.append(c.get("name", ""))
            continue
        if "ALL" not in (caps.get("drop") or []):
            missing_drop.append(c.get("name", ""))
        extra = [str(a) for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            adding.append(c.get("name", ""))
            forbidden.update(extra)
    details = []
    if missing_drop:
        details.append(
            f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding:
        details.append(
            f"{_containers_phrase(adding)} must not include {_join_quote(sorted(forbidden))} in "
            "securityContext.capabilities.add"
        )
    return ("unrestricted capabilities", "; ".join(details)) if details else None


_ALLOWED_VOLUMES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                    "persistentVolumeClaim", "projected", "secret")  # fmt: skip
_RESTRICTED_VOLUMES = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi",
                       "glusterfs", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile",
                       "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "portworxVolume",
                       "scaleIO", "storageos")  # fmt: skip


def _restricted_volumes(pod: Pod) -> Result:
    bad: list[str] = []
    kinds: set[str] = set()
    for volume in _spec(pod).get("volumes") or []:
        if any(volume.get(kind) is not None for kind in _ALLOWED_VOLUMES):
            continue
        bad.append(volume.get("name", ""))
        kinds.add(next((kind for kind in _RESTRICTED_VOLUMES if volume.get(kind) is not None), "unknown"))
    if not bad:
        return None
    detail = (
        f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)} {_plural('uses', 'use', len(bad))} "
        f"{_plural('restricted volume type', 'restricted volume types', len(kinds))} "
        f"{_join_quote(sorted(kinds))}"
    )
    return "restricted volume types", detail


def _run_as_non_root(pod: Pod) -> Result:
    if _user_namespace(pod):
        return None
    setters: list[str] = []
    pod_value = _pod_sc(pod).get("runAsNonRoot")
    if pod_value is False:
        setters.append("pod")
    explicit, implicit = [], []
    for c in _containers(pod):
        own = (_sc(c) or {}).get("runAsNonRoot")
        if own is not None:
            if own is False:
                explicit.append(c.get("name", ""))
        elif pod_value is not True:
            implicit.append(c.get("name", ""))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return (
            "runAsNonRoot != true",
            f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false",
        )
    if implicit:
        return (
            "runAsNonRoot != true",
            f"pod or {_containers_phrase(implicit)} must set securityContext.runAsNonRoot=true",
        )
    return None


def _run_as_user(pod: Pod) -> Result:
    if _user_namespace(pod):
        return None
    setters = ["pod"] if _pod_sc(pod).get("runAsUser") == 0 else []
    bad = [c.get("name", "") for c in _containers(pod) if (_sc(c) or {}).get("runAsUser") == 0]
    if bad:
        setters.append(_containers_phrase(bad))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _seccomp_restricted(pod: Pod) -> Result:
    if _windows(pod):
        return None
    setters, values, _, unset = _seccomp_setters(pod)
    if setters:
        detail = f"{' and '.join(setters)} {_seccomp_words(values)}"
        return "seccompProfile", detail
    if unset:
        detail = (
            f"pod or {_containers_phrase(unset)} must set securityContext.seccompProfile.type to "
            '"RuntimeDefault" '
            'or "Localhost"'
        )
        return "seccompProfile", detail
    return None


Check = Callable[[Pod], Result]
# By check id, sorted as upstream's registry sorts them: the baseline checks, then the restricted ones.
_BASELINE_CHECKS: list[tuple[str, Check]] = sorted(
    [
        ("appArmorProfile", _app_armor_profile),
        ("capabilities_baseline", _capabilities_baseline),
        ("hostNamespaces", _host_namespaces),
        ("hostPathVolumes", _host_path_volumes),
        ("hostPorts", _host_ports),
        ("hostProbesAndHostLifecycle", _host_probes_and_lifecycle),
        ("privileged", _privileged),
        ("procMount", _proc_mount),
        ("seLinuxOptions", _se_linux_options),
        ("seccompProfile_baseline", _seccomp_baseline),
        ("sysctls", _sysctls),
        ("windowsHostProcess", _windows_host_process),
    ]
)
_RESTRICTED_CHECKS: list[tuple[str, Check]] = sorted(
    [
        ("allowPrivilegeEscalation", _allow_privilege_escalation),
        ("capabilities_restricted", _capabilities_restricted),
        ("procMount_restricted", _proc_mount_any),
        ("restrictedVolumes", _restricted_volumes),
        ("runAsNonRoot", _run_as_non_root),
        ("runAsUser", _run_as_user),
        ("seccompProfile_restricted", _seccomp_restricted),
    ]
)
# What each restricted check replaces of baseline's.
_OVERRIDES = {"capabilities_baseline", "procMount", "hostPathVolumes", "seccompProfile_baseline"}


def checks(level: str) -> list[tuple[str, Check]]:
    if level == PRIVILEGED:
        return []
    if level == BASELINE:
        return list(_BASELINE_CHECKS)
    return [c for c in _BASELINE_CHECKS if c[0] not in _OVERRIDES] + list(_RESTRICTED_CHECKS)


def violations(pod: Pod, level: str) -> list[tuple[str, str]]:
    """Each failed check's (reason, detail), in upstream's order."""
    return [result for _, check in checks(level) if (result := check(pod)) is not None]


def enforced(namespace_labels: Mapping[str, str]) -> tuple[str, str]:
    """The namespace's enforced (level, version); no label is ``privileged``, an unknown level
    ``restricted`` (as upstream, which fails closed)."""
    level = namespace_labels.get(ENFORCE_LABEL, PRIVILEGED)
    if level not in (PRIVILEGED, BASELINE, RESTRICTED):
        level = RESTRICTED
    return level, namespace_labels.get(ENFORCE_VERSION_LABEL) or "latest"


def refusal(pod: Pod, namespace_labels: Mapping[str, str]) -> str | None:
    """The 403's message when the namespace's enforced level refuses the pod, else None."""
    level, version = enforced(namespace_labels)
    found = violations(pod, level)
    if not found:
        return None
    detail = ", ".join(f"{reason} ({text})" if text else reason for reason, text in found)
    name = (pod.get("metadata") or {}).get("name", "")
    return f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version}": {detail}'
