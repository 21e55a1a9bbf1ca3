"""The product contract's names, once: every part of leap0 imports them from here.

Metric names and units, resource attributes, labels, env vars, ports, phases and reasons, the SDK's span and
histogram names: the SDK (``leap0``), the operator (``leap0_operator``), the sidecar (``leap0_sidecar``), the
MCP server and the dev tools all read them from this package, and the README's and docs' metric tables are
checked against :data:`SANDBOX_METRICS` by ``tests/unit/test_contract.py``.

Standard library only: importing it imports nothing else, so the sidecar's and the operator's images carry it
without the SDK's dependencies.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

# The version of every part (the distribution, the SDK, the sidecar's scope, the default sidecar image tag).
PACKAGE_VERSION: Final = "0.1.0"

# --- API group, versions, resources -------------------------------------------------------------
GROUP: Final = "leap0.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

SANDBOX_KIND: Final = "Sandbox"
SANDBOX_PLURAL: Final = "sandboxes"
SANDBOX_SINGULAR: Final = "sandbox"
SANDBOX_SHORT_NAME: Final = "sbx"

TEMPLATE_KIND: Final = "SandboxTemplate"
TEMPLATE_PLURAL: Final = "sandboxtemplates"
DEFAULT_TEMPLATE_ID: Final = "default"

# --- Spec defaults and ranges (applied by the operator, not as schema defaults) -------------------
DEFAULT_IMAGE: Final = "python:3.12-slim"
DEFAULT_VCPU: Final = 1
MIN_VCPU: Final = 1
MAX_VCPU: Final = 8
DEFAULT_MEMORY_MIB: Final = 1024
MIN_MEMORY_MIB: Final = 512
MAX_MEMORY_MIB: Final = 8192
DEFAULT_TIMEOUT_S: Final = 300
MIN_TIMEOUT_S: Final = 1
MAX_TIMEOUT_S: Final = 28800
# spec.idleTimeout: seconds without an SDK/MCP operation before a running sandbox is paused.
MIN_IDLE_TIMEOUT_S: Final = 1
MAX_IDLE_TIMEOUT_S: Final = 86400
# spec.onTimeout: what reaching `timeout` does.
ON_TIMEOUT_DELETE: Final = "Delete"  # the pod is deleted and the sandbox Expired (final)
ON_TIMEOUT_PAUSE: Final = "Pause"  # the sandbox is paused (needs a persistent workspace)
ON_TIMEOUT_ACTIONS: Final = (ON_TIMEOUT_DELETE, ON_TIMEOUT_PAUSE)
DEFAULT_ON_TIMEOUT: Final = ON_TIMEOUT_DELETE
# SandboxTemplate spec.pausedRetention: seconds a paused sandbox is kept before it is deleted (unset: kept).
MAX_PAUSED_RETENTION_S: Final = 31536000

# --- Network policy and pod security (spec.network, SandboxTemplate podSecurity) -------------------
# spec.network.policy: the sandbox pod's egress (never ingress), one NetworkPolicy per Sandbox.
NETWORK_INTERNET: Final = "Internet"  # public addresses and DNS; no private or special ranges
NETWORK_DENY_ALL: Final = "DenyAll"  # DNS only
NETWORK_ALLOW_ALL: Final = "AllowAll"  # no NetworkPolicy at all
NETWORK_CUSTOM: Final = "Custom"  # DNS plus spec.network.allowCidrs
NETWORK_POLICIES: Final = (NETWORK_INTERNET, NETWORK_DENY_ALL, NETWORK_ALLOW_ALL, NETWORK_CUSTOM)
DEFAULT_NETWORK_POLICY: Final = NETWORK_INTERNET
# SandboxTemplate spec.podSecurity: the Pod Security Standard the sandbox pod meets.
POD_SECURITY_BASELINE: Final = "baseline"
POD_SECURITY_RESTRICTED: Final = "restricted"
POD_SECURITY_LEVELS: Final = (POD_SECURITY_BASELINE, POD_SECURITY_RESTRICTED)
DEFAULT_POD_SECURITY: Final = POD_SECURITY_BASELINE
# runAsUser / runAsGroup / fsGroup of a restricted sandbox pod unless its template gives them.
DEFAULT_RUN_AS_ID: Final = 1000
# The telemetry sidecar's UID and GID (its image's USER). A template may not give them to the sandbox: an app
# sharing the sidecar's UID could signal it (the CRD refuses them, and so does the operator).
SIDECAR_UID: Final = 65532
SIDECAR_GID: Final = 65532

# --- SandboxTemplate field locks (spec.lockedFields) --------------------------------------------------------
# The Sandbox fields a template may lock: a Sandbox using it may not set them to anything but the template's
# value (for network, DenyAll is always allowed: it only narrows). Unset lockedFields: ["network"] when the
# template sets a network, else none.
LOCKABLE_FIELDS: Final = (
    "image",
    "vcpu",
    "memory",
    "disk",
    "env",
    "command",
    "args",
    "telemetry",
    "network",
    "workspace",
    "idleTimeout",
    "onTimeout",
)
DEFAULT_LOCKED_FIELDS: Final = ("network",)

# --- Pod layout ---------------------------------------------------------------------------------
SANDBOX_CONTAINER: Final = "sandbox"
TELEMETRY_CONTAINER: Final = "telemetry"
# spec.workspace.persistent: the workspace is a PersistentVolumeClaim named <sandbox> + this suffix, owned by
# the Sandbox, of `disk` MiB (this size when the Sandbox and its template set no disk).
WORKSPACE_CLAIM_SUFFIX: Final = "-workspace"
DEFAULT_PERSISTENT_WORKSPACE_MIB: Final = 1024
OTLP_GRPC_PORT: Final = 4317
OTLP_HTTP_PORT: Final = 4318

# --- Labels and annotations ----------------------------------------------------------------------
LABEL_SANDBOX_ID: Final = "leap0.dev/sandbox-id"
LABEL_ORG_ID: Final = "leap0.dev/org-id"
LABEL_TEMPLATE_ID: Final = "leap0.dev/template-id"
# On a Namespace: the organisation id stamped on every signal of its sandboxes.
NAMESPACE_ORG_LABEL: Final = "leap0.dev/org-id"
# On every Sandbox the MCP server creates: created-by = mcp, and the server's owner (`leap0 mcp --owner`).
LABEL_CREATED_BY: Final = "leap0.dev/created-by"
CREATED_BY_MCP: Final = "mcp"
LABEL_MCP_OWNER: Final = "leap0.dev/mcp-owner"
# ... and the proof that the owner label is the server's own: an HMAC of namespace, name, uid and owner under
# the server's key (`leap0 mcp --owner-key-file`), so a label planted by a third party is not ownership.
ANNOTATION_MCP_OWNER_SIGNATURE: Final = "leap0.dev/mcp-owner-signature"
# On a Sandbox: when an SDK or MCP operation last used it (RFC 3339), for spec.idleTimeout. The SDKs write it
# at most once per ACTIVITY_WRITE_INTERVAL_S per sandbox; the operator ignores a time more than
# ACTIVITY_CLOCK_SKEW_S in its future (so a forged time cannot keep a sandbox from its idle pause).
ANNOTATION_LAST_ACTIVITY: Final = "leap0.dev/last-activity"
ACTIVITY_WRITE_INTERVAL_S: Final = 30
ACTIVITY_CLOCK_SKEW_S: Final = 60
# On a Secret: its owner lets every Sandbox of the namespace reference it from env (valueFrom.secretKeyRef).
# Without it, only a Secret owned by the Sandbox itself (an ownerReference with its uid) may be referenced.
LABEL_SANDBOX_ENV: Final = "leap0.dev/sandbox-env"
SANDBOX_ENV_ALLOWED: Final = "true"

# --- Resource attributes on every signal leaving the sidecar ------------------------------------
ATTR_SANDBOX_ID: Final = "leap0.sandbox.id"
ATTR_ORG_ID: Final = "leap0.org.id"
ATTR_TEMPLATE_ID: Final = "leap0.template.id"
# Attribute keys an app may not send at any level (``leap0``, ``leap0.*`` and what backends fold into them,
# ``leap0_*``...): the sidecar removes them, so the identity above is the only one (sidecar/identity.py).
RESERVED_ATTRIBUTE_PREFIX: Final = "leap0"
# Which source the sandbox metrics come from: one of the SOURCE_* values below.
ATTR_METRICS_SOURCE: Final = "leap0.metrics.source"
SOURCE_CGROUP_V2: Final = "cgroup-v2"
SOURCE_CGROUP_V1: Final = "cgroup-v1"
SOURCE_PSUTIL: Final = "psutil"
# OpenTelemetry's Kubernetes resource attributes, stamped by the sidecar beside the leap0.* identity.
ATTR_K8S_NAMESPACE: Final = "k8s.namespace.name"
ATTR_K8S_POD_NAME: Final = "k8s.pod.name"
ATTR_K8S_CONTAINER: Final = "k8s.container.name"

# --- Sandbox metrics the sidecar emits ------------------------------------------------------------------
METRIC_CPU_UTILIZATION: Final = "leap0.sandbox.cpu.utilization"
METRIC_CPU_LIMIT: Final = "leap0.sandbox.cpu.limit"
METRIC_MEMORY_UTILIZATION: Final = "leap0.sandbox.memory.utilization"
METRIC_MEMORY_USAGE: Final = "leap0.sandbox.memory.usage"
METRIC_MEMORY_LIMIT: Final = "leap0.sandbox.memory.limit"
METRIC_FILESYSTEM_UTILIZATION: Final = "leap0.sandbox.filesystem.utilization"
METRIC_FILESYSTEM_USAGE: Final = "leap0.sandbox.filesystem.usage"
UNIT_PERCENT: Final = "%"
UNIT_CPU: Final = "{cpu}"
UNIT_BYTES: Final = "By"


class MetricSpec(NamedTuple):
    """One metric of the contract: its name, its UCUM unit and what it means (the docs' wording)."""

    name: str
    unit: str
    description: str


# The seven sandbox gauges, in the order a sample carries them: the one table the docs are checked against.
SANDBOX_METRIC_TABLE: Final[tuple[MetricSpec, ...]] = (
    MetricSpec(
        METRIC_CPU_UTILIZATION,
        UNIT_PERCENT,
        "CPU used over the last interval, as a percentage of the CPU limit",
    ),
    MetricSpec(METRIC_CPU_LIMIT, UNIT_CPU, "logical CPUs the sandbox may use"),
    MetricSpec(METRIC_MEMORY_UTILIZATION, UNIT_PERCENT, "working set as a percentage of the memory limit"),
    MetricSpec(
        METRIC_MEMORY_USAGE,
        UNIT_BYTES,
        "working set (usage minus inactive file, as the kubelet counts it)",
    ),
    MetricSpec(METRIC_MEMORY_LIMIT, UNIT_BYTES, "memory limit"),
    MetricSpec(
        METRIC_FILESYSTEM_UTILIZATION,
        UNIT_PERCENT,
        "workspace disk usage as a percentage of its limit",
    ),
    MetricSpec(METRIC_FILESYSTEM_USAGE, UNIT_BYTES, "workspace disk in use"),
)
# name -> unit, in the same order
SANDBOX_METRICS: Final[dict[str, str]] = {m.name: m.unit for m in SANDBOX_METRIC_TABLE}

# --- Environment variables -------------------------------------------------------------------------
ENV_SANDBOX_ID: Final = "LEAP0_SANDBOX_ID"
ENV_ORG_ID: Final = "LEAP0_ORG_ID"
ENV_TEMPLATE_ID: Final = "LEAP0_TEMPLATE_ID"
ENV_OTLP_GRPC_ENDPOINT: Final = "LEAP0_OTLP_GRPC_ENDPOINT"
ENV_OTLP_HTTP_ENDPOINT: Final = "LEAP0_OTLP_HTTP_ENDPOINT"
ENV_METRICS_INTERVAL: Final = "LEAP0_METRICS_INTERVAL"
ENV_SDK_OTEL_ENABLED: Final = "LEAP0_SDK_OTEL_ENABLED"
ENV_MCP_TOKEN: Final = "LEAP0_MCP_TOKEN"  # the bearer token of `leap0 mcp --http`
# Set by the MCP server on each command it runs (a random value per call), so a cancelled call's processes,
# however they detached, can be found in the sandbox (by their environment) and stopped.
ENV_MCP_EXEC_ID: Final = "LEAP0_MCP_EXEC_ID"
# The sidecar's own settings (defaults in leap0_sidecar.config).
ENV_HEALTH_ENDPOINT: Final = "LEAP0_HEALTH_ENDPOINT"
ENV_SIDECAR_QUEUE_BYTES: Final = "LEAP0_SIDECAR_QUEUE_BYTES"
ENV_SIDECAR_MAX_REQUEST_BYTES: Final = "LEAP0_SIDECAR_MAX_REQUEST_BYTES"
ENV_SIDECAR_RECEIVE_TIMEOUT: Final = "LEAP0_SIDECAR_RECEIVE_TIMEOUT"
ENV_SIDECAR_SHUTDOWN_TIMEOUT: Final = "LEAP0_SIDECAR_SHUTDOWN_TIMEOUT"
ENV_SIDECAR_RETRY_INITIAL: Final = "LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL"
ENV_SIDECAR_RETRY_MAX: Final = "LEAP0_SIDECAR_RETRY_MAX_INTERVAL"
ENV_SIDECAR_LOG_LEVEL: Final = "LEAP0_SIDECAR_LOG_LEVEL"
ENV_SIDECAR_BATCH_LINGER: Final = "LEAP0_SIDECAR_BATCH_LINGER"
# The sidecar's bearer token for the platform collector (a projected ServiceAccount token with its own
# audience, mounted only in the telemetry container; sent with the operator's default destination only).
ENV_TELEMETRY_TOKEN_FILE: Final = "LEAP0_TELEMETRY_TOKEN_FILE"
TELEMETRY_TOKEN_VOLUME: Final = "telemetry-token"
TELEMETRY_TOKEN_DIR: Final = "/var/run/secrets/leap0.dev/telemetry"
TELEMETRY_TOKEN_PATH: Final = "token"
# The keys of the operator's default OTLP Secret (--default-otlp-secret, one in each sandbox namespace).
DEFAULT_OTLP_SECRET_ENDPOINT_KEY: Final = "endpoint"
DEFAULT_OTLP_SECRET_HEADERS_KEY: Final = "headers"
# Development and tests: a process of the sandbox (skips the /proc scan), the root every /proc and /sys read
# goes under, and one forced metrics source (cgroup-v2, cgroup-v1 or psutil).
ENV_SANDBOX_PID: Final = "LEAP0_SANDBOX_PID"
ENV_METRICS_ROOT: Final = "LEAP0_METRICS_ROOT"
ENV_METRICS_SOURCE: Final = "LEAP0_METRICS_SOURCE"
OTEL_EXPORTER_OTLP_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTEL_EXPORTER_OTLP_HEADERS: Final = "OTEL_EXPORTER_OTLP_HEADERS"
OTEL_EXPORTER_OTLP_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"
OTEL_EXPORTER_OTLP_TIMEOUT: Final = "OTEL_EXPORTER_OTLP_TIMEOUT"

# --- Status: phases, the Ready condition and its reasons ------------------------------------------
PHASE_PENDING: Final = "Pending"
PHASE_RUNNING: Final = "Running"
PHASE_FAILED: Final = "Failed"
PHASE_EXPIRED: Final = "Expired"
PHASE_PAUSED: Final = "Paused"  # no pod, the persistent workspace kept; spec.paused false resumes it
PHASES: Final = (PHASE_PENDING, PHASE_RUNNING, PHASE_PAUSED, PHASE_FAILED, PHASE_EXPIRED)
TERMINAL_PHASES: Final = (PHASE_FAILED, PHASE_EXPIRED)

CONDITION_READY: Final = "Ready"

REASON_POD_CREATED: Final = "PodCreated"
REASON_POD_PENDING: Final = "PodPending"
REASON_CONTAINERS_NOT_READY: Final = "ContainersNotReady"
REASON_RUNNING: Final = "Running"
REASON_IMAGE_PULL_ERROR: Final = "ImagePullError"
REASON_OOM_KILLED: Final = "OOMKilled"
REASON_CRASH_LOOP: Final = "CrashLoopBackOff"
REASON_UNSCHEDULABLE: Final = "Unschedulable"
REASON_CONTAINER_FAILED: Final = "ContainerFailed"
REASON_POD_FAILED: Final = "PodFailed"
REASON_TEMPLATE_NOT_FOUND: Final = "TemplateNotFound"
REASON_INVALID_SPEC: Final = "InvalidSpec"
# The namespace's PodSecurity admission refused the sandbox pod (its level is stricter than the template's
# podSecurity): Failed, with the admission's message.
REASON_POD_SECURITY_VIOLATION: Final = "PodSecurityViolation"
# A Sandbox sets a field its template locks (SandboxTemplate spec.lockedFields): Failed, no pod.
REASON_FIELD_LOCKED: Final = "FieldLocked"
# env valueFrom.secretKeyRef names a Secret neither owned by the Sandbox nor labelled leap0.dev/sandbox-env:
# Failed, no pod. A referenced Secret that does not exist yet keeps the Sandbox Pending (SecretNotFound).
REASON_SECRET_NOT_ALLOWED: Final = "SecretNotAllowed"
REASON_SECRET_NOT_FOUND: Final = "SecretNotFound"
REASON_EXPIRED: Final = "Expired"
REASON_POD_SPEC_DRIFT: Final = "PodSpecDrift"
REASON_COMPLETED: Final = "Completed"  # the sandbox process exited with code 0 (restartPolicy Never)
REASON_POD_DELETED: Final = "PodDeleted"  # the pod went away while the sandbox is live; it is recreated
# Not Running within the startup timeout after its pod was created: Failed, and the pod is deleted.
REASON_STARTUP_TIMEOUT: Final = "StartupTimeout"
# The kubelet's own reasons, surfaced as they are (Pending: the kubelet retries; the startup timeout ends
# them).
REASON_CREATE_CONTAINER_CONFIG_ERROR: Final = "CreateContainerConfigError"  # e.g. a missing Secret
REASON_CREATE_CONTAINER_ERROR: Final = "CreateContainerError"
REASON_RUN_CONTAINER_ERROR: Final = "RunContainerError"
# Event only (a Warning): deleting the pod of an expired sandbox, or the Sandbox after retention, failed.
REASON_EXPIRY_DELETION_FAILED: Final = "ExpiryDeletionFailed"
# Pause and resume. Phase Paused with why: spec.paused was set, spec.idleTimeout passed without use, or
# `timeout` was reached under onTimeout Pause. Resuming: Pending on the way back to Running.
REASON_PAUSED: Final = "Paused"
REASON_IDLE_PAUSED: Final = "IdlePaused"
REASON_TIMEOUT_PAUSED: Final = "TimeoutPaused"
REASON_RESUMING: Final = "Resuming"
# The Paused condition: True while paused; False with Resumed after a resume, or with PauseRefused when a
# pause was asked of a sandbox that cannot be paused (no persistent workspace, or Failed).
REASON_RESUMED: Final = "Resumed"
REASON_PAUSE_REFUSED: Final = "PauseRefused"
# Event only (a Warning): the workspace's PersistentVolumeClaim was gone when the sandbox resumed (a new,
# empty one was created).
REASON_WORKSPACE_LOST: Final = "WorkspaceLost"
# Failed: a PersistentVolumeClaim of the workspace's name exists and is not this Sandbox's (its pod would
# mount someone else's volume): the sandbox gets no pod.
REASON_WORKSPACE_CONFLICT: Final = "WorkspaceConflict"

# Seconds a sandbox may take from pod creation to Running (operator --startup-timeout; a template's
# spec.startupTimeout wins).
DEFAULT_STARTUP_TIMEOUT_S: Final = 600

# --- Kubernetes Events the operator posts on Sandboxes (core/v1) --------------------------------------
EVENT_REPORTING_COMPONENT: Final = "leap0-operator"  # source.component ("From" in kubectl describe)
EVENT_TYPE_NORMAL: Final = "Normal"
EVENT_TYPE_WARNING: Final = "Warning"

# A second condition: the pod's spec was edited after creation (reported, never reverted).
CONDITION_POD_SPEC_DRIFT: Final = "PodSpecDrift"
# A third, once a sandbox was paused or a pause was refused (never removed after: it turns False).
CONDITION_PAUSED: Final = "Paused"

# --- Operator bookkeeping on objects it owns ---------------------------------------------------------
# kopf's own storage (diff base, progress, peering) lives under this prefix.
OPERATOR_PREFIX: Final = "leap0.dev"
# On each pod: the container images it was created with (JSON), so edits are detected without the template.
ANNOTATION_POD_IMAGES: Final = "leap0.dev/created-images"
# On each NetworkPolicy: the spec.network.policy it carries (Internet, DenyAll or Custom).
ANNOTATION_NETWORK_POLICY: Final = "leap0.dev/network-policy"
# Event only (Normal): the operator restored a sandbox's NetworkPolicy that was deleted or edited.
REASON_NETWORK_POLICY_RESTORED: Final = "NetworkPolicyRestored"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "leap0-operator"

# --- Pod wiring between the operator and the sidecar (downward API and volumes) -----------------------
# The sandbox container's limits, given to the sidecar through resourceFieldRef (divisor 1m / 1).
ENV_SANDBOX_CPU_LIMIT_MILLICORES: Final = "LEAP0_SANDBOX_CPU_LIMIT_MILLICORES"
ENV_SANDBOX_MEMORY_LIMIT_BYTES: Final = "LEAP0_SANDBOX_MEMORY_LIMIT_BYTES"
ENV_SANDBOX_DISK_LIMIT_BYTES: Final = "LEAP0_SANDBOX_DISK_LIMIT_BYTES"
# The shared workspace volume, mounted in both containers.
ENV_WORKSPACE: Final = "LEAP0_WORKSPACE"
WORKSPACE_VOLUME: Final = "workspace"
WORKSPACE_PATH: Final = "/workspace"
# Kubernetes identity of the pod (fieldRef), stamped as k8s.namespace.name / k8s.pod.name.
ENV_K8S_NAMESPACE: Final = "LEAP0_K8S_NAMESPACE"
ENV_K8S_POD_NAME: Final = "LEAP0_K8S_POD_NAME"
# The sidecar's health endpoint (the pod's probes use it; it serves only /healthz and /readyz), set by
# ENV_HEALTH_ENDPOINT.
SIDECAR_HEALTH_PORT: Final = 13133
SIDECAR_HEALTH_PATH: Final = "/healthz"
SIDECAR_READY_PATH: Final = "/readyz"

# --- Sandbox logs: the supervisor (docs/logs.md) ------------------------------------------------------
# A static Go program (supervisor/) that runs a command, passes its output through and sends each line to
# the sidecar as an OTLP log record. It ships in the sidecar image; an init container copies it into an
# emptyDir that the sandbox container mounts read-only. spec.telemetry.logs (Sandbox, else template) turns it
# on or off.
SUPERVISOR_BINARY: Final = "leap0-supervisor"
# Where the sidecar image holds it, and where the sandbox container finds it (the volume's mount path).
SUPERVISOR_IMAGE_PATH: Final = "/usr/local/bin/leap0-supervisor"
SUPERVISOR_VOLUME: Final = "leap0-supervisor"
SUPERVISOR_MOUNT_PATH: Final = "/.leap0"
SUPERVISOR_PATH: Final = f"{SUPERVISOR_MOUNT_PATH}/{SUPERVISOR_BINARY}"
# The init container that copies it (``leap0-supervisor install DEST``).
SUPERVISOR_INIT_CONTAINER: Final = "leap0-supervisor"
# Its subcommands and flags: ``run`` for the sandbox's main process, ``exec`` for a command run through the
# SDKs (with the caller's W3C traceparent), ``install`` for the init container.
SUPERVISOR_RUN: Final = "run"
SUPERVISOR_EXEC: Final = "exec"
SUPERVISOR_INSTALL: Final = "install"
SUPERVISOR_FLAG_CONTAINER: Final = "--container"
SUPERVISOR_FLAG_TRACEPARENT: Final = "--traceparent"
# The bound of its queue of lines waiting for export (bytes; default 1 MiB).
ENV_SUPERVISOR_BUFFER_BYTES: Final = "LEAP0_SUPERVISOR_BUFFER_BYTES"
# On the pod (the operator writes it when the pod has the supervisor) and in the Sandbox's status
# (``status.supervisor``, observed from the pod): the supervisor's path in the sandbox container. The SDKs run
# ``process.execute`` through it when the status names it, and as before when it does not.
ANNOTATION_SUPERVISOR: Final = "leap0.dev/supervisor"
STATUS_SUPERVISOR: Final = "supervisor"
# The first words of what it writes on stderr (exit code 127 or 126) when the command cannot be started: the
# SDKs raise the error an exec of a missing program raises without it.
SUPERVISOR_EXEC_ERROR_PREFIX: Final = "leap0-supervisor: exec: "
# A longer line is cut into pieces of at most this many bytes (each a record, logtag "P" but the last).
SUPERVISOR_MAX_LINE_BYTES: Final = 64 * 1024

# The records it sends. Each line: body = the line (invalid UTF-8 replaced), these attributes, time = when it
# was read; as the OpenTelemetry Collector's container parser writes Kubernetes container logs.
ATTR_LOG_IOSTREAM: Final = "log.iostream"
LOG_IOSTREAM_STDOUT: Final = "stdout"
LOG_IOSTREAM_STDERR: Final = "stderr"
ATTR_LOGTAG: Final = "logtag"  # "F": a whole line; "P": a piece of a longer line that goes on
LOGTAG_FULL: Final = "F"
LOGTAG_PARTIAL: Final = "P"
# Resource attributes: the process (and the app's OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES).
ATTR_SERVICE_NAME: Final = "service.name"
ATTR_PROCESS_PID: Final = "process.pid"
ATTR_PROCESS_EXECUTABLE_NAME: Final = "process.executable.name"
ATTR_PROCESS_COMMAND_ARGS: Final = "process.command_args"
# One run of one command: 32 hex digits, on every record of the run (the sidecar removes leap0.* attributes
# the sandbox sends, so the supervisor's own names are not leap0.*).
ATTR_PROCESS_RUN_ID: Final = "process.run.id"
# On the exit record: the exit code (128+N for signal N), seconds it ran, lines lost in the run; on a drop
# record: lines lost since the previous one.
ATTR_PROCESS_EXIT_CODE: Final = "process.exit.code"
ATTR_PROCESS_RUN_DURATION: Final = "process.run.duration"
ATTR_PROCESS_RUN_DROPPED: Final = "process.run.dropped"
# Event names (the record's event_name) of the records that are not a line of output.
EVENT_PROCESS_START: Final = "leap0.process.start"
EVENT_PROCESS_EXIT: Final = "leap0.process.exit"
EVENT_PROCESS_DROPPED: Final = "leap0.process.dropped"
SUPERVISOR_SCOPE_NAME: Final = "leap0-supervisor"
# Lines lost on the way (a cumulative Sum, sent when there were some).
METRIC_SUPERVISOR_DROPPED: Final = "leap0.supervisor.lines.dropped"
UNIT_LINES: Final = "{line}"

# --- The platform's collector (docs/security.md, "Identity towards the platform's collector") --------------
# The resource attribute its configuration sets from the verified token's subject,
# system:serviceaccount:<namespace>:<account>, over any value the payload carried.
ATTR_AUTHENTICATED_SUBJECT: Final = "leap0.authenticated.subject"

# --- SDK ----------------------------------------------------------------------------------------------
# Tracer and meter name of the SDK's own telemetry (spans and duration histograms of SDK operations).
SDK_INSTRUMENTATION_NAME: Final = "leap0-sdk-python"
# Operation names: the span name of each SDK call; its histogram is the name with dots as underscores
# plus ``_duration``.
SDK_OP_SANDBOXES_CREATE: Final = "sandboxes.create"
SDK_OP_SANDBOXES_GET: Final = "sandboxes.get"
SDK_OP_SANDBOXES_LIST: Final = "sandboxes.list"
SDK_OP_SANDBOXES_DELETE: Final = "sandboxes.delete"
SDK_OP_SANDBOXES_SET_TIMEOUT: Final = "sandboxes.set_timeout"
SDK_OP_SANDBOXES_PAUSE: Final = "sandboxes.pause"
SDK_OP_SANDBOXES_RESUME: Final = "sandboxes.resume"
SDK_OP_PROCESS_EXECUTE: Final = "process.execute"
SDK_OP_FILESYSTEM_READ: Final = "filesystem.read"
SDK_OP_FILESYSTEM_WRITE: Final = "filesystem.write"
# The MCP server's span per tool call: "mcp.tool <tool name>".
MCP_TOOL_SPAN_PREFIX: Final = "mcp.tool "
# Attribute on the duration histograms: ``success`` or ``error``.
SDK_ATTR_STATUS: Final = "status"
SDK_STATUS_SUCCESS: Final = "success"
SDK_STATUS_ERROR: Final = "error"
# Sandbox names generated by the SDK: this prefix plus random characters (Kubernetes generateName style).
SDK_SANDBOX_NAME_PREFIX: Final = "sbx-"
# otel_export=True: the local OTEL_EXPORTER_OTLP_HEADERS go into this Secret (owned by the Sandbox), never
# into the Sandbox object; the sandbox's env references it with valueFrom.secretKeyRef.
SDK_OTEL_SECRET_SUFFIX: Final = "-otlp"
SDK_OTEL_SECRET_KEY: Final = OTEL_EXPORTER_OTLP_HEADERS
SDK_MANAGED_BY: Final = "leap0-sdk"
# The SDK's own OTLP exporters (built when the application registered no providers) give up on an export,
# retries included, after this many milliseconds unless OTEL_EXPORTER_OTLP_TIMEOUT (or the signal's own) says
# otherwise: close() then returns within about that long when the collector is unreachable (the OTel default,
# 10 s, held scripts that long at exit).
SDK_OTEL_EXPORT_TIMEOUT_MS: Final = 2000

# --- The sidecar: OTLP signals, paths and its own metrics ---------------------------------------------------
Signal = Literal["traces", "metrics", "logs"]
SIGNALS: Final[tuple[Signal, ...]] = ("traces", "metrics", "logs")
SIGNAL_PATHS: Final[dict[Signal, str]] = {
    "traces": "/v1/traces",
    "metrics": "/v1/metrics",
    "logs": "/v1/logs",
}
GRPC_SERVICES: Final[dict[Signal, str]] = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}
# Instrumentation scope of everything the sidecar itself produces (the sandbox gauges and its own counters).
SIDECAR_SCOPE_NAME: Final = "leap0-sidecar"
SIDECAR_SCOPE_VERSION: Final = PACKAGE_VERSION
METRIC_SIDECAR_RECEIVED: Final = "leap0.sidecar.requests.received"
METRIC_SIDECAR_FORWARDED: Final = "leap0.sidecar.requests.forwarded"
METRIC_SIDECAR_RETRIED: Final = "leap0.sidecar.requests.retried"
METRIC_SIDECAR_DROPPED: Final = "leap0.sidecar.requests.dropped"
METRIC_SIDECAR_REFUSED: Final = "leap0.sidecar.requests.refused"
METRIC_SIDECAR_QUEUE_SIZE: Final = "leap0.sidecar.queue.size"
METRIC_SIDECAR_QUEUE_BYTES: Final = "leap0.sidecar.queue.bytes"
METRIC_SIDECAR_QUEUE_CAPACITY: Final = "leap0.sidecar.queue.capacity"

