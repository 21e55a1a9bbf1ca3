"""What kube-apiserver does to a custom resource's body on create and update, as pure functions.

``ResourceSchema(crd, version).prepare(obj, old)`` returns the object as it would be stored (unknown
fields pruned, non-nullable nulls dropped) and the validation errors the real server would report, in its
words:

* pruning of unknown fields for structural schemas (``x-kubernetes-preserve-unknown-fields`` honoured;
  ``apiVersion``, ``kind`` and ``metadata`` at the root are kept, ``metadata`` reduced to ``ObjectMeta``'s
  fields);
* ``metadata.name`` / ``metadata.generateName`` validated as DNS subdomains (what the server checks for custom
  resources);
* the OpenAPI v3 value validations (type, format, enum, ranges, multipleOf, lengths, pattern, item counts,
  required), with kube-openapi's messages turned into ``field.Error`` exactly as apiextensions-apiserver does;
* ``x-kubernetes-list-type`` ``map``/``set`` uniqueness;
* the CRD's CEL ``x-kubernetes-validations``, evaluated with cel-expr-python (Google's cel-cpp); transition
  rules (those using ``oldSelf``) only on update and only where the value exists in both the old and the new
  object; on update, unchanged values are not re-validated (CRD validation ratcheting, on by default since
  Kubernetes 1.30).

Messages follow ``k8s.io/apimachinery/pkg/util/validation/field`` (``Error()`` is ``"<field>: <body>"``) and
``k8s.io/apiserver/pkg/storage/errors``' ``NewInvalid`` for the 422 Status body.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_math, ext_strings
from google.protobuf import duration_pb2, timestamp_pb2

from .errors import status_body

__all__ = [
    "FIELD_VALUE_DUPLICATE",
    "FIELD_VALUE_FORBIDDEN",
    "FIELD_VALUE_INVALID",
    "FIELD_VALUE_NOT_SUPPORTED",
    "FIELD_VALUE_REQUIRED",
    "FIELD_VALUE_TOO_LONG",
    "FIELD_VALUE_TOO_MANY",
    "FIELD_VALUE_TYPE_INVALID",
    "FieldError",
    "ResourceSchema",
    "go_value",
    "invalid_status",
    "strict_decoding_status",
]

# --- field.ErrorType: the cause ``reason`` and the words each type starts its message with -----------------
FIELD_VALUE_INVALID = "FieldValueInvalid"
FIELD_VALUE_REQUIRED = "FieldValueRequired"
FIELD_VALUE_NOT_SUPPORTED = "FieldValueNotSupported"
FIELD_VALUE_TOO_LONG = "FieldValueTooLong"
FIELD_VALUE_TOO_MANY = "FieldValueTooMany"
FIELD_VALUE_TYPE_INVALID = "FieldValueTypeInvalid"
FIELD_VALUE_FORBIDDEN = "FieldValueForbidden"
FIELD_VALUE_DUPLICATE = "FieldValueDuplicate"

_TYPE_WORDS = {
    FIELD_VALUE_INVALID: "Invalid value",
    FIELD_VALUE_TYPE_INVALID: "Invalid value",
    FIELD_VALUE_REQUIRED: "Required value",
    FIELD_VALUE_NOT_SUPPORTED: "Unsupported value",
    FIELD_VALUE_TOO_LONG: "Too long",
    FIELD_VALUE_TOO_MANY: "Too many",
    FIELD_VALUE_FORBIDDEN: "Forbidden",
    FIELD_VALUE_DUPLICATE: "Duplicate value",
}
# Types whose message never shows the value (field.Error.ErrorBody).
_VALUELESS = {FIELD_VALUE_REQUIRED, FIELD_VALUE_FORBIDDEN, FIELD_VALUE_TOO_LONG}
# Errors after which the server does not run CEL rules (apiextensions' hasBlockingErr).
_BLOCKING = {
    FIELD_VALUE_NOT_SUPPORTED,
    FIELD_VALUE_REQUIRED,
    FIELD_VALUE_TOO_LONG,
    FIELD_VALUE_TOO_MANY,
    FIELD_VALUE_TYPE_INVALID,
}
_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


class _Omit:
    """Marks a FieldError value that the message leaves out (and that is ``null`` in JSON)."""

    def __repr__(self) -> str:
        return "<omitted>"


_OMIT: Any = _Omit()


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: ``field`` is the path (``spec.env[0].name``), ``type`` the cause reason
    (``FieldValueInvalid``...), ``message`` the error body as the server words it (the ``message`` of the
    Status cause, e.g. ``Invalid value: 9: spec.vcpu in body should be less than or equal to 8``), ``value``
    the offending value."""

    field: str
    type: str
    message: str
    value: Any = None

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def go_value(value: Any, *, sharp: bool = False) -> str:
    """``value`` printed as Go prints the unstructured value in a field error (``%v``, ``%q`` or ``%#v``)."""
    if value is None:
        return "interface {}(nil)" if sharp else "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        return re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", text)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict | list | tuple):
        if not sharp:  # field.Error renders a complex value as its JSON (Go's json.Marshal)
            return _go_json(value)
        if isinstance(value, dict):
            inner = ", ".join(
                f"{json.dumps(str(k))}:{go_value(v, sharp=True)}" for k, v in sorted(value.items())
            )
            return "map[string]interface {}{" + inner + "}"
        return "[]interface {}{" + ", ".join(go_value(v, sharp=True) for v in value) + "}"
    return json.dumps(str(value))


