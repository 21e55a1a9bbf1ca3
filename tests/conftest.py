"""Shared fixtures. Plain helpers live in ``support.py``."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support import operator_process, subprocess_env

from leap0_dev.apiserver import ServerThread

if TYPE_CHECKING:
    from sdk_support import StandInKubelet

    from leap0_dev.apiserver.exec import LocalProcessRunner


@pytest.fixture
def child_env() -> dict[str, str]:
    return subprocess_env()


# --- The embedded API server (leap0_dev.apiserver) ---------------------------------------------------
@pytest.fixture(scope="session")
def apiserver() -> Iterator[ServerThread]:
    """One embedded API server for the session, with the CRDs of crds/ and a `default` namespace.

    ``.url``, ``.kubeconfig`` (Path) and ``.api_client()`` (an explicitly configured kubernetes ApiClient).
    Tests share it: use the ``namespace`` fixture to keep apart; ``fresh_apiserver`` is a pristine one.
    """
    with ServerThread() as server:
        yield server


@pytest.fixture
def fresh_apiserver() -> Iterator[ServerThread]:
    """A server of this test's own (nothing shared with other tests); slower than ``apiserver``."""
    with ServerThread() as server:
        yield server


@pytest.fixture
def namespace(apiserver: ServerThread) -> Iterator[str]:
    """A fresh, uniquely named namespace on the session server, deleted after the test."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    with apiserver.api_client() as api_client:
        api = client.CoreV1Api(api_client)
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        yield name
        with contextlib.suppress(client.ApiException):
            api.delete_namespace(name)


# --- The rest of a cluster, around the embedded API server ------------------------------------------
@pytest.fixture(scope="session")
def supervisor_binary() -> Path:
    """This checkout's leap0 supervisor for this machine (built once into the cache; Go is a dev tool)."""
    from leap0_dev.supervisor import SupervisorBuildError, build

    try:
        return build()
    except SupervisorBuildError as exc:
        pytest.fail(f"the leap0 supervisor cannot be built: {exc}")


@pytest.fixture(scope="session")
def exec_runner(apiserver: ServerThread, supervisor_binary: Path) -> Iterator[LocalProcessRunner]:
    """The emulator answers pods/exec with the kubelet's protocol, running commands as local processes; the
    supervisor of a sandbox pod (status.supervisor) is this checkout's, exporting to a port nothing serves."""
    import os

    from leap0_dev.apiserver.exec import ExecHandler, LocalProcessRunner

    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
    runner = LocalProcessRunner(env=env, supervisor=supervisor_binary)
    assert apiserver.server is not None
    previous = apiserver.server.exec_handler
    apiserver.server.exec_handler = ExecHandler(runner)
    yield runner
    apiserver.server.exec_handler = previous
    runner.cleanup()


@pytest.fixture
def operator(apiserver: ServerThread, namespace: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The real operator (a process) serving the test's namespace."""
    with operator_process(apiserver.kubeconfig, namespace, tmp_path / "operator.log") as process:
        yield process


@pytest.fixture
def kubelet(apiserver: ServerThread, namespace: str) -> Iterator[StandInKubelet]:
    """Plays the kubelet of the test's namespace: every new pod gets a running status."""
    from sdk_support import StandInKubelet

    stand_in = StandInKubelet(apiserver.api_client(), namespace).start()
    yield stand_in
    stand_in.stop()
