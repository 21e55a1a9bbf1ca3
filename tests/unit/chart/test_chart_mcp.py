"""The chart's MCP server (``mcp.enabled``): off by default; on, a locked-down Deployment, Service, RBAC."""

from __future__ import annotations

import base64
import contextlib
import io
from typing import Any

import helm_python as helm
import pytest
from chart_support import (
    NAMESPACE,
    bound_rules,
    claimed_kube_versions,
    lint_problems,
    notes,
    of_kind,
    render,
    validate_object,
)

from leap0.cli import main

ON: dict[str, Any] = {"mcp": {"enabled": True, "auth": {"existingSecret": "mcp-token"}}}
SCENARIOS: dict[str, dict[str, Any]] = {
    "on": ON,
    "on-other-namespace": {
        "mcp": {
            "enabled": True,
            "auth": {"existingSecret": "mcp-token", "tokenKey": "bearer"},
            "namespace": "agents",
            "owner": "agents-mcp",
            "template": "python",
            "allSandboxes": True,
            "port": 9000,
            "image": {"repository": "registry.example.com/leap0/mcp", "tag": "1.2.3"},
            "extraEnv": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4318"}],
        }
    },
    "on-namespaced-operator": {**ON, "watchNamespaces": ["team-a"]},
    "on-with-admin-limits": {
        "mcp": {
            "enabled": True,
            "auth": {"existingSecret": "mcp-token"},
            "template": "python",
            "allowedTemplates": ["small", "python"],
            "networkPolicy": "Custom",
            "networkAllowCidrs": ["10.1.0.0/16", "2001:db8::/32"],
            "ownerKey": {"existingSecret": "mcp-owner-key", "key": "hmac"},
        }
    },
}
MCP_NAME = "leap0-leap0-operator-mcp"


def mcp_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in render(values) if o["metadata"]["name"] == MCP_NAME]


def mcp_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = of_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_off_by_default() -> None:
    assert mcp_objects({}) == []
    assert all("mcp" not in o["metadata"]["name"] for o in render({}))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_is_valid_for_every_claimed_kubernetes_version(scenario: str) -> None:
    objects = render(SCENARIOS[scenario])
    assert {o["kind"] for o in mcp_objects(SCENARIOS[scenario])} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    }
    for obj in objects:
        validate_object(obj, claimed_kube_versions())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_is_clean(scenario: str) -> None:
    assert lint_problems(SCENARIOS[scenario]) == []


def test_the_server_serves_http_with_the_token_from_the_secret() -> None:
    objects = mcp_objects(ON)
    container = mcp_container(objects)
    assert container["image"] == "ghcr.io/leap0-dev/leap0-mcp:0.1.0"
    args = container["args"]
    assert "--http=0.0.0.0:8765" in args
    assert "--token-file=/var/run/leap0-mcp/token" in args
    assert f"--namespace={NAMESPACE}" in args
    assert f"--owner={MCP_NAME}" in args  # stable across restarts
    assert "--all-sandboxes" not in args
    assert "--owner-key-file=/var/run/leap0-mcp/owner-key" in args
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/leap0-mcp")
    assert mount["readOnly"] is True
    (deployment,) = of_kind(objects, "Deployment")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "mcp-token", "items": [{"key": "token", "path": "token"}]}},
        {"secret": {"name": f"{MCP_NAME}-owner-key", "items": [{"key": "owner-key", "path": "owner-key"}]}},
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert deployment["spec"]["replicas"] == 1


def test_settings_reach_the_flags_and_the_service() -> None:
    objects = mcp_objects(SCENARIOS["on-other-namespace"])
    container = mcp_container(objects)
    args = container["args"]
    assert container["image"] == "registry.example.com/leap0/mcp:1.2.3"
    for flag in (
        "--http=0.0.0.0:9000",
        "--namespace=agents",
        "--owner=agents-mcp",
        "--template=python",
        "--all-sandboxes",
    ):
        assert flag in args
    assert container["env"] == [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4318"}]
    (service,) = of_kind(objects, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "mcp", "port": 9000, "targetPort": "mcp", "protocol": "TCP"}]
    (deployment,) = of_kind(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_flags_are_leap0_mcps_own() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["mcp", "--help"])
    for scenario in SCENARIOS.values():
        for arg in mcp_container(mcp_objects(scenario))["args"]:
            assert arg.split("=", 1)[0] in out.getvalue(), arg


