"""Typed models of the SDK and the pure functions that build and read API objects.

Nothing here talks to the network: the client (``leap0.client``) hands these functions plain dicts.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import leap0_contract as c

JsonDict = dict[str, Any]
EnvInput = Mapping[str, str] | Sequence[Mapping[str, Any]]

_NAME_ALPHABET = string.ascii_lowercase + string.digits


class SandboxData(BaseModel):
    """What the API says about one Sandbox: its spec as written and the operator's status."""

    model_config = ConfigDict(extra="ignore", frozen=False)

    id: str = Field(description="The sandbox id: the Sandbox's metadata.name.")
    namespace: str
    uid: str | None = None
    resource_version: str | None = None
    created_at: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # spec (as requested; None means "from the template, else the operator's default")
    template: str | None = None
    image: str | None = None
    vcpu: int | None = None
    memory: int | None = Field(default=None, description="Memory limit in MiB.")
    disk: int | None = Field(default=None, description="Workspace size in MiB.")
    timeout: int | None = Field(
        default=None, description="Lifetime in seconds from creation (from the last resume once resumed)."
    )
    env: list[JsonDict] = Field(default_factory=list)
    workspace: JsonDict | None = Field(
        default=None, description="spec.workspace: persistent (kept while paused) and storageClassName."
    )
    paused: bool | None = Field(default=None, description="spec.paused: the sandbox is asked to be paused.")
    idle_timeout: int | None = Field(
        default=None, description="Seconds without an SDK or MCP operation before the sandbox is paused."
    )
    on_timeout: str | None = Field(default=None, description="Delete or Pause when the timeout is reached.")
    # status (written by the operator)
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    template_id: str | None = None
    effective_vcpu: int | None = None
    effective_memory: int | None = None
    pod_name: str | None = None
    pod_ip: str | None = None
    # The leap0 supervisor in the sandbox container (sandbox logs on): process.execute runs through it.
    supervisor: str | None = None
    started_at: datetime | None = None
    expires_at: datetime | None = None
    paused_at: datetime | None = None
    resumed_at: datetime | None = None
    effective_workspace: JsonDict | None = None
    effective_idle_timeout: int | None = None
    observed_generation: int | None = None
    conditions: list[JsonDict] = Field(default_factory=list)

    @property
    def is_running(self) -> bool:
        return self.phase == c.PHASE_RUNNING

    @property
    def is_paused(self) -> bool:
        """Paused, or asked to be (``spec.paused``): an operation needs a resume first."""
        return self.phase == c.PHASE_PAUSED or self.paused is True

    @property
    def pause_refused(self) -> str | None:
        """Why the operator refused to pause it (its ``Paused`` condition says ``PauseRefused``), or None."""
        cond = condition({"conditions": self.conditions}, c.CONDITION_PAUSED)
        if cond is not None and cond.get("reason") == c.REASON_PAUSE_REFUSED:
            return str(cond.get("message") or "")
        return None

    @property
    def is_terminal(self) -> bool:
        return self.phase in c.TERMINAL_PHASES


def sandbox_fields(obj: Mapping[str, Any]) -> JsonDict:
    """The fields of :class:`SandboxData` read from a Sandbox object as the API returns it (a plain dict)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    reason = status.get("reason")
    message = status.get("message")
    ready = ready_condition(status)
    if ready is not None:
        reason = reason or ready.get("reason")
        message = message or ready.get("message")
    return {
        "id": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "uid": meta.get("uid"),
        "resource_version": meta.get("resourceVersion"),
        "created_at": meta.get("creationTimestamp"),
        "labels": dict(meta.get("labels") or {}),
        "template": spec.get("template"),
        "image": spec.get("image"),
        "vcpu": spec.get("vcpu"),
        "memory": spec.get("memory"),
        "disk": spec.get("disk"),
        "timeout": spec.get("timeout"),
        "env": list(spec.get("env") or []),
        "workspace": dict(spec["workspace"]) if isinstance(spec.get("workspace"), Mapping) else None,
        "paused": spec.get("paused"),
        "idle_timeout": spec.get("idleTimeout"),
        "on_timeout": spec.get("onTimeout"),
        "phase": status.get("phase"),
        "reason": reason,
        "message": message,
        "template_id": status.get("templateId"),
        "effective_vcpu": status.get("vcpu"),
        "effective_memory": status.get("memory"),
        "pod_name": status.get("podName"),
        "pod_ip": status.get("podIP"),
        "supervisor": status.get(c.STATUS_SUPERVISOR),
        "started_at": status.get("startedAt"),
        "expires_at": status.get("expiresAt"),
        "paused_at": status.get("pausedAt"),
        "resumed_at": status.get("resumedAt"),
        "effective_workspace": (
            dict(status["workspace"]) if isinstance(status.get("workspace"), Mapping) else None
        ),
        "effective_idle_timeout": status.get("idleTimeout"),
        "observed_generation": status.get("observedGeneration"),
        "conditions": list(status.get("conditions") or []),
    }


def ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return condition(status, c.CONDITION_READY)


def condition(status: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == ctype:
            return cond
    return None


# --- pause and resume -------------------------------------------------------------------------------------
def pause_refusal(obj: Mapping[str, Any]) -> str | None:
    """Why a Sandbox cannot be paused, judged before asking (None: ask the operator). The operator records the
    sandbox's workspace when its first pod is created; without a persistent one a pause would lose its files.
    """
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    name = meta.get("name", "")
    phase = status.get("phase")
    if phase in c.TERMINAL_PHASES:
        return f"sandbox {name!r} is {phase}: only a Pending or Running sandbox can be paused"
    workspace = status.get("workspace")
    if isinstance(workspace, Mapping) and workspace.get("persistent") is False:
        return (
            f"sandbox {name!r} cannot be paused: its workspace is an emptyDir, whose files a pause would "
            "lose. Create it with workspace={'persistent': True} (or from a template with "
            "workspace.persistent: true) to be able to pause it"
        )
    return None


def _seen(status: Mapping[str, Any], generation: int | None) -> bool:
    """Whether the operator's status has seen ``generation`` of the spec (None: any status will do)."""
    return generation is None or (status.get("observedGeneration") or 0) >= generation


