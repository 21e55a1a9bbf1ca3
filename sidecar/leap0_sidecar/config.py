"""The sidecar's configuration, read from the environment (pure: a mapping in, a frozen dataclass out).

The upstream is configured with the standard OTLP exporter variables, read as the OpenTelemetry specification
defines them (https://opentelemetry.io/docs/specs/otel/protocol/exporter/):

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a base URL: ``v1/traces``, ``v1/metrics``, ``v1/logs`` are appended to
  its path; ``OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`` are used as they are (an empty path means
  ``/``).
- ``..._HEADERS``: comma-separated ``key=value`` pairs, values URL-decoded; a per-signal variable replaces the
  general one for its signal.
- ``..._COMPRESSION``: ``gzip`` or ``none`` (default none). ``..._TIMEOUT``: milliseconds (default 10000).
- ``..._CERTIFICATE``, ``..._CLIENT_CERTIFICATE``, ``..._CLIENT_KEY``: PEM files for https upstreams.

Every bad value raises :class:`ConfigError` naming the variable, so the sidecar stops at start with a clear
message.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import leap0_contract as contract

# --- Defaults of the sidecar's settings ---------------------------------------------------------------
DEFAULT_OTLP_GRPC_ENDPOINT: Final = f"127.0.0.1:{contract.OTLP_GRPC_PORT}"
DEFAULT_OTLP_HTTP_ENDPOINT: Final = f"127.0.0.1:{contract.OTLP_HTTP_PORT}"
# The pod's probes reach the sidecar on the pod IP, so health listens on all interfaces on its own port
# (the OpenTelemetry Collector's health_check port); it serves nothing but /healthz and /readyz.
DEFAULT_HEALTH_ENDPOINT: Final = f"0.0.0.0:{contract.SIDECAR_HEALTH_PORT}"
DEFAULT_METRICS_INTERVAL_S: Final = 10.0
DEFAULT_TIMEOUT_MS: Final = 10_000
DEFAULT_QUEUE_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
DEFAULT_RECEIVE_TIMEOUT_S: Final = 10.0
DEFAULT_SHUTDOWN_TIMEOUT_S: Final = 20.0
DEFAULT_RETRY_INITIAL_S: Final = 1.0
DEFAULT_RETRY_MAX_S: Final = 30.0
# How long a forwarder waits for more requests of its signal before sending (unless 256 KiB are waiting).
DEFAULT_BATCH_LINGER_S: Final = 0.2
# How often the workspace walk runs when statvfs is not exact (see filesystem.py).
DEFAULT_WALK_INTERVAL_S: Final = 30.0
SANDBOX_METRICS_SOURCES: Final = (
    contract.SOURCE_CGROUP_V2,
    contract.SOURCE_CGROUP_V1,
    contract.SOURCE_PSUTIL,
)


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Upstream:
    """Where one signal is forwarded."""

    url: str
    scheme: str
    host: str
    port: int
    target: str  # path plus query, as sent in the request line
    headers: tuple[tuple[str, str], ...] = ()
    gzip: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_MS / 1000
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    # The platform's bearer token file (LEAP0_TELEMETRY_TOKEN_FILE), sent as Authorization with every request.
    token_file: str | None = None

    @property
    def display(self) -> str:
        """The URL as logs show it: without credentials or query string (see :func:`safe_url`)."""
        return safe_url(self.url)


def safe_url(url: str) -> str:
    """A URL fit for logs and error messages: its user part (``user:password@``) removed and its query
    string replaced (``?<redacted>``), since either may carry a key; scheme, host, port and path kept."""
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        return "<an unparseable URL>"
    netloc = parsed.netloc.rpartition("@")[2]
    query = "<redacted>" if parsed.query else ""
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, query, ""))


@dataclass(frozen=True)
class Identity:
    sandbox_id: str
    org_id: str
    template_id: str
    k8s_namespace: str | None = None
    k8s_pod_name: str | None = None

    def attributes(self) -> list[tuple[str, str]]:
        """The resource attributes stamped on every signal, in a fixed order."""
        attrs = [
            (contract.ATTR_SANDBOX_ID, self.sandbox_id),
            (contract.ATTR_ORG_ID, self.org_id),
            (contract.ATTR_TEMPLATE_ID, self.template_id),
        ]
        if self.k8s_namespace:
            attrs.append((contract.ATTR_K8S_NAMESPACE, self.k8s_namespace))
        if self.k8s_pod_name:
            attrs.append((contract.ATTR_K8S_POD_NAME, self.k8s_pod_name))
        return attrs


@dataclass(frozen=True)
class SamplerConfig:
    """What the sandbox metrics sampler reads and how it labels what it sends (parsed, valid values)."""

    # Every /proc and /sys read goes under this root (fixture trees in tests).
    root: Path = Path("/")
    # The sandbox container's limits from the downward API (used by the psutil source only).
    cpu_limit: float | None = None  # CPUs (limits.cpu)
    memory_limit_bytes: int | None = None  # limits.memory
    # The shared workspace volume as mounted in the sidecar, and its size limit in bytes.
    workspace: Path | None = None
    disk_limit_bytes: int | None = None
    # Resource attributes of every sample (leap0.* identity, k8s.*).
    resource_attributes: dict[str, str] = field(default_factory=dict)
    sandbox_container: str = contract.SANDBOX_CONTAINER
    # One process of the sandbox (development and tests: skips the /proc scan; see procs.py).
    sandbox_pid: int | None = None
    # Force one source (cgroup-v2, cgroup-v1 or psutil) instead of choosing; a cgroup source that cannot be
    # read still falls back to psutil.
    force_source: str | None = None
    walk_interval: float = DEFAULT_WALK_INTERVAL_S


@dataclass(frozen=True)
class Config:
    identity: Identity
    # None per signal when no endpoint is configured: that signal is accepted and discarded.
    upstreams: dict[contract.Signal, Upstream | None]
    grpc_endpoint: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", contract.OTLP_GRPC_PORT))
    http_endpoint: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", contract.OTLP_HTTP_PORT))
    health_endpoint: HostPort | None = field(
        default_factory=lambda: HostPort("0.0.0.0", contract.SIDECAR_HEALTH_PORT)
    )
    metrics_interval_s: float = DEFAULT_METRICS_INTERVAL_S
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    receive_timeout_s: float = DEFAULT_RECEIVE_TIMEOUT_S
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    retry_initial_s: float = DEFAULT_RETRY_INITIAL_S
    retry_max_s: float = DEFAULT_RETRY_MAX_S
    batch_linger_s: float = DEFAULT_BATCH_LINGER_S
    log_level: str = "INFO"
    warnings: tuple[str, ...] = ()
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    @property
    def export_enabled(self) -> bool:
        return any(u is not None for u in self.upstreams.values())


def _get(env: Mapping[str, str], name: str) -> str | None:
    """A variable's value, stripped; unset and empty are the same (as the OTel spec says)."""
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def parse_host_port(name: str, value: str) -> HostPort:
    """``host:port`` (``[v6]:port`` for IPv6 literals)."""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{name}={value!r}: expected host:port, e.g. 127.0.0.1:4318 or [::1]:4318")
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host or ":" in host:
            raise ConfigError(f"{name}={value!r}: expected host:port, e.g. 127.0.0.1:4318")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}={value!r}: port {port} is out of range 0-65535")
    return HostPort(host, port)


