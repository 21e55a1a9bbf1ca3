"""Where the client finds its cluster and namespace, and when SDK telemetry is on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leap0._kube import kubeconfig_path, load_configuration, resolve_namespace
from leap0._telemetry import histogram_name, own_export_timeout, resolve_enabled
from leap0.exceptions import ConfigurationError

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        (None, {}, False),
        (True, {}, True),
        (False, {}, False),
        (None, {"LEAP0_SDK_OTEL_ENABLED": "true"}, True),
        (None, {"LEAP0_SDK_OTEL_ENABLED": "TRUE"}, True),
        (None, ENDPOINT, True),
        (False, ENDPOINT, False),  # the argument turns it off even with an endpoint set
        (False, {"LEAP0_SDK_OTEL_ENABLED": "true"}, False),  # the argument wins over the env
        (True, {"LEAP0_SDK_OTEL_ENABLED": "false"}, True),
        (None, {"LEAP0_SDK_OTEL_ENABLED": "false", **ENDPOINT}, False),
        (None, {"LEAP0_SDK_OTEL_ENABLED": "maybe"}, False),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
    ],
)
def test_enablement_matrix(explicit: bool | None, env: dict[str, str], expected: bool) -> None:
    assert resolve_enabled(explicit, env) is expected


def test_histogram_names_follow_the_hosted_sdk() -> None:
    assert histogram_name("sandboxes.create") == "sandboxes_create_duration"
    assert histogram_name("process.execute") == "process_execute_duration"


def test_the_sdks_own_exporters_give_up_after_2_s_unless_the_otlp_timeout_variables_say_otherwise() -> None:
    assert own_export_timeout("TRACES", {}) == 2.0
    assert own_export_timeout("METRICS", {"OTEL_EXPORTER_OTLP_TIMEOUT": " "}) == 2.0
    assert own_export_timeout("TRACES", {"OTEL_EXPORTER_OTLP_TIMEOUT": "10"}) is None
    assert own_export_timeout("METRICS", {"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "1"}) is None
    assert own_export_timeout("TRACES", {"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "1"}) == 2.0


def test_namespace_precedence() -> None:
    assert resolve_namespace("mine", "ctx") == "mine"
    assert resolve_namespace(None, "ctx") == "ctx"
    assert resolve_namespace(None, None) == "default"
    assert resolve_namespace("", "") == "default"


def _kubeconfig(path: Path, namespace: str | None) -> Path:
    ctx: dict[str, str] = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": ctx}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_argument_then_env_then_home(tmp_path: Path) -> None:
    assert kubeconfig_path("/a", {"KUBECONFIG": "/b"}) == "/a"
    assert kubeconfig_path(None, {"KUBECONFIG": "/b", "HOME": str(tmp_path)}) == "/b"
    assert kubeconfig_path(None, {"HOME": str(tmp_path)}) is None
    (tmp_path / ".kube").mkdir()
    _kubeconfig(tmp_path / ".kube" / "config", None)
    assert kubeconfig_path(None, {"HOME": str(tmp_path)}) == str(tmp_path / ".kube" / "config")


def test_kubeconfig_read_when_the_client_is_made_not_at_import(tmp_path: Path) -> None:
    cfg, ns = load_configuration(None, {"KUBECONFIG": str(_kubeconfig(tmp_path / "kc", "team-a"))})
    assert cfg.host == "http://127.0.0.1:1"
    assert ns == "team-a"
    _, ns = load_configuration(_kubeconfig(tmp_path / "kc2", None), {})
    assert ns is None


def test_missing_or_broken_config_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_configuration(tmp_path / "nope", {})
    (tmp_path / "bad").write_text("clusters: [")
    with pytest.raises(ConfigurationError):
        load_configuration(tmp_path / "bad", {})
    with pytest.raises(ConfigurationError, match="no Kubernetes configuration"):
        load_configuration(None, {"HOME": str(tmp_path)})


def test_in_cluster_without_a_service_account_is_a_configuration_error(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(ConfigurationError, match="in-cluster"):
        load_configuration(None, env)
