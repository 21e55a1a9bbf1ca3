"""Benchmark: the operator's part of pausing and resuming sandboxes, 100 at once by default.

    python bench/pause_bench.py             # 100 persistent sandboxes, 20 s idle window
    python bench/pause_bench.py -n 300 --idle 10

Runs ``leap0 dev apiserver`` and ``leap0-operator`` (with ``--metrics-port``) as child processes, creates N
Sandboxes with a persistent workspace and an ``idleTimeout`` of an hour, plays the kubelet (every pod Running
from now), then measures, each time for all N at once, from a Sandbox's change (its PATCH answered) to the
phase the operator writes for it (seen on a watch):

- the baseline: ``spec.timeout`` edited, to the new ``expiresAt`` written (the operator's plainest reconcile
  with a status write: a watch event, a plan, one PATCH);
- pause: ``spec.paused: true``, to phase ``Paused`` written (the pod's DELETE, the status, its Event);
- resume: ``spec.paused: false``, to phase ``Pending``/``Resuming`` written (the claim POSTed again, 409 as it
  exists, and its owner read; the pod's POST, the status, its Event).

It prints p50 and p99 of each, their ratio to the baseline's, the operator's API writes per sandbox for each
(the emulator counts mutating requests by User-Agent: GET /leap0/stats), and the operator's writes during an
idle window in which the N Running sandboxes are used by nobody before their idleTimeout (goal 0: no timer
writes anything). The pause and resume histograms the operator serves are scraped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from operator_bench import (
    PODS,
    SANDBOXES,
    Client,
    child_env,
    embedded_apiserver,
    free_port,
    phase_is,
    running_status,
    scrape,
)

import leap0_contract as contract

NS = "bench-pause"
MERGE = "application/merge-patch+json"


def running_now(name: str) -> dict[str, Any]:
    """The kubelet's Running status with the start time now (idleness counts from a sandbox's start)."""
    body = running_status(name)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body["status"]["startTime"] = now
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in body["status"][key]:
            cs["state"] = {"running": {"startedAt": now}}
    return body


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def timed_change(
    client: Client, names: list[str], spec: dict[str, Any], done: Callable[[dict[str, Any], int], bool]
) -> tuple[list[float], int]:
    """PATCH ``spec`` into every Sandbox at once; seconds from each PATCH's answer to the watch showing
    ``done(sandbox, generation the PATCH made)``, and the operator's writes meanwhile (settled)."""
    changed: dict[str, tuple[float, int]] = {}
    seen: dict[str, float] = {}
    finished = asyncio.Event()
    path = SANDBOXES.format(ns=NS)
    pending: dict[str, dict[str, Any]] = {}

    def check(name: str, obj: dict[str, Any]) -> None:
        if name in changed and name not in seen and done(obj, changed[name][1]):
            seen[name] = time.monotonic()
            if len(seen) == len(names):
                finished.set()

    async def follow() -> None:
        timeout = aiohttp.ClientTimeout(total=600)
        async with client.session.get(client.url + path, params={"watch": "true"}, timeout=timeout) as rsp:
            async for line in rsp.content:
                if line.strip():
                    obj = json.loads(line)["object"]
                    name = obj["metadata"]["name"]
                    pending[name] = obj
                    check(name, obj)

    watching = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    before = await client.operator_mutations()

    async def change(name: str) -> None:
        answer = await client.request("PATCH", f"{path}/{name}", {"spec": spec}, MERGE)
        changed[name] = (time.monotonic(), int(answer["metadata"]["generation"]))
        if name in pending:  # the watch may have shown the result before the answer came back
            check(name, pending[name])

    await asyncio.gather(*(change(name) for name in names))
    await asyncio.wait_for(finished.wait(), 600)
    watching.cancel()
    writes = await client.settled_mutations() - before
    return [seen[n] - changed[n][0] for n in names], writes


