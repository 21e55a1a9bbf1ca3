"""Validation of what a request stores: the CRD schema (``schema``, one compiled ``ResourceSchema`` per CRD
version, cached) and the request's ``fieldValidation`` for unknown fields (``schema`` for custom resources,
``builtin`` for the built-in kinds), collecting the ``Warning`` headers it answers with."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from . import builtin as _builtin
from . import schema as _schema
from .errors import ApiError

# The request's ``fieldValidation`` (Strict, Warn or Ignore; the server's default is Warn) and the warnings
# the request collected: set per request by the server, read by ``SchemaCache.prepare`` (aiohttp runs each
# request in its own task, so each has its own context).
_FIELD_VALIDATION: ContextVar[str] = ContextVar("leap0_field_validation", default="Warn")
_WARNINGS: ContextVar[list[str] | None] = ContextVar("leap0_warnings", default=None)


def begin_request(field_validation: str) -> None:
    """Start a request: its ``fieldValidation`` query parameter (empty: the default, Warn)."""
    _FIELD_VALIDATION.set(field_validation or "Warn")
    _WARNINGS.set([])


def take_warnings() -> list[str]:
    """The warnings the current request collected (``unknown field "spec.x"``), for ``Warning`` headers."""
    found = _WARNINGS.get() or []
    _WARNINGS.set([])
    return found


class SchemaCache:
    """One ``ResourceSchema`` per (CRD, version, CRD resourceVersion): built once, then reused."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str], Any] = {}

    def prepare(
        self, crd: dict[str, Any], version: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The object pruned and checked against the CRD's schema; a 422 Invalid ``ApiError`` if it fails."""
        meta = crd["metadata"]
        key = (meta["name"], version, str(meta.get("resourceVersion", "")))
        schema = self._cache.get(key)
        if schema is None:
            schema = self._cache[key] = _schema.ResourceSchema(crd, version)
        _check_unknown_fields(crd["spec"]["names"]["kind"], version, schema.unknown_fields, obj)
        pruned, errors = schema.prepare(obj, old)
        if errors:
            spec = crd["spec"]
            body = _schema.invalid_status(
                spec["names"]["kind"], spec["group"], obj["metadata"].get("name", ""), errors
            )
            raise ApiError(422, "Invalid", str(body.get("message", "invalid")), body=body)
        result: dict[str, Any] = pruned
        return result

    def prepare_builtin(self, group: str, version: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A built-in kind's object without the fields its Go type lacks (refused under Strict)."""
        schema = _builtin.BuiltinSchema.for_kind(group, version, kind)
        if schema is None:
            return obj
        if _check_unknown_fields(kind, version, schema.unknown_fields, obj):
            pruned: dict[str, Any] = schema.prune(obj)
            return pruned
        return obj


def _check_unknown_fields(kind: str, version: str, find: Any, obj: dict[str, Any]) -> bool:
    """Apply the request's ``fieldValidation`` to the unknown fields ``find(obj)`` lists: a 400 strict
    decoding error under Strict, ``Warning`` headers under Warn. True when there are unknown fields."""
    mode = _FIELD_VALIDATION.get()
    unknown: list[str] = find(obj)
    if unknown and mode == "Strict":
        body = _schema.strict_decoding_status(kind, version, unknown)
        raise ApiError(400, "BadRequest", str(body["message"]), body=body)
    warnings = _WARNINGS.get()
    if unknown and mode == "Warn" and warnings is not None:
        warnings += [f'unknown field "{u}"' for u in unknown]
    return bool(unknown)
