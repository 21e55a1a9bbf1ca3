"""Template resolution: a Sandbox's own fields, then its SandboxTemplate's, then the operator's defaults."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import leap0_contract as contract

from . import objects
from .config import OperatorConfig
from .network import Network, NetworkSpecError, resolve_network

EnvVar = dict[str, Any]

OTLP_EXPORTER_PREFIX = "OTEL_EXPORTER_OTLP_"
# The variables that name an OTLP destination (the general endpoint and the per-signal ones).
UPSTREAM_ENDPOINT_VARS = (
    contract.OTEL_EXPORTER_OTLP_ENDPOINT,
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)


class SpecError(ValueError):
    """A Sandbox that can never work as written: the planner makes it ``Failed`` with this reason and
    message, without a pod and without retrying (creating the missing template later looks at it again)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclasses.dataclass(frozen=True)
class PodSecurity:
    """The Pod Security Standard the sandbox pod meets, and the ids a ``restricted`` pod runs as."""

    level: str = contract.DEFAULT_POD_SECURITY
    run_as_user: int = contract.DEFAULT_RUN_AS_ID
    run_as_group: int = contract.DEFAULT_RUN_AS_ID
    fs_group: int = contract.DEFAULT_RUN_AS_ID

    @property
    def restricted(self) -> bool:
        return self.level == contract.POD_SECURITY_RESTRICTED


def pod_security(template: Mapping[str, Any] | None) -> PodSecurity:
    """The template's ``podSecurity`` (default ``baseline``) with its ``runAsUser``/``runAsGroup``/``fsGroup``
    (default 1000 each; they matter under ``restricted``). The sidecar's UID and GID (65532) are refused
    (:class:`SpecError`): an app running as the sidecar's user could signal it. The CRD refuses them first;
    this covers templates stored before that rule."""
    tpl = template or {}

    def ident(field: str) -> int:
        value = tpl.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if value in (contract.SIDECAR_UID, contract.SIDECAR_GID):
                raise SpecError(
                    contract.REASON_INVALID_SPEC,
                    f"the template's {field} {value} is the telemetry sidecar's own user or group: the "
                    "sandbox may not share it (choose another id, for example 1000)",
                )
            return value
        return contract.DEFAULT_RUN_AS_ID

    level = tpl.get("podSecurity")
    return PodSecurity(
        level=str(level) if level in contract.POD_SECURITY_LEVELS else contract.DEFAULT_POD_SECURITY,
        run_as_user=ident("runAsUser"),
        run_as_group=ident("runAsGroup"),
        fs_group=ident("fsGroup"),
    )


@dataclasses.dataclass(frozen=True)
class Workspace:
    """Where ``/workspace`` lives: an ``emptyDir`` (gone with the pod), or a PersistentVolumeClaim owned by
    the Sandbox and kept while it is paused (``persistent``), of ``storage_class`` (None: the cluster's
    default)."""

    persistent: bool = False
    storage_class: str | None = None


def resolve_workspace(spec: Mapping[str, Any], template: Mapping[str, Any] | None) -> Workspace:
    """``spec.workspace`` field by field over the template's ``workspace`` (each field: the Sandbox's, else
    the template's); a storage class only for a persistent workspace."""
    own = objects.section(spec, "workspace")
    tpl = objects.section(template, "workspace")

    def pick(field: str) -> Any:
        return own[field] if own.get(field) is not None else tpl.get(field)

    persistent = pick("persistent") is True
    storage_class = pick("storageClassName") if persistent else None
    return Workspace(persistent=persistent, storage_class=str(storage_class) if storage_class else None)


@dataclasses.dataclass(frozen=True)
class PausePolicy:
    """When the operator pauses a sandbox by itself: after ``idle_timeout`` seconds without use (None:
    never), at its timeout when ``on_timeout`` is ``Pause``; and how long a paused sandbox is kept
    (``paused_retention`` seconds, None: until deleted)."""

    idle_timeout: int | None = None
    on_timeout: str = contract.DEFAULT_ON_TIMEOUT
    paused_retention: int | None = None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def pause_policy(spec: Mapping[str, Any], template: Mapping[str, Any] | None) -> PausePolicy:
    """``idleTimeout`` and ``onTimeout``: the Sandbox's, else its template's (they may change at any time, so
    they are read at every reconcile), the template's alone where it locks them (``lockedFields``: a Sandbox
    that sets one otherwise fails at creation; changed later, it is ignored); ``pausedRetention``: the
    template's only (a platform admin's bound that a Sandbox cannot widen). Never raises: values the schema
    would refuse count as unset."""
    tpl = template or {}
    locked = locked_fields(template)

    def pick(field: str) -> Any:
        if field in locked:  # the template's, whatever a live Sandbox was changed to since
            return tpl.get(field)
        return spec.get(field) if spec.get(field) is not None else tpl.get(field)

    on_timeout = pick("onTimeout")
    return PausePolicy(
        idle_timeout=_positive_int(pick("idleTimeout")),
        on_timeout=str(on_timeout)
        if on_timeout in contract.ON_TIMEOUT_ACTIONS
        else contract.DEFAULT_ON_TIMEOUT,
        paused_retention=_positive_int(tpl.get("pausedRetention")),
    )


