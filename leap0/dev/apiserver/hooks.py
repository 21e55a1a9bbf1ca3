"""Bridges to the pure modules the server calls but does not own: ``schema``, ``tables`` and ``openapi``.

Each has a tiny fallback used until the module exists (the "schema" helper writes them).
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError:
        return None


_schema = _optional("schema")
_tables = _optional("tables")
_openapi = _optional("openapi")


class SchemaCache:
    """One ``ResourceSchema`` per (CRD, version, CRD resourceVersion): built once, then reused."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str], Any] = {}

    def prepare(
        self, crd: dict[str, Any], version: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The object pruned and checked against the CRD's schema; a 422 Invalid ``ApiError`` if it fails."""
        if _schema is None:
            return obj
        meta = crd["metadata"]
        key = (meta["name"], version, str(meta.get("resourceVersion", "")))
        schema = self._cache.get(key)
        if schema is None:
            schema = self._cache[key] = _schema.ResourceSchema(crd, version)
        pruned, errors = schema.prepare(obj, old)
        if errors:
            spec = crd["spec"]
            body = _schema.invalid_status(
                spec["names"]["kind"], spec["group"], obj["metadata"].get("name", ""), errors
            )
            raise ApiError(422, "Invalid", str(body.get("message", "invalid")), body=body)
        result: dict[str, Any] = pruned
        return result


def _age(timestamp: str | None, now: datetime) -> str:
    if not timestamp:
        return "<unknown>"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = int((now - then).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def render_table(
    crd: dict[str, Any] | None, version: str, objects: list[dict[str, Any]], list_metadata: dict[str, Any]
) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of the objects (the schema helper's printer columns, else Name/Age)."""
    if _tables is not None:
        table: dict[str, Any] = _tables.render_table(crd, version, objects, list_metadata)
        return table
    now = datetime.now(UTC)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(list_metadata),
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0},
        ],
        "rows": [
            {"cells": [o["metadata"]["name"], _age(o["metadata"].get("creationTimestamp"), now)]}
            for o in objects
        ],
    }


def openapi_v3_root(crds: list[dict[str, Any]]) -> dict[str, Any] | None:
    if _openapi is None:
        return None
    root: dict[str, Any] = _openapi.openapi_v3_root(crds)
    return root


def openapi_v3_document(crds: list[dict[str, Any]], group: str, version: str) -> dict[str, Any] | None:
    if _openapi is None:
        return None
    doc: dict[str, Any] | None = _openapi.openapi_v3_document(crds, group, version)
    return doc