# --- The operator's own Prometheus metrics (served at /metrics on --metrics-port) ----------------------
# Names as Prometheus shows them (counters with their _total). Every phase of PHASES is a value of
# OPERATOR_LABEL_PHASE, zeros included.
ENV_OPERATOR_METRICS_PORT: Final = "LEAP0_OPERATOR_METRICS_PORT"
OPERATOR_METRICS_PATH: Final = "/metrics"
OPERATOR_METRIC_SANDBOXES: Final = "leap0_sandboxes"
OPERATOR_METRIC_STARTUP_DURATION: Final = "leap0_sandbox_startup_duration_seconds"
OPERATOR_METRIC_POD_CREATE_DURATION: Final = "leap0_sandbox_pod_create_duration_seconds"
OPERATOR_METRIC_RECONCILES: Final = "leap0_reconcile_total"
OPERATOR_METRIC_API_REQUESTS: Final = "leap0_api_requests_total"
OPERATOR_METRIC_QUEUE_DEPTH: Final = "leap0_work_queue_depth"
OPERATOR_METRIC_EXPIRY_LATENESS: Final = "leap0_expiry_lateness_seconds"
# From the operator deciding a pause (spec.paused seen, idle or timeout) to the sandbox's pod being gone; from
# seeing spec.paused turned false to the sandbox Running again.
OPERATOR_METRIC_PAUSE_DURATION: Final = "leap0_sandbox_pause_duration_seconds"
OPERATOR_METRIC_RESUME_DURATION: Final = "leap0_sandbox_resume_duration_seconds"
OPERATOR_LABEL_PHASE: Final = "phase"
OPERATOR_LABEL_RESULT: Final = "result"
OPERATOR_LABEL_METHOD: Final = "method"
OPERATOR_LABEL_RESOURCE: Final = "resource"
OPERATOR_LABEL_CODE: Final = "code"
RECONCILE_OK: Final = "ok"
RECONCILE_RETRY: Final = "retry"
RECONCILE_FAILED: Final = "failed"
RECONCILE_RESULTS: Final = (RECONCILE_OK, RECONCILE_RETRY, RECONCILE_FAILED)
# The code of an API request that got no HTTP answer (connection refused, reset, timed out).
API_CODE_NO_RESPONSE: Final = "none"
# The process metrics of the Prometheus client library (RSS, CPU) the dashboards use.
PROCESS_METRIC_RSS: Final = "process_resident_memory_bytes"
PROCESS_METRIC_CPU: Final = "process_cpu_seconds_total"
