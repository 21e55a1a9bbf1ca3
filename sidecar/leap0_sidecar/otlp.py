"""OTLP message types per signal, the OTLP/JSON encoding, and the receivers' answers (pure functions).

OTLP/JSON is the protobuf JSON mapping with the differences the OTLP specification lists: trace and span ids
are hex strings (not base64), enum values are integers, field names may be lowerCamelCase or the original
names, and unknown fields are ignored. ``google.protobuf.json_format`` does the mapping; this module converts
the ids.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from leap0_contract import Signal

REQUEST_TYPES: dict[Signal, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}

RESPONSE_TYPES: dict[Signal, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}

CONTENT_PROTOBUF = "application/x-protobuf"
CONTENT_JSON = "application/json"

# The largest single JSON value decoded at once: one span, metric or log record (or one resource or scope).
# Decoded JSON takes up to about 25 times its text in Python objects ([{},{},...]), so this bounds what
# converting a request costs, whatever its size; a larger value is refused (JsonTooLarge), protobuf is not.
JSON_VALUE_LIMIT = 256 * 1024

_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_ID_LENGTHS = {"traceId": 16, "trace_id": 16}


Bytes = bytes | bytearray


class JsonError(ValueError):
    """An OTLP/JSON body that cannot be converted; the message is the parser's reason."""


