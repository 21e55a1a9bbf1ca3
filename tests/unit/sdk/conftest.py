"""Fixtures of the SDK's unit tests: a bare exec endpoint (the real websocket protocol, no API server)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from leap0_dev.apiserver.exec import ExecHandler, LocalProcessRunner


@dataclass
class ExecEndpoint:
    url: str
    runner: LocalProcessRunner
    handler: ExecHandler

    def configuration(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return cfg


@pytest.fixture(scope="module")
def exec_endpoint() -> Iterator[ExecEndpoint]:
    """``/api/v1/namespaces/{ns}/pods/{pod}/exec`` served by :class:`ExecHandler` from a background thread."""
    runner = LocalProcessRunner()
    handler = ExecHandler(runner)

    async def route(request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return await handler(request, m["ns"], m["pod"], "exec")

    app = web.Application()
    app.router.add_route("*", "/api/v1/namespaces/{ns}/pods/{pod}/exec", route)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app_runner = web.AppRunner(app, shutdown_timeout=1.0)

    async def start() -> str:
        await app_runner.setup()
        site = web.TCPSite(app_runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    url = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield ExecEndpoint(url, runner, handler)
    finally:
        asyncio.run_coroutine_threadsafe(app_runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        runner.cleanup()
