"""Operator settings: flags and environment, read once at startup (pure parsing, no I/O).

Every setting has a flag and an environment variable (``LEAP0_OPERATOR_*``); a flag wins over the
environment, the environment over the default. ``kopf run -m leap0_operator`` has no flags of ours, so
there the environment alone applies. ``docs/operator.md`` lists them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import leap0_contract as contract
from leap0_contract.cli import OneLineArgumentParser

from .network import (
    DEFAULT_DNS_LABELS,
    DEFAULT_DNS_NAMESPACE,
    DnsLocation,
    NetworkSettings,
    parse_cidr,
    parse_labels,
    parse_namespace,
    parse_telemetry_egress,
)

ENV_PREFIX = "LEAP0_OPERATOR_"
# Image names the Helm chart builds too (tag = the package version).
OPERATOR_IMAGE_REPOSITORY = "ghcr.io/leap0-dev/leap0-operator"
SIDECAR_IMAGE_REPOSITORY = "ghcr.io/leap0-dev/leap0-sidecar"
DEFAULT_SIDECAR_IMAGE = f"{SIDECAR_IMAGE_REPOSITORY}:{contract.PACKAGE_VERSION}"
DEFAULT_SIDECAR_CPU = "100m"
DEFAULT_SIDECAR_MEMORY = "64Mi"
DEFAULT_EXPIRED_RETENTION_S = 3600.0
DEFAULT_PEERING = "leap0"
DEFAULT_WATCH_TIMEOUT_S = 300.0
DEFAULT_RESYNC_PERIOD_S = 300.0
# Where /metrics listens: every interface of the pod, for Prometheus to scrape it through its IP.
DEFAULT_METRICS_BIND_ADDRESS = "0.0.0.0"
# The service account's token, mounted in every pod that has one (kopf's in-cluster login reads it).
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


class ConfigError(ValueError):
    """A setting has a value the operator cannot use; the message names the setting and the value."""


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """What the reconciler needs: the pod's defaults and the operator's policies."""

    default_image: str = contract.DEFAULT_IMAGE
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    sidecar_cpu: str = DEFAULT_SIDECAR_CPU  # request = limit
    sidecar_memory: str = DEFAULT_SIDECAR_MEMORY  # request = limit
    # How long an Expired Sandbox object stays (for `kubectl get` and the SDK) before the operator deletes it.
    expired_retention_s: float = DEFAULT_EXPIRED_RETENTION_S
    # A platform-wide OTLP endpoint for sidecars of sandboxes that set none themselves (optional).
    default_otlp_endpoint: str | None = None
    # Or/and a Secret of that name in each sandbox's namespace holding it (key ``endpoint``) and its headers
    # (key ``headers``): the pod references it (secretKeyRef), the operator never reads it.
    default_otlp_secret: str | None = None
    # The audience of the ServiceAccount token the sidecar sends to the platform's destination (the default
    # endpoint) as a bearer token, so the platform's collector can verify which pod speaks; None: no token.
    telemetry_token_audience: str | None = None
    # How long to wait before retrying an API call that failed in a way that may recover.
    retry_delay_s: float = 5.0
    # How long a namespace's org id is cached (it is read when a pod is created).
    namespace_cache_s: float = 60.0
    # How long a sandbox may take from its pod's creation to Running before it fails (StartupTimeout) and its
    # pod is deleted; a SandboxTemplate's spec.startupTimeout wins.
    startup_timeout_s: int = contract.DEFAULT_STARTUP_TIMEOUT_S
    # The server-side timeoutSeconds of every watch; the client gives up on a silent stream a little later.
    watch_timeout_s: float = DEFAULT_WATCH_TIMEOUT_S
    # How often the operator lists what it watches and drops what the watches missed (0: only after re-lists).
    resync_period_s: float = DEFAULT_RESYNC_PERIOD_S
    # The default network policy, the telemetry egress every policy allows, where the cluster DNS runs.
    network: NetworkSettings = dataclasses.field(default_factory=NetworkSettings)

    @property
    def platform_destination(self) -> bool:
        """The operator gives sidecars a default OTLP destination (an endpoint or a Secret holding one)."""
        return bool(self.default_otlp_endpoint or self.default_otlp_secret)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How kopf runs: which namespaces, and peering between replicas (mirrors ``kopf run``)."""

    namespaces: tuple[str, ...] = ()
    clusterwide: bool = False
    standalone: bool = False
    peering_name: str = DEFAULT_PEERING
    peering_mandatory: bool = (
        False  # the name was given: fail without that peering object (as kopf's -P does)
    )
    priority: int = 0
    liveness_endpoint: str | None = None
    # Serve the operator's Prometheus metrics at /metrics on this port (0: any free port); None: off.
    metrics_port: int | None = None
    # The address /metrics listens on (127.0.0.1: this machine only, as `leap0 dev up` runs it).
    metrics_bind_address: str = DEFAULT_METRICS_BIND_ADDRESS
    verbose: bool = False
    debug: bool = False


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(ENV_PREFIX + name)
    return value if value not in (None, "") else None


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}") from None
    if seconds < 0:
        raise ConfigError(f"{name}: must not be negative, got {value!r}")
    return seconds


