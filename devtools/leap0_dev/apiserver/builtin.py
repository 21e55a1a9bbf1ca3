"""Unknown fields of built-in kinds (Pod, Secret, ...), as kube-apiserver's decoder treats them.

The real server decodes a core object into its Go type: fields the type does not have are dropped, and with
``fieldValidation=Strict`` (what ``kubectl apply`` sends) the request fails with
``Secret in version "v1" cannot be handled as a Secret: strict decoding error: unknown field "bogus"``.
``BuiltinSchema.for_kind(group, version, kind)`` finds the kind's schema in the Kubernetes 1.37 definitions
(``openapi.k8s_definitions()``); ``unknown_fields(obj)`` lists those fields and ``prune(obj)`` drops them.
Only the kinds the emulator serves for the product are covered (``openapi.CORE_KINDS`` and ``OTHER_KINDS``).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from . import openapi

__all__ = ["BuiltinSchema"]


def _served(group: str, version: str, kind: str) -> bool:
    if kind in openapi.UNPRUNED_KINDS:
        return False
    if (group, version) == ("", "v1"):
        return kind in openapi.CORE_KINDS
    return kind in openapi.OTHER_KINDS.get((group, version), {})


class BuiltinSchema:
    """The schema of one built-in kind, for finding and dropping the fields its Go type does not have."""

    def __init__(self, root: dict[str, Any], definitions: dict[str, Any]) -> None:
        self._root = root
        self._defs = definitions

    @staticmethod
    @functools.lru_cache(maxsize=32)
    def for_kind(group: str, version: str, kind: str) -> BuiltinSchema | None:
        """The kind's schema, or None for a kind not covered (then nothing is checked)."""
        if not _served(group, version, kind):
            return None
        defs = openapi.k8s_definitions()
        name = openapi.definition_name(defs, group, version, kind)
        if name is None:
            return None
        return BuiltinSchema(defs[name], defs)

    def unknown_fields(self, obj: dict[str, Any]) -> list[str]:
        """Paths of the fields the kind does not have (``spec.containers[0].imagePullPolice``)."""
        found: list[str] = []
        self._walk(obj, self._root, "", found, prune=False)
        return found

    def prune(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` without the fields the kind does not have."""
        pruned = copy.deepcopy(obj)
        self._walk(pruned, self._root, "", [], prune=True)
        return pruned

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        for _ in range(8):
            ref = schema.get("$ref")
            if not isinstance(ref, str):
                all_of = schema.get("allOf")
                if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
                    ref = all_of[0].get("$ref")
            if not isinstance(ref, str):
                return schema
            schema = self._defs.get(ref.rsplit("/", 1)[-1], {})
        return schema

    def _walk(self, value: Any, schema: dict[str, Any], path: str, found: list[str], *, prune: bool) -> None:
        schema = self._resolve(schema)
        if isinstance(value, dict):
            props = schema.get("properties")
            extra = schema.get("additionalProperties")
            for key in list(value):
                child = f"{path}.{key}" if path else key
                if isinstance(props, dict) and key in props:
                    self._walk(value[key], props[key], child, found, prune=prune)
                elif isinstance(extra, dict):
                    self._walk(value[key], extra, child, found, prune=prune)
                elif isinstance(props, dict) and extra is not True:
                    found.append(child)
                    if prune:
                        del value[key]
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                self._walk(item, schema["items"], f"{path}[{i}]", found, prune=prune)
