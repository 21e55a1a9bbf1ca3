"""A console OTLP/HTTP receiver for ``leap0 dev up`` and the tests: decodes what arrives and prints it.

``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs`` with protobuf (``application/x-protobuf``) or OTLP/JSON
(``application/json``: hex trace and span ids, read by the sidecar's own converter) bodies, with a
``Content-Length`` or ``Transfer-Encoding: chunked`` (as the OpenTelemetry JS exporters send), optionally
gzip-encoded, answered as an OTLP/HTTP server does (200 with an empty Export*ServiceResponse in the request's
encoding; 400/413/415 for what it cannot read). Every request is kept (``sink.requests``) so tests can look
at it; :func:`describe` turns one into the lines printed.
"""

from __future__ import annotations

import gzip
import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

import leap0_contract as contract
from leap0_contract import Signal
from leap0_sidecar import otlp

SIGNAL_OF_PATH: dict[str, Signal] = {
    "/v1/traces": "traces",
    "/v1/metrics": "metrics",
    "/v1/logs": "logs",
}
SIGNALS: dict[str, tuple[type[Message], type[Message]]] = {
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "/v1/metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}
MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    path: str  # /v1/traces, /v1/metrics or /v1/logs
    message: Any  # the decoded Export*ServiceRequest
    headers: dict[str, str]


def any_value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def _attrs_text(attrs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))


def _number(point: Any) -> float | int:
    if point.WhichOneof("value") == "as_double":
        return float(point.as_double)
    return int(point.as_int)


def metric_points(request: metrics_service_pb2.ExportMetricsServiceRequest) -> Iterator[dict[str, Any]]:
    """Each gauge/sum data point: name, unit, value, point attributes and resource attributes."""
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind in ("gauge", "sum"):
                    for point in getattr(metric, kind).data_points:
                        yield {
                            "name": metric.name,
                            "unit": metric.unit,
                            "value": _number(point),
                            "attributes": attributes(point.attributes),
                            "resource": resource,
                        }
                elif kind == "histogram":
                    for hpoint in metric.histogram.data_points:
                        yield {
                            "name": metric.name,
                            "unit": metric.unit,
                            "value": {"count": hpoint.count, "sum": hpoint.sum},
                            "attributes": attributes(hpoint.attributes),
                            "resource": resource,
                        }


