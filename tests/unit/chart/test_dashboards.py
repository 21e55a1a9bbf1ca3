"""The Grafana dashboards query only metrics and labels that exist.

The sandbox metrics reach Prometheus over OTLP, so their names are what Prometheus' OTLP receiver makes of
the contract's names (``otlp_metric_name``, checked here against the receiver's documented examples); the
operator's are taken from a scrape of the operator's registry (and, in tests/e2e/operator, of the running
operator process).
"""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import (
    dashboard_panels,
    dashboard_queries,
    dashboards,
    legend_labels,
    otlp_label_name,
    otlp_metric_name,
    promql_label_names,
    promql_metric_names,
)
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import REPO

import leap0_contract as contract
from leap0_operator.metrics import Metrics

SANDBOXES = "leap0-sandboxes.json"
OPERATOR = "leap0-operator.json"
# Labels Prometheus adds to every scraped series, and the bucket label of histograms.
TARGET_LABELS = {"job", "instance"}


def sandbox_series() -> set[str]:
    return {otlp_metric_name(m.name, m.unit, "gauge") for m in contract.SANDBOX_METRIC_TABLE}


def sandbox_labels() -> set[str]:
    """The resource attributes the docs tell Prometheus to promote, and the data point attribute."""
    attributes = (
        contract.ATTR_SANDBOX_ID,
        contract.ATTR_ORG_ID,
        contract.ATTR_TEMPLATE_ID,
        contract.ATTR_K8S_NAMESPACE,
        contract.ATTR_K8S_POD_NAME,
        contract.ATTR_K8S_CONTAINER,
    )
    return {otlp_label_name(a) for a in attributes} | TARGET_LABELS


def registry_scrape() -> tuple[set[str], set[str]]:
    """Sample names and label names of a scrape of the operator's metrics (every hook called once)."""
    import datetime

    metrics = Metrics()
    now = datetime.datetime.now(datetime.UTC)
    metrics.count_api_request("get", "namespaces", 200)
    metrics.observe_running("2026-01-01T00:00:00Z", now)
    families = text_string_to_metric_families(generate_latest(metrics.registry).decode())
    samples = [s for family in families for s in family.samples]
    return {s.name for s in samples}, {label for s in samples for label in s.labels}


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [  # the examples of Prometheus' OTLP translation (otlptranslator, the collector's normalisation docs)
        ("system.filesystem.usage", "By", "gauge", "system_filesystem_usage_bytes"),
        ("http.server.duration", "s", "histogram", "http_server_duration_seconds"),
        ("requests.count", "1", "counter", "requests_count_total"),
        ("memory.usage", "By", "gauge", "memory_usage_bytes"),
        ("system.network.dropped", "{packets}", "counter", "system_network_dropped_total"),
        ("system.network.dropped", "packets", "gauge", "system_network_dropped_packets"),
        ("system.memory.utilization", "1", "gauge", "system_memory_utilization_ratio"),
        ("system.network.io", "By/s", "gauge", "system_network_io_bytes_per_second"),
        ("cpu.utilization", "%", "gauge", "cpu_utilization_percent"),
        ("latency_seconds", "s", "histogram", "latency_seconds"),
        ("2xx.requests", "", "counter", "_2xx_requests_total"),
    ],
)
def test_translation_follows_prometheus_otlp_rules(name: str, unit: str, kind: str, expected: str) -> None:
    assert otlp_metric_name(name, unit, kind) == expected


def test_the_seven_sandbox_metrics_as_prometheus_names_them() -> None:
    names = {m.name: otlp_metric_name(m.name, m.unit, "gauge") for m in contract.SANDBOX_METRIC_TABLE}
    assert names == {
        "leap0.sandbox.cpu.utilization": "leap0_sandbox_cpu_utilization_percent",
        "leap0.sandbox.cpu.limit": "leap0_sandbox_cpu_limit",  # {cpu} is an annotation: no suffix
        "leap0.sandbox.memory.utilization": "leap0_sandbox_memory_utilization_percent",
        "leap0.sandbox.memory.usage": "leap0_sandbox_memory_usage_bytes",
        "leap0.sandbox.memory.limit": "leap0_sandbox_memory_limit_bytes",
        "leap0.sandbox.filesystem.utilization": "leap0_sandbox_filesystem_utilization_percent",
        "leap0.sandbox.filesystem.usage": "leap0_sandbox_filesystem_usage_bytes",
    }
    assert otlp_label_name(contract.ATTR_SANDBOX_ID) == "leap0_sandbox_id"
    assert otlp_label_name(contract.ATTR_ORG_ID) == "leap0_org_id"
    assert otlp_label_name(contract.ATTR_TEMPLATE_ID) == "leap0_template_id"


