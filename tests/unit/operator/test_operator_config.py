"""Operator settings: flags win over the environment, which wins over defaults; bad values fail clearly."""

from __future__ import annotations

import re

import pytest
from support import REPO

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


# A value each flag accepts (None: a switch), to check the documented environment variable does the same.
SAMPLES: dict[str, str | None] = {
    "--namespace": "team-a", "--all-namespaces": None, "--standalone": None, "--peering": "mine",
    "--priority": "7", "--liveness": "http://0.0.0.0:9/healthz", "--metrics-port": "9",
    "--metrics-bind-address": "127.0.0.1",
    "--default-image": "img:1", "--sidecar-image": "side:1", "--sidecar-cpu": "200m",
    "--sidecar-memory": "128Mi", "--default-otlp-endpoint": "http://collector:4318",
    "--expired-retention": "7", "--retry-delay": "7", "--startup-timeout": "7", "--watch-timeout": "7",
    "--resync-period": "7", "--verbose": None, "--debug": None, "--default-network-policy": "DenyAll",
    "--telemetry-egress": '[{"namespace": "observability"}]', "--dns-namespace": "dns",
    "--dns-labels": "app=coredns", "--dns-cidrs": "169.254.20.10/32",
    "--default-otlp-secret": "platform-otlp", "--telemetry-token-audience": "leap0-telemetry",
}  # fmt: skip


def test_the_docs_settings_table_lists_every_flag_with_its_environment_variable() -> None:
    """docs/operator.md's table names every flag of `leap0-operator --help`, and the variable it gives for a
    flag sets what the flag sets."""
    text = (REPO / "docs" / "operator.md").read_text()
    table = text[text.index("## Settings") : text.index("## The pod")]
    rows: dict[str, str] = {}
    for line in table.splitlines():
        if line.startswith("| `-"):
            flag_cell, env_cell = line.split("|")[1:3]
            rows[re.findall(r"--[a-z-]+", flag_cell)[0]] = env_cell
    parser = config.build_parser()
    flags = {o for action in parser._actions for o in action.option_strings if o.startswith("--")}
    assert set(rows) == flags - {"--help"} == set(SAMPLES)
    for flag, env_cell in rows.items():
        names = re.findall(r"`([A-Z_]+)`", env_cell)
        if not names:
            assert flag in ("--verbose", "--debug"), flag  # kopf's logging switches only
            continue
        variable, value = config.ENV_PREFIX + names[0], SAMPLES[flag]
        by_flag = config.parse([flag] if value is None else [flag, value], {})
        assert config.parse([], {variable: "true" if value is None else value}) == by_flag, (flag, variable)


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


def test_metrics_bind_address_is_an_ip_address() -> None:
    assert config.parse([], {})[1].metrics_bind_address == "0.0.0.0"
    assert config.parse(["--metrics-bind-address", "::1"], {})[1].metrics_bind_address == "::1"
    env = {"LEAP0_OPERATOR_METRICS_BIND_ADDRESS": "127.0.0.1"}
    assert config.parse([], env)[1].metrics_bind_address == "127.0.0.1"
    with pytest.raises(config.ConfigError, match="metrics bind address: expected an IP address"):
        config.parse(["--metrics-bind-address", "localhost:8081"], {})


def test_the_addresses_listened_on_are_the_metrics_and_the_liveness_endpoint() -> None:
    _, options = config.parse(["--metrics-port", "9", "-L", "http://0.0.0.0:8080/healthz"], {})
    assert [(what, host, port) for what, host, port, _ in config.listen_addresses(options)] == [
        ("the metrics", "0.0.0.0", 9),
        ("the liveness endpoint", "0.0.0.0", 8080),
    ]
    assert config.listen_addresses(config.parse([], {})[1]) == []


@pytest.mark.parametrize(
    ("environ", "files", "problem"),
    [
        ({}, {config.SERVICE_ACCOUNT_TOKEN}, None),  # in a pod: its service account
        ({"KUBECONFIG": "/k/a:/k/b"}, {"/k/a", "/k/b"}, None),
        ({"KUBECONFIG": "/k/a:/k/b"}, {"/k/a"}, "KUBECONFIG names /k/b, which does not exist"),
        ({"KUBECONFIG": "/k/gone"}, {config.SERVICE_ACCOUNT_TOKEN}, None),  # (kopf tries the account first)
        ({"HOME": "/home/me"}, {"/home/me/.kube/config"}, None),
        ({"HOME": "/home/me"}, set(), "no cluster to connect to"),
    ],
)
def test_a_cluster_that_cannot_be_reached_is_said_before_kopf_retries_forever(
    environ: dict[str, str], files: set[str], problem: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", environ.get("HOME", "/home/me"))
    found = config.cluster_access_problem(environ, files.__contains__)
    assert found is None if problem is None else found is not None and found.startswith(problem)
