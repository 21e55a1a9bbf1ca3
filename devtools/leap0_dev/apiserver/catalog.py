"""The resources the embedded API serves: a small built-in catalogue plus one entry per CRD version.

Pure data and pure functions: no I/O. A :class:`Resource` is what discovery lists and what the store keys on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


@dataclass(frozen=True)
class Resource:
    """One served resource (group, version, plural) and how it behaves."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False  # a separate /status subresource
    extra_subresources: tuple[str, ...] = ()  # e.g. ("log", "exec", "attach") for pods
    returns_deleted_object: bool = False  # DELETE answers with the object rather than a Status
    crd_name: str = ""  # set for custom resources: the CRD's metadata.name
    field_labels: tuple[str, ...] = ()  # field selectors supported beyond metadata.name/namespace
    strategic_merge: bool = True  # core kinds accept strategic merge patch; custom resources do not

    @property
    def key(self) -> tuple[str, str]:
        """Storage key: objects are shared by every version of a (group, plural)."""
        return (self.group, self.plural)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def is_custom(self) -> bool:
        return bool(self.crd_name)

    def discovery_entries(self) -> list[dict[str, Any]]:
        """The APIResource entries for /api/v1 or /apis/<group>/<version>: resource and subresources."""
        main: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries = [main]
        if self.has_status:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        for sub in self.extra_subresources:
            verbs = ["get"] if sub == "log" else ["create", "get"]
            kind = "Pod" if sub == "log" else "PodExecOptions" if sub == "exec" else "PodAttachOptions"
            entries.append(
                {
                    "name": f"{self.plural}/{sub}",
                    "singularName": "",
                    "namespaced": True,
                    "kind": kind,
                    "verbs": verbs,
                }
            )
        return entries


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

BUILTIN: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, "namespace", ("ns",), has_status=True,
             returns_deleted_object=True, field_labels=("status.phase",)),
    Resource("", "v1", "pods", "Pod", True, "pod", ("po",), ("all",), has_status=True,
             extra_subresources=("log", "exec", "attach"), returns_deleted_object=True,
             field_labels=_POD_FIELDS),
    Resource("", "v1", "secrets", "Secret", True, "secret", field_labels=("type",)),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, "persistentvolumeclaim",
             ("pvc",), has_status=True, returns_deleted_object=True),
    Resource("", "v1", "configmaps", "ConfigMap", True, "configmap", ("cm",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, "serviceaccount", ("sa",)),
    Resource("", "v1", "services", "Service", True, "service", ("svc",), ("all",), has_status=True),
    Resource("", "v1", "events", "Event", True, "event", ("ev",), field_labels=_EVENT_FIELDS),
    Resource("events.k8s.io", "v1", "events", "Event", True, "event", ("ev",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, "lease"),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, "networkpolicy",
             ("netpol",)),
    Resource("apps", "v1", "deployments", "Deployment", True, "deployment", ("deploy",), ("all",),
             has_status=True),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True, "role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, "rolebinding"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, "clusterrole"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False,
             "clusterrolebinding"),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
             "customresourcedefinition", ("crd", "crds"), has_status=True),
)  # fmt: skip

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")
POD_KEY = ("", "pods")
SECRET_KEY = ("", "secrets")


def resources_from_crd(crd: dict[str, Any]) -> list[Resource]:
    """One :class:`Resource` per served version of a CustomResourceDefinition."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out: list[Resource] = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        out.append(
            Resource(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", names["kind"].lower()),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                has_status="status" in subresources,
                returns_deleted_object=True,
                crd_name=crd["metadata"]["name"],
                field_labels=tuple(
                    f.get("jsonPath", "").lstrip(".") for f in version.get("selectableFields") or []
                ),
                strategic_merge=False,
            )
        )
    return out


@dataclass
class Catalogue:
    """Every served resource, indexed by (group, version, plural) and by storage key."""

    by_gvr: dict[tuple[str, str, str], Resource] = field(default_factory=dict)

    @classmethod
    def builtin(cls) -> Catalogue:
        cat = cls()
        for res in BUILTIN:
            cat.add(res)
        return cat

    def add(self, res: Resource) -> None:
        self.by_gvr[(res.group, res.version, res.plural)] = res

    def remove_crd(self, crd_name: str) -> None:
        for gvr in [k for k, r in self.by_gvr.items() if r.crd_name == crd_name]:
            del self.by_gvr[gvr]

    def get(self, group: str, version: str, plural: str) -> Resource | None:
        return self.by_gvr.get((group, version, plural))

    def versions_of(self, key: tuple[str, str]) -> list[Resource]:
        return [r for r in self.by_gvr.values() if r.key == key]

    def groups(self) -> dict[str, list[str]]:
        """Non-core group name -> its versions, in insertion order."""
        out: dict[str, list[str]] = {}
        for res in self.by_gvr.values():
            if res.group and res.version not in out.setdefault(res.group, []):
                out[res.group].append(res.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self.by_gvr.values() if r.group == group and r.version == version]
