"""Rendering and checking the Helm chart offline (helm-python-sdk, kubernetes-validate, jsonschema)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import all_versions
from packaging.version import Version
from support import REPO

CHART_DIR = REPO / "charts" / "leap0-operator"
CRD_DIR = REPO / "crds"
RELEASE = "leap0"
NAMESPACE = "leap0-system"

# Cluster-scoped resources the operator may touch: a namespaced Role cannot grant them.
CLUSTER_SCOPED = {
    ("", "namespaces"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("kopf.dev", "clusterkopfpeerings"),
}


@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


def render(values: dict[str, Any] | None = None, chart_obj: helm.Chart | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders (hooks included, NOTES.txt excluded), in template order."""
    manifests = (chart_obj or chart()).render(values or {}, name=RELEASE, namespace=NAMESPACE)
    objects: list[dict[str, Any]] = []
    for name in sorted(manifests):
        if name.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(manifests[name]) if doc)
    return objects


def notes(values: dict[str, Any] | None = None) -> str:
    manifests = chart().render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return next(text for name, text in manifests.items() if name.endswith("NOTES.txt"))


def lint_problems(values: dict[str, Any]) -> list[Any]:
    """``helm lint --strict`` of the chart with ``values``: its errors and its warnings (none expected)."""
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    return [*report["errors"], *(m for m in report["messages"] if m["severity"] >= 2)]


def of_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def crd_files() -> list[dict[str, Any]]:
    """The CRDs as the crds/ folder holds them (the one source of truth)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def claimed_kube_versions() -> list[str]:
    """Every minor version from Chart.yaml's kubeVersion floor to the newest kubernetes-validate knows."""
    constraint = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*(\d+\.\d+)\.\d+(-0)?", constraint)
    assert match, f"unexpected kubeVersion constraint {constraint!r}"
    floor = Version(match.group(1))
    minors = sorted({Version(v).base_version for v in all_versions()}, key=Version)
    return [v for v in minors if Version(v) >= floor]


# CRDs of other projects the chart may render objects of (the Prometheus operator's ServiceMonitor).
VENDORED_CRDS = (REPO / "tests" / "vendor" / "monitoring.coreos.com_servicemonitors.yaml",)


def vendored_crds() -> list[dict[str, Any]]:
    return [doc for path in VENDORED_CRDS for doc in yaml.safe_load_all(path.read_text()) if doc]


