"""Patch application: JSON merge patch, JSON patch and (a subset of) strategic merge patch. Pure functions.

Inputs are never mutated; the results share no mutable structure with the patch documents.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch


class PatchError(ValueError):
    """A patch the server rejects; ``code`` is the HTTP status it answers with."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 JSON patch via the ``jsonpatch`` library. A failed ``test`` is a 422 as on a real server."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations", 400)
    try:
        result = jsonpatch.apply_patch(target, operations, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchError(
            f"the server rejected our request due to an error in our request: {exc}", 422
        ) from exc
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
    ) as exc:
        raise PatchError(
            f"the server rejected our request due to an error in our request: {exc}", 422
        ) from exc
    if not isinstance(result, dict):
        raise PatchError("json patch must leave an object", 422)
    return result


# Strategic merge patch metadata for the core kinds the product touches: list field name -> merge key.
# A field listed with None is a list of primitives merged as a set (patchStrategy "merge" without a key).
# Lists not listed here are replaced, as for fields without a patchStrategy.
MERGE_KEYS: dict[str, str | None] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "secrets": "name",
    "finalizers": None,
}

_DELETE = object()


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch as kubectl sends it for core kinds.

    Supports list merge by key (``MERGE_KEYS``), ``$patch: delete|replace|merge`` on maps and list items,
    ``$deleteFromPrimitiveList/<field>``, ``$retainKeys``; ``$setElementOrder/<field>`` is ignored.
    """
    result = _smp_map(target if isinstance(target, dict) else {}, patch)
    return {} if result is _DELETE else result


def _smp_map(target: dict[str, Any], patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch type: {directive}", 400)
    result = dict(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = set(map(_hashable, value or []))
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if _hashable(v) not in drop]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            merged = _smp_map(current if isinstance(current, dict) else {}, value)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(key, result.get(key), value)
        else:
            result[key] = value
    if isinstance(retain, list):
        keep = set(retain)
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, dict | list) else value


def _smp_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if field not in MERGE_KEYS:
        return [_strip_directives(v) for v in patch]
    existing = list(current) if isinstance(current, list) else []
    merge_key = MERGE_KEYS[field]
    if merge_key is None:
        seen = {_hashable(v) for v in existing}
        for item in patch:
            if _hashable(item) not in seen:
                existing.append(copy.deepcopy(item))
                seen.add(_hashable(item))
        return existing
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [
            _strip_directives(v) for v in patch if not (isinstance(v, dict) and v.get("$patch") == "replace")
        ]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {merge_key}", 422)
        index = next(
            (
                i
                for i, old in enumerate(existing)
                if isinstance(old, dict) and old.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del existing[index]
            continue
        if index is None:
            existing.append(_strip_directives(item))
        else:
            merged = _smp_map(dict(existing[index]), item)
            existing[index] = merged
    return existing


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value