def parse_headers(name: str, value: str) -> tuple[tuple[str, str], ...]:
    """``key1=value1,key2=value2`` with URL-encoded values (W3C baggage format without metadata).

    Errors say which entry (by position) and why, never what it holds: an entry that is not ``key=value``
    may be a bare token, and a header name with a space in it (``Authorization: Bearer x=...``) holds one.
    """
    headers: list[tuple[str, str]] = []
    for position, item in enumerate((i for i in value.split(",") if i.strip()), start=1):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"{name}: entry {position} is not key=value (entries are separated by commas; the entry "
                "is not shown, as it may hold a secret)"
            )
        if any(c in key for c in " \t\r\n:") or not key.isascii():
            raise ConfigError(
                f"{name}: the header name of entry {position} has a space, tab, colon, line break or "
                "non-ASCII character (write key=value, e.g. authorization=Bearer%20TOKEN; the entry is not "
                "shown, as it may hold a secret)"
            )
        decoded = urllib.parse.unquote(raw.strip())
        if any(c in decoded for c in "\r\n\0"):
            raise ConfigError(f"{name}: the value of {key!r} (entry {position}) contains a line break or NUL")
        headers.append((key.lower(), decoded))
    return tuple(headers)


def _parse_url(name: str, value: str) -> urllib.parse.SplitResult:
    shown = safe_url(value)  # the URL without credentials or query string
    try:
        parsed = urllib.parse.urlsplit(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise ConfigError(f"{name}={shown!r}: the URL must start with http:// or https://")
    if not parsed.hostname:
        raise ConfigError(f"{name}={shown!r}: the URL has no host")
    try:
        parsed.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ConfigError(f"{name}={shown!r}: {exc}") from None
    return parsed


def signal_url(env: Mapping[str, str], signal: contract.Signal) -> str | None:
    """The URL a signal is sent to, or None when neither the per-signal nor the base endpoint is set."""
    per_signal_name = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    per_signal = _get(env, per_signal_name)
    if per_signal is not None:
        _parse_url(per_signal_name, per_signal)
        return per_signal
    base = _get(env, contract.OTEL_EXPORTER_OTLP_ENDPOINT)
    if base is None:
        return None
    parsed = _parse_url(contract.OTEL_EXPORTER_OTLP_ENDPOINT, base)
    path = parsed.path if parsed.path.endswith("/") else parsed.path + "/"
    return urllib.parse.urlunsplit(parsed._replace(path=path + contract.SIGNAL_PATHS[signal].lstrip("/")))


def _signal_or_general(
    env: Mapping[str, str], signal: contract.Signal, suffix: str
) -> tuple[str, str | None]:
    name = f"OTEL_EXPORTER_OTLP_{signal.upper()}_{suffix}"
    value = _get(env, name)
    if value is not None:
        return name, value
    name = f"OTEL_EXPORTER_OTLP_{suffix}"
    return name, _get(env, name)


def _upstream(env: Mapping[str, str], signal: contract.Signal) -> Upstream | None:
    # Every variable is checked even when there is no endpoint: a bad value is reported, not ignored.
    url = signal_url(env, signal)
    name, value = _signal_or_general(env, signal, "HEADERS")
    headers = parse_headers(name, value) if value is not None else ()
    name, value = _signal_or_general(env, signal, "COMPRESSION")
    compression = (value or "none").lower()
    if compression not in ("gzip", "none"):
        raise ConfigError(f"{name}={value!r}: supported values are gzip and none")
    name, value = _signal_or_general(env, signal, "TIMEOUT")
    timeout_ms = _number(name, value, DEFAULT_TIMEOUT_MS, minimum=1) if value is not None else None
    files: dict[str, str | None] = {}
    for suffix in ("CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"):
        name, value = _signal_or_general(env, signal, suffix)
        if value is not None and not os.path.isfile(value):
            raise ConfigError(f"{name}={value!r}: no such file")
        files[suffix] = value
    if url is None:
        return None
    parsed = urllib.parse.urlsplit(url)
    target = parsed.path or "/"
    if parsed.query:
        target += "?" + parsed.query
    assert parsed.hostname is not None
    return Upstream(
        url=url,
        scheme=parsed.scheme,
        host=parsed.hostname,
        port=parsed.port or (443 if parsed.scheme == "https" else 80),
        target=target,
        headers=headers,
        gzip=compression == "gzip",
        timeout_s=(timeout_ms if timeout_ms is not None else DEFAULT_TIMEOUT_MS) / 1000,
        ca_file=files["CERTIFICATE"],
        client_cert=files["CLIENT_CERTIFICATE"],
        client_key=files["CLIENT_KEY"],
        token_file=_get(env, contract.ENV_TELEMETRY_TOKEN_FILE),
    )


def _number(name: str, value: str | None, default: float, *, minimum: float = 0.0) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: not a number") from None
    if not math.isfinite(number) or number < minimum:
        raise ConfigError(f"{name}={value!r}: must be a number >= {minimum:g}")
    return number


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _get(env, name)
    number = _number(name, value, default)
    if number <= 0:
        raise ConfigError(f"{name}={value!r}: must be greater than 0")
    return number


_SIZE_UNITS = {"": 1, "k": 1000, "ki": 1024, "m": 1000**2, "mi": 1024**2, "g": 1000**3, "gi": 1024**3}


def parse_size(name: str, value: str) -> int:
    """A byte count: ``16777216``, ``16Mi``, ``512Ki``, ``1G`` (Kubernetes quantity suffixes)."""
    text = value.strip()
    digits = text.rstrip("KkMmGgi")
    unit = text[len(digits) :].lower()
    if unit not in _SIZE_UNITS or not digits:
        raise ConfigError(f"{name}={value!r}: expected a byte count such as 16777216 or 16Mi")
    try:
        number = float(digits)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected a byte count such as 16777216 or 16Mi") from None
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ConfigError(f"{name}={value!r}: must be greater than 0")
    return size


def _size(env: Mapping[str, str], name: str, default: int) -> int:
    value = _get(env, name)
    return default if value is None else parse_size(name, value)


def _identity(env: Mapping[str, str]) -> Identity:
    missing = [
        n
        for n in (contract.ENV_SANDBOX_ID, contract.ENV_ORG_ID, contract.ENV_TEMPLATE_ID)
        if _get(env, n) is None
    ]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set: the sidecar stamps every signal with the sandbox's identity "
            "and will not forward telemetry without it (the operator sets these variables)"
        )
    return Identity(
        sandbox_id=env[contract.ENV_SANDBOX_ID].strip(),
        org_id=env[contract.ENV_ORG_ID].strip(),
        template_id=env[contract.ENV_TEMPLATE_ID].strip(),
        k8s_namespace=_get(env, contract.ENV_K8S_NAMESPACE),
        k8s_pod_name=_get(env, contract.ENV_K8S_POD_NAME),
    )


