"""Shared fixtures. Plain helpers live in ``support.py``."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support import operator_process, subprocess_env, wait_for

from leap0_dev.apiserver import ServerThread

if TYPE_CHECKING:
    from sdk_support import StandInKubelet

    from leap0_dev.apiserver.exec import LocalProcessRunner
    from leap0_dev.controlplane import ControlPlane
    from leap0_dev.controlplane.node import LocalNode


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


@pytest.fixture
def running_kubelet(apiserver: ServerThread, namespace: str) -> Iterator[StandInKubelet]:
    """Plays the kubelet of the test's namespace, each new pod Running from now (a resumed pod gets a start
    time of its own)."""
    from sdk_support import StandInKubelet, kubelet_running_now

    stand_in = StandInKubelet(apiserver.api_client(), namespace, kubelet_running_now).start()
    yield stand_in
    stand_in.stop()


# --- The real control plane (leap0_dev.controlplane; tests marked `realk8s`) --------------------------
_build_error: list[str] = []
_collector_error: list[str] = []


def pytest_itemcollected(item: pytest.Item) -> None:
    """Under pytest-xdist (scripts/test.sh runs two workers), every ``realk8s`` test goes to one worker, so
    the session starts one real control plane (and one kubelet Node) rather than one per worker. (Marked as
    each test is collected: xdist reads the groups in its own ``pytest_collection_modifyitems``.)"""
    if item.get_closest_marker("realk8s"):
        item.add_marker(pytest.mark.xdist_group("realk8s"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane's binaries before the first test when a ``realk8s`` test is selected (and the
    OpenTelemetry Collector when one uses ``otel_collector``): a cold build takes minutes, which no test's
    timeout covers (CI builds them before pytest; a warm cache makes this a look). A failure (no Go, say)
    fails those tests with its message."""
    if not any(item.get_closest_marker("realk8s") for item in session.items):
        return
    from leap0_dev.controlplane import BuildError, ensure_binaries
    from leap0_dev.controlplane.build import ensure_kubelet

    try:
        ensure_binaries()
        if any("kubelet_node" in getattr(item, "fixturenames", ()) for item in session.items):
            ensure_kubelet()  # leap0-kubelet, the kubelet endpoint of kubelet_node
    except BuildError as exc:
        _build_error.append(str(exc))
    if any("otel_collector" in getattr(item, "fixturenames", ()) for item in session.items):
        from leap0_dev.collector import ensure_collector

        try:
            ensure_collector()
        except BuildError as exc:
            _collector_error.append(str(exc))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One real control plane for the session: etcd, kube-apiserver, kube-controller-manager and
    kube-scheduler, built from source (docs/control-plane.md). ``.kubeconfig`` (the admin's), ``.url``,
    ``.api_client()``, ``.user_kubeconfig()``, ``.compact()``; its data and logs under pytest's temporary
    folder. Yielded once the controller-manager has made the ``default`` namespace's ServiceAccount."""
    from kubernetes import client

    from leap0_dev.controlplane import BuildError, ControlPlane, ensure_binaries

    if _build_error:
        pytest.fail(_build_error[0], pytrace=False)
    try:
        binaries = ensure_binaries()
    except BuildError as exc:
        pytest.fail(str(exc), pytrace=False)
    with ControlPlane(binaries, data_dir=tmp_path_factory.mktemp("control-plane")) as plane:
        with plane.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            wait_for(
                lambda: core.read_namespaced_service_account("default", "default"),
                timeout=120,
                what="the controller-manager to create the default ServiceAccount",
                interval=0.5,
                ignore=(client.ApiException,),
            )
        yield plane


@pytest.fixture
def k8s_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh, uniquely named namespace on the real control plane, deleted after the test; yielded once the
    controller-manager has made its ``default`` ServiceAccount (pods and tokens need it; a busy
    controller-manager takes a moment)."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    with control_plane.api_client() as api_client:
        api = client.CoreV1Api(api_client)
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        wait_for(
            lambda: api.read_namespaced_service_account("default", name),
            timeout=60,
            what=f"the default ServiceAccount of {name}",
            interval=0.2,
            ignore=(client.ApiException,),
        )
        yield name
        with contextlib.suppress(client.ApiException):
            api.delete_namespace(name)


@pytest.fixture(scope="session")
def control_plane_crds(control_plane: ControlPlane) -> subprocess.CompletedProcess[str]:
    """The CRDs of crds/ applied server-side to the real control plane (as a platform team would:
    ``kubectl apply --server-side -f crds/``) and Established. Returns kubectl's result: its stderr holds
    any warning the API server sent (CEL cost, schema), which tests/e2e/controlplane checks is empty."""
    from support import REPO, kubectl

    result = kubectl(control_plane.kubeconfig, "apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(
        control_plane.kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/sandboxes.leap0.dev",
        "crd/sandboxtemplates.leap0.dev",
    )
    return result


# The session's node: 7 CPUs and 16 GiB, whatever the machine (the runner holds pods to their limits, not
# their requests), so several sandboxes run at once (those of earlier tests may still be stopping: their
# grace period) and one of 8 vCPUs, the largest, is unschedulable.
KUBELET_NODE = "leap0-test-node"
KUBELET_NODE_CPU = "7"


@pytest.fixture(scope="session")
def kubelet_node(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, supervisor_binary: Path
) -> Iterator[LocalNode]:
    """This machine as the one Node of the session's real control plane, the local runner its kubelet
    (``leap0 dev control-plane up --kubelet``): it runs the pods the scheduler binds to it and serves exec and
    logs through the API server. Yielded once the Node is Ready and the node lifecycle controller has lifted
    its ``not-ready`` taint (the scheduler places pods). Sandbox pods get this checkout's supervisor (sandbox
    logs), as the sidecar image's copy."""
    from kubernetes import client

    from leap0_dev.controlplane.node import LocalNode
    from leap0_dev.nodespec import NodeOptions
    from leap0_dev.runner import RunnerConfig

    config = RunnerConfig(workdir=tmp_path_factory.mktemp("kubelet-pods"), supervisor=supervisor_binary)
    options = NodeOptions(name=KUBELET_NODE, cpu=KUBELET_NODE_CPU, memory="16Gi")
    with LocalNode(control_plane, options, config) as node, control_plane.api_client() as api_client:
        core = client.CoreV1Api(api_client)

        def schedulable() -> bool:
            found = core.read_node(KUBELET_NODE)
            ready = any(c.type == "Ready" and c.status == "True" for c in found.status.conditions or [])
            return ready and not found.spec.taints

        wait_for(schedulable, timeout=60, what="the node Ready and untainted", interval=0.5)
        yield node


@pytest.fixture(scope="session")
def otel_collector() -> Path:
    """The OpenTelemetry Collector of devtools/otelcol (``leap0 dev collector build``: the OTLP receiver, the
    oidc authenticator, the resource processor, the otlphttp exporter), built by the Collector's builder
    before the first test that needs it (a missing Go fails those tests, never skips them)."""
    from leap0_dev.collector import ensure_collector
    from leap0_dev.controlplane import BuildError

    if _collector_error:
        pytest.fail(_collector_error[0], pytrace=False)
    try:
        return ensure_collector()
    except BuildError as exc:
        pytest.fail(str(exc), pytrace=False)
