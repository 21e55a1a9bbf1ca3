"""Tool calls through the Kubernetes exec API (``pods/exec``, websocket channel protocol v4/v5).

The pure part builds the command line and reads the status channel; the thin part drives the ``kubernetes``
client's websocket (``kubernetes.stream``), which is the code path used against real clusters.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import leap0_contract as c

# Exit codes of coreutils ``timeout``: 124 after TERM, 137 (128+9) when it had to KILL.
TIMEOUT_EXIT_CODES = (124, 137)
# Seconds after ``timeout`` before the SDK gives up on the stream itself
# (``timeout -k 1`` kills 1 s after TERM).
CLIENT_GRACE_S = 5.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STDIN_CHUNK = 64 * 1024

STDIN_CHANNEL = 0
STDOUT_CHANNEL = 1
STDERR_CHANNEL = 2
ERROR_CHANNEL = 3


def build_exec_argv(
    command: str | Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> list[str]:
    """The argv to exec in the sandbox container.

    A string is a shell command run by ``/bin/sh -c`` (as the hosted SDK does); a list is an argv run as is.
    ``cwd``, ``env`` and ``timeout`` are applied by a small POSIX sh prologue; the user's command is passed as
    positional arguments, never spliced into the script, so it needs no quoting. ``timeout`` uses coreutils
    ``timeout`` when the image has it (TERM, then KILL one second later), so the command really stops.
    """
    if isinstance(command, str):
        if not command.strip():
            raise ValueError("command must not be empty")
        inner = ["/bin/sh", "-c", command]
    else:
        inner = [str(part) for part in command]
        if not inner:
            raise ValueError("command must not be empty")
    if env is not None and not isinstance(env, Mapping):
        # e.g. execute(cmd, cwd, 5): the short signature omits env, so a positional timeout lands here.
        raise TypeError(
            f"env must be a mapping of variable names to values, not {type(env).__name__}; "
            "pass the timeout by keyword: execute(command, cwd, timeout=...)"
        )
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if cwd is None and not env and timeout is None:
        return inner
    lines: list[str] = []
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    if cwd is not None:
        lines.append(f"cd -- {shlex.quote(cwd)} || exit 1")
    if timeout is not None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        secs = f"{float(timeout):g}"
        lines.append(f'if command -v timeout >/dev/null 2>&1; then exec timeout -k 1 {secs} "$@"; fi')
    lines.append('exec "$@"')
    return ["/bin/sh", "-c", "\n".join(lines), "leap0-exec", *inner]


def supervised_argv(argv: Sequence[str], supervisor: str, traceparent: str | None = None) -> list[str]:
    """``argv`` run through the sandbox's leap0 supervisor (sandbox logs): it passes the output through as it
    is and sends each line as a log record carrying the caller's trace context (a W3C ``traceparent``)."""
    flags = [c.SUPERVISOR_FLAG_CONTAINER, c.SANDBOX_CONTAINER]
    if traceparent:
        flags += [c.SUPERVISOR_FLAG_TRACEPARENT, traceparent]
    return [supervisor, c.SUPERVISOR_EXEC, *flags, "--", *argv]


def supervisor_exec_error(exit_code: int | None, stdout: bytes, stderr: bytes) -> str | None:
    """The supervisor's message when it could not start the command (exit code 127 or 126, its one line on
    stderr, nothing on stdout), else None: the caller then fails as an exec of a missing program fails."""
    if exit_code not in (126, 127) or stdout:
        return None
    text = stderr.decode("utf-8", errors="replace")
    if (
        not text.startswith(c.SUPERVISOR_EXEC_ERROR_PREFIX)
        or text.count("\n") != 1
        or not text.endswith("\n")
    ):
        return None
    return text[len(c.SUPERVISOR_EXEC_ERROR_PREFIX) :].strip()


@dataclass(frozen=True)
class ExecStatus:
    """The status channel's verdict: an exit code, or an error the exec itself hit."""

    exit_code: int | None
    error: str | None = None


def parse_exec_status(raw: str | bytes | None) -> ExecStatus:
    """Read the metav1.Status sent on channel 3 when the command ends.

    ``Success`` is exit code 0; ``Failure`` with reason ``NonZeroExitCode`` carries the code in
    ``details.causes[ExitCode].message``; any other Failure (command not found, container gone) is an error.
    """
    if raw is None or (isinstance(raw, bytes | str) and not raw.strip()):
        return ExecStatus(None, "the exec stream closed without a status")
    try:
        data = json.loads(raw)
    except ValueError:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        return ExecStatus(None, f"unreadable exec status: {text[:200]!r}")
    if not isinstance(data, dict):
        return ExecStatus(None, f"unreadable exec status: {data!r}")
    if data.get("status") == "Success":
        return ExecStatus(0)
    for cause in (data.get("details") or {}).get("causes") or []:
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            try:
                return ExecStatus(int(cause.get("message", "")))
            except ValueError:
                break
    return ExecStatus(None, str(data.get("message") or data.get("reason") or "exec failed"))


@dataclass
class ExecOutcome:
    stdout: bytes
    stderr: bytes
    status: ExecStatus | None  # None: the client-side deadline passed before the command ended
    elapsed: float


def run_exec(
    configuration: Any,
    *,
    namespace: str,
    pod: str,
    container: str,
    argv: Sequence[str],
    stdin: bytes | None = None,
    deadline_s: float | None = None,
) -> ExecOutcome:
    """Run ``argv`` in the pod's container through the exec API and collect its output and status.

    Uses a private ApiClient, because ``kubernetes.stream`` swaps the request function of the client it
    is given for the duration of the call (not safe to share with concurrent plain API calls).
    """
    import kubernetes.client
    import kubernetes.stream

    k8s: Any = kubernetes.client
    stream: Any = kubernetes.stream.stream

    started = time.monotonic()
    api_client: Any = k8s.ApiClient(configuration)
    try:
        core = k8s.CoreV1Api(api_client)
        ws = stream(
            core.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=list(argv),
            container=container,
            stdin=stdin is not None,
            stdout=True,
            stderr=True,
            tty=False,
            binary=True,
            _preload_content=False,
        )
        try:
            if stdin is not None:
                for start in range(0, len(stdin), _STDIN_CHUNK):
                    ws.write_stdin(stdin[start : start + _STDIN_CHUNK])
                ws.close_channel(STDIN_CHANNEL)  # v5 only; a no-op on v4
            out = bytearray()
            err = bytearray()
            while ws.is_open():
                remaining = None if deadline_s is None else deadline_s - (time.monotonic() - started)
                if remaining is not None and remaining <= 0:
                    break
                ws.update(timeout=remaining if remaining is not None else 1.0)
                out += ws.read_channel(STDOUT_CHANNEL) or b""
                err += ws.read_channel(STDERR_CHANNEL) or b""
            out += ws.read_channel(STDOUT_CHANNEL) or b""
            err += ws.read_channel(STDERR_CHANNEL) or b""
            if ws.is_open():
                return ExecOutcome(bytes(out), bytes(err), None, time.monotonic() - started)
            status = parse_exec_status(ws.read_channel(ERROR_CHANNEL))
            return ExecOutcome(bytes(out), bytes(err), status, time.monotonic() - started)
        finally:
            ws.close()
    finally:
        api_client.close()