class JsonTooLarge(JsonError):
    """One value of an OTLP/JSON body is larger than JSON_VALUE_LIMIT."""


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def _convert_ids(node: Any, path: str) -> None:
    """Replace hex trace/span ids with base64 in place (in spans, links, log records, exemplars)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise JsonError(f"{path}.{key}: {value!r} is not a hex string") from None
                expected = _ID_LENGTHS.get(key, 8)
                if raw and len(raw) != expected:
                    raise JsonError(
                        f"{path}.{key}: {value!r} must be {expected} bytes ({expected * 2} hex digits)"
                    )
                node[key] = base64.b64encode(raw).decode("ascii")
            elif isinstance(value, (dict, list)):
                _convert_ids(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, (dict, list)):
                _convert_ids(item, f"{path}[{i}]")


def _check_strings(node: Any, path: str) -> None:
    """Every string (keys too) must be encodable as UTF-8: JSON escapes can spell lone surrogates."""
    try:
        if isinstance(node, str):
            node.encode("utf-8")
        elif isinstance(node, dict):
            for key, value in node.items():
                key.encode("utf-8")
                _check_strings(value, f"{path}.{key}")
        elif isinstance(node, list):
            for item in node:
                _check_strings(item, path)
    except UnicodeEncodeError as exc:
        raise JsonError(f"invalid JSON at {path}: a string holds a lone surrogate ({exc.reason})") from None


# --- A bounded OTLP/JSON reader ---------------------------------------------------------------------------
# An export request is {"resourceX": [{"resource": .., "scopeX": [{"scope": .., "<items>": [..]}]}]}. The
# three container levels are walked over the raw bytes (the regular expressions find where each value ends,
# without building it and without recursion); each item, and each other member of a container, is decoded
# and converted on its own, so at most one value's Python objects exist at a time.

_SPACE = re.compile(rb"[ \t\n\r]*+")
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_TO_BRACKET = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
_SCALAR = re.compile(rb"[^ \t\n\r,:\[\]{}\"]++")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


def _space(body: Bytes, pos: int) -> int:
    """The position after any white space at ``pos``; the end of the body is malformed JSON here."""
    match = _SPACE.match(body, pos)
    assert match is not None  # (it matches the empty string)
    if match.end() >= len(body):
        raise JsonError("invalid JSON: the body ends before the JSON value does")
    return match.end()


def _value_end(body: Bytes, pos: int, path: str) -> int:
    """Where the JSON value starting at ``pos`` ends (its syntax inside is checked when it is decoded)."""
    first = body[pos : pos + 1]
    if first == b'"':
        string = _STRING.match(body, pos)
        if string is None:
            raise JsonError(f"invalid JSON at {path}: unterminated string at byte {pos}")
        return string.end()
    if first in (b"{", b"["):
        depth = 0
        while True:
            run = _TO_BRACKET.match(body, pos)
            assert run is not None
            pos = run.end()
            if pos >= len(body) or body[pos] == 0x22:  # the end, or an unterminated string
                raise JsonError(
                    f"invalid JSON at {path}: unterminated {'object' if first == b'{' else 'array'}"
                )
            depth += 1 if body[pos] in _OPEN else -1
            pos += 1
            if depth == 0:
                return pos
    scalar = _SCALAR.match(body, pos)
    if scalar is None:
        raise JsonError(f"invalid JSON at {path}: expected a value at byte {pos}")
    return scalar.end()


def _decode(body: Bytes, start: int, end: int, path: str) -> Any:
    if end - start > JSON_VALUE_LIMIT:
        raise JsonTooLarge(
            f"{path} is {end - start} bytes of JSON, more than the {JSON_VALUE_LIMIT} the sidecar decodes "
            "at once: send smaller values, or OTLP/protobuf (no such limit)"
        )
    text = body[start:end]
    try:
        value = json.loads(text.decode("utf-8"))
    except RecursionError:
        raise JsonError(f"invalid JSON at {path}: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the integer digit limit
        raise JsonError(f"invalid JSON at {path}: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(value, path)
    return value


def _walk_object(body: Bytes, pos: int, path: str, member: Callable[[str, int, str], int]) -> int:
    """Call ``member(name, value start, path)`` (which returns where the value ends) for each member of the
    object at ``pos``; return where the object ends."""
    if body[pos : pos + 1] != b"{":
        raise JsonError(f"invalid OTLP/JSON: {path} must be an object")
    pos = _space(body, pos + 1)
    if body[pos : pos + 1] == b"}":
        return pos + 1
    while True:
        name = _STRING.match(body, pos)
        if name is None:
            raise JsonError(f"invalid JSON at {path}: expected a member name at byte {pos}")
        key = _decode(body, name.start(), name.end(), path)
        pos = _space(body, name.end())
        if body[pos : pos + 1] != b":":
            raise JsonError(f"invalid JSON at {path}: expected ':' at byte {pos}")
        pos = _space(body, member(key, _space(body, pos + 1), f"{path}.{key}"))
        separator = body[pos : pos + 1]
        if separator == b"}":
            return pos + 1
        if separator != b",":
            raise JsonError(f"invalid JSON at {path}: expected ',' or '}}' at byte {pos}")
        pos = _space(body, pos + 1)


def _walk_array(body: Bytes, pos: int, path: str, element: Callable[[int, str], int]) -> int:
    """Call ``element(start, path)`` (which returns where the element ends) for each element of the array
    at ``pos`` (``null`` is an empty array); return where the array ends."""
    if body[pos : pos + 4] == b"null":
        return pos + 4
    if body[pos : pos + 1] != b"[":
        raise JsonError(f"invalid OTLP/JSON: {path} must be an array")
    pos = _space(body, pos + 1)
    if body[pos : pos + 1] == b"]":
        return pos + 1
    index = 0
    while True:
        pos = _space(body, element(pos, f"{path}[{index}]"))
        index += 1
        separator = body[pos : pos + 1]
        if separator == b"]":
            return pos + 1
        if separator != b",":
            raise JsonError(f"invalid JSON at {path}: expected ',' or ']' at byte {pos}")
        pos = _space(body, pos + 1)


def _to_protobuf(value: Any, message_type: type[Message], path: str) -> bytes:
    _convert_ids(value, path)
    message = message_type()
    from google.protobuf import json_format  # only for JSON requests: the module costs memory

    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except RecursionError:
        raise JsonError(f"invalid OTLP/JSON at {path}: nested too deeply") from None
    except Exception as exc:  # whatever the converter raises for this input: the input's fault, a 400
        raise JsonError(f"invalid OTLP/JSON at {path}: {exc}") from None
    data: bytes = message.SerializeToString()
    return data


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(frozen=True)
class _Shape:
    """The OTLP/JSON names of one signal's three container levels and its item type."""

    resource_keys: tuple[str, ...]  # in the request: repeated Resource{Spans,Metrics,Logs} = 1
    resource_type: type[Message]
    scope_keys: tuple[str, ...]  # in a ResourceX: repeated Scope{Spans,Metrics,Logs} = 2
    scope_type: type[Message]
    item_keys: tuple[str, ...]  # in a ScopeX: repeated Span/Metric/LogRecord = 2
    item_type: type[Message]


