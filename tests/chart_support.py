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


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
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
