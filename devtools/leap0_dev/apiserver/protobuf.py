"""Decode the Kubernetes protobuf request bodies kubectl's typed clients send, for a few built-in kinds.

client-go's generated clientsets send ``application/vnd.kubernetes.protobuf`` bodies (``kubectl create
namespace|configmap|secret|serviceaccount``) and do not fall back to JSON on a 415. The envelope is
``k8s\\0`` + ``runtime.Unknown{typeMeta, raw, contentEncoding, contentType}`` with ``raw`` the object's own
message. Only the messages below are known (field numbers from k8s.io/api's generated.proto); a body of
another kind is a :class:`ProtobufError`. Pure functions, no protobuf runtime needed.

Part of the kubectl-compatibility layer (with ``tables`` and ``openapi``): nothing but kubectl needs it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """A protobuf body this server cannot read."""


# A message schema: field number -> (JSON name, kind). Kinds: "string", "bytes", "int", "bool", "time",
# "map" (string->string), "bmap" (string->bytes as base64), a nested schema dict, ("repeated", kind), or None
# for a field the server sets and ignores on input. Any other non-empty field is refused, never dropped.
Schema = dict[int, tuple[str, Any]]

_TIME: Schema = {1: ("seconds", "int"), 2: ("nanos", "int")}
_OWNER_REFERENCE: Schema = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    8: ("creationTimestamp", "time"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    13: ("ownerReferences", ("repeated", _OWNER_REFERENCE)),
    14: ("finalizers", ("repeated", "string")),
    4: ("selfLink", None),
    9: ("deletionTimestamp", None),
    10: ("deletionGracePeriodSeconds", None),
    17: ("managedFields", None),
}
_OBJECT_REFERENCE: Schema = {
    1: ("kind", "string"),
    2: ("namespace", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("resourceVersion", "string"),
    7: ("fieldPath", "string"),
}
KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", "map"),
        3: ("binaryData", "bmap"),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", "bmap"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    ("v1", "Namespace"): {
        1: ("metadata", _OBJECT_META),
        2: ("spec", {1: ("finalizers", ("repeated", "string"))}),
        3: ("status", {1: ("phase", "string")}),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", _OBJECT_META),
        2: ("secrets", ("repeated", _OBJECT_REFERENCE)),
        3: ("imagePullSecrets", ("repeated", {1: ("name", "string")})),
        4: ("automountServiceAccountToken", "bool"),
    },
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited; fixed-width skipped."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: Any, value: int | bytes) -> Any:
    if kind == "string":
        return value.decode() if isinstance(value, bytes) else str(value)
    if kind == "bytes":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else ""
    if kind == "int":
        return _signed(value) if isinstance(value, int) else 0
    if kind == "bool":
        return bool(value)
    if kind == "time":
        parts = decode_message(value, _TIME) if isinstance(value, bytes) else {}
        if not parts.get("seconds"):
            return None
        return datetime.fromtimestamp(parts["seconds"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(kind, dict):
        return decode_message(value, kind) if isinstance(value, bytes) else {}
    raise ProtobufError(f"unknown field kind {kind!r}")


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    """One message as the JSON the API would have received; empty values are left out, as omitempty does."""
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            if value not in (0, b""):  # a field this decoder does not know: refuse rather than lose it
                raise ProtobufError(f"protobuf field {number} is not understood by the embedded API server")
            continue
        name, kind = schema[number]
        if kind is None:  # known, set by the server, ignored on input
            continue
        if kind in ("map", "bmap"):
            entry = dict(_fields(value)) if isinstance(value, bytes) else {}
            key = _scalar("string", entry.get(1, b""))
            out.setdefault(name, {})[key] = _scalar("string" if kind == "map" else "bytes", entry.get(2, b""))
        elif isinstance(kind, tuple):
            out.setdefault(name, []).append(_scalar(kind[1], value))
        else:
            decoded = _scalar(kind, value)
            if decoded not in (None, "", 0, False, {}):
                out[name] = decoded
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """A ``k8s\\0``-enveloped protobuf object as a JSON-shaped dict with apiVersion and kind."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf body (no k8s\\0 prefix)")
    unknown = dict(_fields(body[len(MAGIC) :]))
    type_meta = unknown.get(1, b"")
    raw = unknown.get(2, b"")
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise ProtobufError("malformed runtime.Unknown envelope")
    meta = decode_message(type_meta, {1: ("apiVersion", "string"), 2: ("kind", "string")})
    api_version, kind = meta.get("apiVersion", ""), meta.get("kind", "")
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise ProtobufError(
            f"{api_version}/{kind} in protobuf is not supported by the embedded API server: send JSON "
            "(kubectl apply -f, or the kubernetes Python client)"
        )
    return {"apiVersion": api_version, "kind": kind, **decode_message(raw, schema)}