@dataclasses.dataclass(frozen=True)
class Effective:
    """Everything the pod is built from, after the template and the defaults were applied."""

    template_id: str
    image: str
    vcpu: int
    memory: int  # MiB
    disk: int | None  # MiB; None = not limited
    timeout: int  # seconds
    env: tuple[EnvVar, ...] = ()
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    telemetry: bool = True
    # Sandbox logs (the supervisor): spec.telemetry.logs, else the template's, else on; never without the
    # sidecar.
    logs: bool = True
    runtime_class_name: str | None = None
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    network: Network = dataclasses.field(default_factory=lambda: Network(contract.DEFAULT_NETWORK_POLICY))
    security: PodSecurity = dataclasses.field(default_factory=PodSecurity)
    workspace: Workspace = dataclasses.field(default_factory=Workspace)

    @property
    def workspace_mib(self) -> int:
        """The size of a persistent workspace's claim: ``disk``, else the contract's default."""
        return self.disk if self.disk is not None else contract.DEFAULT_PERSISTENT_WORKSPACE_MIB


def sandbox_logs(sandbox_telemetry: Mapping[str, Any], template_telemetry: Mapping[str, Any]) -> bool:
    """``telemetry.logs``: the Sandbox's, else its template's, else on."""
    for telemetry in (sandbox_telemetry, template_telemetry):
        if isinstance(telemetry.get("logs"), bool):
            return bool(telemetry["logs"])
    return True


def template_id(spec: Mapping[str, Any]) -> str:
    """The id a Sandbox spec resolves to: ``spec.template``, else ``default``. The one place it is decided
    (the template lookup, the pod's labels and env, the status and the template event all use it)."""
    value = spec.get("template")
    return str(value) if value else contract.DEFAULT_TEMPLATE_ID


def template_key(sandbox: objects.Obj) -> objects.Key:
    """The (namespace, name) of the SandboxTemplate a Sandbox uses."""
    return objects.namespace(sandbox), template_id(objects.spec(sandbox))


def merge_env(template_env: Sequence[EnvVar], sandbox_env: Sequence[EnvVar]) -> tuple[EnvVar, ...]:
    """The template's env overridden name by name by the Sandbox's; template order first, then new names.
    (Plain merging: :func:`resolve_env` applies the telemetry-destination rule first.)"""
    merged: dict[str, EnvVar] = {}
    for var in template_env:
        merged[str(var["name"])] = dict(var)
    for var in sandbox_env:
        merged[str(var["name"])] = dict(var)
    return tuple(merged.values())


def is_otlp_exporter_var(name: str) -> bool:
    """``OTEL_EXPORTER_OTLP_*``: the upstream exporter's settings (endpoint, headers, TLS, compression...)."""
    return name.startswith(OTLP_EXPORTER_PREFIX)


def sets_otlp_endpoint(env: Sequence[EnvVar]) -> bool:
    """The env names an OTLP destination: the general endpoint or a per-signal one."""
    return any(str(var.get("name")) in UPSTREAM_ENDPOINT_VARS for var in env)


def resolve_env(
    template_env: Sequence[EnvVar], sandbox_env: Sequence[EnvVar], platform_destination: bool
) -> tuple[EnvVar, ...]:
    """The env of the pod: :func:`merge_env`, except that the telemetry destination is one unit.

    Every ``OTEL_EXPORTER_OTLP_*`` variable (endpoint, headers, TLS files, compression, timeout, protocol,
    general and per-signal) comes whole from one author: the Sandbox when its env sets an OTLP endpoint
    (general or per-signal), else the template (whose destination may be the operator's default). So a
    template's or the operator's headers (an ``Authorization``, a tenant header) never go to an endpoint the
    Sandbox's creator chose, and a Sandbox cannot add its own headers to a destination it did not choose:
    OTLP settings without an endpoint are refused (:class:`SpecError`) when the template or the operator
    (``platform_destination``) gives one.
    """
    sandbox_otlp = [v for v in sandbox_env if is_otlp_exporter_var(str(v["name"]))]
    template_otlp = [v for v in template_env if is_otlp_exporter_var(str(v["name"]))]
    if sets_otlp_endpoint(sandbox_otlp):
        template_env = [v for v in template_env if not is_otlp_exporter_var(str(v["name"]))]
    elif sandbox_otlp and (sets_otlp_endpoint(template_otlp) or platform_destination):
        names = ", ".join(sorted({str(v["name"]) for v in sandbox_otlp}))
        raise SpecError(
            contract.REASON_INVALID_SPEC,
            f"spec.env sets {names} but no OTLP endpoint: the telemetry destination of the template or "
            "the operator is taken whole, its settings cannot be changed; set "
            f"{contract.OTEL_EXPORTER_OTLP_ENDPOINT} (or a per-signal endpoint) with them to send to "
            "your own endpoint, or remove them",
        )
    return merge_env(template_env, sandbox_env)


