"""The runner's side of the kubelet endpoint: ``exec`` and ``containerLogs`` for ``leap0-kubelet``.

kube-apiserver reaches the node's kubelet endpoint (``leap0-kubelet``, a Go program: TLS, SPDY and WebSocket,
see :mod:`.kubelet`); that program hands each request to this small HTTP server, on 127.0.0.1 with a bearer
token only it knows:

- ``GET /api/v1/namespaces/{ns}/pods/{pod}/exec``: the pods/exec WebSocket protocol (v5/v4.channel.k8s.io),
  answered by the emulator's :class:`~leap0_dev.apiserver.exec.ExecHandler` with :class:`.PodExecRunner`:
  the command runs in the container as the runner runs it (its environment, directory and cgroup);
- ``GET /containerLogs/{ns}/{pod}/{container}``: the container's output, with the kubelet's options
  (``tailLines``, ``sinceSeconds``/``sinceTime``, ``timestamps``, ``limitBytes``, ``previous``, ``follow``:
  :mod:`.logs`).

It runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from aiohttp import web

from leap0_dev import nodespec
from leap0_dev.apiserver.exec import ExecHandler

from . import logs
from .podexec import PodExecRunner

if TYPE_CHECKING:
    from .processes import Container
    from .watch import Runner


def _status(message: str, code: int) -> web.Response:
    return web.Response(
        status=code,
        text=json.dumps(nodespec.log_status_error(message, code)),
        content_type="application/json",
    )


class KubeletEndpoint:
    """``start()`` gives the URL (``http://127.0.0.1:PORT``); every request must carry ``Bearer <token>``."""

    def __init__(self, runner: Runner, token: str) -> None:
        self.runner = runner
        self.token = token
        self.exec_handler = ExecHandler(PodExecRunner(runner))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="leap0-kubelet-endpoint", daemon=True
        )
        self._site_runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> str:
        self._thread.start()
        self.url = self._call(self._start())
        return self.url

    def stop(self) -> None:
        if self._site_runner is not None:
            self._call(self._site_runner.cleanup())
            self._site_runner = None
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(30)

    async def _start(self) -> str:
        app = web.Application(middlewares=[self._authorized])
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{pod}/exec", self._exec)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        self._site_runner = web.AppRunner(app, access_log=None)
        await self._site_runner.setup()
        site = web.TCPSite(self._site_runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._site_runner.addresses[0][:2]
        return f"http://{host}:{port}"

    @web.middleware
    async def _authorized(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return _status("Unauthorized", 401)
        return await handler(request)

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        return await self.exec_handler(
            request, request.match_info["namespace"], request.match_info["pod"], "exec"
        )

    def _container(self, namespace: str, pod: str, name: str) -> Container | web.Response:
        local = self.runner.find(namespace, pod)
        if local is None:
            return _status(f'pod "{pod}" in namespace "{namespace}" is not running on this node', 404)
        container = next((c for c in local.containers if c.spec["name"] == name), None)
        if container is None:
            return _status(f'container "{name}" in pod "{pod}" is not available', 404)
        return container

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, name = (request.match_info[k] for k in ("namespace", "pod", "container"))
        found = self._container(namespace, pod, name)
        if isinstance(found, web.Response):
            return found
        local = self.runner.find(namespace, pod)
        return await logs.serve(request, found, pod, lambda: self.runner.find(namespace, pod) is local)
