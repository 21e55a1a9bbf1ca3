"""Fixtures of the SDK's end-to-end tests against the embedded API server, and a bare exec endpoint.

``stand_in_operator`` plays the operator and kubelet for SDK-level tests: it watches the Sandboxes of a
namespace and, as the operator does, creates the pod and writes the status subresource (Running, or Failed
with a reason). The tests with the real operator live in test_sdk_with_operator.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from sdk_support import StandInOperator, running_status

from leap0 import Leap0Client
from leap0_dev.apiserver import ServerThread
from leap0_dev.apiserver.exec import ExecHandler, LocalProcessRunner


@pytest.fixture
def sdk(apiserver: ServerThread, namespace: str, exec_runner: LocalProcessRunner) -> Iterator[Leap0Client]:
    """A client on the test's namespace, with SDK telemetry off."""
    with Leap0Client(namespace=namespace, kubeconfig=apiserver.kubeconfig, sdk_otel_enabled=False) as sdk:
        yield sdk


@pytest.fixture
def stand_in_operator(
    apiserver: ServerThread,
) -> Iterator[Callable[..., StandInOperator]]:
    started: list[tuple[StandInOperator, threading.Thread]] = []

    def start(
        namespace: str, behaviour: Callable[[str], dict[str, Any] | None] = running_status, delay: float = 0.2
    ) -> StandInOperator:
        op = StandInOperator(apiserver.api_client(), namespace, behaviour, delay)
        thread = threading.Thread(target=op.run, daemon=True)
        thread.start()
        started.append((op, thread))
        time.sleep(0.1)  # let its watch start
        return op

    yield start
    for op, thread in started:
        op.stop()
        thread.join(5)


# --- a bare exec endpoint: the real websocket protocol with no API server (test_exec_protocol.py) ---------
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
