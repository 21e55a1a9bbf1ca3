"""Names the sidecar's metrics sampler relies on: metric names and units, attributes, env vars.

The sidecar's image installs only ``leap0_sidecar``, so it cannot import ``leap0.constants``. The values that
exist in both places are checked equal by ``tests/unit/sidecar_metrics/test_sidecar_names.py``. Metric names
and units follow ``SPEC.md`` letter for letter.
"""

from __future__ import annotations

from typing import Final

# --- Instrumentation scope --------------------------------------------------------------------------
SCOPE_NAME: Final = "leap0-sidecar"
SCOPE_VERSION: Final = "0.1.0"

# --- The seven sandbox gauges (name, unit) ----------------------------------------------------------
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

# name -> unit, in the order the gauges appear in a sample
SANDBOX_METRICS: Final[dict[str, str]] = {
    METRIC_CPU_UTILIZATION: UNIT_PERCENT,
    METRIC_CPU_LIMIT: UNIT_CPU,
    METRIC_MEMORY_UTILIZATION: UNIT_PERCENT,
    METRIC_MEMORY_USAGE: UNIT_BYTES,
    METRIC_MEMORY_LIMIT: UNIT_BYTES,
    METRIC_FILESYSTEM_UTILIZATION: UNIT_PERCENT,
    METRIC_FILESYSTEM_USAGE: UNIT_BYTES,
}

# --- Resource attributes ------------------------------------------------------------------------------
ATTR_SANDBOX_ID: Final = "leap0.sandbox.id"
ATTR_ORG_ID: Final = "leap0.org.id"
ATTR_TEMPLATE_ID: Final = "leap0.template.id"
# Which source the sandbox metrics come from: one of the SOURCE_* values below.
ATTR_METRICS_SOURCE: Final = "leap0.metrics.source"
ATTR_K8S_NAMESPACE: Final = "k8s.namespace.name"
ATTR_K8S_POD: Final = "k8s.pod.name"
ATTR_K8S_CONTAINER: Final = "k8s.container.name"

SOURCE_CGROUP_V2: Final = "cgroup-v2"
SOURCE_CGROUP_V1: Final = "cgroup-v1"
SOURCE_PSUTIL: Final = "psutil"

# --- Pod layout -----------------------------------------------------------------------------------------
SANDBOX_CONTAINER: Final = "sandbox"

# --- Environment variables ------------------------------------------------------------------------------
ENV_SANDBOX_ID: Final = "LEAP0_SANDBOX_ID"
ENV_ORG_ID: Final = "LEAP0_ORG_ID"
ENV_TEMPLATE_ID: Final = "LEAP0_TEMPLATE_ID"
ENV_METRICS_INTERVAL: Final = "LEAP0_METRICS_INTERVAL"
# Downward API (set by the operator on the telemetry container):
#   resourceFieldRef {containerName: sandbox, resource: limits.cpu, divisor: 1m}  -> millicores, e.g. "2000"
ENV_SANDBOX_CPU_LIMIT_MILLICORES: Final = "LEAP0_SANDBOX_CPU_LIMIT_MILLICORES"
#   resourceFieldRef {containerName: sandbox, resource: limits.memory, divisor: 1}  -> bytes, e.g.
# "1073741824"
ENV_SANDBOX_MEMORY_LIMIT_BYTES: Final = "LEAP0_SANDBOX_MEMORY_LIMIT_BYTES"
#   the workspace size (spec.disk MiB x 1048576), or resourceFieldRef limits.ephemeral-storage, divisor 1
ENV_SANDBOX_DISK_LIMIT_BYTES: Final = "LEAP0_SANDBOX_DISK_LIMIT_BYTES"
# Where the shared workspace volume is mounted in the telemetry container (unset: no filesystem gauges).
ENV_WORKSPACE: Final = "LEAP0_WORKSPACE"
WORKSPACE_PATH: Final = "/workspace"
#   fieldRef metadata.namespace / metadata.name
ENV_K8S_NAMESPACE: Final = "LEAP0_K8S_NAMESPACE"
ENV_K8S_POD_NAME: Final = "LEAP0_K8S_POD_NAME"
# Development and tests: a process of the sandbox (skips the /proc scan), and the root every /proc and /sys
# read goes under.
ENV_SANDBOX_PID: Final = "LEAP0_SANDBOX_PID"
ENV_METRICS_ROOT: Final = "LEAP0_METRICS_ROOT"
# Force one source: cgroup-v2, cgroup-v1 or psutil (unset: the first that works, in that order).
ENV_METRICS_SOURCE: Final = "LEAP0_METRICS_SOURCE"