def _network_narrows(sandbox_value: Any, template_value: Any) -> bool:
    """A Sandbox's network that only narrows its template's: DenyAll (the cluster DNS only)."""
    return isinstance(sandbox_value, Mapping) and sandbox_value.get("policy") == contract.NETWORK_DENY_ALL


def locked_fields(template: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The Sandbox fields ``template`` locks: its ``lockedFields``, else ``network`` when it sets a network
    (an admin's network in a template is final without saying it twice), else none."""
    if template is None:
        return ()
    listed = template.get("lockedFields")
    if listed is None:
        return contract.DEFAULT_LOCKED_FIELDS if template.get("network") is not None else ()
    return tuple(str(f) for f in listed if f in contract.LOCKABLE_FIELDS)


def check_locks(spec: Mapping[str, Any], template: Mapping[str, Any] | None, tid: str) -> None:
    """Raise :class:`SpecError` (``FieldLocked``, naming the field) when the Sandbox sets a field its template
    locks to anything but the template's own value (a network of ``DenyAll`` is always allowed)."""
    if template is None:
        return
    for field in locked_fields(template):
        value = spec.get(field)
        if value is None or value == template.get(field):
            continue
        if field == "network" and _network_narrows(value, template.get(field)):
            continue
        wanted = template.get(field)
        if wanted is None:
            allowed = "may not set it"
        else:
            allowed = f"may set it only to the template's value {json.dumps(wanted, sort_keys=True)}"
            if field == "network" and not _network_narrows(wanted, None):
                allowed += ' or to {"policy": "DenyAll"}'
        raise SpecError(
            contract.REASON_FIELD_LOCKED,
            f'spec.{field} is locked by SandboxTemplate "{tid}" (its lockedFields): a Sandbox using it '
            f"{allowed}; remove spec.{field}",
        )


def _int_in_range(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(
            contract.REASON_INVALID_SPEC, f"{name} must be an integer from {low} to {high}, got {value!r}"
        )
    return value


def resolve(
    spec: Mapping[str, Any],
    template: Mapping[str, Any] | None,
    config: OperatorConfig,
) -> Effective:
    """Apply the template (its ``spec``, or None when it does not exist) and the defaults to a Sandbox spec.

    Raises :class:`SpecError` when ``spec.template`` names a template that does not exist (an unset template
    falls back to ``default``, which may be absent), or when the result has no image or values out of range.
    """
    tid = template_id(spec)
    if template is None and spec.get("template"):
        raise SpecError(
            contract.REASON_TEMPLATE_NOT_FOUND,
            f'SandboxTemplate "{tid}" does not exist in this namespace: create it (the sandbox then '
            "starts), or delete this Sandbox and create it again naming an existing template or none "
            "(spec.template cannot be changed)",
        )
    tpl: Mapping[str, Any] = template or {}
    check_locks(spec, template, tid)

    def pick(field: str, default: Any) -> Any:
        if spec.get(field) is not None:
            return spec[field]
        if tpl.get(field) is not None:
            return tpl[field]
        return default

    image = pick("image", config.default_image)
    if not image or not str(image).strip():
        raise SpecError(
            contract.REASON_INVALID_SPEC,
            "no image: set spec.image, the template's image or the operator's default image",
        )
    vcpu = _int_in_range("vcpu", pick("vcpu", contract.DEFAULT_VCPU), contract.MIN_VCPU, contract.MAX_VCPU)
    memory = _int_in_range(
        "memory",
        pick("memory", contract.DEFAULT_MEMORY_MIB),
        contract.MIN_MEMORY_MIB,
        contract.MAX_MEMORY_MIB,
    )
    disk_value = pick("disk", None)
    disk = None if disk_value is None else _int_in_range("disk", disk_value, 1, 1048576)
    timeout = _int_in_range(
        "timeout",
        pick("timeout", contract.DEFAULT_TIMEOUT_S),
        contract.MIN_TIMEOUT_S,
        contract.MAX_TIMEOUT_S,
    )
    try:
        network = resolve_network(spec, template, config.network.default_policy)
    except NetworkSpecError as exc:
        raise SpecError(contract.REASON_INVALID_SPEC, str(exc)) from None
    command = spec.get("command")
    args = spec.get("args")
    telemetry = spec.get("telemetry") or {}
    enabled = telemetry.get("enabled") is not False
    return Effective(
        template_id=tid,
        image=str(image),
        vcpu=vcpu,
        memory=memory,
        disk=disk,
        timeout=timeout,
        env=resolve_env(tpl.get("env") or (), spec.get("env") or (), config.platform_destination),
        command=tuple(command) if command is not None else None,
        args=tuple(args) if args is not None else None,
        telemetry=enabled,
        logs=enabled and sandbox_logs(telemetry, tpl.get("telemetry") or {}),
        runtime_class_name=tpl.get("runtimeClassName") or None,
        node_selector=dict(tpl.get("nodeSelector") or {}),
        tolerations=tuple(tpl.get("tolerations") or ()),
        network=network,
        security=pod_security(template),
        workspace=resolve_workspace(spec, template),
    )
