"""Typed accessors for Kubernetes objects held as plain JSON mappings (Sandboxes, pods, templates).

Every section an object may lack (``metadata``, ``spec``, ``status``, ``annotations``...) reads as an empty
mapping, so callers never write ``(obj.get("metadata") or {}).get(...)`` chains. Pure, stdlib only.
"""

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

Obj = Mapping[str, Any]
Key = tuple[str, str]  # (namespace, name): a Sandbox, a template, or a pod by its sandbox's name

EMPTY: Obj = MappingProxyType({})


def section(obj: Obj | None, field: str) -> Obj:
    """``obj[field]`` when it is a mapping, else an empty mapping."""
    value = obj.get(field) if obj is not None else None
    return value if isinstance(value, Mapping) else EMPTY


def items(obj: Obj | None, field: str) -> Sequence[Obj]:
    """``obj[field]`` when it is a list, else an empty one (containers, conditions, ownerReferences...)."""
    value = obj.get(field) if obj is not None else None
    return value if isinstance(value, list) else ()


def metadata(obj: Obj | None) -> Obj:
    return section(obj, "metadata")


def spec(obj: Obj | None) -> Obj:
    return section(obj, "spec")


def status(obj: Obj | None) -> Obj:
    return section(obj, "status")


def name(obj: Obj | None) -> str:
    return str(metadata(obj).get("name") or "")


def namespace(obj: Obj | None) -> str:
    return str(metadata(obj).get("namespace") or "")


def uid(obj: Obj | None) -> str | None:
    value = metadata(obj).get("uid")
    return str(value) if value else None


def annotations(obj: Obj | None) -> Obj:
    return section(metadata(obj), "annotations")


def labels(obj: Obj | None) -> Obj:
    return section(metadata(obj), "labels")


def terminating(obj: Obj | None) -> bool:
    """The object has a ``deletionTimestamp``: it is being deleted."""
    return bool(metadata(obj).get("deletionTimestamp"))


def controller_uids(obj: Obj | None) -> list[str]:
    """The uids of the object's controller ``ownerReferences``."""
    return [str(ref.get("uid")) for ref in items(metadata(obj), "ownerReferences") if ref.get("controller")]


def all_containers(pod: Obj | None) -> list[Obj]:
    """The pod's init containers (the native sidecar among them) and containers, in that order."""
    pod_spec = spec(pod)
    return [*items(pod_spec, "initContainers"), *items(pod_spec, "containers")]


def container_statuses(pod: Obj | None) -> list[Obj]:
    """The statuses of the pod's init containers and containers, in that order."""
    pod_status = status(pod)
    return [*items(pod_status, "initContainerStatuses"), *items(pod_status, "containerStatuses")]
