"""The Helm chart renders valid Kubernetes objects for the scenarios a platform team uses (offline)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_support import (
    CHART_DIR,
    NAMESPACE,
    bound_rules,
    chart,
    claimed_kube_versions,
    crd_files,
    lint_problems,
    notes,
    of_kind,
    one,
    render,
    strip_chart_metadata,
    uncovered_calls,
    validate_object,
)

import leap0_contract as contract
from leap0_operator.apicalls import API_CALLS

WATCHED = ["team-a", "team-b"]
DIGEST = "sha256:" + "a" * 64
SECRET_ENDPOINT = {"otlp": {"existingSecret": {"name": "platform-otlp"}}}
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": WATCHED},
    "two-replicas": {"replicas": 2, "peering": {"enabled": True}},
    "two-replicas-namespaced": {"replicas": 2, "peering": {"enabled": True}, "watchNamespaces": WATCHED},
    "custom-images": {
        "image": {"repository": "registry.example.com/leap0/operator", "tag": "1.2.3"},
        "sidecar": {
            "image": {"repository": "registry.example.com/leap0/sidecar", "digest": "sha256:" + "a" * 64}
        },
    },
    "endpoint-from-secret": SECRET_ENDPOINT,
    "endpoint-value": {"otlp": {"endpoint": "http://collector.observability:4318"}},
    "crds-external": {"crds": {"install": False}, "defaultTemplate": {"create": False}},
    "locked-down-network": {
        "network": {
            "defaultPolicy": "DenyAll",
            "telemetryEgress": [
                {"namespace": "observability", "podSelector": {"app.kubernetes.io/name": "otel-collector"}},
                {"cidr": "10.30.0.0/16", "ports": [4318]},
            ],
            "dns": {
                "namespace": "dns",
                "labels": "app=coredns,tier=node",
                "cidrs": ["169.254.20.10/32"],
            },
        },
        "defaultTemplate": {
            "spec": {
                "network": {"policy": "Custom", "allowCidrs": ["203.0.113.0/24"]},
                "podSecurity": "restricted",
                "runAsUser": 1001,
            }
        },
    },
}


def deployment_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def flags(container: dict[str, Any]) -> dict[str, str]:
    """The operator's ``--name=value`` arguments (the last wins, as argparse does)."""
    return dict(a.removeprefix("--").split("=", 1) for a in container["args"] if "=" in a)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_object_is_valid_for_every_claimed_kubernetes_version(scenario: str) -> None:
    versions = claimed_kube_versions()
    assert versions[0] == "1.30.0"
    assert len(versions) >= 2
    objects = render(SCENARIOS[scenario])
    assert objects
    for obj in objects:
        validate_object(obj, versions)


def test_validation_is_strict_about_unknown_fields() -> None:
    deployment = one(render(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="securityContxt"):
        validate_object(deployment, claimed_kube_versions())
    template = one(render(), contract.TEMPLATE_KIND)
    template["spec"]["vcpu"] = 99
    with pytest.raises(jsonschema.ValidationError, match="99"):
        validate_object(template, claimed_kube_versions())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_is_clean(scenario: str) -> None:
    assert lint_problems(SCENARIOS[scenario]) == []


def test_default_install_runs_one_standalone_operator_cluster_wide() -> None:
    objects = render()
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    container = deployment_container(objects)
    assert container["image"] == f"ghcr.io/leap0-dev/leap0-operator:{chart().metadata['appVersion']}"
    assert "--all-namespaces" in container["args"]
    assert "--standalone" in container["args"]
    assert not [a for a in container["args"] if a.startswith(("--peering", "--namespace"))]
    assert of_kind(objects, "Role") == []
    assert of_kind(objects, "ClusterKopfPeering") == []
    sidecar_image = flags(container)["sidecar-image"]
    assert sidecar_image == f"ghcr.io/leap0-dev/leap0-sidecar:{chart().metadata['appVersion']}"
    assert "env" not in container


def test_probes_use_kopfs_liveness_endpoint_on_the_port_it_is_told() -> None:
    container = deployment_container(render({"healthPort": 9090}))
    assert "--liveness=http://0.0.0.0:9090/healthz" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"]["path"] == "/healthz"
        assert ports[probe["httpGet"]["port"]] == 9090


def test_operator_runs_with_a_strict_security_context_and_resources() -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = deployment_container(objects)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]["cpu"]


