"""The chart's observability: the operator's metrics port and Service, the ServiceMonitor, the dashboards."""

from __future__ import annotations

import copy
import json
from typing import Any

import helm_python as helm
import jsonschema
import pytest
from chart_support import (
    NAMESPACE,
    claimed_kube_versions,
    dashboards,
    lint_problems,
    of_kind,
    one,
    render,
    validate_object,
    vendored_crds,
)

import leap0_contract as contract

MONITORED = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}}}
EVERYTHING = {**MONITORED, "dashboards": {"enabled": True}}
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "metrics-off": {"metrics": {"enabled": False}},
    "service-monitor": MONITORED,
    "service-monitor-tuned": {
        "metrics": {
            "port": 9102,
            "service": {"port": 80, "annotations": {"prometheus.io/scrape": "true"}},
            "serviceMonitor": {
                "enabled": True,
                "interval": "15s",
                "scrapeTimeout": "10s",
                "namespace": "mon",
            },
        }
    },
    "dashboards": {"dashboards": {"enabled": True}},
    "everything-namespaced": {
        **EVERYTHING,
        "watchNamespaces": ["team-a"],
        "replicas": 2,
        "peering": {"enabled": True},
    },
}


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0])


def metrics_service(objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    services = [s for s in of_kind(objects, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert len(services) <= 1
    return services[0] if services else None


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_is_valid_the_service_monitor_against_the_prometheus_operators_crd(
    scenario: str,
) -> None:
    objects = render(SCENARIOS[scenario])
    for obj in objects:
        validate_object(obj, claimed_kube_versions())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_is_clean(scenario: str) -> None:
    assert lint_problems(SCENARIOS[scenario]) == []


def test_metrics_are_on_by_default_behind_a_service_that_reaches_the_operators_port() -> None:
    objects = render()
    operator = container(objects)
    assert "--metrics-port=8081" in operator["args"]
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports["metrics"] == 8081
    service = metrics_service(objects)
    assert service is not None
    assert service["spec"]["type"] == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics"
    assert port["targetPort"] == "metrics"
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], pod_labels)
    assert of_kind(objects, "ServiceMonitor") == []
    assert of_kind(objects, "ConfigMap") == []


def test_metrics_off_means_no_flag_no_port_no_service() -> None:
    objects = render({"metrics": {"enabled": False}})
    operator = container(objects)
    assert not [a for a in operator["args"] if a.startswith("--metrics-port")]
    assert [p["name"] for p in operator["ports"]] == ["health"]
    assert metrics_service(objects) is None


def test_service_monitor_scrapes_the_metrics_service() -> None:
    objects = render(SCENARIOS["service-monitor-tuned"])
    monitor = one(objects, "ServiceMonitor")
    service = metrics_service(objects)
    assert service is not None
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "mon"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": contract.OPERATOR_METRICS_PATH,
        "interval": "15s",
        "scrapeTimeout": "10s",
    }
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert "--metrics-port=9102" in container(objects)["args"]
    # Only the operator's Service matches: not the pods of sandboxes, not another release.
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "metrics"


def test_service_monitor_carries_the_labels_a_prometheus_selects_on() -> None:
    monitor = one(render(MONITORED), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["metadata"]["namespace"] == NAMESPACE


def test_the_service_monitor_check_is_strict() -> None:
    """The vendored CRD schema refuses a misspelt field (the API server would drop it silently)."""
    monitor = copy.deepcopy(one(render(MONITORED), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        validate_object(monitor, claimed_kube_versions())
    assert [crd["spec"]["names"]["kind"] for crd in vendored_crds()] == ["ServiceMonitor"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics": {"port": 8080}}, "metrics.port and healthPort must differ"),
        (
            {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled needs metrics.enabled=true",
        ),
    ],
)
def test_contradictory_metrics_values_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics": {"port": 0}}, "at '/metrics/port'"),
        (
            {"metrics": {"serviceMonitor": {"interval": "half a minute"}}},
            "at '/metrics/serviceMonitor/interval'",
        ),
        ({"dashboards": {"labelValue": 1}}, "at '/dashboards/labelValue'"),
        ({"dashboards": {"enable": True}}, "additional properties 'enable' not allowed"),
    ],
)
def test_bad_metrics_values_are_refused_by_the_schema(values: dict[str, Any], message: str) -> None:
    from chart_support import chart

    with pytest.raises(helm.HelmValuesError) as refused:
        chart().validate_schema(values)
    assert message in str(refused.value)


def test_dashboards_are_configmaps_for_grafanas_sidecar_with_the_repositorys_json() -> None:
    configmaps = of_kind(render({"dashboards": {"enabled": True}}), "ConfigMap")
    files = dashboards()
    assert len(configmaps) == len(files) == 2
    loaded: dict[str, Any] = {}
    for configmap in configmaps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["namespace"] == NAMESPACE
        ((key, text),) = configmap["data"].items()
        loaded[key] = json.loads(text)
    assert loaded == files
    assert {d["title"] for d in loaded.values()} == {"leap0 sandboxes", "leap0 operator"}


def test_dashboard_label_namespace_and_annotations_are_configurable() -> None:
    values = {
        "dashboards": {
            "enabled": True,
            "label": "grafana.example.com/dashboard",
            "labelValue": "leap0",
            "namespace": "monitoring",
            "annotations": {"grafana_folder": "leap0"},
        }
    }
    for configmap in of_kind(render(values), "ConfigMap"):
        assert configmap["metadata"]["labels"]["grafana.example.com/dashboard"] == "leap0"
        assert "grafana_dashboard" not in configmap["metadata"]["labels"]
        assert configmap["metadata"]["namespace"] == "monitoring"
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "leap0"}


def test_notes_tell_where_the_metrics_and_dashboards_are() -> None:
    from chart_support import notes

    text = notes(EVERYTHING)
    assert "port-forward service/leap0-leap0-operator-metrics 8081" in text
    assert "(scraped through the ServiceMonitor)" in text
    assert "ConfigMaps labelled grafana_dashboard=1" in text
    assert "port-forward" not in notes({"metrics": {"enabled": False}})
