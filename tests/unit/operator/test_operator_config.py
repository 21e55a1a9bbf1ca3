"""Operator settings: flags win over the environment, which wins over defaults; bad values fail clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import subprocess_env

import leap0_contract as contract
from leap0_operator import config


def test_defaults_serve_the_whole_cluster_with_the_contracts_default_image() -> None:
    operator_config, options = config.parse([], {})
    assert operator_config.default_image == contract.DEFAULT_IMAGE
    assert operator_config.sidecar_image == "ghcr.io/leap0-dev/leap0-sidecar:0.1.0"
    assert operator_config.expired_retention_s == 3600
    assert operator_config.startup_timeout_s == 600
    assert operator_config.default_otlp_endpoint is None
    assert options.clusterwide
    assert options.namespaces == ()
    assert not options.standalone
    assert not options.peering_mandatory


def test_environment_configures_everything() -> None:
    env = {
        "LEAP0_OPERATOR_SIDECAR_IMAGE": "registry.local/sidecar:dev",
        "LEAP0_OPERATOR_SIDECAR_CPU": "50m",
        "LEAP0_OPERATOR_SIDECAR_MEMORY": "32Mi",
        "LEAP0_OPERATOR_DEFAULT_IMAGE": "busybox",
        "LEAP0_OPERATOR_EXPIRED_RETENTION": "2.5",
        "LEAP0_OPERATOR_NAMESPACES": "team-a, team-b",
        "LEAP0_OPERATOR_PEERING": "blue",
        "LEAP0_OPERATOR_PRIORITY": "7",
        "LEAP0_OPERATOR_DEFAULT_OTLP_ENDPOINT": "http://collector:4318",
        "LEAP0_OPERATOR_STARTUP_TIMEOUT": "90",
        "LEAP0_OPERATOR_WATCH_TIMEOUT": "120",
        "LEAP0_OPERATOR_RESYNC_PERIOD": "0",
    }
    operator_config, options = config.parse([], env)
    assert operator_config == config.OperatorConfig(
        default_image="busybox",
        sidecar_image="registry.local/sidecar:dev",
        sidecar_cpu="50m",
        sidecar_memory="32Mi",
        expired_retention_s=2.5,
        default_otlp_endpoint="http://collector:4318",
        startup_timeout_s=90,
        watch_timeout_s=120,
        resync_period_s=0,
    )
    assert options.namespaces == ("team-a", "team-b")
    assert not options.clusterwide
    assert options.peering_name == "blue"
    assert options.peering_mandatory
    assert options.priority == 7
    assert config.from_environment(env) == operator_config


def test_flags_win_over_the_environment() -> None:
    env = {"LEAP0_OPERATOR_SIDECAR_IMAGE": "from-env", "LEAP0_OPERATOR_NAMESPACES": "env-ns"}
    operator_config, options = config.parse(
        ["--sidecar-image", "from-flag", "-n", "a", "--namespace", "b", "--standalone", "-p", "3"], env
    )
    assert operator_config.sidecar_image == "from-flag"
    assert options.namespaces == ("a", "b")
    assert options.standalone
    assert options.priority == 3


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--sidecar-memory", "lots"], {}, "sidecar memory"),
        ([], {"LEAP0_OPERATOR_EXPIRED_RETENTION": "soon"}, "expired retention"),
        ([], {"LEAP0_OPERATOR_EXPIRED_RETENTION": "-1"}, "must not be negative"),
        ([], {"LEAP0_OPERATOR_STARTUP_TIMEOUT": "1.5"}, "startup timeout: expected a whole number"),
        (["--startup-timeout", "0"], {}, "startup timeout: must be at least 1 second"),
        (["-n", "a", "-A"], {}, "not both"),
        ([], {"LEAP0_OPERATOR_STANDALONE": "maybe"}, "STANDALONE"),
        ([], {"LEAP0_OPERATOR_PRIORITY": "high"}, "priority"),
        ([], {"LEAP0_OPERATOR_DEFAULT_NETWORK_POLICY": "Open"}, "default network policy: expected one of"),
        ([], {"LEAP0_OPERATOR_DEFAULT_NETWORK_POLICY": "Custom"}, "Custom needs allowCidrs"),
        (["--telemetry-egress", "[{}]"], {}, "telemetry egress: entry 0"),
        ([], {"LEAP0_OPERATOR_TELEMETRY_EGRESS": "observability"}, "telemetry egress: expected a JSON list"),
        ([], {"LEAP0_OPERATOR_DNS_NAMESPACE": "Kube_System"}, "dns namespace"),
        ([], {"LEAP0_OPERATOR_DNS_LABELS": "k8s-app"}, "dns labels"),
        ([], {"LEAP0_OPERATOR_DNS_CIDRS": "169.254.20.10"}, "dns cidrs"),
    ],
)
def test_bad_settings_name_the_setting(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.parse(argv, env)


def test_network_settings_from_flags_and_environment() -> None:
    defaults = config.from_environment({})
    assert defaults.network.default_policy == "Internet"
    assert defaults.network.telemetry_egress == ()
    assert (defaults.network.dns.namespace, dict(defaults.network.dns.labels)) == (
        "kube-system",
        {"k8s-app": "kube-dns"},
    )
    env = {
        "LEAP0_OPERATOR_DEFAULT_NETWORK_POLICY": "DenyAll",
        "LEAP0_OPERATOR_TELEMETRY_EGRESS": '[{"namespace": "observability"}]',
        "LEAP0_OPERATOR_DNS_NAMESPACE": "dns",
        "LEAP0_OPERATOR_DNS_LABELS": "app=coredns, tier=node",
        "LEAP0_OPERATOR_DNS_CIDRS": "169.254.20.10/32, fd00::a/128",
    }
    settings = config.from_environment(env).network
    assert settings.default_policy == "DenyAll"
    assert [d.namespace_labels for d in settings.telemetry_egress] == [
        {"kubernetes.io/metadata.name": "observability"}
    ]
    assert (settings.dns.namespace, dict(settings.dns.labels)) == ("dns", {"app": "coredns", "tier": "node"})
    assert settings.dns.cidrs == ("169.254.20.10/32", "fd00::a/128")
    flagged, _ = config.parse(["--default-network-policy", "AllowAll"], env)
    assert flagged.network.default_policy == "AllowAll"


def test_reading_the_settings_does_not_import_kopf() -> None:
    """``leap0-operator`` parses its settings before hiding the unused Kubernetes clients from kopf; a kopf
    imported by the settings would load them (about 50 MiB more RSS, bench/operator_bench.py)."""
    code = "import sys, leap0_operator.config; print('kopf' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=subprocess_env()
    )
    assert result.stdout.strip() == "False", result.stderr


def test_the_command_refuses_a_bad_setting_before_starting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "leap0_operator", "--sidecar-memory", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(KUBECONFIG="/nonexistent"),
    )
    assert result.returncode == 2
    assert "sidecar memory" in result.stderr
    assert "'lots'" in result.stderr


def test_leap0_operator_hides_the_installed_kubernetes_clients_from_kopf() -> None:
    """Where the SDK's dependencies are installed (here, `pip install 'leap0[operator]'`), kopf would import
    the kubernetes client (~50 MiB) for nothing: `leap0-operator` hides it before importing kopf."""
    code = (
        "import sys\n"
        "from leap0_operator.__main__ import hide_unused_kubernetes_clients\n"
        "print(hide_unused_kubernetes_clients())\n"
        "import kopf\n"
        "print(sorted(n for n in ('kubernetes', 'kubernetes_asyncio') if sys.modules.get(n) is not None))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=subprocess_env()
    )
    hidden, loaded = result.stdout.splitlines()
    assert "kubernetes" in hidden
    assert loaded == "[]"


def test_watch_timeout_and_resync_period() -> None:
    defaults, _ = config.parse([], {})
    assert (defaults.watch_timeout_s, defaults.resync_period_s) == (300, 300)
    flagged, _ = config.parse(
        ["--watch-timeout", "10", "--resync-period", "30"], {"LEAP0_OPERATOR_WATCH_TIMEOUT": "9"}
    )
    assert (flagged.watch_timeout_s, flagged.resync_period_s) == (10, 30)
    with pytest.raises(config.ConfigError, match="watch timeout"):
        config.parse(["--watch-timeout", "0"], {})
    with pytest.raises(config.ConfigError, match="resync period"):
        config.parse([], {"LEAP0_OPERATOR_RESYNC_PERIOD": "soon"})
