"""The operator's Prometheus metrics as a scrape shows them (rendered by the client library, parsed back)."""

from __future__ import annotations

import datetime

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import leap0_contract as contract
from leap0_operator.metrics import (
    EXPIRY_BUCKETS,
    STARTUP_BUCKETS,
    Metrics,
    phase_counts,
    seconds_between,
)

NOW = datetime.datetime(2026, 1, 1, 0, 1, 0, tzinfo=datetime.UTC)


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_phase_is_counted_zeros_included_and_no_phase_is_pending() -> None:
    assert phase_counts([]) == {"Pending": 0, "Running": 0, "Paused": 0, "Failed": 0, "Expired": 0}
    assert phase_counts([None, "Running", "Running", "Expired"]) == {
        "Pending": 1,
        "Running": 2,
        "Paused": 0,
        "Failed": 0,
        "Expired": 1,
    }


def test_seconds_between_reads_api_timestamps_and_never_goes_negative() -> None:
    assert seconds_between("2026-01-01T00:00:00Z", NOW) == 60.0
    assert seconds_between("2026-01-01T00:02:00Z", NOW) == 0.0
    assert seconds_between(None, NOW) is None
    assert seconds_between("yesterday", NOW) is None


def test_a_fresh_scrape_shows_every_metric_with_zeros() -> None:
    samples = scrape(Metrics())
    for phase in contract.PHASES:
        assert samples[(contract.OPERATOR_METRIC_SANDBOXES, (("phase", phase),))] == 0
    for result in contract.RECONCILE_RESULTS:
        assert samples[(contract.OPERATOR_METRIC_RECONCILES, (("result", result),))] == 0
    assert samples[(contract.OPERATOR_METRIC_QUEUE_DEPTH, ())] == 0
    assert samples[(contract.OPERATOR_METRIC_STARTUP_DURATION + "_count", ())] == 0
    assert samples[(contract.OPERATOR_METRIC_POD_CREATE_DURATION + "_count", ())] == 0
    assert samples[(contract.OPERATOR_METRIC_EXPIRY_LATENESS + "_count", ())] == 0
    assert samples[(contract.PROCESS_METRIC_RSS, ())] > 0  # the library's process collector


def test_hooks_reach_the_scrape() -> None:
    metrics = Metrics()
    metrics.watch(lambda: phase_counts(["Running", "Running", "Failed"]), lambda: 7)
    metrics.count_reconcile(contract.RECONCILE_OK)
    metrics.count_reconcile(contract.RECONCILE_OK)
    metrics.count_reconcile(contract.RECONCILE_RETRY)
    metrics.count_api_request("post", "pods", 201)
    metrics.count_api_request("patch", "sandboxes/status", 429)
    metrics.count_api_request("get", "namespaces", contract.API_CODE_NO_RESPONSE)
    metrics.observe_running("2026-01-01T00:00:00Z", NOW)  # 60 s
    metrics.observe_running(None, NOW)  # no creation time: not observed
    metrics.observe_pod_created(0.02)
    metrics.observe_expiry("2026-01-01T00:00:59.5Z", NOW)  # half a second late

    samples = scrape(metrics)
    sandboxes = contract.OPERATOR_METRIC_SANDBOXES
    assert samples[(sandboxes, (("phase", "Running"),))] == 2
    assert samples[(sandboxes, (("phase", "Failed"),))] == 1
    assert samples[(sandboxes, (("phase", "Pending"),))] == 0
    assert samples[(contract.OPERATOR_METRIC_QUEUE_DEPTH, ())] == 7
    assert samples[(contract.OPERATOR_METRIC_RECONCILES, (("result", "ok"),))] == 2
    assert samples[(contract.OPERATOR_METRIC_RECONCILES, (("result", "retry"),))] == 1
    requests = contract.OPERATOR_METRIC_API_REQUESTS
    assert samples[(requests, (("code", "201"), ("method", "POST"), ("resource", "pods")))] == 1
    assert samples[(requests, (("code", "429"), ("method", "PATCH"), ("resource", "sandboxes/status")))] == 1
    assert samples[(requests, (("code", "none"), ("method", "GET"), ("resource", "namespaces")))] == 1
    startup = contract.OPERATOR_METRIC_STARTUP_DURATION
    assert samples[(startup + "_count", ())] == 1
    assert samples[(startup + "_sum", ())] == 60.0
    assert samples[(startup + "_bucket", (("le", "30.0"),))] == 0
    assert samples[(startup + "_bucket", (("le", "60.0"),))] == 1
    assert samples[(contract.OPERATOR_METRIC_POD_CREATE_DURATION + "_count", ())] == 1
    lateness = contract.OPERATOR_METRIC_EXPIRY_LATENESS
    assert samples[(lateness + "_bucket", (("le", "0.25"),))] == 0
    assert samples[(lateness + "_bucket", (("le", "0.5"),))] == 1


def test_startup_buckets_span_a_tenth_of_a_second_to_ten_minutes() -> None:
    assert STARTUP_BUCKETS[0] == 0.1
    assert STARTUP_BUCKETS[-1] == 600.0
    assert list(STARTUP_BUCKETS) == sorted(STARTUP_BUCKETS)
    assert list(EXPIRY_BUCKETS) == sorted(EXPIRY_BUCKETS)


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    first.count_reconcile(contract.RECONCILE_FAILED)
    failed = (contract.OPERATOR_METRIC_RECONCILES, (("result", "failed"),))
    assert scrape(first)[failed] == 1
    assert scrape(second)[failed] == 0


def test_api_paths_are_labelled_by_resource() -> None:
    from leap0_operator.metrics import api_resource

    assert api_resource("/api/v1/namespaces/team-a/pods") == "pods"
    assert api_resource("/api/v1/namespaces/team-a/pods/sbx-1") == "pods"
    assert api_resource("/api/v1/namespaces/team-a") == "namespaces"
    base = f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/team-a/{contract.SANDBOX_PLURAL}/sbx-1"
    assert api_resource(base) == "sandboxes"
    assert api_resource(base + "/status") == "sandboxes/status"


def test_metrics_port_comes_from_the_flag_or_the_environment_and_is_off_by_default() -> None:
    import pytest

    from leap0_operator import config

    assert config.parse([], {})[1].metrics_port is None
    assert config.parse(["--metrics-port", "9100"], {})[1].metrics_port == 9100
    env = {contract.ENV_OPERATOR_METRICS_PORT: "9200"}
    assert config.parse([], env)[1].metrics_port == 9200
    assert config.parse(["--metrics-port=9100"], env)[1].metrics_port == 9100  # the flag wins
    assert config.parse(["--metrics-port", "0"], {})[1].metrics_port == 0  # any free port
    with pytest.raises(config.ConfigError, match=r"metrics port.*'http'"):
        config.parse(["--metrics-port", "http"], {})
    with pytest.raises(config.ConfigError, match=r"metrics port.*70000"):
        config.parse([], {contract.ENV_OPERATOR_METRICS_PORT: "70000"})
