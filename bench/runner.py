"""Benchmark: what the local pod runner adds to starting a pod's processes.

    python bench/runner.py [--pods 20]

Creates N sandbox-shaped pods at once (a ``telemetry`` native sidecar and a ``sandbox`` container, both short
Python commands that stay up) through the API of a fresh embedded API server, with the local runner running
them, and measures the seconds until every pod reports ``Running`` with both containers running. Beside it, in
the same run, the floor: the same 2N processes spawned directly with ``subprocess`` and waited for until each
has started its interpreter (the same readiness signal: a file it writes). Prints both, their ratio, and the
runner's per-pod status writes. Goal: the runner's bookkeeping (watch, env resolution, status writes) costs at
most a few times the processes themselves; Python start-up dominates both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client

from leap0_dev.apiserver import ServerThread
from leap0_dev.runner import Runner, RunnerConfig

# Each process writes a file once its interpreter runs, then waits to be stopped.
STAY = "import os, pathlib, time; pathlib.Path(os.environ['MARK']).touch(); time.sleep(600)"


def pod(name: str, marks: Path) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "telemetry",
                    "image": "sidecar",
                    "restartPolicy": "Always",
                    "env": [{"name": "MARK", "value": str(marks / f"{name}-telemetry")}],
                },
            ],
            "containers": [
                {
                    "name": "sandbox",
                    "image": "python:3.12-slim",
                    "command": ["python", "-c", STAY],
                    "env": [{"name": "MARK", "value": str(marks / f"{name}-sandbox")}],
                    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                }
            ],
        },
    }


def with_runner(n: int, work: Path) -> tuple[float, float, int]:
    marks = work / "marks"
    marks.mkdir()
    with ServerThread() as server, server.api_client() as api_client:
        assert server.server is not None
        core = client.CoreV1Api(api_client)
        config = RunnerConfig(
            otlp_grpc_port=0,
            otlp_http_port=0,
            health_port=0,
            workdir=work / "pods",
            cgroups=False,
            max_grace_seconds=1,
            sidecar_argv=[sys.executable, "-c", STAY],
            namespace="default",
            log=lambda _: None,
        )
        with Runner(server.api_client(), config):
            time.sleep(0.5)  # the runner's watch is established
            before = server.server.mutations.copy()
            start = time.perf_counter()
            for i in range(n):
                core.create_namespaced_pod("default", pod(f"p{i}", marks))
            while True:
                pods = core.list_namespaced_pod("default").items
                running = [
                    p
                    for p in pods
                    if p.status
                    and p.status.phase == "Running"
                    and all(c.state.running for c in (p.status.container_statuses or []))
                ]
                if len(running) == n:
                    break
                time.sleep(0.05)
            reported = time.perf_counter() - start
            while len(list(marks.iterdir())) < 2 * n:
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
            writes = sum((server.server.mutations - before).values())
            core.delete_collection_namespaced_pod("default")
            time.sleep(1.5)
    return reported, elapsed, writes


def floor(n: int, work: Path) -> float:
    import subprocess

    marks = work / "floor"
    marks.mkdir()
    start = time.perf_counter()
    processes = [
        subprocess.Popen([sys.executable, "-c", STAY], env={"MARK": str(marks / f"{i}")})
        for i in range(2 * n)
    ]
    while len(list(marks.iterdir())) < 2 * n:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    for process in processes:
        process.kill()
        process.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=20)
    n = parser.parse_args().pods
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = floor(n, work)
        reported, runner, writes = with_runner(n, work)
    print(f"pods: {n} (2 processes each)")
    print(f"runner: {runner:.2f} s until every process runs its code ({reported:.2f} s until all Running)")
    print(f"floor:  {base:.2f} s for the {2 * n} processes spawned directly")
    print(f"ratio:  {runner / base:.2f}")
    print(f"API writes while starting: {writes} ({writes / n:.1f} per pod, the pod creates included)")


if __name__ == "__main__":
    main()
