"""``leap0 dev apiserver``: an in-memory Kubernetes API server with the leap0 CRDs, for development and tests.

- :class:`ApiServer` (aiohttp, async): ``await server.start(host, port)`` / ``await server.stop()``;
  hooks ``server.exec_handler`` and ``server.log_handler``.
- :class:`ServerThread`: the same in a background thread (``.url``, ``.kubeconfig``, ``.api_client()``).
- :func:`write_kubeconfig`: a kubeconfig kubectl, the kubernetes client and kopf accept.

See docs/emulator-fidelity.md for what it does and does not do.
"""

from __future__ import annotations

from .kubeconfig import write_kubeconfig
from .server import ApiServer, SubresourceHandler
from .threaded import ServerThread

__all__ = ["ApiServer", "ServerThread", "SubresourceHandler", "write_kubeconfig"]