def test_its_pods_are_not_the_operators() -> None:
    objects = render(ON)
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    operator = deployments.pop("leap0-leap0-operator")
    mcp_labels = deployments[MCP_NAME]["spec"]["template"]["metadata"]["labels"]
    assert not operator["spec"]["selector"]["matchLabels"].items() <= mcp_labels.items()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_reaches_only_sandboxes_and_exec_in_the_served_namespace(scenario: str) -> None:
    values = SCENARIOS[scenario]
    objects = render(values)
    served = values["mcp"].get("namespace", NAMESPACE)
    granted = bound_rules(objects, MCP_NAME)
    assert set(granted) == {served}
    triples = {
        (group, resource, verb)
        for rule in granted[served]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert triples == {
        *(("leap0.dev", "sandboxes", v) for v in ("create", "get", "list", "watch", "patch", "delete")),
        ("", "pods/exec", "create"),
        ("", "pods/exec", "get"),
    }


def test_notes_tell_where_the_server_is() -> None:
    text = notes(ON)
    assert f"http://{MCP_NAME}.{NAMESPACE}.svc:8765/mcp" in text
    assert "Secret mcp-token" in text
    assert "/mcp" not in notes({})


def test_enabled_without_a_token_secret_is_refused() -> None:
    with pytest.raises(helm.HelmError, match="existingSecret"):
        render({"mcp": {"enabled": True}})
    with pytest.raises(helm.HelmValuesError, match="additional properties 'token' not allowed"):
        render({"mcp": {"enabled": True, "token": "inline"}})
    with pytest.raises(helm.HelmValuesError, match="/mcp/owner"):
        render({"mcp": {"enabled": True, "auth": {"existingSecret": "s"}, "owner": "not a label"}})


def test_the_owner_key_is_a_random_secret_of_its_own_unless_given() -> None:
    """The key that signs ownership (so a planted owner label is not ownership): made by the chart, 64
    random characters, a new one on each render without a cluster (on a cluster, `lookup` keeps the one it
    has); or an existing Secret."""
    keys = []
    for _ in range(2):
        (secret,) = [
            o
            for o in render(ON)
            if o["kind"] == "Secret" and o["metadata"]["name"] == f"{MCP_NAME}-owner-key"
        ]
        assert secret["metadata"]["namespace"] == NAMESPACE
        key = base64.b64decode(secret["data"]["owner-key"])
        assert len(key) == 64
        keys.append(key)
    assert keys[0] != keys[1]
    objects = render(SCENARIOS["on-with-admin-limits"])
    assert not [o for o in objects if o["kind"] == "Secret" and "owner-key" in o["metadata"]["name"]]
    (deployment,) = of_kind(mcp_objects(SCENARIOS["on-with-admin-limits"]), "Deployment")
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "projected" in v]
    assert volume["projected"]["sources"][1] == {
        "secret": {"name": "mcp-owner-key", "items": [{"key": "hmac", "path": "owner-key"}]}
    }


def test_admin_limits_reach_the_flags() -> None:
    args = mcp_container(mcp_objects(SCENARIOS["on-with-admin-limits"]))["args"]
    assert "--allowed-templates=small,python" in args
    assert "--network-policy=Custom" in args
    assert "--network-allow-cidrs=10.1.0.0/16,2001:db8::/32" in args
    off = mcp_container(mcp_objects(ON))["args"]
    assert not [a for a in off if a.startswith(("--allowed-templates", "--network-"))]


@pytest.mark.parametrize(
    ("mcp", "error", "message"),
    [
        ({"template": "big", "allowedTemplates": ["small"]}, helm.HelmError, 'mcp.template "big" is not in'),
        ({"networkPolicy": "Custom"}, helm.HelmError, "mcp.networkPolicy Custom needs mcp.networkAllowCidrs"),
        ({"networkAllowCidrs": ["10.0.0.0/8"]}, helm.HelmError, "only for mcp.networkPolicy Custom"),
        ({"networkPolicy": "Open"}, helm.HelmValuesError, "/mcp/networkPolicy"),
        ({"allowedTemplates": ["Not A Name"]}, helm.HelmValuesError, "/mcp/allowedTemplates"),
    ],
)
def test_bad_admin_limits_are_refused_naming_the_value(
    mcp: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        render({"mcp": {"enabled": True, "auth": {"existingSecret": "s"}, **mcp}})
