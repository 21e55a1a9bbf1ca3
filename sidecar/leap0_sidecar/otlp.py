"""OTLP message types per signal, the OTLP/JSON encoding, and the receivers' answers (pure functions).

OTLP/JSON is the protobuf JSON mapping with the differences the OTLP specification lists: trace and span ids
are hex strings (not base64), enum values are integers, field names may be lowerCamelCase or the original
names, and unknown fields are ignored. ``google.protobuf.json_format`` does the mapping; this module converts
the ids.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

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

_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_ID_LENGTHS = {"traceId": 16, "trace_id": 16}


class JsonError(ValueError):
    """An OTLP/JSON body that cannot be converted; the message is the parser's reason."""


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


def json_to_protobuf(signal: Signal, body: bytes) -> bytes:
    """An OTLP/JSON export request as the serialized protobuf request; raises JsonError with the reason."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JsonError(f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise JsonError("invalid OTLP/JSON: the body must be a JSON object")
    from google.protobuf import json_format  # only for JSON requests: the module costs memory

    _convert_ids(document, "$")
    message = REQUEST_TYPES[signal]()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError) as exc:
        raise JsonError(f"invalid OTLP/JSON: {exc}") from None
    return message.SerializeToString()


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
