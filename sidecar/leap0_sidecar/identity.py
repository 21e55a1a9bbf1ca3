"""Stamp the sandbox's identity on every resource of an OTLP export request, without decoding the spans.

An ``Export{Trace,Metrics,Logs}ServiceRequest`` is ``repeated Resource{Spans,Metrics,Logs} = 1``, and each of
those is ``Resource resource = 1`` followed by the scope data (``scope_spans = 2`` ...) and ``schema_url =
3``. Only the ``Resource`` needs rewriting, so this module walks the protobuf wire format of those two outer
levels (tags and lengths: no library exposes that), parses and rewrites each ``Resource`` with the protobuf
library, and copies every other field's bytes untouched (unknown fields included). That is an order of
magnitude cheaper than decoding and re-encoding every span (see bench/sidecar.py).

Because the scope data is copied, not parsed, corruption *inside* a span is not detected here; the upstream's
parser rejects it (a permanent error, counted as dropped). Framing errors at the two outer levels and errors
in a ``Resource`` raise :class:`WireError` with the reason.

Concatenating serialized messages of one type merges them (repeated fields append), so a batch of export
requests of one signal is simply their concatenation.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from leap0_sidecar.queue import Buffer


class WireError(ValueError):
    """The request is not a well-formed protobuf message of the expected type."""


_WT_VARINT, _WT_I64, _WT_LEN, _WT_SGROUP, _WT_EGROUP, _WT_I32 = 0, 1, 2, 3, 4, 5
_TAG_RESOURCE_X = b"\x0a"  # field 1, wire type 2: ResourceSpans/ResourceMetrics/ResourceLogs in a request
_TAG_RESOURCE = b"\x0a"  # field 1, wire type 2: Resource in ResourceSpans/...
MAX_FIELD_NUMBER = 2**29 - 1  # the largest field number protobuf allows
_VIEW_FROM_BYTES = 64 * 1024


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


class IdentityStamper:
    """Rewrites export requests so every resource carries exactly the given attributes' values."""

    def __init__(self, attributes: Iterable[tuple[str, str]]) -> None:
        self._kvs = identity_key_values(attributes)
        self._keys = frozenset(kv.key for kv in self._kvs)
        # Serialized attributes, appended to a resource's bytes (repeated fields concatenate).
        self._suffix = Resource(attributes=self._kvs).SerializeToString()
        self._only_identity = _TAG_RESOURCE + encode_varint(len(self._suffix)) + self._suffix

    def rewrite_resource(self, resource: bytes) -> bytes:
        """A serialized Resource with the identity attributes set (any the app sent are replaced)."""
        msg = Resource()
        try:
            msg.MergeFromString(resource)
        except DecodeError as exc:
            raise WireError(f"invalid Resource: {exc}") from None
        attrs = msg.attributes
        if any(kv.key in self._keys for kv in attrs):
            kept = [kv for kv in attrs if kv.key not in self._keys]
            del attrs[:]
            attrs.extend(kept)
            resource = msg.SerializeToString()
        return resource + self._suffix

    def rewrite_resource_x(self, buf: bytes | bytearray, view: Buffer, start: int, end: int) -> list[Buffer]:
        """One ResourceSpans/ResourceMetrics/ResourceLogs (``buf[start:end]``), rewritten, in pieces (views
        of ``buf`` where it is copied untouched)."""
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
        if not resource_parts:  # the app sent no resource at all: add one
            return [self._only_identity, view[start:end]]
        if copy_from < end:
            rest.append(view[copy_from:end])
        # Several occurrences of a singular message field merge, so their concatenation is the resource.
        resource = self.rewrite_resource(b"".join(resource_parts))
        return [_TAG_RESOURCE, encode_varint(len(resource)), resource, *rest]

    def rewrite(self, request: bytes | bytearray) -> bytes:
        """Rewrite a serialized Export*ServiceRequest; raises WireError when it is malformed."""
        return b"".join(self.rewrite_pieces(request))

    def rewrite_pieces(self, request: bytes | bytearray) -> list[Buffer]:
        """``rewrite``'s result in pieces, whose concatenation is the rewritten request: views of
        ``request`` where it is copied untouched (for requests over 64 KiB), and the rewritten resources."""
        out: list[Buffer] = []
        # Slices of a view copy nothing (one copy of a large request in all); small ones are cheaper sliced.
        view = memoryview(request) if len(request) > _VIEW_FROM_BYTES else request
        copy_from = 0
        for number, wire_type, field_start, value_start, field_end in iter_fields(request):
            if number != 1 or wire_type != _WT_LEN:
                continue  # unknown field: copied with the untouched run around it
            if copy_from < field_start:
                out.append(view[copy_from:field_start])
            inner = self.rewrite_resource_x(request, view, value_start, field_end)
            out.append(_TAG_RESOURCE_X)
            out.append(encode_varint(sum(len(piece) for piece in inner)))
            out.extend(inner)
            copy_from = field_end
        if copy_from < len(request):
            out.append(view[copy_from:])
        return out
