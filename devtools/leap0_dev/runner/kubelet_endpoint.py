"""The runner's side of the kubelet endpoint: ``exec`` and ``containerLogs`` for ``leap0-kubelet``.

kube-apiserver reaches the node's kubelet endpoint (``leap0-kubelet``, a Go program: TLS, SPDY and WebSocket,
see :mod:`.kubelet`); that program hands each request to this small HTTP server, on 127.0.0.1 with a bearer
token only it knows:

- ``GET /api/v1/namespaces/{ns}/pods/{pod}/exec``: the pods/exec WebSocket protocol (v5/v4.channel.k8s.io),
  answered by the emulator's :class:`~leap0_dev.apiserver.exec.ExecHandler` with :class:`.PodExecRunner`:
  the command runs in the container as the runner runs it (its environment, directory and cgroup);
- ``GET /containerLogs/{ns}/{pod}/{container}``: the container's output file, with ``tailLines``,
  ``limitBytes``, ``previous`` and ``follow`` (until the container stops or the client goes).

It runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiohttp import web

from leap0_dev import nodespec
from leap0_dev.apiserver.exec import ExecHandler

from .podexec import PodExecRunner

if TYPE_CHECKING:
    from .processes import Container
    from .watch import Runner

_BLOCK = 64 * 1024
_FOLLOW_POLL_S = 0.25


def _status(message: str, code: int) -> web.Response:
    return web.Response(
        status=code,
        text=json.dumps(nodespec.log_status_error(message, code)),
        content_type="application/json",
    )


def tail_start(path: Path, lines: int) -> int:
    """The offset where the last ``lines`` lines of the file start, reading it backwards a block at a time."""
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        position = size
        needed = lines
        while position > 0:
            read = min(_BLOCK, position)
            position -= read
            file.seek(position)
            found, index = nodespec.line_starts_back(file.read(read), needed, position + read == size)
            if index is not None:
                return position + index
            needed -= found
        return 0


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
        try:
            query = nodespec.parse_log_query(request.query)
        except ValueError as exc:
            return _status(str(exc), 400)
        found = self._container(namespace, pod, name)
        if isinstance(found, web.Response):
            return found
        container = found
        if query.previous and container.state.restart_count == 0:
            return _status(f'previous terminated container "{name}" in pod "{pod}" not found', 400)
        path = container.log_path
        offset = 0
        if query.tail_lines is not None and path.exists():
            offset = await asyncio.to_thread(tail_start, path, query.tail_lines)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        if not path.exists():  # spawning a container creates its log: nothing was written yet
            await response.write_eof()
            return response
        file = await asyncio.to_thread(open, path, "rb")
        try:
            file.seek(offset)
            await self._stream(response, file, query, container, (namespace, pod))
        except ConnectionError:
            return response  # the client went away
        finally:
            file.close()
        await response.write_eof()
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        file: IO[bytes],
        query: nodespec.LogQuery,
        container: Container,
        pod: tuple[str, str],
    ) -> None:
        """Copy the file from its position, at most ``limitBytes``; with ``follow``, what the container
        writes next too, until it stops (or its pod goes)."""
        budget = query.limit_bytes
        while budget is None or budget > 0:
            data = await asyncio.to_thread(file.read, _BLOCK if budget is None else min(_BLOCK, budget))
            if data:
                await response.write(data)
                budget = None if budget is None else budget - len(data)
                continue
            if not query.follow or self.runner.find(*pod) is None:
                return
            if container.process is None:  # it stopped: one more read takes what it wrote last
                data = await asyncio.to_thread(file.read, _BLOCK if budget is None else min(_BLOCK, budget))
                if not data:
                    return
                await response.write(data)
                budget = None if budget is None else budget - len(data)
                continue
            await asyncio.sleep(_FOLLOW_POLL_S)
