"""``Sandbox`` objects and their tool calls (``sandbox.process``, ``sandbox.filesystem``)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

import leap0_contract as c
from leap0._exec import (
    CLIENT_GRACE_S,
    TIMEOUT_EXIT_CODES,
    ExecOutcome,
    LimitSink,
    OutputSink,
    build_exec_argv,
    run_exec,
    supervised_argv,
    supervisor_exec_error,
)
from leap0._redact import redact
from leap0.exceptions import (
    FilesystemError,
    ProcessError,
    ProcessTimeoutError,
    SandboxNotRunningError,
)
from leap0.models import ProcessResult, SandboxData, sandbox_fields

if TYPE_CHECKING:
    from leap0.client import Leap0Client

# Writes go through stdin to ``head -c N``, which stops after exactly N bytes: no end-of-input signal is
# needed, so it works on the v4 channel protocol (which cannot half-close stdin) as well as on v5.
_WRITE_SCRIPT = 'd=$(dirname -- "$1") && mkdir -p -- "$d" && head -c "$2" > "$1"'


class Sandbox(SandboxData):
    """One sandbox: the Sandbox object's fields plus the calls that act on it.

    ``id`` is the Sandbox's ``metadata.name``. Status fields (``phase``, ``reason``, ``message``,
    ``pod_name``, ``pod_ip``, ``started_at``, ``expires_at``) are as of the last read; ``refresh()`` rereads.
    """

    _client: Leap0Client | None = PrivateAttr(default=None)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any], client: Leap0Client | None = None) -> Sandbox:
        sandbox = cls.model_validate(sandbox_fields(obj))
        sandbox._client = client
        return sandbox

    def _bound(self) -> Leap0Client:
        if self._client is None:
            raise RuntimeError("this Sandbox is not bound to a Leap0Client")
        return self._client

    def _update_from(self, other: SandboxData) -> None:
        for field in SandboxData.model_fields:
            setattr(self, field, getattr(other, field))

    def refresh(self) -> Sandbox:
        """Reread the Sandbox from the API (updates this object in place and returns it)."""
        self._update_from(self._bound().sandboxes.get(self.id))
        return self

    def delete(self) -> None:
        """Delete the sandbox (its pod and its OTLP Secret go with it, through owner references)."""
        self._bound().sandboxes.delete(self.id)

    def set_timeout(self, timeout: int) -> Sandbox:
        """Set the sandbox's lifetime to ``timeout`` seconds counted from its creation, or from its last
        resume (``spec.timeout``)."""
        self._update_from(self._bound().sandboxes.set_timeout(self.id, timeout))
        return self

    def pause(self, *, wait: bool = True, wait_timeout: float | None = None) -> Sandbox:
        """Pause the sandbox: its processes stop, its persistent workspace is kept
        (``client.sandboxes.pause``)."""
        kwargs = {} if wait_timeout is None else {"wait_timeout": wait_timeout}
        self._update_from(self._bound().sandboxes.pause(self.id, wait=wait, **kwargs))
        return self

    def resume(self, *, wait: bool = True, wait_timeout: float | None = None) -> Sandbox:
        """Resume the paused sandbox on its workspace (``client.sandboxes.resume``)."""
        kwargs = {} if wait_timeout is None else {"wait_timeout": wait_timeout}
        self._update_from(self._bound().sandboxes.resume(self.id, wait=wait, **kwargs))
        return self

    @property
    def process(self) -> ProcessClient:
        return ProcessClient(self)

    @property
    def filesystem(self) -> FilesystemClient:
        return FilesystemClient(self)

    def _pod(self) -> str:
        """The name of the sandbox's running pod, rereading the Sandbox once if the status lacks it; a paused
        sandbox is resumed first when the client's ``auto_resume`` is on."""
        if not self.pod_name or self.phase != c.PHASE_RUNNING or self.paused:
            self.refresh()
        if self.is_paused:
            client = self._bound()
            if not client.auto_resume:
                raise SandboxNotRunningError(
                    f"sandbox {self.id!r} is paused: call sandbox.resume() first, or create the client with "
                    "auto_resume=True"
                )
            self._update_from(client.sandboxes.resume(self.id))
        if self.phase in c.TERMINAL_PHASES or not self.pod_name:
            detail = f"phase {self.phase or 'unknown'}"
            if self.reason:
                detail += f", {self.reason}"
            raise SandboxNotRunningError(f"sandbox {self.id!r} has no running pod ({detail})")
        return self.pod_name

    def _exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        deadline_s: float | None = None,
        sink: OutputSink | None = None,
        cancel: threading.Event | None = None,
        supervise: bool = False,
        traceparent: str | None = None,
    ) -> ExecOutcome:
        """Run ``argv`` in the sandbox container; ``supervise``: through its supervisor when its pod has one
        (``status.supervisor``), so the output also becomes log records of the caller's trace."""
        from kubernetes.client.exceptions import ApiException

        client = self._bound()
        pod = self._pod()
        client._record_use(self)
        if supervise and self.supervisor:
            argv = supervised_argv(argv, self.supervisor, traceparent)
        try:
            return run_exec(
                client._configuration,
                namespace=self.namespace,
                pod=pod,
                container=c.SANDBOX_CONTAINER,
                argv=argv,
                stdin=stdin,
                deadline_s=deadline_s,
                sink=sink,
                cancel=cancel,
                while_running=lambda: client._record_use(self),
            )
        except ApiException as exc:
            # the reason may quote a URL: its query string holds the command (and the env given to it)
            raise ProcessError(
                f"exec in sandbox {self.id!r} (pod {pod}) failed: {redact(str(exc.reason))}"
            ) from exc

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, namespace={self.namespace!r}, phase={self.phase!r})"