def pause_verdict(obj: Mapping[str, Any], generation: int | None) -> str:
    """``done`` (Paused), ``failed`` (the operator refused the pause, or the sandbox ended) or ``pending``,
    judged only from a status that has seen the ``generation`` asking for the pause."""
    status = obj.get("status") or {}
    phase = status.get("phase")
    if phase in c.TERMINAL_PHASES:
        return "failed"
    if not _seen(status, generation):
        return "pending"
    if phase == c.PHASE_PAUSED:
        return "done"
    refused = condition(status, c.CONDITION_PAUSED)
    if refused is not None and refused.get("reason") == c.REASON_PAUSE_REFUSED:
        return "failed"
    return "pending"


def resume_verdict(obj: Mapping[str, Any], generation: int | None) -> str:
    """``done`` (Running again), ``failed`` (Failed or Expired) or ``pending``, judged only from a status
    that has seen the ``generation`` asking for the resume (so a pause still being carried out is not taken
    for the resumed sandbox)."""
    status = obj.get("status") or {}
    phase = status.get("phase")
    if phase in c.TERMINAL_PHASES:
        return "failed"
    if not _seen(status, generation):
        return "pending"
    return "done" if phase == c.PHASE_RUNNING else "pending"


def activity_patch(now: datetime) -> JsonDict:
    """The merge patch recording use of a sandbox now (``leap0.dev/last-activity``, RFC 3339 in UTC)."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"annotations": {c.ANNOTATION_LAST_ACTIVITY: stamp}}}


def records_activity(sandbox: SandboxData) -> bool:
    """Whether using the sandbox is worth recording: only when it can go idle (an idleTimeout of its own or
    from its template, which the operator writes to its status), so other sandboxes cost no writes."""
    return sandbox.idle_timeout is not None or sandbox.effective_idle_timeout is not None


def generate_sandbox_name() -> str:
    """A fresh sandbox id: ``sbx-`` and 10 random characters (about 3.7e15 possibilities)."""
    return c.SDK_SANDBOX_NAME_PREFIX + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(10))


def otel_secret_name(sandbox_name: str) -> str:
    return sandbox_name + c.SDK_OTEL_SECRET_SUFFIX


def normalize_env(env_vars: EnvInput | None) -> list[JsonDict]:
    """User env as a list of Kubernetes EnvVar dicts.

    Accepts the hosted SDK's ``{"NAME": "value"}`` dict, or a list of EnvVar dicts (``value`` or
    ``valueFrom.secretKeyRef``) passed through as given.
    """
    if env_vars is None:
        return []
    if isinstance(env_vars, Mapping):
        out: list[JsonDict] = []
        for name, value in env_vars.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"env_vars must map str to str; got {name!r}: {value!r}")
            out.append({"name": name, "value": value})
        return out
    out = []
    for item in env_vars:
        if not isinstance(item, Mapping) or "name" not in item:
            raise TypeError(f"env_vars entries must be EnvVar dicts with a 'name'; got {item!r}")
        out.append(dict(item))
    return out


def merge_env(first: Iterable[JsonDict], then: Iterable[JsonDict]) -> list[JsonDict]:
    """``first`` overridden by ``then`` on equal names, in first-seen order (env is keyed by name)."""
    merged: dict[str, JsonDict] = {}
    for item in [*first, *then]:
        merged[item["name"]] = item
    return list(merged.values())


def otel_export_env(
    local_env: Mapping[str, str], secret_name: str
) -> tuple[list[JsonDict], dict[str, str] | None]:
    """The sandbox env entries for ``otel_export=True`` and the Secret data (None: no Secret needed).

    The endpoint is not secret and goes in as a plain value; the headers (API keys) go into a Secret and
    the env references them with ``valueFrom.secretKeyRef``. Raises ConfigurationError without an endpoint.
    """
    from leap0.exceptions import ConfigurationError

    endpoint = local_env.get(c.OTEL_EXPORTER_OTLP_ENDPOINT, "").strip()
    if not endpoint:
        raise ConfigurationError(
            f"otel_export=True needs {c.OTEL_EXPORTER_OTLP_ENDPOINT} set in the local environment "
            "(the OTLP/HTTP endpoint the sandbox's telemetry is forwarded to)"
        )
    env: list[JsonDict] = [{"name": c.OTEL_EXPORTER_OTLP_ENDPOINT, "value": endpoint}]
    headers = local_env.get(c.OTEL_EXPORTER_OTLP_HEADERS, "").strip()
    if not headers:
        return env, None
    env.append(
        {
            "name": c.OTEL_EXPORTER_OTLP_HEADERS,
            "valueFrom": {"secretKeyRef": {"name": secret_name, "key": c.SDK_OTEL_SECRET_KEY}},
        }
    )
    return env, {c.SDK_OTEL_SECRET_KEY: headers}


def resolve_create_args(
    *,
    template: str | None,
    template_name: str | None,
    vcpu: int | None,
    memory: int | None,
    memory_mib: int | None,
    timeout: int | None,
    timeout_min: int | None,
) -> tuple[str | None, int | None, int | None, int | None]:
    """(template, vcpu, memory MiB, timeout s) from the contract's names and the hosted SDK's aliases.

    ``template_name`` = ``template``, ``memory_mib`` = ``memory``, ``timeout_min`` = ``timeout`` in minutes.
    Giving both spellings with different values is a TypeError (ambiguous call).
    """

    def pick(name: str, value: Any, alias: str, alias_value: Any) -> Any:
        if value is not None and alias_value is not None and value != alias_value:
            raise TypeError(f"give either {name}={value!r} or {alias}={alias_value!r}, not both")
        return value if value is not None else alias_value

    tmpl = pick("template", template, "template_name", template_name)
    mem = pick("memory", memory, "memory_mib", memory_mib)
    if timeout_min is not None and isinstance(timeout_min, bool | float):
        raise TypeError("timeout_min must be an integer number of minutes")
    tmo = pick("timeout", timeout, "timeout_min", None if timeout_min is None else timeout_min * 60)
    for label, val in (("vcpu", vcpu), ("memory", mem), ("timeout", tmo)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, int)):
            raise TypeError(f"{label} must be an int, got {val!r}")
    return tmpl, vcpu, mem, tmo


def _as_dict(value: object, name: str, example: str) -> JsonDict:
    """A copy of the mapping an argument must be; a TypeError with an example otherwise."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict such as {example}, got {type(value).__name__}")
    return dict(value)