_SHAPES: dict[Signal, _Shape] = {
    "traces": _Shape(
        ("resourceSpans", "resource_spans"),
        trace_pb2.ResourceSpans,
        ("scopeSpans", "scope_spans"),
        trace_pb2.ScopeSpans,
        ("spans",),
        trace_pb2.Span,
    ),
    "metrics": _Shape(
        ("resourceMetrics", "resource_metrics"),
        metrics_pb2.ResourceMetrics,
        ("scopeMetrics", "scope_metrics"),
        metrics_pb2.ScopeMetrics,
        ("metrics",),
        metrics_pb2.Metric,
    ),
    "logs": _Shape(
        ("resourceLogs", "resource_logs"),
        logs_pb2.ResourceLogs,
        ("scopeLogs", "scope_logs"),
        logs_pb2.ScopeLogs,
        ("logRecords", "log_records"),
        logs_pb2.LogRecord,
    ),
}


Child = Callable[[int, str], tuple[bytes, int]]


def _container(
    body: Bytes,
    pos: int,
    path: str,
    message_type: type[Message],
    children_keys: tuple[str, ...],
    child: Child,
) -> tuple[bytes, int]:
    """One ResourceX or ScopeX at ``pos``: its other members converted together, its children (field 2)
    one by one; the serialized message and where it ends."""
    rest: dict[str, Any] = {}
    children: list[bytes] = []

    def element(start: int, element_path: str) -> int:
        data, end = child(start, element_path)
        children.append(_field(2, data))
        return end

    def member(key: str, start: int, member_path: str) -> int:
        if key in children_keys:
            return _walk_array(body, start, member_path, element)
        end = _value_end(body, start, member_path)
        rest[key] = _decode(body, start, end, member_path)
        return end

    end = _walk_object(body, pos, path, member)
    return _to_protobuf(rest, message_type, path) + b"".join(children), end


def json_to_protobuf(signal: Signal, body: Bytes) -> bytes:
    """An OTLP/JSON export request as the serialized protobuf request; raises JsonError with the reason.

    Unknown members are skipped unread (OTLP/JSON receivers ignore unknown fields).
    """
    shape = _SHAPES[signal]
    out: list[bytes] = []

    def item(start: int, path: str) -> tuple[bytes, int]:
        end = _value_end(body, start, path)
        return _to_protobuf(_decode(body, start, end, path), shape.item_type, path), end

    def scope(start: int, path: str) -> tuple[bytes, int]:
        return _container(body, start, path, shape.scope_type, shape.item_keys, item)

    def resource(start: int, path: str) -> int:
        data, end = _container(body, start, path, shape.resource_type, shape.scope_keys, scope)
        out.append(_field(1, data))
        return end

    def member(key: str, start: int, path: str) -> int:
        if key in shape.resource_keys:
            return _walk_array(body, start, path, resource)
        return _value_end(body, start, path)  # an unknown member: skipped unread

    start = _SPACE.match(body).end()  # type: ignore[union-attr]
    if body[start : start + 1] != b"{":
        raise JsonError("invalid OTLP/JSON: the body must be a JSON object")
    end = _walk_object(body, start, "$", member)
    if _SPACE.match(body, end).end() != len(body):  # type: ignore[union-attr]
        raise JsonError(f"invalid JSON: extra data after the object at byte {end}")
    return b"".join(out)


def success_body(json_encoding: bool) -> bytes:
    """An empty Export*ServiceResponse (everything accepted, no partial_success) in the request's encoding."""
    return b"{}" if json_encoding else b""


def status(code: int, message: str, *, retry_delay_s: float | None = None) -> status_pb2.Status:
    result = status_pb2.Status(code=code, message=message)
    if retry_delay_s is not None:
        result.details.add().Pack(retry_info(retry_delay_s))
    return result


def retry_info(delay_s: float) -> error_details_pb2.RetryInfo:
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(int(delay_s * 1e9))
    return info


def status_body(code: int, message: str, json_encoding: bool, *, retry_delay_s: float | None = None) -> bytes:
    """A google.rpc.Status body, as the OTLP/HTTP specification asks for failed requests."""
    result = status(code, message, retry_delay_s=retry_delay_s)
    if json_encoding:
        from google.protobuf import json_format

        return json_format.MessageToJson(result, indent=None).encode()
    data: bytes = result.SerializeToString()
    return data


INVALID_ARGUMENT = code_pb2.INVALID_ARGUMENT
RESOURCE_EXHAUSTED = code_pb2.RESOURCE_EXHAUSTED
UNAVAILABLE = code_pb2.UNAVAILABLE
