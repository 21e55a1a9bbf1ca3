"""Benchmark: what an exec costs through kube-apiserver and the runner as its kubelet.

    python bench/kubelet_exec.py [--execs 30]

Runs the same pod (one container, a Python process that stays up) twice: on the real control plane, the
local runner its kubelet (``leap0 dev control-plane up --kubelet``: the client's WebSocket to kube-apiserver,
SPDY to leap0-kubelet over TLS, a WebSocket to the runner), and, as the baseline measured in the same run, on
the embedded API server with the runner plugged into its exec endpoint (one WebSocket hop, in process). Each
side runs N execs of ``echo`` with the ``kubernetes`` client's ``stream`` (the SDK's exec path) after two
warm-up execs, and prints the median and 90th percentile milliseconds and their ratio. The control plane is
built first when missing (``leap0 dev control-plane build``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client
from kubernetes.stream import stream

from leap0_dev.apiserver import ServerThread
from leap0_dev.apiserver.exec import ExecHandler
from leap0_dev.controlplane import ControlPlane, ensure_binaries
from leap0_dev.controlplane.node import LocalNode
from leap0_dev.nodespec import NodeOptions
from leap0_dev.runner import PodExecRunner, Runner, RunnerConfig

POD = {
    "metadata": {"name": "bench"},
    "spec": {
        "containers": [
            {"name": "app", "image": "python", "command": ["python3", "-c", "import time; time.sleep(3600)"]}
        ]
    },
}


def wait_running(core: client.CoreV1Api, namespace: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if core.read_namespaced_pod("bench", namespace).status.phase == "Running":
                return
        except client.ApiException:
            pass
        time.sleep(0.2)
    raise SystemExit("the pod did not run within 120 s")


def execs(api_client: Any, namespace: str, count: int) -> list[float]:
    core = client.CoreV1Api(api_client)
    times: list[float] = []
    for i in range(count + 2):
        started = time.perf_counter()
        out = stream(
            core.connect_get_namespaced_pod_exec,
            "bench",
            namespace,
            command=["echo", "hello"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        elapsed = (time.perf_counter() - started) * 1000
        if out.strip() != "hello":
            raise SystemExit(f"exec answered {out!r}")
        if i >= 2:  # two warm-up execs (connections, caches)
            times.append(elapsed)
    return times


def emulator(count: int, workdir: Path) -> list[float]:
    with ServerThread() as server:
        config = RunnerConfig(
            namespace="default", workdir=workdir / "emulator", cgroups=False, log=lambda _: None
        )
        with Runner(server.api_client(), config) as runner:
            assert server.server is not None
            server.server.exec_handler = ExecHandler(PodExecRunner(runner))
            core = client.CoreV1Api(server.api_client())
            core.create_namespaced_pod("default", POD)
            wait_running(core, "default")
            return execs(server.api_client(), "default", count)


def real(count: int, workdir: Path) -> list[float]:
    with ControlPlane(ensure_binaries(), data_dir=workdir / "control-plane") as plane:
        config = RunnerConfig(workdir=workdir / "real", cgroups=False, log=lambda _: None)
        with LocalNode(plane, NodeOptions(name="bench-node"), config), plane.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # the service account the pod needs (controller-manager)
                try:
                    core.read_namespaced_service_account("default", "default")
                    break
                except client.ApiException:
                    time.sleep(0.2)
            core.create_namespaced_pod("default", POD)
            wait_running(core, "default")
            return execs(api_client, "default", count)


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--execs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leap0-bench-") as tmp:
        base = summary(emulator(args.execs, Path(tmp)))
        through = summary(real(args.execs, Path(tmp)))
    print(f"exec of `echo hello` with the kubernetes client's stream, {args.execs} execs after 2 warm-up")
    print(f"{'':44} {'median ms':>10} {'p90 ms':>8}")
    print(f"{'embedded API server, runner in process (base)':44} {base[0]:10.1f} {base[1]:8.1f}")
    print(f"{'kube-apiserver -> leap0-kubelet -> runner':44} {through[0]:10.1f} {through[1]:8.1f}")
    print(f"ratio (median): {through[0] / base[0]:.2f}")


if __name__ == "__main__":
    main()