def normalize_network(network: Mapping[str, Any] | None) -> JsonDict | None:
    """``network={"policy": "DenyAll", "allowCidrs": [...]}`` as ``spec.network`` (None: not set, so the
    template's, else the operator's default applies). The API validates the values (``SandboxValidationError``
    names the field); here only the shape: a mapping, with ``allowCidrs`` a list of strings."""
    if network is None:
        return None
    spec = _as_dict(network, "network", '{"policy": "DenyAll"}')
    for key in ("allowCidrs", "allowDomains"):
        if key in spec:
            values = spec[key]
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise TypeError(f"network[{key!r}] must be a list of strings, got {values!r}")
            spec[key] = list(values)
    return spec


def normalize_workspace(workspace: Mapping[str, Any] | None) -> JsonDict | None:
    """``workspace={"persistent": True, "storageClassName": "fast"}`` as ``spec.workspace`` (None: not set,
    so the template's, else an emptyDir). The API validates the values; here only the shape."""
    if workspace is None:
        return None
    spec = _as_dict(workspace, "workspace", '{"persistent": True}')
    if "persistent" in spec and not isinstance(spec["persistent"], bool):
        raise TypeError(f"workspace['persistent'] must be True or False, got {spec['persistent']!r}")
    return spec


@dataclasses.dataclass(frozen=True)
class SandboxRequest:
    """What one ``sandboxes.create`` asks for, built once from its keywords (hosted-SDK spellings resolved).

    Fields left None are not set on the Sandbox, so the template's values, else the operator's defaults,
    apply. ``otel_export`` is not part of the spec: the client turns it into env and a Secret per attempt.
    """

    template: str | None = None
    image: str | None = None
    vcpu: int | None = None
    memory: int | None = None  # MiB
    disk: int | None = None  # MiB
    timeout: int | None = None  # seconds
    env: tuple[JsonDict, ...] = ()
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    telemetry_sidecar: bool | None = None
    telemetry_logs: bool | None = None
    network: JsonDict | None = None
    workspace: JsonDict | None = None
    idle_timeout: int | None = None  # seconds
    on_timeout: str | None = None  # Delete or Pause
    labels: Mapping[str, str] | None = None
    otel_export: bool = False

    def spec(self) -> JsonDict:
        """``spec`` of the Sandbox: only the fields given."""
        spec: JsonDict = {}
        for key, value in (
            ("template", self.template),
            ("image", self.image),
            ("vcpu", self.vcpu),
            ("memory", self.memory),
            ("disk", self.disk),
            ("timeout", self.timeout),
        ):
            if value is not None:
                spec[key] = value
        if self.env:
            spec["env"] = [dict(e) for e in self.env]
        if self.command is not None:
            spec["command"] = list(self.command)
        if self.args is not None:
            spec["args"] = list(self.args)
        telemetry: JsonDict = {}
        if self.telemetry_sidecar is not None:
            telemetry["enabled"] = self.telemetry_sidecar
        if self.telemetry_logs is not None:
            telemetry["logs"] = self.telemetry_logs
        if telemetry:
            spec["telemetry"] = telemetry
        if self.network is not None:
            spec["network"] = json.loads(json.dumps(self.network))  # a copy the caller cannot change
        if self.workspace is not None:
            spec["workspace"] = dict(self.workspace)
        if self.idle_timeout is not None:
            spec["idleTimeout"] = self.idle_timeout
        if self.on_timeout is not None:
            spec["onTimeout"] = self.on_timeout
        return spec