def status_of(obj: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = obj.get("status") or {}
    return status


def observed(obj: dict[str, Any], generation: int) -> bool:
    return int(status_of(obj).get("observedGeneration") or 0) >= generation


async def bench(n: int, idle: float, url: str, metrics_url: str) -> dict[str, Any]:
    client = Client(url)
    burster = Client(url, 64)
    try:
        await client.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        names = [f"p{i}" for i in range(n)]
        bodies = [
            {
                "apiVersion": contract.API_VERSION,
                "kind": contract.SANDBOX_KIND,
                "metadata": {"name": name},
                "spec": {"workspace": {"persistent": True}, "idleTimeout": 3600, "timeout": 3600},
            }
            for name in names
        ]
        await client.create_all(SANDBOXES.format(ns=NS), bodies)
        await client.watch_until(PODS.format(ns=NS), n)

        async def kubelet() -> None:
            await asyncio.gather(
                *(
                    burster.request("PATCH", f"{PODS.format(ns=NS)}/{name}/status", running_now(name), MERGE)
                    for name in names
                )
            )

        await kubelet()
        await client.watch_until(SANDBOXES.format(ns=NS), n, phase_is(contract.PHASE_RUNNING))
        await client.settled_mutations()

        # Idle: Running, unused, well before their idleTimeout: nothing is written.
        before = await client.operator_mutations()
        await asyncio.sleep(idle)
        idle_writes = await client.operator_mutations() - before

        base, base_writes = await timed_change(
            client,
            names,
            {"timeout": 7200},
            lambda o, g: observed(o, g) and status_of(o).get("timeout") == 7200,
        )
        pause, pause_writes = await timed_change(
            client,
            names,
            {"paused": True},
            lambda o, g: observed(o, g) and status_of(o).get("phase") == contract.PHASE_PAUSED,
        )
        resume, resume_writes = await timed_change(
            client,
            names,
            {"paused": False},
            lambda o, g: observed(o, g) and status_of(o).get("reason") == contract.REASON_RESUMING,
        )
        await kubelet()
        await client.watch_until(SANDBOXES.format(ns=NS), n, phase_is(contract.PHASE_RUNNING))
        scraped = await asyncio.to_thread(scrape, metrics_url)
    finally:
        await client.close()
        await burster.close()
    return {
        "base": base,
        "pause": pause,
        "resume": resume,
        "writes": {"base": base_writes / n, "pause": pause_writes / n, "resume": resume_writes / n},
        "idle_writes": idle_writes,
        "pauses": scraped.get(f"{contract.OPERATOR_METRIC_PAUSE_DURATION}_count", float("nan")),
        "pause_sum": scraped.get(f"{contract.OPERATOR_METRIC_PAUSE_DURATION}_sum", float("nan")),
        "resumes": scraped.get(f"{contract.OPERATOR_METRIC_RESUME_DURATION}_count", float("nan")),
        "resume_sum": scraped.get(f"{contract.OPERATOR_METRIC_RESUME_DURATION}_sum", float("nan")),
        "paused_gauge": scraped.get(f"{contract.OPERATOR_METRIC_SANDBOXES}{{phase=Paused}}", float("nan")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--sandboxes", type=int, default=100)
    parser.add_argument("--idle", type=float, default=20.0, help="idle window in seconds (default 20)")
    args = parser.parse_args()
    metrics_port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="leap0-pause-bench-") as tmp,
        embedded_apiserver(Path(tmp)) as (api_url, kubeconfig, children),
        open(Path(tmp) / "operator.log", "wb") as log,
    ):
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "leap0_operator", "--standalone", "-n", NS,
                 "--metrics-port", str(metrics_port)],
                env=child_env(KUBECONFIG=str(kubeconfig)),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        figures = asyncio.run(
            bench(
                args.sandboxes,
                args.idle,
                api_url,
                f"http://127.0.0.1:{metrics_port}{contract.OPERATOR_METRICS_PATH}",
            )
        )

    n = args.sandboxes
    print(f"leap0 pause/resume benchmark: {n} sandboxes at once against the embedded API server")
    print(f"{'change -> phase written (s)':40}{'p50':>8}{'p99':>8}{'p50/base':>10}{'writes/sbx':>12}")
    base50 = statistics.median(figures["base"])
    for label, key in (
        ("baseline: spec.timeout -> expiresAt", "base"),
        ("pause: spec.paused -> Paused", "pause"),
        ("resume: !spec.paused -> Resuming", "resume"),
    ):
        values = figures[key]
        p50 = statistics.median(values)
        p99 = quantile(values, 0.99)
        print(f"{label:40}{p50:8.3f}{p99:8.3f}{p50 / base50:10.2f}{figures['writes'][key]:12.2f}")
    idle_label = f"operator writes, {args.idle:g} s idle (idleTimeout 1 h)"
    print(f"{idle_label:40}{figures['idle_writes']:8.0f}   goal 0")
    for label, key in (("pause", "pauses"), ("resume", "resumes")):
        count = figures[key]
        mean = figures[f"{label}_sum"] / count if count else float("nan")
        print(f"{f'scraped: {label} histogram count, mean (s)':40}{count:8.0f}{mean:8.3f}   {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
