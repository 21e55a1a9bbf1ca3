"""Run the embedded API server in a background thread with its own event loop (tests, benchmarks, scripts)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from leap0_dev.crds import load_crds

from .kubeconfig import write_kubeconfig
from .server import ApiServer

T = TypeVar("T")


async def _thread_time() -> float:
    return time.thread_time()


async def _cancel_leftovers() -> None:
    """Cancel what the server left running (handlers of clients that still hold a connection)."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ServerThread:
    """An :class:`ApiServer` serving from a daemon thread.

    ``url``, ``kubeconfig`` (a file written on start) and ``api_client()`` are what clients need;
    ``server`` is the :class:`ApiServer` itself, for hooks such as ``exec_handler``.
    """

    def __init__(
        self,
        crds: Iterable[dict[str, Any]] | None = None,
        *,
        kubeconfig: Path | None = None,
        port: int = 0,
        **options: Any,
    ) -> None:
        self._crds = list(load_crds() if crds is None else crds)
        self._options = options
        self._port = port
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if kubeconfig is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="leap0-apiserver-")
            kubeconfig = Path(self._tmp.name) / "kubeconfig"
        self.kubeconfig = kubeconfig
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="leap0-apiserver", daemon=True)
        self.server: ApiServer | None = None
        self.url = ""

    def start(self) -> ServerThread:
        self._thread.start()
        try:
            self.server = self.call(self._make())
            self.url = self.call(self.server.start("127.0.0.1", self._port))
            write_kubeconfig(self.kubeconfig, self.url)
        except BaseException:
            self.stop()  # e.g. the port is taken: leave no thread or loop behind
            raise
        return self

    async def _make(self) -> ApiServer:
        return ApiServer(self._crds, **self._options)

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def cpu_time(self) -> float:
        """CPU seconds the server's thread has used so far (for benchmarks)."""
        return float(self.call(_thread_time()))

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop())
            self.call(_cancel_leftovers())
            self.server = None
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` configured explicitly for this server (no global config)."""
        from kubernetes import client  # the dev extra has it; imported late to keep this module light

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"authorization": "Bearer leap0-dev-token"}
        return client.ApiClient(configuration)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
