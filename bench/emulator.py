"""Benchmark: the embedded API server stays linear as objects accumulate.

    python bench/emulator.py [--pods 1000] [--watchers 2]
    python bench/emulator.py --operator 300

Creates N pods (default 1,000) one by one through the real ``kubernetes`` client against a fresh embedded
API server (in a background thread of this process, so the figure includes the client's own cost) while
``--watchers`` watch streams follow the namespace, as an operator would. Prints the time per pod of the
first 100 (the baseline, measured in the same run) beside the last 100 and the whole run, with ratios: wall
time (client included, sensitive to machine load) and the server thread's own CPU time. Goal: the ratio of
last-100 to first-100 at most 2 (no quadratic cost).

``--operator N`` instead runs ``leap0 dev apiserver`` as a process of its own with a minimal kopf
operator (one create handler writing the status) and creates N sandboxes in batches of 100, waiting for kopf
to handle each batch; it prints the emulator's CPU time per sandbox for the first batch beside the last one
(the scenario in which kmock 0.8 spent 229 s of CPU for 300 sandboxes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client, config, watch

from bench.chain import start_apiserver, stop_apiserver
from leap0_dev.apiserver import ServerThread


def _pod(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"bench-{i:05d}", "labels": {"app": "bench", "shard": str(i % 10)}},
        "spec": {
            "containers": [
                {"name": "main", "image": "python:3.12-slim", "env": [{"name": "I", "value": str(i)}]}
            ]
        },
    }


def _follow(server: ServerThread, namespace: str, seen: list[int], stop: threading.Event) -> None:
    api = client.CoreV1Api(server.api_client())
    w = watch.Watch()
    for _ in w.stream(api.list_namespaced_pod, namespace, timeout_seconds=600):
        seen[0] += 1
        if stop.is_set():
            w.stop()


OPERATOR = """
import kopf

@kopf.on.create("leap0.dev", "v1alpha1", "sandboxes")
def created(patch, **_):
    patch.status["phase"] = "Running"
"""
REPO = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _operator_run(total: int, batch: int = 100) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "operator.py"
        script.write_text(OPERATOR)
        server, kubeconfig = start_apiserver(Path(tmp), env)
        kopf_cmd = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", str(script)]
        operator = subprocess.Popen(
            kopf_cmd,
            env={**env, "KUBECONFIG": str(kubeconfig)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            custom = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
            running: set[str] = set()

            def follow() -> None:
                stream = watch.Watch().stream(
                    custom.list_namespaced_custom_object, "leap0.dev", "v1alpha1", "default", "sandboxes"
                )
                try:
                    for ev in stream:
                        if (ev["object"].get("status") or {}).get("phase") == "Running":
                            running.add(ev["object"]["metadata"]["name"])
                except Exception:  # the server stopped at the end of the run
                    return

            threading.Thread(target=follow, daemon=True).start()

            def create(name: str) -> None:
                body = {"apiVersion": "leap0.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name}}
                custom.create_namespaced_custom_object("leap0.dev", "v1alpha1", "default", "sandboxes", body)

            def wait_for(count: int) -> None:
                deadline = time.monotonic() + 300
                while len(running) < count:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"kopf handled only {len(running)} of {count} sandboxes in time")
                    time.sleep(0.02)

            create("warmup")  # kopf is up and watching once this one is handled
            wait_for(1)
            figures: list[tuple[float, float]] = []
            done = 1
            for start in range(0, total, batch):
                cpu0, wall0 = _cpu_seconds(server.pid), time.monotonic()
                for i in range(start, min(start + batch, total)):
                    create(f"sbx-{i:05d}")
                done += min(batch, total - start)
                wait_for(done)
                figures.append((_cpu_seconds(server.pid) - cpu0, time.monotonic() - wall0))
        finally:
            operator.terminate()
            operator.wait(30)
            stop_apiserver(server)
    first_cpu, last_cpu = figures[0][0] / batch * 1000, figures[-1][0] / batch * 1000
    cpu_total = sum(c for c, _ in figures)
    print(f"embedded API server with a kopf operator: {total} sandboxes in batches of {batch}")
    print(f"{'':28}{'emulator CPU ms/sandbox':>26}{'ratio':>8}")
    print(f"{'first batch (baseline)':28}{first_cpu:26.2f}{1.0:8.2f}")
    print(f"{'last batch':28}{last_cpu:26.2f}{last_cpu / max(first_cpu, 1e-9):8.2f}")
    print(f"emulator CPU in total {cpu_total:.2f} s, wall {sum(w for _, w in figures):.1f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=2, help="watch streams following the pods meanwhile")
    parser.add_argument(
        "--operator", type=int, metavar="N", help="instead: N sandboxes handled by a kopf operator"
    )
    args = parser.parse_args()
    if args.operator:
        return _operator_run(args.operator)
    if args.pods < 200:
        parser.error("--pods must be at least 200 (first 100 versus last 100)")
    with ServerThread() as server:
        api = client.CoreV1Api(server.api_client())
        namespace = "bench"
        api.create_namespace({"metadata": {"name": namespace}})
        stop = threading.Event()
        seen = [0]
        threads = [
            threading.Thread(target=_follow, args=(server, namespace, seen, stop), daemon=True)
            for _ in range(args.watchers)
        ]
        for t in threads:
            t.start()
        time.sleep(0.3)
        durations: list[float] = []
        cpu_marks = [server.cpu_time()]  # the server thread's CPU seconds after every 100 pods
        for i in range(args.pods):
            start = time.perf_counter()
            api.create_namespaced_pod(namespace, _pod(i))
            durations.append(time.perf_counter() - start)
            if (i + 1) % 100 == 0:
                cpu_marks.append(server.cpu_time())
        # A list and a selector query at the end: the store answers them from its indexes.
        start = time.perf_counter()
        listed = len(api.list_namespaced_pod(namespace, label_selector="shard=3").items)
        list_ms = (time.perf_counter() - start) * 1000
        stop.set()
        api.create_namespaced_pod(namespace, _pod(args.pods))  # wakes the watchers so they notice `stop`
    batches = len(cpu_marks) - 1
    wall_first = sum(durations[:100]) / 100 * 1000
    wall_last = sum(durations[-100:]) / 100 * 1000
    wall_all = sum(durations) / len(durations) * 1000
    cpu_first = (cpu_marks[1] - cpu_marks[0]) / 100 * 1000
    cpu_last = (cpu_marks[-1] - cpu_marks[-2]) / 100 * 1000
    cpu_all = (cpu_marks[-1] - cpu_marks[0]) / (batches * 100) * 1000
    print(f"embedded API server: {args.pods} pods via the kubernetes client, {args.watchers} watchers")
    print(f"{'':24}{'wall ms/pod':>12}{'ratio':>7}{'server CPU ms/pod':>20}{'ratio':>7}")
    for label, wall, cpu in (
        ("first 100 (baseline)", wall_first, cpu_first),
        ("last 100", wall_last, cpu_last),
        (f"all {args.pods}", wall_all, cpu_all),
    ):
        print(f"{label:24}{wall:12.2f}{wall / wall_first:7.2f}{cpu:20.2f}{cpu / cpu_first:7.2f}")
    print(f"total {sum(durations):.2f} s; list with labelSelector ({listed} of {args.pods}) {list_ms:.1f} ms")
    ratio = cpu_last / cpu_first
    print(
        f"goal: server CPU per pod, last 100 / first 100 <= 2 -> {ratio:.2f}, "
        f"{'met' if ratio <= 2 else 'NOT met'}"
    )
    print(
        "(wall time includes the client and whatever else the machine runs; server CPU is the emulator's own)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