def _positive_int(env: Mapping[str, str], name: str, what: str) -> int | None:
    value = _get(env, name)
    if value is None:
        return None
    if not value.isdigit() or int(value) <= 0:
        raise ConfigError(f"{name}={value!r}: {what} must be a positive whole number")
    return int(value)


def load_sampler(env: Mapping[str, str]) -> SamplerConfig:
    """The sandbox metrics sampler's settings; raises ConfigError naming the variable.

    Alone (``python -m leap0_sidecar.sandbox_metrics``) the identity is optional: the resource carries the
    ``leap0.*`` and ``k8s.*`` attributes that are set.
    """
    attributes: dict[str, str] = {}
    for env_name, attribute in (
        (contract.ENV_SANDBOX_ID, contract.ATTR_SANDBOX_ID),
        (contract.ENV_ORG_ID, contract.ATTR_ORG_ID),
        (contract.ENV_TEMPLATE_ID, contract.ATTR_TEMPLATE_ID),
        (contract.ENV_K8S_NAMESPACE, contract.ATTR_K8S_NAMESPACE),
        (contract.ENV_K8S_POD_NAME, contract.ATTR_K8S_POD_NAME),
    ):
        value = _get(env, env_name)
        if value is not None:
            attributes[attribute] = value
    millicores = _positive_int(env, contract.ENV_SANDBOX_CPU_LIMIT_MILLICORES, "a CPU limit in millicores")
    source = _get(env, contract.ENV_METRICS_SOURCE)
    if source is not None and source not in SANDBOX_METRICS_SOURCES:
        raise ConfigError(
            f"{contract.ENV_METRICS_SOURCE}={source!r}: one of {', '.join(SANDBOX_METRICS_SOURCES)}"
        )
    workspace = _get(env, contract.ENV_WORKSPACE)
    return SamplerConfig(
        root=Path(_get(env, contract.ENV_METRICS_ROOT) or "/"),
        cpu_limit=millicores / 1000 if millicores is not None else None,
        memory_limit_bytes=_positive_int(env, contract.ENV_SANDBOX_MEMORY_LIMIT_BYTES, "a byte count"),
        workspace=Path(workspace) if workspace else None,
        disk_limit_bytes=_positive_int(env, contract.ENV_SANDBOX_DISK_LIMIT_BYTES, "a byte count"),
        resource_attributes=attributes,
        sandbox_pid=_positive_int(env, contract.ENV_SANDBOX_PID, "a process id"),
        force_source=source,
    )