def build_sandbox_body(
    request: SandboxRequest, *, name: str, namespace: str, annotations: Mapping[str, str] | None = None
) -> JsonDict:
    """The Sandbox object to POST for ``request``, named ``name`` in ``namespace``."""
    metadata: JsonDict = {"name": name, "namespace": namespace}
    if request.labels:
        metadata["labels"] = dict(request.labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": c.API_VERSION, "kind": c.SANDBOX_KIND, "metadata": metadata, "spec": request.spec()}


def build_otel_secret(
    *, name: str, namespace: str, sandbox_name: str, data: Mapping[str, str], owner_uid: str | None = None
) -> JsonDict:
    """The Secret with the OTLP headers of an ``otel_export`` sandbox, owned by the Sandbox (``owner_uid``):
    the operator lets a sandbox reference only a Secret its Sandbox owns (or one labelled for sandboxes)."""
    metadata: JsonDict = {
        "name": name,
        "namespace": namespace,
        "labels": {c.LABEL_SANDBOX_ID: sandbox_name, c.LABEL_MANAGED_BY: c.SDK_MANAGED_BY},
    }
    if owner_uid is not None:
        metadata["ownerReferences"] = [sandbox_owner_reference(sandbox_name, owner_uid)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "stringData": dict(data),
    }


def sandbox_owner_reference(sandbox_name: str, uid: str) -> JsonDict:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.SANDBOX_KIND,
        "name": sandbox_name,
        "uid": uid,
        "blockOwnerDeletion": True,
    }


def api_error_message(body: str | bytes | None, fallback: str) -> str:
    """The ``message`` of a metav1.Status error body (the schema's message for a 422), else ``fallback``."""
    if not body:
        return fallback
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        return text.strip() or fallback
    if isinstance(data, Mapping):
        message = data.get("message")
        if isinstance(message, str) and message:
            return message
    return fallback


def api_error_subject(body: str | bytes | None) -> tuple[str | None, str | None]:
    """(kind, name) from a metav1.Status error body's ``details`` (e.g. ``namespaces``, ``agents``)."""
    if not body:
        return None, None
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None, None
    details = data.get("details") if isinstance(data, Mapping) else None
    if not isinstance(details, Mapping):
        return None, None
    kind, name = details.get("kind"), details.get("name")
    return (kind if isinstance(kind, str) else None), (name if isinstance(name, str) else None)


def api_error_reason(body: str | bytes | None) -> str | None:
    if not body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    reason = data.get("reason") if isinstance(data, Mapping) else None
    return reason if isinstance(reason, str) else None


class ProcessResult(BaseModel):
    """What a command run in the sandbox gave back."""

    model_config = ConfigDict(frozen=True)

    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def result(self) -> str:
        """The hosted SDK's name for the output (stdout)."""
        return self.stdout

    @property
    def ok(self) -> bool:
        return self.exit_code == 0
