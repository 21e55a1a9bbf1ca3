"""Stamp the sandbox's identity on an OTLP export request and remove the app's own ``leap0`` attributes at
every level, without decoding the spans.

An ``Export{Trace,Metrics,Logs}ServiceRequest`` is ``repeated Resource{Spans,Metrics,Logs} = 1``, and each of
those is ``Resource resource = 1`` followed by the scope data (``scope_spans = 2`` ...) and ``schema_url =
3``. This module walks the protobuf wire format of those two outer levels (tags and lengths: no library
exposes that), parses and rewrites each ``Resource`` with the protobuf library, and copies every other field's
bytes untouched (unknown fields included). That is an order of magnitude cheaper than decoding and
re-encoding every span (see bench/sidecar.py).

The identity is authoritative, so an app's own ``leap0`` attributes (:func:`is_reserved_key`) are removed
everywhere: on the resource, and in the scope data on scopes, spans, span events, span links, log records,
metric metadata, every kind of data point and exemplars (:func:`attribute_plan` finds these attribute lists
in the OTLP descriptors). Attribute keys are stored as plain bytes in protobuf, so each Scope{Spans,Metrics,
Logs} is first searched for the bytes ``leap0`` (one search at C speed, the only cost for a request without
them). In one that has them, its scope and each span, metric or log record holding those bytes is parsed by
protobuf, its reserved attributes removed at every level, and re-encoded; everything else is still copied.
An app can make its own sidecar parse every span that way (about 8 µs a span instead of a fraction of one):
linear in the request, bounded by the request limit, and paid by that sandbox's telemetry only.

Because the scope data is copied, not parsed, corruption *inside* a span is not detected here (unless the
span holds ``leap0`` and is parsed); the upstream's parser rejects it (a permanent error, counted as dropped).
Framing errors at the two outer levels, a span, metric, log record or scope that is parsed and cannot be, and
errors in a ``Resource`` raise :class:`WireError` with the reason.

Concatenating serialized messages of one type merges them (repeated fields append), so a batch of export
requests of one signal is simply their concatenation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from leap0_contract import RESERVED_ATTRIBUTE_PREFIX, Signal
from leap0_sidecar.otlp import REQUEST_TYPES
from leap0_sidecar.queue import Buffer


class WireError(ValueError):
    """The request is not a well-formed protobuf message of the expected type."""


_WT_VARINT, _WT_I64, _WT_LEN, _WT_SGROUP, _WT_EGROUP, _WT_I32 = 0, 1, 2, 3, 4, 5
_TAG_RESOURCE_X = b"\x0a"  # field 1, wire type 2: ResourceSpans/ResourceMetrics/ResourceLogs in a request
_TAG_RESOURCE = b"\x0a"  # field 1, wire type 2: Resource in ResourceSpans/...
MAX_FIELD_NUMBER = 2**29 - 1  # the largest field number protobuf allows
_VIEW_FROM_BYTES = 64 * 1024
_RESERVED = RESERVED_ATTRIBUTE_PREFIX.encode()  # b"leap0"
_RESERVED_LEN = len(_RESERVED)
# Searching the bytes for ``leap0``: the regular expression engine's literal search is 25-35 % faster than
# bytes.find on OTLP payloads (bench/sidecar.py); it takes bytes, bytearray and memoryview, with bounds.
_search_reserved = re.compile(re.escape(_RESERVED)).search


def is_reserved_key(key: bytes | bytearray | str) -> bool:
    """Is this attribute key the platform's, which an app may not send?

    ``leap0``, ``leap0.*``, and the spellings backends fold into them: ``leap0_*`` and ``leap0-*`` (Prometheus
    and Loki turn ``leap0.org.id`` into ``leap0_org_id``), and ``leap0`` itself (a key ``leap0`` whose value
    is a map becomes ``leap0.<key>`` where maps are flattened). That is: ``leap0`` followed by nothing or by
    anything but a letter or a digit. Case-sensitive, as attribute keys are.
    """
    raw = key.encode() if isinstance(key, str) else key
    return raw.startswith(_RESERVED) and (
        len(raw) == _RESERVED_LEN or not raw[_RESERVED_LEN : _RESERVED_LEN + 1].isalnum()
    )


def read_varint(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, position after it)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def iter_fields(
    buf: bytes | bytearray, start: int = 0, end: int | None = None
) -> Iterable[tuple[int, int, int, int, int]]:
    """Yield (number, wire type, field start, value start, field end) for each field in ``buf[start:end]``.

    For length-delimited fields the value is ``buf[value start:field end]``.
    """
    if end is None:
        end = len(buf)
    pos = start
    while pos < end:
        field_start = pos
        if buf[pos] < 0x80:  # one-byte tag: the common case
            key = buf[pos]
            pos += 1
        else:
            key, pos = read_varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0 or number > MAX_FIELD_NUMBER:
            raise WireError(
                f"invalid field number {number} at offset {field_start} (field numbers are 1 to 2^29-1)"
            )
        if wire_type == _WT_LEN:
            if pos < end and buf[pos] < 0x80:
                length = buf[pos]
                pos += 1
            else:
                length, pos = read_varint(buf, pos, end)
            value_start = pos
            pos += length
            if pos > end:
                raise WireError(
                    f"field {number} at offset {field_start} declares {length} bytes but only "
                    f"{end - value_start} remain (truncated message)"
                )
        elif wire_type == _WT_VARINT:
            value_start = pos
            _, pos = read_varint(buf, pos, end)
        elif wire_type == _WT_I64:
            value_start = pos
            pos += 8
        elif wire_type == _WT_I32:
            value_start = pos
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type} for field {number} at offset {field_start}")
        if pos > end:
            raise WireError(f"field {number} at offset {field_start} is truncated")
        yield number, wire_type, field_start, value_start, pos


def identity_key_values(attributes: Iterable[tuple[str, str]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes]


# --- where attributes are ------------------------------------------------------------------------------
# A plan lists the fields of one message type that hold attributes: (name, repeated, KEY_VALUE) for an
# attribute list (``repeated KeyValue``), (name, repeated, plan) for messages with attribute lists below.
Plan: TypeAlias = tuple[tuple[str, bool, "Plan | None"], ...]
KEY_VALUE = None
_KEY_VALUE_TYPE = KeyValue.DESCRIPTOR.full_name
# Not entered: a Resource is rewritten apart; an AnyValue (a log body, an attribute's value) is data.
_NOT_ENTERED = frozenset({AnyValue.DESCRIPTOR.full_name, Resource.DESCRIPTOR.full_name})


def attribute_plan(descriptor: Any, _memo: dict[str, Plan | None] | None = None) -> Plan | None:
    """The plan of a message type, from its descriptor (a protobuf ``Descriptor``; None when no attribute list
    is below it).

    Built from the OTLP descriptors, so it names every attribute list of the protocol: scope attributes,
    span, event and link attributes, log record attributes, metric metadata, the attributes of every kind of
    data point (number, histogram, exponential histogram, summary) and the exemplars' filtered attributes.
    """
    memo: dict[str, Plan | None] = {} if _memo is None else _memo
    name = descriptor.full_name
    if name in memo:
        return memo[name]
    memo[name] = None  # the types entered have no cycles; this guards against one anyway
    plan: list[tuple[str, bool, Plan | None]] = []
    for field in descriptor.fields:
        child = field.message_type
        if field.type != FieldDescriptor.TYPE_MESSAGE or child is None:
            continue
        if child.full_name == _KEY_VALUE_TYPE:
            plan.append((field.name, field.is_repeated, KEY_VALUE))
        elif child.full_name not in _NOT_ENTERED:
            sub = attribute_plan(child, memo)
            if sub is not None:
                plan.append((field.name, field.is_repeated, sub))
    memo[name] = tuple(plan) or None
    return memo[name]


@dataclass(frozen=True)
class ScopeItem:
    """A field of a Scope{Spans,Metrics,Logs} whose messages hold attributes (the scope; each span, metric
    or log record): the message type, parsed by protobuf when its bytes contain ``leap0``, and its plan."""

    message: type[Message]
    plan: Plan


def _scope_items() -> dict[Signal, dict[int, ScopeItem]]:
    """Per signal, the fields of its Scope{Spans,Metrics,Logs} that hold attributes, by field number."""
    items: dict[Signal, dict[int, ScopeItem]] = {}
    for signal, request in REQUEST_TYPES.items():
        resource_x: Any = request.DESCRIPTOR.fields_by_number[1].message_type
        scope_x: Any = resource_x.fields_by_number[_SCOPE_X_FIELD].message_type
        items[signal] = {}
        for field in scope_x.fields:
            if field.message_type is None:
                continue
            plan = attribute_plan(field.message_type)
            if plan is not None:
                items[signal][field.number] = ScopeItem(GetMessageClass(field.message_type), plan)
    return items


_SCOPE_X_FIELD = 2  # scope_spans, scope_metrics, scope_logs in Resource{Spans,Metrics,Logs}
SCOPE_ITEMS: dict[Signal, dict[int, ScopeItem]] = _scope_items()


def scrub_message(message: Any, plan: Plan) -> int:
    """Remove the attributes with a reserved key at every level of a parsed message the plan names; the
    number removed."""
    removed = 0
    for name, repeated, sub in plan:
        if sub is KEY_VALUE:
            attributes = getattr(message, name)
            for i in range(len(attributes) - 1, -1, -1):
                key = attributes[i].key
                if key.startswith(RESERVED_ATTRIBUTE_PREFIX) and is_reserved_key(key):
                    del attributes[i]
                    removed += 1
        elif repeated:
            for item in getattr(message, name):
                removed += scrub_message(item, sub)
        elif message.HasField(name):
            removed += scrub_message(getattr(message, name), sub)
    return removed


def scrub_scope_x(
    buf: bytes | bytearray, view: Buffer, start: int, end: int, items: dict[int, ScopeItem]
) -> list[Buffer] | None:
    """A Scope{Spans,Metrics,Logs} (``buf[start:end]``) without attributes with a reserved key, in pieces;
    None when it has none (then its bytes are sent as they are).

    Its scope and each of its spans, metrics or log records whose bytes contain ``leap0`` are parsed by
    protobuf, scrubbed and re-encoded; the others are copied.
    """
    if _search_reserved(buf, start, end) is None:
        return None
    out: list[Buffer] = []
    copy_from = start
    for number, wire_type, field_start, value_start, field_end in iter_fields(buf, start, end):
        item = items.get(number)
        if item is None or wire_type != _WT_LEN or _search_reserved(buf, value_start, field_end) is None:
            continue
        message = item.message()
        try:
            message.MergeFromString(view[value_start:field_end])  # type: ignore[arg-type]
        except DecodeError as exc:
            raise WireError(f"invalid {item.message.DESCRIPTOR.name}: {exc}") from None
        if not scrub_message(message, item.plan):
            continue
        data = message.SerializeToString()
        if copy_from < field_start:
            out.append(view[copy_from:field_start])
        out.append(encode_varint(number << 3 | _WT_LEN))
        out.append(encode_varint(len(data)))
        out.append(data)
        copy_from = field_end
    if copy_from == start:
        return None
    if copy_from < end:
        out.append(view[copy_from:end])
    return out


class IdentityStamper:
    """Rewrites export requests so every resource carries exactly the given attributes' values, and (for the
    app's requests) no other ``leap0`` attribute anywhere."""

    def __init__(self, attributes: Iterable[tuple[str, str]]) -> None:
        self._kvs = identity_key_values(attributes)
        self._keys = frozenset(kv.key for kv in self._kvs)
        # Serialized attributes, appended to a resource's bytes (repeated fields concatenate).
        self._suffix = Resource(attributes=self._kvs).SerializeToString()
        self._only_identity = _TAG_RESOURCE + encode_varint(len(self._suffix)) + self._suffix

    def rewrite_resource(self, resource: bytes, *, own: bool = False) -> bytes:
        """A serialized Resource with the identity attributes set: the app's attributes with a reserved key
        (or an identity key, ``k8s.pod.name``...) are removed first. ``own`` (the sidecar's own data) removes
        only the identity keys, keeping its ``leap0.metrics.source``."""
        msg = Resource()
        try:
            msg.MergeFromString(resource)
        except DecodeError as exc:
            raise WireError(f"invalid Resource: {exc}") from None
        attrs = msg.attributes
        keys = self._keys
        drop = []
        for kv in attrs:
            key = kv.key
            reserved = not own and key.startswith(RESERVED_ATTRIBUTE_PREFIX) and is_reserved_key(key)
            drop.append(reserved or key in keys)
        if any(drop):
            kept = [kv for kv, dropped in zip(attrs, drop, strict=True) if not dropped]
            del attrs[:]
            attrs.extend(kept)
            resource = msg.SerializeToString()
        return resource + self._suffix

    def rewrite_resource_x(
        self,
        buf: bytes | bytearray,
        view: Buffer,
        start: int,
        end: int,
        items: dict[int, ScopeItem] | None = None,
    ) -> list[Buffer]:
        """One ResourceSpans/ResourceMetrics/ResourceLogs (``buf[start:end]``), rewritten, in pieces (views
        of ``buf`` where it is copied untouched). With its signal's ``items`` (the app's data), reserved
        attributes are removed from the scope data too."""
        resource_parts: list[Buffer] = []
        rest: list[Buffer] = []
        copy_from = start
        for number, wire_type, field_start, value_start, field_end in iter_fields(buf, start, end):
            if number == 1:
                if wire_type != _WT_LEN:
                    raise WireError(f"resource field has wire type {wire_type}, expected length-delimited")
                if copy_from < field_start:
                    rest.append(view[copy_from:field_start])
                resource_parts.append(view[value_start:field_end])
                copy_from = field_end
            elif items is not None and number == _SCOPE_X_FIELD and wire_type == _WT_LEN:
                inner = scrub_scope_x(buf, view, value_start, field_end, items)
                if inner is None:
                    continue
                if copy_from < field_start:
                    rest.append(view[copy_from:field_start])
                rest.append(encode_varint(number << 3 | _WT_LEN))
                rest.append(encode_varint(sum(len(piece) for piece in inner)))
                rest.extend(inner)
                copy_from = field_end
        if copy_from < end:
            rest.append(view[copy_from:end])
        if not resource_parts:  # the app sent no resource at all: add one
            return [self._only_identity, *rest]
        # Several occurrences of a singular message field merge, so their concatenation is the resource.
        resource = self.rewrite_resource(b"".join(resource_parts), own=items is None)
        return [_TAG_RESOURCE, encode_varint(len(resource)), resource, *rest]

    def rewrite(self, request: bytes | bytearray, signal: Signal | None = None) -> bytes:
        """Rewrite a serialized Export*ServiceRequest; raises WireError when it is malformed.

        With the request's ``signal`` (the app's requests), reserved attributes are removed at every level;
        without (the sidecar's own metrics), only the identity on the resources is set.
        """
        return b"".join(self.rewrite_pieces(request, signal))

    def rewrite_pieces(self, request: bytes | bytearray, signal: Signal | None = None) -> list[Buffer]:
        """``rewrite``'s result in pieces, whose concatenation is the rewritten request: views of
        ``request`` where it is copied untouched (for requests over 64 KiB), and what was rewritten."""
        items = None if signal is None else SCOPE_ITEMS[signal]
        out: list[Buffer] = []
        # Slices of a view copy nothing (one copy of a large request in all); small ones are cheaper sliced.
        view = memoryview(request) if len(request) > _VIEW_FROM_BYTES else request
        copy_from = 0
        for number, wire_type, field_start, value_start, field_end in iter_fields(request):
            if number != 1 or wire_type != _WT_LEN:
                continue  # unknown field: copied with the untouched run around it
            if copy_from < field_start:
                out.append(view[copy_from:field_start])
            inner = self.rewrite_resource_x(request, view, value_start, field_end, items)
            out.append(_TAG_RESOURCE_X)
            out.append(encode_varint(sum(len(piece) for piece in inner)))
            out.extend(inner)
            copy_from = field_end
        if copy_from < len(request):
            out.append(view[copy_from:])
        return out
