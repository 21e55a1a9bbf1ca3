"""Typed errors raised by the leap0 SDK. All derive from :class:`Leap0Error`.

This module imports nothing heavy, so ``except leap0.exceptions.Leap0Error`` costs nothing.
"""

from __future__ import annotations


class Leap0Error(Exception):
    """Base class of every error the SDK raises on purpose."""


class ConfigurationError(Leap0Error):
    """The local setup is incomplete: no cluster config, or ``otel_export`` without an endpoint."""


class ApiError(Leap0Error):
    """The Kubernetes API answered with an error the SDK has no more specific type for. ``kind`` and ``name``
    are what the answer was about when it says so (its Status ``details``: ``namespaces`` and ``agents`` for a
    namespace that does not exist)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        kind: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.kind = kind
        self.name = name


class ApiUnreachableError(ApiError, ConnectionError):
    """The Kubernetes API server gave no answer: the connection was refused, reset or timed out (``status``
    is None). The request may or may not have been carried out: a read or a delete can simply be called
    again."""


class SandboxValidationError(ApiError, ValueError):
    """The API rejected the request (HTTP 422): the message is the schema's own."""


class SandboxNotFoundError(ApiError, LookupError):
    """No Sandbox with that id exists in the namespace (or it was deleted while waiting for it)."""

    def __init__(self, sandbox_id: str, namespace: str, message: str | None = None) -> None:
        text = message or f"sandbox {sandbox_id!r} not found in namespace {namespace!r}"
        super().__init__(text, status=404)
        self.sandbox_id = sandbox_id
        self.namespace = namespace


class SandboxTimeoutError(Leap0Error, TimeoutError):
    """Waiting for a sandbox (to become Running) took longer than allowed. The sandbox is left in place."""

    def __init__(
        self,
        message: str,
        *,
        sandbox_id: str | None = None,
        phase: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sandbox_id = sandbox_id
        self.phase = phase
        self.reason = reason


class ProcessTimeoutError(SandboxTimeoutError):
    """A command run with ``process.execute(..., timeout=N)`` did not finish within N seconds."""

    def __init__(
        self, message: str, *, sandbox_id: str | None = None, stdout: str = "", stderr: str = ""
    ) -> None:
        super().__init__(message, sandbox_id=sandbox_id)
        self.stdout = stdout
        self.stderr = stderr


class SandboxFailedError(Leap0Error):
    """The sandbox went ``Failed`` (or ``Expired``) while waiting; carries the operator's reason."""

    def __init__(self, sandbox_id: str, phase: str, reason: str | None, message: str | None) -> None:
        text = f"sandbox {sandbox_id!r} is {phase}"
        if reason:
            text += f": {reason}"
        if message:
            text += f": {message}"
        super().__init__(text)
        self.sandbox_id = sandbox_id
        self.phase = phase
        self.reason = reason
        self.message = message


class SandboxNotRunningError(Leap0Error):
    """A tool call needs the sandbox's pod, but the sandbox has none (not started, failed or expired)."""


class ProcessError(Leap0Error):
    """The exec call itself failed (not the command: a command's non-zero exit is a normal result)."""


class FilesystemError(Leap0Error):
    """Reading or writing a file in the sandbox failed; carries the command's exit code and stderr."""

    def __init__(self, message: str, *, path: str, exit_code: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.exit_code = exit_code
        self.stderr = stderr


__all__ = [
    "ApiError",
    "ConfigurationError",
    "FilesystemError",
    "Leap0Error",
    "ProcessError",
    "ProcessTimeoutError",
    "SandboxFailedError",
    "SandboxNotFoundError",
    "SandboxNotRunningError",
    "SandboxTimeoutError",
    "SandboxValidationError",
]