def test_two_replicas_turn_peering_on_with_a_peering_object() -> None:
    objects = render(SCENARIOS["two-replicas"])
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    args = deployment_container(objects)["args"]
    assert "--peering=leap0-operator" in args
    assert "--standalone" not in args
    peering = one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "leap0-operator"
    assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]


def test_namespaced_install_gets_roles_only_in_the_watched_namespaces() -> None:
    objects = render(SCENARIOS["namespaced"])
    args = deployment_container(objects)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [f"--namespace={ns}" for ns in WATCHED]
    assert "--all-namespaces" not in args
    assert sorted(r["metadata"]["namespace"] for r in of_kind(objects, "Role")) == WATCHED
    assert sorted(b["metadata"]["namespace"] for b in of_kind(objects, "RoleBinding")) == WATCHED
    cluster_role = one(objects, "ClusterRole")
    cluster_resources = {res for rule in cluster_role["rules"] for res in rule["resources"]}
    assert "pods" not in cluster_resources
    assert "sandboxes" not in cluster_resources
    templates = of_kind(objects, contract.TEMPLATE_KIND)
    assert sorted(t["metadata"]["namespace"] for t in templates) == WATCHED


def test_namespaced_peering_uses_a_kopfpeering_per_namespace() -> None:
    objects = render(SCENARIOS["two-replicas-namespaced"])
    assert of_kind(objects, "ClusterKopfPeering") == []
    assert sorted(p["metadata"]["namespace"] for p in of_kind(objects, "KopfPeering")) == WATCHED


def test_custom_images_reach_the_operator_and_the_sidecar_it_injects() -> None:
    objects = render(SCENARIOS["custom-images"])
    container = deployment_container(objects)
    assert container["image"] == "registry.example.com/leap0/operator:1.2.3"
    assert flags(container)["sidecar-image"] == "registry.example.com/leap0/sidecar@" + DIGEST


def test_operator_settings_reach_the_operators_flags() -> None:
    values = {
        "sidecar": {"cpu": "10m", "memory": "32Mi"},
        "sandbox": {
            "defaultImage": "python:3.13-slim",
            "expiredRetentionSeconds": 1000000,
            "startupTimeoutSeconds": 120,
        },
        "logLevel": "debug",
        "watchTimeoutSeconds": 60,
        "resyncPeriodSeconds": 0,
        "extraArgs": ["--retry-delay=2"],
        "metrics": {"port": 9100},
    }
    container = deployment_container(render(values))
    elsewhere = {"sidecar-image", "liveness", "default-network-policy", "dns-namespace", "dns-labels"}
    assert {k: v for k, v in flags(container).items() if k not in elsewhere} == {
        "metrics-port": "9100",
        "metrics-bind-address": "0.0.0.0",
        "sidecar-cpu": "10m",
        "sidecar-memory": "32Mi",
        "default-image": "python:3.13-slim",
        "expired-retention": "1000000",
        "startup-timeout": "120",
        "watch-timeout": "60",
        "resync-period": "0",
        "retry-delay": "2",
    }
    assert "--debug" in container["args"]


def test_watch_settings_default_to_the_operators() -> None:
    from leap0_operator import config

    found = flags(deployment_container(render()))
    assert float(found["watch-timeout"]) == config.DEFAULT_WATCH_TIMEOUT_S
    assert float(found["resync-period"]) == config.DEFAULT_RESYNC_PERIOD_S


def test_operator_flags_are_the_operators_own() -> None:
    """Every flag the chart passes is one leap0-operator accepts (its parser, not a hand list)."""
    from leap0_operator import config

    parser = config.build_parser()
    for scenario in SCENARIOS.values():
        args = deployment_container(render({**scenario, "logLevel": "verbose"}))["args"]
        parser.parse_args(args)


def test_platform_endpoint_from_a_secret_is_never_in_plain_text() -> None:
    """The operator only names the Secret: each sandbox pod references it (tests/unit/operator/
    test_operator_tenancy.py), nothing reads its value into the operator or a pod spec."""
    container = deployment_container(render(SECRET_ENDPOINT))
    assert flags(container)["default-otlp-secret"] == "platform-otlp"
    assert "LEAP0_OPERATOR_DEFAULT_OTLP_ENDPOINT" not in env_of(container)
    assert "default-otlp-endpoint" not in flags(container)


