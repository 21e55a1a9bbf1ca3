"""Server-side Table rendering: the CRD's printer columns as `kubectl get` receives them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from leap0_dev.apiserver.tables import human_duration, jsonpath_values, render_table
from leap0_dev.crds import load_crds

CRDS = {c["spec"]["names"]["kind"]: c for c in load_crds()}
NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def sbx(name: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "leap0.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "creationTimestamp": "2026-01-01T11:55:00Z",
            "labels": {"a": "b"},
        },
        "spec": {"template": "small"},
        "status": status,
    }


def test_sandbox_columns_and_cells() -> None:
    running = sbx(
        "one", phase="Running", vcpu=2, memory=2048, expiresAt="2026-01-01T12:05:00Z", podName="one-pod"
    )
    pending = sbx("two")
    table = render_table(CRDS["Sandbox"], "v1alpha1", [running, pending], {"resourceVersion": "42"}, now=NOW)
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42"}
    columns = [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]]
    assert columns == [
        ("Name", "string", 0),
        ("Phase", "string", 0),
        ("VCPU", "integer", 0),
        ("Memory", "integer", 0),
        ("Expires", "string", 0),
        ("Age", "date", 0),
        ("Pod", "string", 1),
        ("Template", "string", 1),
    ]
    assert table["columnDefinitions"][0]["format"] == "name"
    assert table["rows"][0]["cells"] == [
        "one",
        "Running",
        2,
        2048,
        "2026-01-01T12:05:00Z",
        "5m",
        "one-pod",
        "small",
    ]
    assert table["rows"][1]["cells"] == ["two", None, None, None, None, "5m", None, "small"]


def test_rows_carry_partial_object_metadata_by_default() -> None:
    obj = sbx("one")
    row = render_table(CRDS["Sandbox"], "v1alpha1", [obj], {})["rows"][0]
    assert row["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }
    full = render_table(CRDS["Sandbox"], "v1alpha1", [obj], {}, include_object="Object")["rows"][0]
    assert full["object"] == obj
    none = render_table(CRDS["Sandbox"], "v1alpha1", [obj], {}, include_object="None")["rows"][0]
    assert "object" not in none


def test_bad_date_and_wrong_types() -> None:
    obj = sbx("x", phase=3, vcpu="two")
    obj["metadata"]["creationTimestamp"] = "yesterday"
    cells = render_table(CRDS["Sandbox"], "v1alpha1", [obj], {}, now=NOW)["rows"][0]["cells"]
    assert cells[1:6] == ["3", None, None, None, "<invalid>"]


def test_date_columns_are_ages_and_the_future_is_invalid_as_on_a_cluster() -> None:
    crd = {
        "spec": {
            "versions": [
                {
                    "name": "v1",
                    "additionalPrinterColumns": [{"name": "Due", "type": "date", "jsonPath": ".due"}],
                }
            ]
        }
    }
    past = {"metadata": {"name": "a"}, "due": "2026-01-01T09:00:00Z"}
    future = {"metadata": {"name": "b"}, "due": "2026-01-01T13:00:00Z"}
    rows = render_table(crd, "v1", [past, future], {}, now=NOW)["rows"]
    assert [r["cells"] for r in rows] == [["a", "3h"], ["b", "<invalid>"]]


def test_crd_without_printer_columns_gets_age() -> None:
    peering = {"kind": "KopfPeering", "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"}}
    table = render_table(CRDS["KopfPeering"], "v1", [peering], {}, now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["cells"] == ["p", "12h"]


def test_core_kinds() -> None:
    created = {"creationTimestamp": "2026-01-01T11:00:00Z"}
    pod = {
        "kind": "Pod",
        "metadata": {"name": "p", **created},
        "spec": {"containers": [{"name": "sandbox"}, {"name": "telemetry"}], "nodeName": "local"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "containerStatuses": [
                {"name": "sandbox", "ready": True, "restartCount": 1, "state": {"running": {}}},
                {
                    "name": "telemetry",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "Pull"}},
                },
            ],
        },
    }
    table = render_table(None, "v1", [pod], {}, now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert table["rows"][0]["cells"][:6] == ["p", "1/2", "Pull", "1", "60m", "10.0.0.1"]

    ns = {"kind": "Namespace", "metadata": {"name": "team", **created}, "status": {"phase": "Active"}}
    assert render_table(None, "v1", [ns], {}, now=NOW)["rows"][0]["cells"] == ["team", "Active", "60m"]
    secret = {
        "kind": "Secret",
        "metadata": {"name": "s", **created},
        "type": "Opaque",
        "data": {"a": "", "b": ""},
    }
    assert render_table(None, "v1", [secret], {}, now=NOW)["rows"][0]["cells"] == ["s", "Opaque", 2, "60m"]
    other = {"kind": "ServiceAccount", "metadata": {"name": "sa", **created}}
    table = render_table(None, "v1", [other], {}, now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Created At"]
    assert table["rows"][0]["cells"] == ["sa", "2026-01-01T11:00:00Z"]


def test_empty_core_list_uses_the_given_kind() -> None:
    table = render_table(None, "v1", [], {"resourceVersion": "1"}, kind="Pod")
    assert table["rows"] == []
    assert table["columnDefinitions"][1]["name"] == "Ready"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 120, "3h2m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (100 * 86400, "100d"),
        (3 * 365 * 86400, "3y"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_jsonpath() -> None:
    obj = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    assert jsonpath_values(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath_values(obj, "{.status.conditions[0].type}") == ["A"]
    assert jsonpath_values(obj, ".status.conditions[*].type") == ["A", "Ready"]
    assert jsonpath_values(obj, ".status.missing") == []
    assert jsonpath_values(obj, ".status['conditions'][-1].status") == ["True"]
