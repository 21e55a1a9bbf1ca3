"""leap0: Leap0-style sandboxes on Kubernetes, the Python SDK. Contract names live in ``leap0_contract``.

Importing ``leap0`` is cheap: the client (and the ``kubernetes`` library under it) loads on first use of
``leap0.Leap0Client``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leap0_contract import PACKAGE_VERSION

__version__ = PACKAGE_VERSION

if TYPE_CHECKING:
    from leap0.client import Leap0Client, SandboxesClient
    from leap0.exceptions import (
        ApiError,
        ApiUnreachableError,
        ConfigurationError,
        FilesystemError,
        Leap0Error,
        ProcessError,
        ProcessTimeoutError,
        SandboxFailedError,
        SandboxNotFoundError,
        SandboxNotRunningError,
        SandboxTimeoutError,
        SandboxValidationError,
    )
    from leap0.models import ProcessResult
    from leap0.sandbox import FilesystemClient, ProcessClient, Sandbox

_LAZY = {
    "Leap0Client": "leap0.client",
    "SandboxesClient": "leap0.client",
    "Sandbox": "leap0.sandbox",
    "ProcessClient": "leap0.sandbox",
    "FilesystemClient": "leap0.sandbox",
    "ProcessResult": "leap0.models",
    "ApiError": "leap0.exceptions",
    "ApiUnreachableError": "leap0.exceptions",
    "ConfigurationError": "leap0.exceptions",
    "FilesystemError": "leap0.exceptions",
    "Leap0Error": "leap0.exceptions",
    "ProcessError": "leap0.exceptions",
    "ProcessTimeoutError": "leap0.exceptions",
    "SandboxFailedError": "leap0.exceptions",
    "SandboxNotFoundError": "leap0.exceptions",
    "SandboxNotRunningError": "leap0.exceptions",
    "SandboxTimeoutError": "leap0.exceptions",
    "SandboxValidationError": "leap0.exceptions",
}

__all__ = [
    "ApiError",
    "ApiUnreachableError",
    "ConfigurationError",
    "FilesystemClient",
    "FilesystemError",
    "Leap0Client",
    "Leap0Error",
    "ProcessClient",
    "ProcessError",
    "ProcessResult",
    "ProcessTimeoutError",
    "Sandbox",
    "SandboxFailedError",
    "SandboxNotFoundError",
    "SandboxNotRunningError",
    "SandboxTimeoutError",
    "SandboxValidationError",
    "SandboxesClient",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'leap0' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