def test_the_token_audience_reaches_the_operator_and_needs_a_platform_destination() -> None:
    otlp = {"endpoint": "http://a:4318", "existingSecret": {"name": "s"}, "tokenAudience": "leap0"}
    values = {"otlp": otlp}
    got = flags(deployment_container(render(values)))
    assert (got["default-otlp-endpoint"], got["default-otlp-secret"]) == ("http://a:4318", "s")
    assert got["telemetry-token-audience"] == "leap0"
    with pytest.raises(helm.HelmError, match=r"otlp\.tokenAudience needs otlp\.endpoint or otlp\.existingSe"):
        render({"otlp": {"tokenAudience": "leap0"}})


def test_platform_endpoint_value_and_none_by_default() -> None:
    container = deployment_container(render(SCENARIOS["endpoint-value"]))
    assert flags(container)["default-otlp-endpoint"] == "http://collector.observability:4318"
    assert "default-otlp-endpoint" not in flags(deployment_container(render()))


def test_rendered_crds_are_the_files_in_crds_folder_kept_on_uninstall() -> None:
    rendered = of_kind(render(), "CustomResourceDefinition")
    for crd in rendered:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    by_name = {c["metadata"]["name"]: strip_chart_metadata(c) for c in rendered}
    files = {c["metadata"]["name"]: c for c in crd_files()}
    assert by_name.keys() == files.keys()
    for name, crd in files.items():
        assert by_name[name] == crd, name


def test_crds_without_keep_are_byte_for_byte_the_files_content() -> None:
    rendered = of_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert sorted(rendered, key=lambda c: c["metadata"]["name"]) == sorted(
        crd_files(), key=lambda c: c["metadata"]["name"]
    )


def test_crds_can_be_left_to_someone_else() -> None:
    assert of_kind(render(SCENARIOS["crds-external"]), "CustomResourceDefinition") == []


def test_packaged_chart_carries_the_crds(tmp_path: Path) -> None:
    archive = helm.package(CHART_DIR, destination=tmp_path)
    with helm.Chart.load(archive) as packaged:
        rendered = of_kind(render(chart_obj=packaged), "CustomResourceDefinition")
    assert len(rendered) == len(crd_files())


def test_default_template_is_a_valid_sandboxtemplate_in_the_release_namespace() -> None:
    template = one(render(), contract.TEMPLATE_KIND)
    assert template["metadata"]["name"] == contract.DEFAULT_TEMPLATE_ID
    assert template["metadata"]["namespace"] == NAMESPACE
    assert template["spec"]["vcpu"] == contract.DEFAULT_VCPU


def test_default_template_values_name_exactly_the_crd_spec_fields() -> None:
    schema = chart().schema
    assert schema is not None
    values_fields = set(schema["properties"]["defaultTemplate"]["properties"]["spec"]["properties"])
    crd = next(c for c in crd_files() if c["spec"]["names"]["kind"] == contract.TEMPLATE_KIND)
    crd_fields = set(
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    )
    assert values_fields == crd_fields


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_covers_every_api_call_the_operator_makes(scenario: str) -> None:
    values = SCENARIOS[scenario]
    objects = render(values)
    service_account = one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert one(objects, "ServiceAccount")["metadata"]["name"] == service_account
    peering = bool(values.get("peering", {}).get("enabled"))
    watched = list(values.get("watchNamespaces", []))
    calls = [(c.group, c.resource, c.verbs) for c in API_CALLS]
    # kopf touches its peering objects only with peering on, and only the kind matching its scope.
    needed_peering = "kopfpeerings" if watched else "clusterkopfpeerings"
    calls = [c for c in calls if c[0] != "kopf.dev" or (peering and c[1] == needed_peering)]
    granted = bound_rules(objects, service_account)
    assert list(uncovered_calls(calls, granted, watched)) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_grants_nothing_the_operator_does_not_call(scenario: str) -> None:
    """Least privilege: every verb the chart grants is in API_CALLS."""
    needed = {(c.group, c.resource, verb) for c in API_CALLS for verb in c.verbs}
    extra = [
        (group, resource, verb)
        for obj in render(SCENARIOS[scenario])
        for rule in obj.get("rules", [])
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if (group, resource, verb) not in needed
    ]
    assert extra == []


def test_rbac_check_reports_a_call_the_chart_does_not_grant() -> None:
    objects = render(SCENARIOS["namespaced"])
    granted = bound_rules(objects, "leap0-leap0-operator")
    missing = [("", "secrets", ("list",)), ("", "namespaces", ("delete",)), ("", "pods", ("create",))]
    assert list(uncovered_calls(missing, granted, WATCHED)) == [
        "core/secrets list in namespace team-a",
        "core/secrets list in namespace team-b",
        "core/namespaces delete (cluster-wide)",
    ]