def spans(request: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[dict[str, Any]]:
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                yield {
                    "name": span.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "duration_ms": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
                    "attributes": attributes(span.attributes),
                    "resource": resource,
                }


def log_records(request: logs_service_pb2.ExportLogsServiceRequest) -> Iterator[dict[str, Any]]:
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope in resource_logs.scope_logs:
            for record in scope.log_records:
                yield {
                    "body": any_value(record.body),
                    "severity": record.severity_text,
                    "event_name": record.event_name,
                    "trace_id": record.trace_id.hex(),
                    "span_id": record.span_id.hex(),
                    "time_unix_nano": record.time_unix_nano,
                    "attributes": attributes(record.attributes),
                    "resource": resource,
                }


IDENTITY = (contract.ATTR_SANDBOX_ID, contract.ATTR_ORG_ID, contract.ATTR_TEMPLATE_ID)


def _identity(resource: dict[str, Any]) -> str:
    return ", ".join(f"{k}={resource[k]}" for k in IDENTITY if k in resource)


def describe(item: Received) -> list[str]:
    """The console lines for one request."""
    lines: list[str] = []
    if item.path == "/v1/metrics":
        for p in metric_points(item.message):
            value = p["value"]
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            extra = f" {_attrs_text(p['attributes'])}" if p["attributes"] else ""
            lines.append(f"metric {p['name']} = {shown} {p['unit']}{extra} [{_identity(p['resource'])}]")
    elif item.path == "/v1/traces":
        for s in spans(item.message):
            extra = f" {_attrs_text(s['attributes'])}" if s["attributes"] else ""
            lines.append(
                f"span   {s['name']} {s['duration_ms']:.1f} ms trace={s['trace_id'][:16]}{extra} "
                f"[{_identity(s['resource'])}]"
            )
    else:
        lines.extend(describe_log(r) for r in log_records(item.message))
    return lines


def describe_log(record: dict[str, Any]) -> str:
    """One log record's console line: a line of a sandbox's output as ``log stdout "the line"``, a supervisor
    event as ``log leap0.process.exit "exited with code 0 ..." process.exit.code=0``, another record (the
    app's own OTLP logs) as ``log SEVERITY body``; each with the sandbox's identity."""
    identity = f"[{_identity(record['resource'])}]"
    attrs = record["attributes"]
    body = json.dumps(str(record["body"]), ensure_ascii=False)
    if record["event_name"]:
        extra = {k: v for k, v in attrs.items() if k.startswith("process.")}
        shown = f" {_attrs_text(extra)}" if extra else ""
        return f"log {record['event_name']} {body}{shown} {identity}"
    stream = attrs.get(contract.ATTR_LOG_IOSTREAM)
    if stream in (contract.LOG_IOSTREAM_STDOUT, contract.LOG_IOSTREAM_STDERR):
        return f"log {stream} {body} {identity}"
    return f"log {record['severity'] or '-'} {record['body']} {identity}"


class SinkError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode(path: str, content_type: str, encoding: str, body: bytes) -> Any:
    """The Export*ServiceRequest of a request, or SinkError with the status to answer."""
    if path not in SIGNALS:
        raise SinkError(404, f"unknown path {path}")
    if encoding == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as exc:
            raise SinkError(400, f"bad gzip body: {exc}") from exc
    elif encoding not in ("", "identity"):
        raise SinkError(415, f"unsupported Content-Encoding {encoding}")
    message = SIGNALS[path][0]()
    media = otlp.media_type(content_type)
    try:
        if media == otlp.CONTENT_JSON:
            # OTLP/JSON is not protobuf's JSON mapping (ids are hex, not base64): the sidecar's converter.
            body = otlp.json_to_protobuf(SIGNAL_OF_PATH[path], body)
        elif media != otlp.CONTENT_PROTOBUF:
            raise SinkError(415, f"unsupported Content-Type {content_type or '(none)'}")
        message.ParseFromString(body)
    except (DecodeError, otlp.JsonError) as exc:
        raise SinkError(400, f"cannot decode the body: {exc}") from exc
    return message


def read_chunked(stream: io.BufferedIOBase, limit: int) -> bytes:
    """A ``Transfer-Encoding: chunked`` body (RFC 9112, section 7.1) of at most ``limit`` bytes; SinkError
    when it is malformed (400) or larger (413)."""
    parts: list[bytes] = []
    size = 0
    while True:
        line = stream.readline(1024)
        try:
            length = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise SinkError(400, f"bad chunk size line {line[:40]!r}") from None
        if length < 0:
            raise SinkError(400, f"bad chunk size line {line[:40]!r}")
        if length == 0:
            break
        size += length
        if size > limit:
            raise SinkError(413, f"body over {limit} bytes")
        data = stream.read(length)
        if len(data) != length or stream.readline(3) not in (b"\r\n", b"\n"):
            raise SinkError(400, "truncated chunk")
        parts.append(data)
    while stream.readline(8192) not in (b"\r\n", b"\n", b""):  # trailer fields, ignored
        pass
    return b"".join(parts)


class OtlpSink:
    """The receiver on ``host:port`` (0: any free port) in a background thread; ``url`` once started."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, printer: Callable[[str], None] | None = None
    ) -> None:
        self.requests: list[Received] = []
        self.printer = printer
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                path = self.path.split("?")[0]
                content_type = self.headers.get("Content-Type", "")
                try:
                    if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                        body = read_chunked(self.rfile, MAX_BODY)
                    else:
                        length = int(self.headers.get("Content-Length") or 0)
                        if length > MAX_BODY:
                            raise SinkError(413, f"body over {MAX_BODY} bytes")
                        body = self.rfile.read(length)
                except (SinkError, ValueError) as exc:
                    self.close_connection = True  # (the rest of the body is not read)
                    status = exc.status if isinstance(exc, SinkError) else 400
                    self._answer(status, str(exc).encode(), "text/plain")
                    return
                try:
                    message = decode(path, content_type, self.headers.get("Content-Encoding", ""), body)
                except SinkError as exc:
                    self._answer(exc.status, str(exc).encode(), "text/plain")
                    return
                sink.add(Received(path, message, dict(self.headers.items())))
                response = SIGNALS[path][1]()
                if otlp.media_type(content_type) == otlp.CONTENT_JSON:
                    self._answer(200, json_format.MessageToJson(response).encode(), "application/json")
                else:
                    self._answer(200, response.SerializeToString(), "application/x-protobuf")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="leap0-sink", daemon=True)

    def add(self, item: Received) -> None:
        with self._changed:
            self.requests.append(item)
            self._changed.notify_all()
        if self.printer is not None:
            for line in describe(item):
                self.printer(line)

    def start(self) -> OtlpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> OtlpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Block until ``predicate(requests)`` holds or the timeout passes; the final answer."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(list(self.requests)), timeout)

    def metric_points(self) -> list[dict[str, Any]]:
        with self._lock:
            items = [r for r in self.requests if r.path == "/v1/metrics"]
        return [p for r in items for p in metric_points(r.message)]

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            items = [r for r in self.requests if r.path == "/v1/traces"]
        return [s for r in items for s in spans(r.message)]

    def log_records(self) -> list[dict[str, Any]]:
        with self._lock:
            items = [r for r in self.requests if r.path == "/v1/logs"]
        return [rec for r in items for rec in log_records(r.message)]