def strict_schema(schema: Any) -> Any:
    """A CRD's openAPIV3Schema with unknown fields refused (the API server would prune them silently):
    ``additionalProperties: false`` on every object that lists its properties and does not preserve unknown
    fields."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: strict_schema(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for crd in vendored_crds():
        group = crd["spec"]["group"]
        for version in crd["spec"]["versions"]:
            key = (f"{group}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = strict_schema(version["schema"]["openAPIV3Schema"])
    for crd in crd_files():
        group = crd["spec"]["group"]
        for version in crd["spec"]["versions"]:
            key = (f"{group}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


_VALIDATED: set[tuple[str, tuple[str, ...]]] = set()


def validate_object(obj: dict[str, Any], kube_versions: list[str]) -> None:
    """Strict kubernetes-validate for built-in kinds, jsonschema against the CRD for our own kinds.

    An object already found valid (the same CRDs render in every scenario) is not validated again.
    """
    key = (json.dumps(obj, sort_keys=True), tuple(kube_versions))
    if key in _VALIDATED:
        return
    _check(obj, kube_versions)
    _VALIDATED.add(key)


def _check(obj: dict[str, Any], kube_versions: list[str]) -> None:
    custom = _crd_schemas().get((obj["apiVersion"], obj["kind"]))
    if custom is not None:
        jsonschema.validate(obj, custom)
        return
    for version in kube_versions:
        kubernetes_validate.validate(obj, version, strict=True)


def strip_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    """A rendered CRD without the one annotation the chart adds (helm.sh/resource-policy)."""
    copy = yaml.safe_load(yaml.safe_dump(crd))
    annotations = copy["metadata"].get("annotations", {})
    annotations.pop("helm.sh/resource-policy", None)
    if not annotations:
        copy["metadata"].pop("annotations", None)
    return dict(copy)


def _rule_allows(rule: dict[str, Any], group: str, resource: str, verb: str) -> bool:
    return (
        group in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and verb in rule.get("verbs", [])
    )


Rules = list[dict[str, Any]]


def bound_rules(objects: list[dict[str, Any]], service_account: str) -> dict[str | None, Rules]:
    """Rules granted to the ServiceAccount: key None for cluster-wide, else the namespace of a Role."""
    sa_ns = NAMESPACE
    granted: dict[str | None, Rules] = {}

    def binds(binding: dict[str, Any]) -> bool:
        return any(
            s["kind"] == "ServiceAccount" and s["name"] == service_account and s.get("namespace") == sa_ns
            for s in binding.get("subjects", [])
        )

    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
    for binding in of_kind(objects, "ClusterRoleBinding"):
        if binds(binding):
            role = roles[("ClusterRole", None, binding["roleRef"]["name"])]
            granted.setdefault(None, []).extend(role["rules"])
    for binding in of_kind(objects, "RoleBinding"):
        if binds(binding):
            ns = binding["metadata"]["namespace"]
            ref = binding["roleRef"]
            role = roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
            granted.setdefault(ns, []).extend(role["rules"])
    return granted


def uncovered_calls(
    calls: Iterable[tuple[str, str, tuple[str, ...]]],
    granted: dict[str | None, Rules],
    watched: list[str],
) -> Iterator[str]:
    """Each (group, resource, verb) the granted rules do not allow where the operator needs it."""
    cluster_rules = granted.get(None, [])
    for group, resource, verbs in calls:
        for verb in verbs:
            if (group, resource) in CLUSTER_SCOPED or not watched:
                if not any(_rule_allows(r, group, resource, verb) for r in cluster_rules):
                    yield f"{group or 'core'}/{resource} {verb} (cluster-wide)"
                continue
            for ns in watched:
                rules = cluster_rules + granted.get(ns, [])
                if not any(_rule_allows(r, group, resource, verb) for r in rules):
                    yield f"{group or 'core'}/{resource} {verb} in namespace {ns}"


def values_yaml_path() -> Path:
    return CHART_DIR / "values.yaml"


# --- Grafana dashboards and Prometheus' OTLP translation ---------------------------------------------------
DASHBOARD_DIR = CHART_DIR / "dashboards"

# Prometheus' OTLP receiver, otlp.translation_strategy UnderscoreEscapingWithSuffixes (its default): the unit
# table of github.com/prometheus/otlptranslator (metric_namer.go), for the units it maps.
OTLP_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
OTLP_PER_UNITS = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}


def _unit_token(unit: str) -> str:
    cleaned = re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:]", "_", unit))
    return cleaned.removeprefix("_")


def otlp_metric_name(name: str, unit: str, kind: str = "gauge") -> str:
    """The name Prometheus' OTLP receiver gives an OTLP metric under UnderscoreEscapingWithSuffixes.

    The name is split into tokens at every character outside ``[a-zA-Z0-9:]`` (dots become underscores,
    repeated underscores collapse); the unit's main part is translated by the unit table (a unit in braces
    such as ``{cpu}`` is an annotation and dropped) and appended unless already a token, a ``/x`` part
    becomes ``per_<x>``; a monotonic counter gets ``_total``; a gauge of unit ``1`` gets ``_ratio``."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9:]", name) if t]
    main_unit, _, per_unit = unit.partition("/")
    main = ""
    main_unit = main_unit.strip()
    if main_unit and not re.search(r"[{}]", main_unit):
        main = _unit_token(OTLP_UNITS.get(main_unit, main_unit))
    per = ""
    per_unit = per_unit.strip()
    if per_unit and not re.search(r"[{}]", per_unit):
        per = _unit_token("per_" + OTLP_PER_UNITS.get(per_unit, per_unit)).removesuffix("_")
    if main in tokens:
        main = ""
    if per == "per" or per in tokens:
        per = ""
    if per:
        main = main.removesuffix("_")
    tokens += [t for t in (main, per) if t]
    if kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    joined = "_".join(tokens)
    return "_" + joined if joined[:1].isdigit() else joined


def otlp_label_name(attribute: str) -> str:
    """The label of a (promoted) resource or data point attribute: every character outside
    ``[a-zA-Z0-9_]`` becomes ``_``; a leading digit gets ``key_``."""
    label = re.sub(r"[^a-zA-Z0-9_]", "_", attribute)
    return "key_" + label if label[:1].isdigit() else label


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard of the chart: file name -> parsed JSON."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its query variables."""
    queries = [
        str(target["expr"]) for panel in dashboard_panels(dashboard) for target in panel.get("targets", [])
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            queries.append(str(query["query"] if isinstance(query, dict) else query))
    return queries


PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
}
PROMQL_KEYWORDS |= {"offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_LABEL_VALUES = re.compile(r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*,\s*(\w+)\s*\)$")


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression (or a Grafana ``label_values(metric{...}, label)``) selects."""
    expr = _strip_strings(expr.strip())
    variable = _LABEL_VALUES.match(expr)
    if variable:
        return {variable.group(1)}
    expr = _GROUPING.sub(" ", expr)
    expr = _MATCHERS.sub(" ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", expr):
        if match.group(2) or match.group(1).lower() in PROMQL_KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(match.group(1))
    return names


def promql_label_names(expr: str) -> set[str]:
    """The label names an expression matches on or groups by (and a ``label_values`` variable reads)."""
    expr = _strip_strings(expr.strip())
    labels: set[str] = set()
    variable = _LABEL_VALUES.match(expr)
    if variable:
        labels.add(variable.group(3))
    for match in _GROUPING.finditer(expr):
        labels |= {label.strip() for label in match.group(2).split(",") if label.strip()}
    for match in _MATCHERS.finditer(expr):
        labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(1)))
    return labels


def legend_labels(dashboard: dict[str, Any]) -> set[str]:
    """Labels the dashboard's legends print (``{{label}}``)."""
    return {
        label
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", str(target.get("legendFormat", "")))
    }
