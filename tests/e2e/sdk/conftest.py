"""Fixtures of the SDK's end-to-end tests against the embedded API server.

``stand_in_operator`` plays the operator and kubelet for SDK-level tests: it watches the Sandboxes of a
namespace and, as the operator does, creates the pod and writes the status subresource (Running, or Failed
with a reason). The tests with the real operator live in test_sdk_with_operator.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sdk_support import StandInOperator, running_status

from leap0 import Leap0Client
from leap0_dev.apiserver import ServerThread
from leap0_dev.apiserver.exec import ExecHandler, LocalProcessRunner


@pytest.fixture(scope="session")
def exec_runner(apiserver: ServerThread) -> Iterator[LocalProcessRunner]:
    """The emulator answers pods/exec with the kubelet's protocol, running commands as local processes."""
    runner = LocalProcessRunner()
    assert apiserver.server is not None
    previous = apiserver.server.exec_handler
    apiserver.server.exec_handler = ExecHandler(runner)
    yield runner
    apiserver.server.exec_handler = previous
    runner.cleanup()


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