def _whole_seconds(name: str, value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number of seconds, got {value!r}") from None
    if seconds < 1:
        raise ConfigError(f"{name}: must be at least 1 second, got {value!r}")
    return seconds


def _quantity(name: str, value: str) -> str:
    if not _QUANTITY.match(value):
        raise ConfigError(f"{name}: expected a Kubernetes quantity such as 100m or 64Mi, got {value!r}")
    return value


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _secret_name(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ConfigError(f"default otlp secret: {value!r} is not a Secret name")
    return value


def _audience(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip() or len(value) > 253 or any(c.isspace() for c in value):
        raise ConfigError(
            f"telemetry token audience: expected one word (for example leap0-telemetry), got {value!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="leap0-operator",
        description="Reconcile leap0 Sandbox resources into sandbox pods. "
        f"Every option but -v and -d also reads an environment variable {ENV_PREFIX}<NAME> (flags win).",
    )
    where = parser.add_argument_group("namespaces (as in `kopf run`)")
    where.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        default=None,
        help="serve this namespace (repeatable; globs allowed); env NAMESPACES (comma-separated)",
    )
    where.add_argument(
        "-A",
        "--all-namespaces",
        dest="clusterwide",
        action="store_true",
        default=None,
        help="serve the whole cluster (the default when no namespace is given); env ALL_NAMESPACES",
    )
    peers = parser.add_argument_group("peering between replicas (as in `kopf run`)")
    peers.add_argument("--standalone", action="store_true", default=None, help="no peering; env STANDALONE")
    peers.add_argument(
        "-P",
        "--peering",
        dest="peering_name",
        default=None,
        help=f"name of the (Cluster)KopfPeering object (default {DEFAULT_PEERING}); env PEERING",
    )
    peers.add_argument("-p", "--priority", type=int, default=None, help="peering priority; env PRIORITY")
    parser.add_argument(
        "-L", "--liveness", dest="liveness_endpoint", default=None, help="kopf liveness URL; env LIVENESS"
    )
    parser.add_argument(
        "--metrics-port",
        default=None,
        help="serve Prometheus metrics at /metrics on this port; env METRICS_PORT (unset: off)",
    )
    parser.add_argument(
        "--metrics-bind-address",
        default=None,
        help=f"the address /metrics listens on ({DEFAULT_METRICS_BIND_ADDRESS}; 127.0.0.1: this machine "
        "only); env METRICS_BIND_ADDRESS",
    )
    pod = parser.add_argument_group("sandbox pods")
    pod.add_argument("--default-image", default=None, help=f"env DEFAULT_IMAGE ({contract.DEFAULT_IMAGE})")
    pod.add_argument("--sidecar-image", default=None, help=f"env SIDECAR_IMAGE ({DEFAULT_SIDECAR_IMAGE})")
    pod.add_argument("--sidecar-cpu", default=None, help=f"env SIDECAR_CPU ({DEFAULT_SIDECAR_CPU})")
    pod.add_argument("--sidecar-memory", default=None, help=f"env SIDECAR_MEMORY ({DEFAULT_SIDECAR_MEMORY})")
    pod.add_argument(
        "--default-otlp-endpoint",
        default=None,
        help="OTLP endpoint for sidecars of sandboxes that set none; env DEFAULT_OTLP_ENDPOINT",
    )
    pod.add_argument(
        "--default-otlp-secret",
        default=None,
        help="name of a Secret in each sandbox namespace holding that endpoint (key "
        f"{contract.DEFAULT_OTLP_SECRET_ENDPOINT_KEY}) and its headers (key "
        f"{contract.DEFAULT_OTLP_SECRET_HEADERS_KEY}), both optional: sidecars reference it, the operator "
        "never reads it; env DEFAULT_OTLP_SECRET",
    )
    pod.add_argument(
        "--telemetry-token-audience",
        default=None,
        help="give sidecars that export to the default endpoint a ServiceAccount token of this audience, "
        "sent as a bearer token so the platform's collector can verify the pod (docs/security.md); env "
        "TELEMETRY_TOKEN_AUDIENCE",
    )
    net = parser.add_argument_group("sandbox network (docs/network.md)")
    net.add_argument(
        "--default-network-policy",
        default=None,
        choices=contract.NETWORK_POLICIES,
        help="spec.network.policy of Sandboxes whose spec and template set none "
        f"({contract.DEFAULT_NETWORK_POLICY}; Custom is not a default: it needs CIDRs); "
        "env DEFAULT_NETWORK_POLICY",
    )
    net.add_argument(
        "--telemetry-egress",
        default=None,
        help="JSON list of in-cluster destinations every sandbox may reach on the OTLP ports, e.g. "
        '\'[{"namespace": "observability", "podSelector": {"app": "otel-collector"}}]\' '
        "(keys: namespace, namespaceSelector, podSelector, cidr, ports); env TELEMETRY_EGRESS",
    )
    net.add_argument(
        "--dns-namespace",
        default=None,
        help=f"namespace of the cluster DNS ({DEFAULT_DNS_NAMESPACE}); env DNS_NAMESPACE",
    )
    net.add_argument(
        "--dns-labels",
        default=None,
        help="labels of the cluster DNS pods, k=v,k2=v2 "
        f"({','.join(f'{k}={v}' for k, v in DEFAULT_DNS_LABELS.items())}); env DNS_LABELS",
    )
    net.add_argument(
        "--dns-cidrs",
        default=None,
        help="more DNS addresses, CIDRs, comma-separated (NodeLocal DNS 169.254.20.10/32); env DNS_CIDRS",
    )
    policy = parser.add_argument_group("policies")
    policy.add_argument(
        "--expired-retention",
        default=None,
        help=f"seconds an Expired Sandbox is kept before deletion ({DEFAULT_EXPIRED_RETENTION_S:g}); "
        "env EXPIRED_RETENTION",
    )
    policy.add_argument(
        "--retry-delay", default=None, help="seconds before retrying a failed API call (5); env RETRY_DELAY"
    )
    policy.add_argument(
        "--startup-timeout",
        default=None,
        help="seconds a sandbox may take from pod creation to Running before it fails with StartupTimeout "
        f"and its pod is deleted ({contract.DEFAULT_STARTUP_TIMEOUT_S}; a template's startupTimeout wins); "
        "env STARTUP_TIMEOUT",
    )
    watch = parser.add_argument_group("watching")
    watch.add_argument(
        "--watch-timeout",
        default=None,
        help=f"server-side timeout of every watch, in seconds ({DEFAULT_WATCH_TIMEOUT_S:g}); a silent "
        "stream is abandoned a little after it and the watch resumed; env WATCH_TIMEOUT",
    )
    watch.add_argument(
        "--resync-period",
        default=None,
        help=f"seconds between full lists checking the operator's view against the API "
        f"({DEFAULT_RESYNC_PERIOD_S:g}; 0: only after a watch re-list); env RESYNC_PERIOD",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-d", "--debug", action="store_true")
    return parser


def _network_settings(pick: Callable[[str, str], str | None]) -> NetworkSettings:
    default_policy = (
        pick("default_network_policy", "DEFAULT_NETWORK_POLICY") or contract.DEFAULT_NETWORK_POLICY
    )
    if default_policy not in contract.NETWORK_POLICIES:
        raise ConfigError(
            f"default network policy: expected one of {', '.join(contract.NETWORK_POLICIES)}, "
            f"got {default_policy!r}"
        )
    if default_policy == contract.NETWORK_CUSTOM:
        raise ConfigError(
            "default network policy: Custom needs allowCidrs, which only a Sandbox or a template gives; "
            "choose Internet, DenyAll or AllowAll"
        )
    try:
        egress = parse_telemetry_egress(pick("telemetry_egress", "TELEMETRY_EGRESS"))
    except ValueError as exc:
        raise ConfigError(f"telemetry egress: {exc}") from None
    try:
        namespace = parse_namespace(
            "dns namespace", pick("dns_namespace", "DNS_NAMESPACE") or DEFAULT_DNS_NAMESPACE
        )
        labels_raw = pick("dns_labels", "DNS_LABELS")
        labels = parse_labels("dns labels", labels_raw) if labels_raw else dict(DEFAULT_DNS_LABELS)
        cidrs = tuple(
            parse_cidr(c.strip()) for c in (pick("dns_cidrs", "DNS_CIDRS") or "").split(",") if c.strip()
        )
    except ValueError as exc:
        raise ConfigError(str(exc) if str(exc).startswith("dns") else f"dns cidrs: {exc}") from None
    return NetworkSettings(
        default_policy=default_policy,
        telemetry_egress=egress,
        dns=DnsLocation(namespace=namespace, labels=labels, cidrs=cidrs),
    )


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[OperatorConfig, RunOptions]:
    """Flags, then environment, then defaults. Raises :class:`ConfigError` (or exits on bad flags)."""
    args = build_parser().parse_args(list(argv))
    return _resolve(vars(args), environ)


def from_environment(environ: Mapping[str, str]) -> OperatorConfig:
    """The reconciler's settings from the environment alone (for ``kopf run -m leap0_operator``)."""
    return _resolve({}, environ)[0]


def _resolve(flags: Mapping[str, object], environ: Mapping[str, str]) -> tuple[OperatorConfig, RunOptions]:
    def pick(flag: str, env: str) -> str | None:
        value = flags.get(flag)
        if value is not None:
            return str(value)
        return _env(environ, env)

    defaults = OperatorConfig()
    default_image = pick("default_image", "DEFAULT_IMAGE") or defaults.default_image
    sidecar_image = pick("sidecar_image", "SIDECAR_IMAGE") or defaults.sidecar_image
    sidecar_cpu = _quantity("sidecar cpu", pick("sidecar_cpu", "SIDECAR_CPU") or defaults.sidecar_cpu)
    sidecar_memory = _quantity(
        "sidecar memory", pick("sidecar_memory", "SIDECAR_MEMORY") or defaults.sidecar_memory
    )
    retention_raw = pick("expired_retention", "EXPIRED_RETENTION")
    retention = (
        _seconds("expired retention", retention_raw) if retention_raw else defaults.expired_retention_s
    )
    retry_raw = pick("retry_delay", "RETRY_DELAY")
    retry = _seconds("retry delay", retry_raw) if retry_raw else defaults.retry_delay_s
    startup_raw = pick("startup_timeout", "STARTUP_TIMEOUT")
    startup = _whole_seconds("startup timeout", startup_raw) if startup_raw else defaults.startup_timeout_s
    watch_raw = pick("watch_timeout", "WATCH_TIMEOUT")
    watch_timeout = _seconds("watch timeout", watch_raw) if watch_raw else defaults.watch_timeout_s
    if watch_timeout < 1:
        raise ConfigError(f"watch timeout: must be at least 1 second, got {watch_raw!r}")
    resync_raw = pick("resync_period", "RESYNC_PERIOD")
    resync = _seconds("resync period", resync_raw) if resync_raw else defaults.resync_period_s
    config = OperatorConfig(
        network=_network_settings(pick),
        default_image=default_image,
        sidecar_image=sidecar_image,
        sidecar_cpu=sidecar_cpu,
        sidecar_memory=sidecar_memory,
        expired_retention_s=retention,
        default_otlp_endpoint=pick("default_otlp_endpoint", "DEFAULT_OTLP_ENDPOINT"),
        default_otlp_secret=_secret_name(pick("default_otlp_secret", "DEFAULT_OTLP_SECRET")),
        telemetry_token_audience=_audience(pick("telemetry_token_audience", "TELEMETRY_TOKEN_AUDIENCE")),
        retry_delay_s=retry,
        startup_timeout_s=startup,
        watch_timeout_s=watch_timeout,
        resync_period_s=resync,
    )

    flag_namespaces = flags.get("namespaces")
    if isinstance(flag_namespaces, list) and flag_namespaces:
        namespaces = tuple(str(n) for n in flag_namespaces)
    else:
        namespaces = tuple(n.strip() for n in (_env(environ, "NAMESPACES") or "").split(",") if n.strip())
    clusterwide_flag = flags.get("clusterwide")
    if clusterwide_flag is None:
        env_all = _env(environ, "ALL_NAMESPACES")
        clusterwide = _bool(ENV_PREFIX + "ALL_NAMESPACES", env_all) if env_all else False
    else:
        clusterwide = bool(clusterwide_flag)
    if namespaces and clusterwide:
        raise ConfigError("either --namespace or --all-namespaces, not both")
    if not namespaces:
        clusterwide = True
    standalone_flag = flags.get("standalone")
    if standalone_flag is None:
        env_standalone = _env(environ, "STANDALONE")
        standalone = _bool(ENV_PREFIX + "STANDALONE", env_standalone) if env_standalone else False
    else:
        standalone = bool(standalone_flag)
    priority_raw = pick("priority", "PRIORITY")
    try:
        priority = int(priority_raw) if priority_raw else 0
    except ValueError:
        raise ConfigError(f"priority: expected an integer, got {priority_raw!r}") from None
    metrics_raw = pick("metrics_port", "METRICS_PORT")
    try:
        metrics_port = int(metrics_raw) if metrics_raw else None
    except ValueError:
        raise ConfigError(f"metrics port: expected a port number, got {metrics_raw!r}") from None
    if metrics_port is not None and not 0 <= metrics_port <= 65535:
        raise ConfigError(f"metrics port: expected 0 to 65535, got {metrics_raw!r}")
    bind_raw = pick("metrics_bind_address", "METRICS_BIND_ADDRESS")
    try:
        metrics_bind_address = (
            str(ipaddress.ip_address(bind_raw)) if bind_raw else DEFAULT_METRICS_BIND_ADDRESS
        )
    except ValueError:
        raise ConfigError(
            f"metrics bind address: expected an IP address such as 0.0.0.0, 127.0.0.1 or ::, got {bind_raw!r}"
        ) from None
    options = RunOptions(
        namespaces=namespaces,
        clusterwide=clusterwide,
        standalone=standalone,
        peering_name=pick("peering_name", "PEERING") or DEFAULT_PEERING,
        peering_mandatory=pick("peering_name", "PEERING") is not None,
        priority=priority,
        liveness_endpoint=pick("liveness_endpoint", "LIVENESS"),
        metrics_port=metrics_port,
        metrics_bind_address=metrics_bind_address,
        verbose=bool(flags.get("verbose")),
        debug=bool(flags.get("debug")),
    )
    return config, options


def listen_addresses(options: RunOptions) -> list[tuple[str, str, int, str]]:
    """(what, host, port, how to choose another) of each address the operator will listen on."""
    found: list[tuple[str, str, int, str]] = []
    if options.metrics_port is not None:
        how = "--metrics-port PORT (or LEAP0_OPERATOR_METRICS_PORT; 0: any free port)"
        found.append(("the metrics", options.metrics_bind_address, options.metrics_port, how))
    if options.liveness_endpoint:
        url = urlsplit(options.liveness_endpoint)
        if url.port is not None:
            how = "--liveness URL (or LEAP0_OPERATOR_LIVENESS)"
            found.append(("the liveness endpoint", url.hostname or "0.0.0.0", url.port, how))
    return found


def cluster_access_problem(environ: Mapping[str, str], exists: Callable[[str], bool]) -> str | None:
    """Why no login to a cluster can work, as kopf looks for one (the service account's token, else every
    file of $KUBECONFIG, else ~/.kube/config), or None. Without this the operator would retry forever."""
    if exists(SERVICE_ACCOUNT_TOKEN):
        return None
    kubeconfig = environ.get("KUBECONFIG", "")
    if kubeconfig:
        paths = [p.strip() for p in kubeconfig.split(os.pathsep) if p.strip()]
        missing = [p for p in paths if not exists(os.path.expanduser(p))]
        if missing:
            return (
                f"KUBECONFIG names {', '.join(missing)}, which does not exist; set KUBECONFIG to the "
                "cluster's kubeconfig (in a cluster the operator uses its service account)"
            )
        return None
    if exists(os.path.expanduser("~/.kube/config")):
        return None
    return (
        "no cluster to connect to: no service account (not in a pod), no KUBECONFIG and no ~/.kube/config; "
        "set KUBECONFIG to the cluster's kubeconfig"
    )