def test_the_docs_list_the_names_dashboards_are_written_against() -> None:
    text = (REPO / "docs" / "operator-metrics.md").read_text()
    for name in sandbox_series() | {otlp_label_name(contract.ATTR_ORG_ID)}:
        assert f"`{name}`" in text, name
    for metric in (
        contract.OPERATOR_METRIC_SANDBOXES,
        contract.OPERATOR_METRIC_STARTUP_DURATION,
        contract.OPERATOR_METRIC_POD_CREATE_DURATION,
        contract.OPERATOR_METRIC_RECONCILES,
        contract.OPERATOR_METRIC_API_REQUESTS,
        contract.OPERATOR_METRIC_QUEUE_DEPTH,
        contract.OPERATOR_METRIC_EXPIRY_LATENESS,
        contract.OPERATOR_METRIC_PAUSE_DURATION,
        contract.OPERATOR_METRIC_RESUME_DURATION,
    ):
        assert f"`{metric}" in text, metric


def test_query_parsing_finds_metrics_and_labels_and_skips_functions() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le) (rate(a_seconds_bucket{job=~"$job", x!="y z"}[5m])))'
        " / on (job) group_left b_total or vector(0)"
    )
    assert promql_metric_names(expr) == {"a_seconds_bucket", "b_total"}
    assert promql_label_names(expr) == {"le", "job", "x"}
    assert promql_metric_names('label_values(m{a="1"}, lbl)') == {"m"}
    assert promql_label_names('label_values(m{a="1"}, lbl)') == {"a", "lbl"}


def test_every_dashboard_is_well_formed() -> None:
    found = dashboards()
    assert set(found) == {SANDBOXES, OPERATOR}
    assert len({d["uid"] for d in found.values()}) == len(found)
    for dashboard in found.values():
        panels = dashboard_panels(dashboard)
        assert len({p["id"] for p in panels}) == len(panels)
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert "datasource" in variables
        for panel in panels:
            if panel["type"] == "row":
                continue
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
            for target in panel["targets"]:
                used = set(_variables(target["expr"])) - {"__rate_interval"}
                assert used <= variables, (panel["title"], used - variables)


def _variables(expr: str) -> list[str]:
    import re

    return re.findall(r"\$\{?(\w+)", expr)


def _names_and_labels(dashboard: dict[str, Any]) -> tuple[set[str], set[str]]:
    names: set[str] = set()
    labels: set[str] = set(legend_labels(dashboard))
    for query in dashboard_queries(dashboard):
        names |= promql_metric_names(query)
        labels |= promql_label_names(query)
    return names, labels


def test_sandbox_dashboard_queries_only_the_translated_contract_names() -> None:
    names, labels = _names_and_labels(dashboards()[SANDBOXES])
    assert names <= sandbox_series(), names - sandbox_series()
    assert names == sandbox_series()  # every sandbox metric is on the dashboard
    assert labels <= sandbox_labels(), labels - sandbox_labels()
    assert {"leap0_sandbox_id", "leap0_org_id", "leap0_template_id"} <= labels


def test_operator_dashboard_queries_only_what_the_operator_exposes() -> None:
    samples, scraped_labels = registry_scrape()
    names, labels = _names_and_labels(dashboards()[OPERATOR])
    assert names <= samples, names - samples
    assert labels <= scraped_labels | TARGET_LABELS, labels - scraped_labels - TARGET_LABELS
    for family in (
        contract.OPERATOR_METRIC_SANDBOXES,
        contract.OPERATOR_METRIC_STARTUP_DURATION + "_bucket",
        contract.OPERATOR_METRIC_POD_CREATE_DURATION + "_bucket",
        contract.OPERATOR_METRIC_RECONCILES,
        contract.OPERATOR_METRIC_API_REQUESTS,
        contract.OPERATOR_METRIC_QUEUE_DEPTH,
        contract.OPERATOR_METRIC_EXPIRY_LATENESS + "_bucket",
        contract.OPERATOR_METRIC_PAUSE_DURATION + "_bucket",
        contract.OPERATOR_METRIC_RESUME_DURATION + "_bucket",
        contract.PROCESS_METRIC_RSS,
    ):
        assert family in names, family


def test_the_operator_dashboard_shows_paused_sandboxes() -> None:
    queries = dashboard_queries(dashboards()[OPERATOR])
    assert any(
        contract.OPERATOR_METRIC_SANDBOXES in q and f'phase="{contract.PHASE_PAUSED}"' in q for q in queries
    )


def test_a_misspelt_metric_would_be_caught() -> None:
    dashboard = dashboards()[SANDBOXES]
    broken = {**dashboard, "panels": [*dashboard["panels"], {"id": 999, "type": "timeseries", "targets": [
        {"expr": 'leap0_sandbox_memory_usage{leap0_sandbox_id="x"}'}
    ]}]}  # fmt: skip
    names, _ = _names_and_labels(broken)
    assert names - sandbox_series() == {"leap0_sandbox_memory_usage"}
