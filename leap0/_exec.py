"""Tool calls through the Kubernetes exec API (``pods/exec``, websocket channel protocol v4/v5).

The pure part builds the command line, reads the status channel and keeps a bounded head and tail of an
output (:class:`HeadTail`); the thin part drives the ``kubernetes`` client's websocket
(``kubernetes.stream``), which is the code path used against real clusters. Frames are read one at a time,
so what is held in memory is what the caller keeps: all of it for ``process.execute``, or, with a ``sink``,
what the sink keeps (the MCP server keeps a head and a tail of each stream, whatever the command prints).
"""

from __future__ import annotations

import json
import re
import select
import shlex
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
# How long one wait for output lasts at most (then ``while_running`` is called and the wait goes on).
WAIT_SLICE_S = 5.0

STDIN_CHANNEL = 0
STDOUT_CHANNEL = 1
STDERR_CHANNEL = 2
ERROR_CHANNEL = 3
CLOSE_CHANNEL = 255  # v5: [255, channel] closes that channel
_ERROR_CHANNEL_LIMIT = 64 * 1024  # the final metav1.Status is a few hundred bytes
# How often a streaming exec looks at its cancel event while the command is silent.
CANCEL_POLL_S = 0.2

# Called with (channel, bytes) for each piece of stdout (1) or stderr (2) as it arrives.
OutputSink = Callable[[int, bytes], None]


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


class HeadTail:
    """The first ``head`` and the last ``tail`` bytes of a stream of any length, in bounded memory.

    ``add`` takes the stream piece by piece; at most ``head + tail`` bytes are held (plus the piece being
    added). ``total`` counts every byte; ``cut`` is what lies between the head and the tail.
    """

    def __init__(self, head: int, tail: int) -> None:
        if head < 0 or tail < 0:
            raise ValueError("head and tail must not be negative")
        self._head_limit = head
        self._tail_limit = tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes | bytearray | memoryview) -> None:
        self.total += len(data)
        room = self._head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data or not self._tail_limit:
            return
        if len(data) >= self._tail_limit:
            self.tail = bytearray(data[len(data) - self._tail_limit :])
        else:
            self.tail += data
            excess = len(self.tail) - self._tail_limit
            if excess > 0:
                del self.tail[:excess]  # bytearray drops its front without moving the rest

    @property
    def cut(self) -> int:
        return self.total - len(self.head) - len(self.tail)


