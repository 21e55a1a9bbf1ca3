"""The console sink's lines for log records: a sandbox's output, the supervisor's events, app logs."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

import leap0_contract as c
from leap0_dev.sink import Received, describe

IDENTITY = {c.ATTR_SANDBOX_ID: "demo", c.ATTR_ORG_ID: "acme", c.ATTR_TEMPLATE_ID: "default", "other": "x"}


def kv(key: str, value: str | int) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def lines_of(*records: LogRecord) -> list[str]:
    resource = Resource(attributes=[kv(k, v) for k, v in IDENTITY.items()])
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])]
    )
    return describe(Received("/v1/logs", request, {}))


def test_output_lines_events_and_app_logs_each_have_their_line_with_the_identity() -> None:
    ident = "[leap0.sandbox.id=demo, leap0.org.id=acme, leap0.template.id=default]"
    out = LogRecord(
        body=AnyValue(string_value='demo: iteration 1 "quoted"'),
        attributes=[kv(c.ATTR_LOG_IOSTREAM, "stdout"), kv(c.ATTR_LOGTAG, "F")],
    )
    err = LogRecord(body=AnyValue(string_value="oops"), attributes=[kv(c.ATTR_LOG_IOSTREAM, "stderr")])
    exit_record = LogRecord(
        event_name=c.EVENT_PROCESS_EXIT,
        severity_text="INFO",
        body=AnyValue(string_value="exited with code 3 after 0.100 s"),
        attributes=[kv(c.ATTR_PROCESS_EXIT_CODE, 3), kv(c.ATTR_PROCESS_RUN_DROPPED, 0)],
    )
    app = LogRecord(severity_text="WARN", body=AnyValue(string_value="from the app's SDK"))
    assert lines_of(out, err, exit_record, app) == [
        f'log stdout "demo: iteration 1 \\"quoted\\"" {ident}',
        f'log stderr "oops" {ident}',
        f'log leap0.process.exit "exited with code 3 after 0.100 s" process.exit.code=3, '
        f"process.run.dropped=0 {ident}",
        f"log WARN from the app's SDK {ident}",
    ]