def load(env: Mapping[str, str]) -> Config:
    """The whole configuration; raises ConfigError on the first bad value."""
    warnings: list[str] = []
    protocol_name, protocol = (
        contract.OTEL_EXPORTER_OTLP_PROTOCOL,
        _get(env, contract.OTEL_EXPORTER_OTLP_PROTOCOL),
    )
    for signal in contract.SIGNALS:
        name, value = _signal_or_general(env, signal, "PROTOCOL")
        if value is not None and value != "http/protobuf":
            protocol_name, protocol = name, value
    if protocol is not None and protocol != "http/protobuf":
        warnings.append(
            f"{protocol_name}={protocol!r} is ignored: the sidecar always forwards OTLP/HTTP protobuf "
            "(the endpoint must accept it)"
        )
    health_value = _get(env, contract.ENV_HEALTH_ENDPOINT)
    health: HostPort | None
    if health_value is not None and health_value.lower() in ("off", "none", "disabled"):
        health = None
    else:
        health = parse_host_port(contract.ENV_HEALTH_ENDPOINT, health_value or DEFAULT_HEALTH_ENDPOINT)
    log_level = (_get(env, contract.ENV_SIDECAR_LOG_LEVEL) or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(
            f"{contract.ENV_SIDECAR_LOG_LEVEL}={log_level!r}: one of DEBUG, INFO, WARNING, ERROR"
        )
    retry_initial = _positive(env, contract.ENV_SIDECAR_RETRY_INITIAL, DEFAULT_RETRY_INITIAL_S)
    retry_max = _positive(env, contract.ENV_SIDECAR_RETRY_MAX, DEFAULT_RETRY_MAX_S)
    if retry_max < retry_initial:
        raise ConfigError(
            f"{contract.ENV_SIDECAR_RETRY_MAX}={retry_max:g} is below "
            f"{contract.ENV_SIDECAR_RETRY_INITIAL}={retry_initial:g}"
        )
    queue_bytes = _size(env, contract.ENV_SIDECAR_QUEUE_BYTES, DEFAULT_QUEUE_BYTES)
    # Unset, the request limit follows a small queue down (a request bigger than the queue can't be queued).
    max_request = _size(
        env, contract.ENV_SIDECAR_MAX_REQUEST_BYTES, min(DEFAULT_MAX_REQUEST_BYTES, queue_bytes)
    )
    if max_request > queue_bytes:
        raise ConfigError(
            f"{contract.ENV_SIDECAR_MAX_REQUEST_BYTES}={max_request} exceeds "
            f"{contract.ENV_SIDECAR_QUEUE_BYTES}={queue_bytes}: "
            "a request that big could never be queued"
        )
    return Config(
        identity=_identity(env),
        upstreams={signal: _upstream(env, signal) for signal in contract.SIGNALS},
        grpc_endpoint=parse_host_port(
            contract.ENV_OTLP_GRPC_ENDPOINT,
            _get(env, contract.ENV_OTLP_GRPC_ENDPOINT) or DEFAULT_OTLP_GRPC_ENDPOINT,
        ),
        http_endpoint=parse_host_port(
            contract.ENV_OTLP_HTTP_ENDPOINT,
            _get(env, contract.ENV_OTLP_HTTP_ENDPOINT) or DEFAULT_OTLP_HTTP_ENDPOINT,
        ),
        health_endpoint=health,
        metrics_interval_s=_positive(env, contract.ENV_METRICS_INTERVAL, DEFAULT_METRICS_INTERVAL_S),
        queue_bytes=queue_bytes,
        max_request_bytes=max_request,
        receive_timeout_s=_positive(env, contract.ENV_SIDECAR_RECEIVE_TIMEOUT, DEFAULT_RECEIVE_TIMEOUT_S),
        shutdown_timeout_s=_positive(env, contract.ENV_SIDECAR_SHUTDOWN_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT_S),
        retry_initial_s=retry_initial,
        retry_max_s=retry_max,
        batch_linger_s=_number(
            contract.ENV_SIDECAR_BATCH_LINGER,
            _get(env, contract.ENV_SIDECAR_BATCH_LINGER),
            DEFAULT_BATCH_LINGER_S,
        ),
        log_level=log_level,
        warnings=tuple(warnings),
        sampler=load_sampler(env),
    )