class HeadTailSink:
    """An :data:`OutputSink` keeping a head and a tail of stdout and of stderr, ``limit`` bytes of each."""

    def __init__(self, limit: int) -> None:
        self.stdout = HeadTail(limit // 2, limit - limit // 2)
        self.stderr = HeadTail(limit // 2, limit - limit // 2)

    def __call__(self, channel: int, data: bytes) -> None:
        (self.stdout if channel == STDOUT_CHANNEL else self.stderr).add(data)


class LimitSink:
    """An :data:`OutputSink` keeping stdout whole up to ``limit`` bytes (and a head and tail of stderr); past
    the limit it keeps nothing more, says ``over``, and sets ``cancel`` so the reading stops."""

    def __init__(self, limit: int, cancel: threading.Event, stderr_limit: int = 64 * 1024) -> None:
        self.limit = limit
        self.cancel = cancel
        self.stdout = bytearray()
        self.stderr = HeadTail(stderr_limit // 2, stderr_limit - stderr_limit // 2)
        self.over = False

    def __call__(self, channel: int, data: bytes) -> None:
        if channel != STDOUT_CHANNEL:
            self.stderr.add(data)
            return
        if self.over:
            return
        room = self.limit - len(self.stdout)
        self.stdout += data[: max(room, 0)]
        if len(data) > room:
            self.over = True
            self.cancel.set()


@dataclass
class ExecOutcome:
    stdout: bytes  # empty when a sink took the output
    stderr: bytes
    status: ExecStatus | None  # None: the client-side deadline passed (or the call was cancelled) first
    elapsed: float
    cancelled: bool = False  # the cancel event was set: the stream was closed before the command ended


def run_exec(
    configuration: Any,
    *,
    namespace: str,
    pod: str,
    container: str,
    argv: Sequence[str],
    stdin: bytes | None = None,
    deadline_s: float | None = None,
    sink: OutputSink | None = None,
    cancel: threading.Event | None = None,
    while_running: Callable[[], None] | None = None,
) -> ExecOutcome:
    """Run ``argv`` in the pod's container through the exec API and collect its output and status.
    ``while_running`` is called at least every ``WAIT_SLICE_S`` seconds while the command runs (the SDK
    records the sandbox's use with it, so a long command does not count as idle).

    Without ``sink`` the output is collected whole (``process.execute``); with one, each piece goes to
    ``sink(channel, data)`` as it arrives and nothing is kept here. When ``cancel`` is set, the stream is
    closed within :data:`CANCEL_POLL_S` and the outcome says ``cancelled`` (closing the stream does not stop
    the command on every runtime: the caller stops it).

    Uses a private ApiClient, because ``kubernetes.stream`` swaps the request function of the client it
    is given for the duration of the call (not safe to share with concurrent plain API calls).
    """
    import kubernetes.client
    import kubernetes.stream

    k8s: Any = kubernetes.client
    stream: Any = kubernetes.stream.stream

    started = time.monotonic()
    api_client: Any = k8s.ApiClient(configuration)
    out = bytearray()
    err = bytearray()

    def collect(channel: int, data: bytes) -> None:
        (out if channel == STDOUT_CHANNEL else err).extend(data)

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
            frames = _FrameReader(ws.sock, sink if sink is not None else collect)
            while frames.open:
                if cancel is not None and cancel.is_set():
                    return ExecOutcome(bytes(out), bytes(err), None, time.monotonic() - started, True)
                remaining = None if deadline_s is None else deadline_s - (time.monotonic() - started)
                if remaining is not None and remaining <= 0:
                    return ExecOutcome(bytes(out), bytes(err), None, time.monotonic() - started)
                wait = 1.0 if remaining is None else min(remaining, WAIT_SLICE_S)
                if cancel is not None:
                    wait = min(wait, CANCEL_POLL_S)
                frames.read_one(wait)
                if while_running is not None:
                    while_running()
            status = parse_exec_status(bytes(frames.error) if frames.error else None)
            return ExecOutcome(bytes(out), bytes(err), status, time.monotonic() - started)
        finally:
            ws.close()
    finally:
        api_client.close()


class _FrameReader:
    """Reads the exec websocket one frame at a time (the kubernetes client's ``update`` reads every frame
    already available, which under a fast command is unbounded) and hands stdout and stderr to ``sink``."""

    def __init__(self, sock: Any, sink: OutputSink) -> None:
        self._sock = sock
        self._sink = sink
        self.open = True
        self.error = bytearray()

    def _readable(self, timeout: float) -> bool:
        raw = self._sock.sock
        if raw is None:
            return False
        if isinstance(raw, ssl.SSLSocket) and raw.pending():
            return True  # a frame already decrypted in the TLS layer is invisible to poll
        poller = select.poll()
        poller.register(raw, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))

    def read_one(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a frame and handle it."""
        from websocket import ABNF, WebSocketConnectionClosedException

        if not self._sock.connected:
            self.open = False
            return
        if not self._readable(timeout):
            return
        try:
            opcode, frame = self._sock.recv_data_frame(True)
        except WebSocketConnectionClosedException:
            self.open = False
            return
        if opcode == ABNF.OPCODE_CLOSE:
            self.open = False
            return
        if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not frame.data:
            return
        data = frame.data if isinstance(frame.data, bytes) else frame.data.encode("utf-8")
        channel = data[0]
        if channel in (STDOUT_CHANNEL, STDERR_CHANNEL):
            if len(data) > 1:
                self._sink(channel, data[1:])
        elif channel == ERROR_CHANNEL:
            room = _ERROR_CHANNEL_LIMIT - len(self.error)
            if room > 0:
                self.error += data[1 : 1 + room]
