"""process.execute through the sandbox's supervisor (sandbox logs): argv, trace context, the switch."""

from __future__ import annotations

import pytest

import leap0_contract as c
from leap0._exec import build_exec_argv, supervised_argv, supervisor_exec_error
from leap0._telemetry import NoopTelemetry, OtelTelemetry
from leap0.models import SandboxRequest, sandbox_fields

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_the_command_runs_as_the_supervisors_child_with_the_callers_trace() -> None:
    argv = build_exec_argv("echo hi", cwd="/tmp")
    assert supervised_argv(argv, "/.leap0/leap0-supervisor", TP) == [
        "/.leap0/leap0-supervisor",
        "exec",
        "--container",
        "sandbox",
        "--traceparent",
        TP,
        "--",
        *argv,
    ]
    # without a span (SDK telemetry off) no trace context is passed
    assert supervised_argv(["ls"], "/s", None) == ["/s", "exec", "--container", "sandbox", "--", "ls"]


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "error"),
    [
        (
            127,
            b"",
            b'leap0-supervisor: exec: "x": executable file not found in $PATH\n',
            '"x": executable file',
        ),
        (
            126,
            b"",
            b'leap0-supervisor: exec: "/etc/passwd": permission denied\n',
            '"/etc/passwd": permission',
        ),
        (127, b"", b"sh: 1: x: not found\n", None),  # the shell's own 127: a result, as before
        (127, b"out", b'leap0-supervisor: exec: "x": not found\n', None),
        (1, b"", b'leap0-supervisor: exec: "x": not found\n', None),
        (127, b"", b'leap0-supervisor: exec: "x": not found\nand more\n', None),
    ],
)
def test_only_the_supervisors_own_start_failure_is_an_error(
    code: int, stdout: bytes, stderr: bytes, error: str | None
) -> None:
    found = supervisor_exec_error(code, stdout, stderr)
    assert (found is None) == (error is None)
    if error is not None:
        assert found is not None
        assert found.startswith(error)


def test_telemetry_logs_is_spec_telemetry_logs() -> None:
    assert SandboxRequest(telemetry_logs=False).spec() == {"telemetry": {"logs": False}}
    assert SandboxRequest(telemetry_sidecar=True, telemetry_logs=True).spec() == {
        "telemetry": {"enabled": True, "logs": True}
    }
    assert "telemetry" not in SandboxRequest().spec()


def test_the_status_tells_the_sdk_about_the_supervisor() -> None:
    obj = {"metadata": {"name": "s", "namespace": "n"}, "status": {c.STATUS_SUPERVISOR: c.SUPERVISOR_PATH}}
    assert sandbox_fields(obj)["supervisor"] == "/.leap0/leap0-supervisor"
    assert sandbox_fields({"metadata": {"name": "s", "namespace": "n"}})["supervisor"] is None


def test_the_operation_span_is_the_traceparent() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    telemetry = OtelTelemetry(TracerProvider(), MeterProvider())
    with telemetry.operation(c.SDK_OP_PROCESS_EXECUTE, "s") as op:
        traceparent = op.traceparent()
        from opentelemetry import trace

        span = trace.get_current_span().get_span_context()
    assert traceparent == f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags):02x}"
    with NoopTelemetry().operation(c.SDK_OP_PROCESS_EXECUTE) as noop:
        assert noop.traceparent() is None