class ProcessClient:
    """Run commands in the sandbox's ``sandbox`` container through the Kubernetes exec API."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def execute(
        self,
        command: str | Sequence[str],
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ProcessResult:
        """Run ``command`` and wait for it: a string runs under ``/bin/sh -c``, a list is run as an argv.

        Returns exit code, stdout and stderr (a non-zero exit is a result, not an error). With ``timeout``
        (seconds) the command is stopped when it runs longer and ``ProcessTimeoutError`` is raised.
        """
        return self._execute(command, cwd=cwd, env=env, timeout=timeout)

    def _execute(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        sink: OutputSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ProcessResult:
        """``execute``, streaming: with ``sink``, each piece of output goes to ``sink(channel, bytes)`` as it
        arrives (1 stdout, 2 stderr) and the result's ``stdout``/``stderr`` are empty; when ``cancel`` is
        set, reading stops and ``ProcessError`` says the call was cancelled (the caller stops the command).
        For callers that must bound memory whatever a command prints (the MCP server)."""
        sandbox = self._sandbox
        with sandbox._bound()._telemetry.operation(c.SDK_OP_PROCESS_EXECUTE, sandbox.id) as op:
            argv = build_exec_argv(command, cwd=cwd, env=env, timeout=timeout)
            deadline = None if timeout is None else timeout + CLIENT_GRACE_S
            outcome = sandbox._exec(
                argv,
                deadline_s=deadline,
                sink=sink,
                cancel=cancel,
                supervise=True,
                traceparent=op.traceparent(),
            )
            if outcome.cancelled:
                raise ProcessError(f"command in sandbox {sandbox.id!r} was cancelled")
            stdout = outcome.stdout.decode("utf-8", errors="replace")
            stderr = outcome.stderr.decode("utf-8", errors="replace")
            timed_out = outcome.status is None or (
                timeout is not None
                and outcome.status.exit_code in TIMEOUT_EXIT_CODES
                and outcome.elapsed >= timeout
            )
            if timed_out:
                raise ProcessTimeoutError(
                    f"command in sandbox {sandbox.id!r} did not finish within {timeout:g} s",
                    sandbox_id=sandbox.id,
                    stdout=stdout,
                    stderr=stderr,
                )
            assert outcome.status is not None
            if outcome.status.exit_code is None:
                raise ProcessError(f"exec in sandbox {sandbox.id!r} failed: {outcome.status.error}")
            cannot_start = supervisor_exec_error(outcome.status.exit_code, outcome.stdout, outcome.stderr)
            if cannot_start is not None:  # as an exec of a missing program fails without the supervisor
                raise ProcessError(f"exec in sandbox {sandbox.id!r} failed: {cannot_start}")
            return ProcessResult(exit_code=outcome.status.exit_code, stdout=stdout, stderr=stderr)


class FilesystemClient:
    """Read and write files in the sandbox, built on the exec API (``cat`` and ``head -c``)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def write(self, path: str, data: str | bytes, *, encoding: str = "utf-8") -> None:
        """Write ``data`` to ``path`` (parents created, file replaced); ``str`` is encoded."""
        payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
        sandbox = self._sandbox
        with sandbox._bound()._telemetry.operation(c.SDK_OP_FILESYSTEM_WRITE, sandbox.id) as op:
            op.set_attribute("leap0.filesystem.bytes", len(payload))
            argv = ["/bin/sh", "-c", _WRITE_SCRIPT, "leap0-write", path, str(len(payload))]
            outcome = sandbox._exec(argv, stdin=payload)
            self._check(outcome, path, "write")

    def read(self, path: str) -> bytes:
        """The bytes of the file at ``path``."""
        data = self._read(path)
        assert data is not None
        return data

    def _read(
        self, path: str, *, limit: int | None = None, cancel: threading.Event | None = None
    ) -> bytes | None:
        """``read``, bounded: with ``limit``, None when the file has more than ``limit`` bytes. At most
        ``limit + 1`` bytes are asked for (``head -c``) and kept, whatever the sandbox sends back (its code,
        ``head`` included, is not trusted), so the memory is bounded (the MCP server's read_file). Setting
        ``cancel`` stops the reading (``FilesystemError``)."""
        sandbox = self._sandbox
        with sandbox._bound()._telemetry.operation(c.SDK_OP_FILESYSTEM_READ, sandbox.id) as op:
            if limit is None:
                outcome = sandbox._exec(["cat", "--", path])
                data = outcome.stdout
            else:
                cancel = cancel if cancel is not None else threading.Event()
                sink = LimitSink(limit, cancel)
                argv = ["head", "-c", str(limit + 1), "--", path]
                outcome = sandbox._exec(argv, sink=sink, cancel=cancel)
                if sink.over:
                    return None
                stderr = bytes(sink.stderr.head + sink.stderr.tail)
                outcome = dataclasses.replace(outcome, stderr=stderr)
                data = bytes(sink.stdout)
            self._check(outcome, path, "read")
            op.set_attribute("leap0.filesystem.bytes", len(data))
            return data

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    # The hosted Leap0 SDK's spellings, so code written for it runs unchanged.
    def write_file(self, *, path: str, content: str, encoding: str = "utf-8") -> None:
        self.write(path, content, encoding=encoding)

    def write_bytes(self, *, path: str, content: bytes) -> None:
        self.write(path, content)

    def read_file(self, *, path: str, encoding: str = "utf-8") -> str:
        return self.read_text(path, encoding)

    def read_bytes(self, *, path: str) -> bytes:
        return self.read(path)

    def _check(self, outcome: ExecOutcome, path: str, verb: str) -> None:
        if outcome.status is None:
            raise FilesystemError(f"{verb} {path!r}: the exec stream did not finish", path=path)
        stderr = outcome.stderr.decode("utf-8", errors="replace").strip()
        if outcome.status.exit_code is None:
            raise FilesystemError(f"{verb} {path!r} failed: {outcome.status.error}", path=path, stderr=stderr)
        if outcome.status.exit_code != 0:
            raise FilesystemError(
                f"{verb} {path!r} failed (exit code {outcome.status.exit_code}): {stderr}",
                path=path,
                exit_code=outcome.status.exit_code,
                stderr=stderr,
            )