def test_rbac_grants_no_wildcards() -> None:
    for values in SCENARIOS.values():
        for obj in render(values):
            for rule in obj.get("rules", []):
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(key, []), rule


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replica": 2}, "additional properties 'replica' not allowed"),
        ({"replicas": "two"}, "at '/replicas': got string, want integer"),
        ({"replicas": 2}, "at '/peering/enabled': value must be true"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
        ({"otlp": {"endpoint": "collector:4318"}}, "at '/otlp/endpoint'"),
        ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0'"),
        ({"sidecar": {"cpu": "lots"}}, "at '/sidecar/cpu'"),
        ({"logLevel": "loud"}, "at '/logLevel': value must be one of"),
        ({"defaultTemplate": {"spec": {"gpu": 1}}}, "additional properties 'gpu' not allowed"),
    ],
)
def test_bad_values_are_refused_with_the_schemas_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        chart().validate_schema(values)
    assert message in str(refused.value)
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        render(values)


def test_default_values_pass_the_schema() -> None:
    chart().validate_schema(chart().values)


# Keys whose children are Kubernetes data (documented by Kubernetes), not chart settings.
FREE_FORM = {"resources", "requests", "limits", "spec"}


def test_values_yaml_documents_every_key() -> None:
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented: list[str] = []
    parents: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        parents = [(i, k) for i, k in parents if i < indent]
        free_form = any(k in FREE_FORM for _, k in parents)
        previous = lines[number - 1].strip() if number else ""
        if not free_form and not previous.startswith("#"):
            undocumented.append(".".join([k for _, k in parents] + [key]))
        parents.append((indent, key))
    assert undocumented == []


def test_network_values_reach_the_operator_as_its_settings() -> None:
    """The chart's network values, rendered as flags, parse into the operator's settings (one format)."""
    from leap0_operator.config import parse
    from leap0_operator.network import DnsLocation, parse_telemetry_egress

    container = deployment_container(render(SCENARIOS["locked-down-network"]))
    config, _ = parse([a for a in container["args"] if a.startswith("--")], {})
    assert config.network.default_policy == "DenyAll"
    assert config.network.telemetry_egress == parse_telemetry_egress(
        '[{"namespace": "observability", "podSelector": {"app.kubernetes.io/name": "otel-collector"}},'
        ' {"cidr": "10.30.0.0/16", "ports": [4318]}]'
    )
    assert config.network.dns == DnsLocation("dns", {"app": "coredns", "tier": "node"}, ("169.254.20.10/32",))
    defaults, _ = parse([a for a in deployment_container(render())["args"] if a.startswith("--")], {})
    assert defaults.network == parse([], {})[0].network  # the chart's defaults are the operator's


def test_notes_say_network_policies_need_an_enforcing_plugin() -> None:
    text = notes()
    assert "default policy Internet" in text
    assert "enforced by the cluster's network plugin" in text
    assert "do not" in text


def test_notes_tell_how_to_check_and_use_the_install() -> None:
    text = notes(SECRET_ENDPOINT)
    assert f"kubectl -n {NAMESPACE} rollout status deployment/leap0-leap0-operator" in text
    assert "from Secret platform-otlp in each sandbox namespace" in text
    assert "kind: Sandbox" in text


def test_chart_and_app_version_are_the_package_version() -> None:
    from importlib.metadata import version as installed_version

    import leap0

    version = contract.PACKAGE_VERSION
    assert installed_version("leap0") == version  # pyproject.toml takes it from leap0_contract
    assert chart().metadata["version"] == version
    assert chart().metadata["appVersion"] == version
    assert leap0.__version__ == version


def test_rbac_rules_are_the_operators_manifest() -> None:
    """The chart reuses operator/rbac.yaml: cluster-wide with peering, it grants exactly that ClusterRole
    except the namespaced peering objects (a cluster-wide kopf uses ClusterKopfPeering)."""
    manifest = yaml.safe_load_all((CHART_DIR.parent.parent / "operator" / "rbac.yaml").read_text())
    (role,) = [doc for doc in manifest if doc and doc["kind"] == "ClusterRole"]

    def triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {
            (group, resource, verb)
            for rule in rules
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }

    rendered = one(render(SCENARIOS["two-replicas"]), "ClusterRole")
    expected = {t for t in triples(role["rules"]) if t[1] != "kopfpeerings"}
    assert triples(rendered["rules"]) == expected