def _go_json(value: Any) -> str:
    """``json.Marshal`` of an unstructured value: compact, keys sorted, ``<``, ``>`` and ``&`` escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _error(path: str, type_: str, value: Any = _OMIT, detail: str = "") -> FieldError:
    """A FieldError with its message built as ``field.Error.ErrorBody()`` builds it."""
    words = _TYPE_WORDS[type_]
    body = words if type_ in _VALUELESS or value is _OMIT else f"{words}: {go_value(value)}"
    if detail:
        body += f": {detail}"
    return FieldError(path, type_, body, None if value is _OMIT else value)


def _too_many(path: str, count: int, most: int) -> FieldError:
    """``field.TooMany``: a list or map over its maxItems / maxProperties (Go words both as "item")."""
    return _error(path, FIELD_VALUE_TOO_MANY, count, f"must have at most {most} item{'s' * (most != 1)}")


# --- paths --------------------------------------------------------------------------------------------------
def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _key(path: str, key: str) -> str:
    """A map entry: kube-openapi names additionalProperties entries like properties (``path.key``)."""
    return _child(path, key)


# --- JSON types as kube-openapi sees them -------------------------------------------------------------------
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        # Go decodes integers beyond int64 as float64.
        return "integer" if _INT64_MIN <= value <= _INT64_MAX else "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "unknown"


def _type_matches(schema_type: str, value: Any) -> bool:
    actual = _json_type(value)
    if schema_type == "number":
        return actual in ("number", "integer")
    return actual == schema_type


# --- formats (the ones kube-openapi's strfmt registry checks on strings) ------------------------------------
_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$",
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_HOSTNAME = re.compile(
    r"^([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]{0,62}[a-zA-Z0-9])(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]{0,62}[a-zA-Z0-9]))*$"
)
_DURATION = re.compile(r"^(-?\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w))+$")


def _valid_date_time(text: str) -> bool:
    match = _DATE_TIME.match(text)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        _dt.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return False
    return second <= 60


def _valid_date(text: str) -> bool:
    match = _DATE.match(text)
    if not match:
        return False
    try:
        _dt.date(*(int(g) for g in match.groups()))
    except ValueError:
        return False
    return True


def _valid_ip(text: str, version: int) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _valid_cidr(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def _valid_byte(text: str) -> bool:
    import base64
    import binascii

    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


_FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": _valid_date_time,
    "datetime": _valid_date_time,
    "date": _valid_date,
    "uuid": lambda s: bool(_UUID.match(s)),
    "hostname": lambda s: len(s) <= 255 and bool(_HOSTNAME.match(s)),
    "ipv4": lambda s: _valid_ip(s, 4),
    "ipv6": lambda s: _valid_ip(s, 6),
    "cidr": _valid_cidr,
    "byte": _valid_byte,
    "duration": lambda s: bool(_DURATION.match(s)),
}


# --- metadata (ObjectMeta decoding and ValidateObjectMetaAccessor with NameIsDNSSubdomain) ------------------
_OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN}$")
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    f"'{_DNS1123_SUBDOMAIN}')"
)


def _dns_subdomain_errors(name: str, *, prefix: bool) -> list[str]:
    if prefix and name.endswith("-"):
        name = name[:-1] + "a"
    messages = []
    if len(name) > 253:
        messages.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN_RE.match(name):
        messages.append(_DNS1123_SUBDOMAIN_MSG)
    return messages


def _validate_metadata(meta: Any) -> list[FieldError]:
    if not isinstance(meta, dict):
        return [_error("metadata.name", FIELD_VALUE_REQUIRED, detail="name or generateName is required")]
    errors: list[FieldError] = []
    name = meta.get("name") or ""
    generate = meta.get("generateName") or ""
    if isinstance(generate, str) and generate:
        errors += [
            _error("metadata.generateName", FIELD_VALUE_INVALID, generate, m)
            for m in _dns_subdomain_errors(generate, prefix=True)
        ]
    if not name:
        if not generate:
            errors.append(
                _error("metadata.name", FIELD_VALUE_REQUIRED, detail="name or generateName is required")
            )
    elif isinstance(name, str):
        errors += [
            _error("metadata.name", FIELD_VALUE_INVALID, name, m)
            for m in _dns_subdomain_errors(name, prefix=False)
        ]
    return errors


# --- CEL ----------------------------------------------------------------------------------------------------
# cel-expr-python is Google's CEL runtime (cel-cpp) for Python: the same language semantics as the cel-go
# Kubernetes embeds, and about 100 times faster than a pure-Python interpreter, which matters because every
# update of a Sandbox (status patches included) evaluates the CRD's root-level rules.
_GO_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _timestamp(text: str) -> Any:
    moment = _dt.datetime.fromisoformat(text.replace(" ", "T").replace("z", "Z").replace("Z", "+00:00"))
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(_dt.UTC).replace(tzinfo=None))
    return stamp


def _duration(text: str) -> Any:
    if not text or _GO_DURATION.sub("", text) not in ("", "-"):
        return None
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _GO_DURATION.findall(text))
    duration = duration_pb2.Duration()
    duration.FromTimedelta(
        _dt.timedelta(seconds=-seconds if text.startswith("-") and seconds > 0 else seconds)
    )
    return duration


def _sort_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True, default=str)


def _to_cel(value: Any, schema: dict[str, Any] | None) -> Any:
    """A JSON value as Kubernetes types it for CEL: ``date-time`` strings are timestamps, ``duration``
    strings durations, ``number`` fields doubles, and ``set``/``map`` lists in a canonical order, so that
    ``==`` ignores their order as Kubernetes' list equality does for them."""
    if value is None or isinstance(value, bool):
        return value
    schema = schema or {}
    if isinstance(value, int):
        return float(value) if schema.get("type") == "number" else value
    if isinstance(value, str):
        fmt = schema.get("format")
        if fmt in ("date-time", "datetime") and _valid_date_time(value):
            return _timestamp(value)
        if fmt == "duration":
            converted = _duration(value)
            return value if converted is None else converted
        return value
    if isinstance(value, list):
        items = schema.get("items")
        out = [_to_cel(v, items) for v in value]
        if schema.get("x-kubernetes-list-type") in ("set", "map"):
            order = sorted(range(len(value)), key=lambda i: _sort_key(value[i]))
            out = [out[i] for i in order]
        return out
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        extra_schema = extra if isinstance(extra, dict) else None
        return {k: _to_cel(v, props.get(k, extra_schema)) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class _Rule:
    source: str
    program: Any
    message: str
    message_program: Any
    reason: str
    field_path: str
    transition: bool


def _rule_text(rule: dict[str, Any]) -> str:
    message = str(rule.get("message") or "").strip()
    return message or str(rule["rule"]).strip()


_REASONS = {
    "FieldValueInvalid": FIELD_VALUE_INVALID,
    "FieldValueForbidden": FIELD_VALUE_FORBIDDEN,
    "FieldValueRequired": FIELD_VALUE_REQUIRED,
    "FieldValueDuplicate": FIELD_VALUE_DUPLICATE,
}


def _rule_path(path: str, field_path: str) -> str:
    """A rule's ``fieldPath`` (``.a.b``, ``['x']``, ``[0]``) appended to the path of the value it sits on."""
    for match in re.finditer(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['([^']*)'\]|\[(\d+)\]", field_path):
        name, quoted, idx = match.groups()
        path = _index(path, int(idx)) if idx is not None else _child(path, name or quoted)
    return path


@functools.lru_cache(maxsize=1)
def _cel_env() -> Any:
    """A CEL environment with ``self`` and ``oldSelf`` (dynamically typed) and the strings and math
    extensions Kubernetes also enables."""
    return cel.NewEnv(
        variables={"self": cel.Type.DYN, "oldSelf": cel.Type.DYN},
        extensions=[ext_strings.ExtStrings(), ext_math.ExtMath()],
    )


class _CompileError:
    """A rule the CEL compiler refused: every evaluation reports it, as the server does for such a rule."""

    def __init__(self, text: str) -> None:
        self.text = text


def _compile(source: str) -> Any:
    try:
        return _cel_env().compile(source)
    except RuntimeError as exc:
        return _CompileError(str(exc).replace("INVALID_ARGUMENT: ", "", 1).strip())


def _compile_rules(schema: dict[str, Any]) -> list[_Rule]:
    rules = []
    for rule in schema.get("x-kubernetes-validations") or []:
        source = str(rule["rule"])
        message_expr = rule.get("messageExpression")
        rules.append(
            _Rule(
                source=source,
                program=_compile(source),
                message=_rule_text(rule),
                message_program=_compile(str(message_expr)) if message_expr else None,
                reason=_REASONS.get(str(rule.get("reason") or ""), FIELD_VALUE_INVALID),
                field_path=str(rule.get("fieldPath") or ""),
                transition=bool(re.search(r"\boldSelf\b", source)) and not rule.get("optionalOldSelf"),
            )
        )
    return rules


# CEL runtime errors in cel-go's words (what the Kubernetes message quotes), from cel-cpp's.
_CEL_ERRORS = [
    (re.compile(r'^(?:NOT_FOUND: )?Key not found in map : "?(.*?)"?$'), r"no such key: \1"),
    (re.compile(r"^(?:INVALID_ARGUMENT: )?divide by zero$"), "division by zero"),
    (re.compile(r"^(?:INVALID_ARGUMENT: )?modulus by zero$"), "modulus by zero"),
    (re.compile(r"^(?:\w+: )?No matching overloads found.*$"), "no such overload"),
    (re.compile(r"^(?:\w+: )?Index error: index=(-?\d+).*$"), r"index out of bounds: \1"),
]


def _cel_error_text(text: str) -> str:
    for pattern, replacement in _CEL_ERRORS:
        if pattern.match(text):
            return pattern.sub(replacement, text).rstrip(": ")
    return re.sub(r"^[A-Z_]+: ", "", text)


def _evaluate(program: Any, activation: dict[str, Any]) -> tuple[Any, str | None]:
    """(value, None), or (None, error text) for a compile or runtime error."""
    if isinstance(program, _CompileError):
        return None, None
    try:
        result = program.eval(data=activation)
    except RuntimeError as exc:
        return None, _cel_error_text(str(exc))
    if result.type() == cel.Type.ERROR:
        return None, _cel_error_text(str(result.value()))
    return result.value(), None


# --- the walk -----------------------------------------------------------------------------------------------
_MISSING: Any = object()


@dataclass
class _Walk:
    schema_errors: list[FieldError] = field(default_factory=list)
    list_errors: list[FieldError] = field(default_factory=list)
    cel_checks: list[tuple[str, dict[str, Any], Any, Any]] = field(default_factory=list)


def _schema_type_name(schema: dict[str, Any]) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "integer,string"
    return str(schema.get("type") or "")


def _correlate_items(schema: dict[str, Any], items: list[Any], old: Any) -> Iterator[Any]:
    """The old value of each new list item, as Kubernetes correlates them: by key for ``map`` lists, by
    value for ``set`` lists, not at all for atomic lists."""
    list_type = schema.get("x-kubernetes-list-type")
    if not isinstance(old, list) or list_type not in ("map", "set"):
        for _ in items:
            yield _MISSING
        return
    if list_type == "set":
        for item in items:
            yield item if item in old else _MISSING
        return
    keys = list(schema.get("x-kubernetes-list-map-keys") or [])

    def key_of(x: Any) -> tuple[Any, ...] | None:
        if not isinstance(x, dict):
            return None
        return tuple(json.dumps(x.get(k), sort_keys=True) for k in keys)

    old_by_key = {key_of(x): x for x in old if key_of(x) is not None}
    for item in items:
        k = key_of(item)
        yield old_by_key.get(k, _MISSING) if k is not None else _MISSING


class ResourceSchema:
    """One version of a CRD's schema: ``prepare(obj, old)`` prunes and validates as the API server does."""

    def __init__(self, crd: dict[str, Any], version: str) -> None:
        spec = crd["spec"]
        self.group: str = spec["group"]
        self.kind: str = spec["names"]["kind"]
        self.version = version
        entry = next((v for v in spec.get("versions", []) if v.get("name") == version), None)
        if entry is None:
            raise KeyError(f"{crd.get('metadata', {}).get('name')} has no version {version!r}")
        validation = entry.get("schema") or spec.get("validation") or {}
        self.schema: dict[str, Any] = validation.get("openAPIV3Schema") or {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
        self._rules: dict[int, list[_Rule]] = {}
        self._compile(self.schema)

    def _compile(self, schema: dict[str, Any]) -> None:
        if schema.get("x-kubernetes-validations"):
            self._rules[id(schema)] = _compile_rules(schema)
        for sub in (schema.get("properties") or {}).values():
            self._compile(sub)
        for key in ("items", "additionalProperties"):
            sub = schema.get(key)
            if isinstance(sub, dict):
                self._compile(sub)
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(key) or []:
                self._compile(sub)

    # --- public -------------------------------------------------------------------------------------------
    def prepare(
        self, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> tuple[dict[str, Any], list[FieldError]]:
        """The object as the server would store it, and the validation errors it would answer 422 with."""
        pruned = copy.deepcopy(obj)
        self._prune_root(pruned)
        errors = _validate_metadata(pruned.get("metadata"))
        walk = _Walk()
        for name, sub in (self.schema.get("properties") or {}).items():
            if name in ("metadata", "apiVersion", "kind") or name not in pruned:
                continue
            old_value = old.get(name, _MISSING) if isinstance(old, dict) else _MISSING
            self._validate(pruned[name], sub, name, old_value, walk)
        if self.schema.get("required"):
            for name in self.schema["required"]:
                if name not in pruned:
                    walk.schema_errors.append(_error(name, FIELD_VALUE_REQUIRED))
        self._queue_rules(self.schema, pruned, old if old is not None else _MISSING, "", walk)
        errors += walk.schema_errors
        errors += walk.list_errors
        if walk.cel_checks:
            if any(e.type in _BLOCKING for e in errors):
                errors.append(_error("<nil>", FIELD_VALUE_INVALID, None, _NOT_CHECKED))
            else:
                for path, schema, value, old_value in walk.cel_checks:
                    errors += self._run_rules(path, schema, value, old_value)
        return pruned, _dedupe(errors)

    def unknown_fields(self, obj: dict[str, Any]) -> list[str]:
        """Paths of the fields pruning would drop (``spec.foo``), for ``fieldValidation=Strict``/``Warn``."""
        found: list[str] = []
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            found += [f"metadata.{k}" for k in meta if k not in _OBJECT_META_FIELDS]
        props = self.schema.get("properties") or {}
        for key, value in obj.items():
            if key in ("apiVersion", "kind", "metadata"):
                continue
            if key in props:
                self._unknown(value, props[key], key, found)
            elif not self.schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(key)
        return found

    # --- pruning --------------------------------------------------------------------------------------------
    def _prune_root(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            for key in [k for k in meta if k not in _OBJECT_META_FIELDS]:
                del meta[key]
        props = self.schema.get("properties") or {}
        for key in list(obj):
            if key in ("apiVersion", "kind", "metadata"):
                continue
            if key in props:
                if obj[key] is None and not props[key].get("nullable"):
                    del obj[key]
                else:
                    obj[key] = _prune(obj[key], props[key])
            elif not self.schema.get("x-kubernetes-preserve-unknown-fields"):
                del obj[key]

    def _unknown(self, value: Any, schema: dict[str, Any], path: str, found: list[str]) -> None:
        if isinstance(value, dict):
            props = schema.get("properties")
            extra = schema.get("additionalProperties")
            for key, sub in value.items():
                if props and key in props:
                    self._unknown(sub, props[key], _child(path, key), found)
                elif isinstance(extra, dict):
                    self._unknown(sub, extra, _key(path, key), found)
                elif not (schema.get("x-kubernetes-preserve-unknown-fields") or extra is True):
                    found.append(_child(path, key))
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                self._unknown(item, schema["items"], _index(path, i), found)

    # --- validation -----------------------------------------------------------------------------------------
    def _validate(self, value: Any, schema: dict[str, Any], path: str, old: Any, walk: _Walk) -> None:
        if old is not _MISSING and old == value:
            return  # ratcheting: an unchanged value is not validated again
        errors = walk.schema_errors
        if value is None:
            if not schema.get("nullable") and schema.get("type"):
                errors.append(_type_error(path, _schema_type_name(schema), "null"))
            return
        schema_type = schema.get("type")
        if schema.get("x-kubernetes-int-or-string"):
            if _json_type(value) not in ("integer", "string"):
                errors.append(_type_error(path, "integer,string", _json_type(value)))
                return
        elif schema_type and not _type_matches(str(schema_type), value):
            errors.append(_type_error(path, str(schema_type), _json_type(value)))
            return
        if isinstance(value, str):
            self._validate_string(value, schema, path, errors)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._validate_number(value, schema, path, errors)
        if "enum" in schema and not _in_enum(value, schema["enum"]):
            values = [e if isinstance(e, str) else json.dumps(e) for e in schema["enum"]]
            detail = "supported values: " + ", ".join(json.dumps(v) for v in values)
            errors.append(_error(path, FIELD_VALUE_NOT_SUPPORTED, value, detail))
        if id(schema) in self._rules:
            walk.cel_checks.append((path, schema, value, old))
        if isinstance(value, list):
            self._validate_list(value, schema, path, old, walk)
        elif isinstance(value, dict):
            self._validate_object(value, schema, path, old, walk)
        for key in ("allOf", "anyOf", "oneOf"):
            if schema.get(key):
                self._validate_composition(key, schema[key], value, path, walk)

    def _validate_string(
        self, value: str, schema: dict[str, Any], path: str, errors: list[FieldError]
    ) -> None:
        length = len(value)
        if "maxLength" in schema and length > schema["maxLength"]:
            max_len = int(schema["maxLength"])
            errors.append(
                _error(
                    path,
                    FIELD_VALUE_TOO_LONG,
                    detail=f"may not be more than {max_len} byte{'s' * (max_len != 1)}",
                )
            )
        if "minLength" in schema and length < schema["minLength"]:
            errors.append(
                _error(
                    path,
                    FIELD_VALUE_INVALID,
                    value,
                    f"{path} in body should be at least {schema['minLength']} chars long",
                )
            )
        pattern = schema.get("pattern")
        compiled = _pattern(str(pattern)) if pattern else None
        if compiled is not None and not compiled.search(value):
            errors.append(
                _error(path, FIELD_VALUE_INVALID, value, f"{path} in body should match '{pattern}'")
            )
        fmt = schema.get("format")
        check = _FORMATS.get(str(fmt)) if fmt else None
        if check is not None and not check(value):
            errors.append(
                _error(
                    path,
                    FIELD_VALUE_TYPE_INVALID,
                    value,
                    f"{path} in body must be of type {fmt}: {json.dumps(value)}",
                )
            )

    def _validate_number(
        self, value: float, schema: dict[str, Any], path: str, errors: list[FieldError]
    ) -> None:
        if "multipleOf" in schema:
            step = schema["multipleOf"]
            if step and not _is_multiple(value, step):
                errors.append(
                    _error(
                        path,
                        FIELD_VALUE_INVALID,
                        value,
                        f"{path} in body should be a multiple of {go_value(step)}",
                    )
                )
        if "maximum" in schema:
            high = schema["maximum"]
            exclusive = bool(schema.get("exclusiveMaximum"))
            if value > high or (exclusive and value == high):
                words = "less than" if exclusive else "less than or equal to"
                errors.append(
                    _error(
                        path, FIELD_VALUE_INVALID, value, f"{path} in body should be {words} {go_value(high)}"
                    )
                )
        if "minimum" in schema:
            low = schema["minimum"]
            exclusive = bool(schema.get("exclusiveMinimum"))
            if value < low or (exclusive and value == low):
                words = "greater than" if exclusive else "greater than or equal to"
                errors.append(
                    _error(
                        path, FIELD_VALUE_INVALID, value, f"{path} in body should be {words} {go_value(low)}"
                    )
                )

    def _validate_list(
        self, value: list[Any], schema: dict[str, Any], path: str, old: Any, walk: _Walk
    ) -> None:
        errors = walk.schema_errors
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(_too_many(path, len(value), int(schema["maxItems"])))
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(
                _error(
                    path,
                    FIELD_VALUE_INVALID,
                    len(value),
                    f"{path} in body should have at least {schema['minItems']} items",
                )
            )
        if schema.get("uniqueItems") and _has_duplicates(value):
            errors.append(
                _error(path, FIELD_VALUE_DUPLICATE, value, f"{path} in body shouldn't contain duplicates")
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for i, (item, old_item) in enumerate(
                zip(value, _correlate_items(schema, value, old), strict=True)
            ):
                self._validate(item, items, _index(path, i), old_item, walk)
        walk.list_errors += _list_type_errors(value, schema, path)

    def _validate_object(
        self, value: dict[str, Any], schema: dict[str, Any], path: str, old: Any, walk: _Walk
    ) -> None:
        errors = walk.schema_errors
        old_map = old if isinstance(old, dict) else {}
        for name in schema.get("required") or []:
            if name not in value:
                errors.append(_error(_child(path, name), FIELD_VALUE_REQUIRED))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(_too_many(path, len(value), int(schema["maxProperties"])))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            errors.append(
                _error(
                    path,
                    FIELD_VALUE_INVALID,
                    len(value),
                    f"{path} in body should have at least {schema['minProperties']} properties",
                )
            )
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name, sub in props.items():
            if name in value:
                self._validate(value[name], sub, _child(path, name), old_map.get(name, _MISSING), walk)
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in props:
                    self._validate(item, extra, _key(path, name), old_map.get(name, _MISSING), walk)

    def _validate_composition(
        self, key: str, subs: list[dict[str, Any]], value: Any, path: str, walk: _Walk
    ) -> None:
        results = []
        for sub in subs:
            trial = _Walk()
            self._validate(value, sub, path, _MISSING, trial)
            results.append(trial)
        passing = sum(1 for r in results if not r.schema_errors and not r.list_errors)
        if key == "allOf":
            for r in results:
                walk.schema_errors += r.schema_errors
            if any(r.schema_errors for r in results):
                walk.schema_errors.append(
                    _error(path, FIELD_VALUE_INVALID, "", "must validate all the schemas (allOf)")
                )
        elif key == "anyOf" and passing == 0:
            walk.schema_errors.append(
                _error(path, FIELD_VALUE_INVALID, "", "must validate at least one schema (anyOf)")
            )
        elif key == "oneOf" and passing != 1:
            words = "must validate one and only one schema (oneOf)"
            walk.schema_errors.append(_error(path, FIELD_VALUE_INVALID, "", words))

    # --- CEL ------------------------------------------------------------------------------------------------
    def _queue_rules(self, schema: dict[str, Any], value: Any, old: Any, path: str, walk: _Walk) -> None:
        if id(schema) in self._rules and not (old is not _MISSING and old == value):
            walk.cel_checks.insert(0, (path, schema, value, old))

    def _run_rules(self, path: str, schema: dict[str, Any], value: Any, old: Any) -> list[FieldError]:
        errors: list[FieldError] = []
        type_name = str(schema.get("type") or "object")
        activation: dict[str, Any] = {"self": _to_cel(value, schema)}
        if old is not _MISSING:
            activation["oldSelf"] = _to_cel(old, schema)
        for rule in self._rules[id(schema)]:
            if rule.transition and old is _MISSING:
                continue
            target = _rule_path(path, rule.field_path) if rule.field_path else path or "<nil>"
            if isinstance(rule.program, _CompileError):
                detail = f"rule compile error: {rule.program.text}"
                errors.append(_error(target, FIELD_VALUE_INVALID, type_name, detail))
                continue
            result, failure = _evaluate(rule.program, activation)
            if failure is not None:
                if failure.startswith("no such overload"):
                    detail = (
                        f"'{failure}': call arguments did not match a supported operator, function or macro "
                        f"signature for rule: {rule.message}"
                    )
                else:
                    detail = f"{failure} evaluating rule: {rule.message}"
                errors.append(_error(target, FIELD_VALUE_INVALID, type_name, detail))
                continue
            if result is True:
                continue
            message = (
                rule.message if rule.message != rule.source.strip() else f"failed rule: {rule.source.strip()}"
            )
            if rule.message_program is not None:
                produced, _ = _evaluate(rule.message_program, activation)
                if isinstance(produced, str) and produced.strip() and "\n" not in produced:
                    message = produced
            # The value the rule is defined on, as Kubernetes 1.36 shows it: scalars themselves, objects and
            # arrays left out (earlier releases showed the type's name, "object", instead).
            shown = _OMIT if type_name in ("object", "array") else value
            if rule.reason in (FIELD_VALUE_REQUIRED, FIELD_VALUE_FORBIDDEN):
                errors.append(_error(target, rule.reason, detail=message))
            elif rule.reason == FIELD_VALUE_DUPLICATE:
                errors.append(_error(target, rule.reason, shown))
            else:
                errors.append(_error(target, rule.reason, shown, message))
        return errors


def _type_error(path: str, type_name: str, actual: str) -> FieldError:
    return _error(
        path,
        FIELD_VALUE_TYPE_INVALID,
        actual,
        f"{path} in body must be of type {type_name}: {json.dumps(actual)}",
    )


@functools.lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    r"""A schema pattern compiled by Python's ``re`` (RE2's syntax is nearly a subset); None when ``re``
    cannot read it (``\p{L}`` classes...): the pattern is then not checked rather than failing requests."""
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _in_enum(value: Any, allowed: list[Any]) -> bool:
    canon = json.dumps(value, sort_keys=True)
    return any(json.dumps(a, sort_keys=True) == canon for a in allowed)


def _is_multiple(value: float, step: float) -> bool:
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    quotient = value / step
    return abs(quotient - round(quotient)) < 1e-9


def _has_duplicates(items: Iterable[Any]) -> bool:
    seen: list[str] = []
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            return True
        seen.append(key)
    return False


def _list_type_errors(value: list[Any], schema: dict[str, Any], path: str) -> list[FieldError]:
    """apiextensions' listtype validation: ``set`` items unique, ``map`` items objects with unique keys."""
    list_type = schema.get("x-kubernetes-list-type")
    errors: list[FieldError] = []
    if list_type == "set":
        seen: list[str] = []
        for i, item in enumerate(value):
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                errors.append(_error(_index(path, i), FIELD_VALUE_DUPLICATE, item))
            else:
                seen.append(key)
    elif list_type == "map":
        keys = list(schema.get("x-kubernetes-list-map-keys") or [])
        seen_keys: list[str] = []
        for i, item in enumerate(value):
            if item is not None and not isinstance(item, dict):
                errors.append(
                    _error(
                        _index(path, i),
                        FIELD_VALUE_INVALID,
                        item,
                        "must be an object for an array of list-type map",
                    )
                )
                continue
            if item is None:
                continue
            present = {k: item[k] for k in keys if k in item}
            key = json.dumps([item.get(k, "\x00unset") for k in keys], sort_keys=True)
            if key in seen_keys:
                errors.append(_error(_index(path, i), FIELD_VALUE_DUPLICATE, present))
            else:
                seen_keys.append(key)
    return errors


def _prune(value: Any, schema: dict[str, Any]) -> Any:
    """Drop the fields a structural schema does not specify (apiextensions' pruning), and non-nullable
    nulls."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
            extra = schema.get("additionalProperties")
            if not isinstance(extra, dict):
                return value
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(value):
            sub = props.get(key)
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is None:
                if not (preserve or extra is True):
                    del value[key]
                continue
            if value[key] is None and not sub.get("nullable"):
                del value[key]
            else:
                value[key] = _prune(value[key], sub)
        if schema.get("x-kubernetes-embedded-resource") and isinstance(value.get("metadata"), dict):
            meta = value["metadata"]
            for key in [k for k in meta if k not in _OBJECT_META_FIELDS]:
                del meta[key]
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_prune(v, items) for v in value]
    return value


def _dedupe(errors: list[FieldError]) -> list[FieldError]:
    """``ErrorList.ToAggregate`` drops repeated messages; the causes keep them all, so this only drops exact
    duplicates produced by the walk itself."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for e in errors:
        key = (e.field, e.type, e.message)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _qualified_kind(kind: str, group: str) -> str:
    return f"{kind}.{group}" if group else kind


def invalid_status(kind: str, group: str, name: str, errors: list[FieldError]) -> dict[str, Any]:
    """The 422 ``Invalid`` Status the server answers with (``apierrors.NewInvalid``)."""
    causes = [{"reason": e.type, "message": e.message, "field": e.field} for e in errors]
    qualified = _qualified_kind(kind, group)
    messages: list[str] = []
    for e in errors:
        text = str(e)
        if text not in messages:
            messages.append(text)
    if not messages:
        message = f"{qualified} {json.dumps(name)} is invalid"
    elif len(messages) == 1:
        message = f"{qualified} {json.dumps(name)} is invalid: {messages[0]}"
    else:
        message = f"{qualified} {json.dumps(name)} is invalid: [{', '.join(messages)}]"
    details: dict[str, Any] = {"name": name, "group": group, "kind": kind, "causes": causes}
    if not name:
        del details["name"]
    if not group:
        del details["group"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": details,
        "code": 422,
    }


def strict_decoding_status(kind: str, version: str, unknown: list[str]) -> dict[str, Any]:
    """The 400 ``BadRequest`` Status for ``fieldValidation=Strict`` with unknown fields, as the server words
    it: ``Sandbox in version "v1alpha1" cannot be handled as a Sandbox: strict decoding error: unknown field
    "spec.x"``."""
    fields = ", ".join(f"unknown field {json.dumps(u)}" for u in unknown)
    reason = f"{kind} in version {json.dumps(version)} cannot be handled as a {kind}"
    return status_body(400, "BadRequest", f"{reason}: strict decoding error: {fields}")
