"""Benchmark: the embedded API server stays linear as objects accumulate.

    python bench/emulator.py [--pods 1000] [--watchers 2]

Creates N pods (default 1,000) one by one through the real ``kubernetes`` client against a fresh embedded
API server (in a background thread of this process, so the figure includes the client's own cost) while
``--watchers`` watch streams follow the namespace, as an operator would. Prints the time per pod of the
first 100 (the baseline, measured in the same run) beside the last 100 and the whole run, with ratios.
Goal: the ratio of last-100 to first-100 at most 2 (no quadratic cost).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client, watch

from leap0.dev.apiserver import ServerThread


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=2, help="watch streams following the pods meanwhile")
    args = parser.parse_args()
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
        for i in range(args.pods):
            start = time.perf_counter()
            api.create_namespaced_pod(namespace, _pod(i))
            durations.append(time.perf_counter() - start)
        # A list and a selector query at the end: the store answers them from its indexes.
        start = time.perf_counter()
        listed = len(api.list_namespaced_pod(namespace, label_selector="shard=3").items)
        list_ms = (time.perf_counter() - start) * 1000
        stop.set()
        api.create_namespaced_pod(namespace, _pod(args.pods))  # wakes the watchers so they notice `stop`
    first = sum(durations[:100]) / 100 * 1000
    last = sum(durations[-100:]) / 100 * 1000
    whole = sum(durations) / len(durations) * 1000
    print(f"embedded API server: {args.pods} pods via the kubernetes client, {args.watchers} watchers")
    print(f"{'':24}{'ms/pod':>10}{'ratio to first 100':>22}")
    print(f"{'first 100 (baseline)':24}{first:10.2f}{1.0:22.2f}")
    print(f"{'last 100':24}{last:10.2f}{last / first:22.2f}")
    print(f"{f'all {args.pods}':24}{whole:10.2f}{whole / first:22.2f}")
    print(f"total {sum(durations):.2f} s; list with labelSelector ({listed} of {args.pods}) {list_ms:.1f} ms")
    print(f"goal: last 100 / first 100 <= 2 -> {'met' if last / first <= 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
