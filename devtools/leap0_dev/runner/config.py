"""The local runner's settings."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import leap0_contract as contract

Log = Callable[[str], None]

# Every API call of the runner: (connect, read) seconds. A call on a connection that stopped answering fails
# after this instead of holding the runner up; what failed is tried again (the pod's status on its next
# change or tick, a missing Secret/ConfigMap/claim every LocalPod.RETRY_S).
REQUEST_TIMEOUT_S = (10.0, 30.0)
# A pod watch's connection may stay silent this much longer than the watch lasts (the server ends a healthy
# watch at its timeoutSeconds) before the runner gives up on it and lists again.
WATCH_GRACE_S = 5.0


def api_errors() -> tuple[type[BaseException], ...]:
    """What an API call of the runner may raise: an answer with an error status (``ApiException``), or no
    answer at all (a refused, cut or silent connection: urllib3's errors, ``OSError``). The runner goes on
    after either, as a kubelet keeps its pods running while the API server is away."""
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    return (ApiException, HTTPError, OSError)


def log_to_stderr(message: str) -> None:
    """The default log: a line on stderr, dropped when stderr is closed (the runner never fails on output)."""
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)


@dataclass
class RunnerConfig:
    """Settings of the local runner (``leap0 dev up`` exposes the ports)."""

    otlp_grpc_port: int = contract.OTLP_GRPC_PORT
    otlp_http_port: int = contract.OTLP_HTTP_PORT
    health_port: int = contract.SIDECAR_HEALTH_PORT
    # LEAP0_METRICS_INTERVAL for every sidecar (None: what the pod spec says).
    metrics_interval: float | None = None
    workdir: Path | None = None
    cgroups: bool = field(default_factory=lambda: os.geteuid() == 0)
    max_grace_seconds: float = 5.0
    # Only pods matching this label selector (None: every pod).
    label_selector: str | None = None
    # Only pods matching this field selector (the kubelet mode: spec.nodeName=NODE).
    field_selector: str | None = None
    # Only pods of this namespace (None: every namespace).
    namespace: str | None = None
    # How long one pod watch lasts (the server's timeoutSeconds); the client gives up on a connection that
    # has said nothing for WATCH_GRACE_S more (a silent connection, behind a stuck proxy or NAT) and lists
    # again, as an informer does.
    watch_timeout: float = 300.0
    # The command standing for the telemetry container (None: this checkout's leap0-sidecar).
    sidecar_argv: list[str] | None = None
    # The leap0 supervisor standing for the sidecar image's (leap0_dev.supervisor builds it); None: pods run
    # without it (their command unwrapped), for the reason in supervisor_missing.
    supervisor: Path | None = None
    supervisor_missing: str = "not built"
    log: Log = log_to_stderr
