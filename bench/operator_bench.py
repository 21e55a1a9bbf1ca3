"""Benchmark: the operator creating pods for N Sandboxes, beside the raw floor of creating N pods directly.

    python bench/operator_bench.py                   # 1,000 sandboxes, 60 s idle window
    python bench/operator_bench.py -n 10000 --idle 10  # 10,000 sandboxes (memory at scale)
    python bench/operator_bench.py -n 200 --idle 10  # a quicker look

(Not ``bench/operator.py``: run as a script, that name would shadow the standard library's ``operator``.)

Runs ``leap0 dev apiserver`` and ``leap0-operator`` as child processes, then prints side by side: seconds
until all N pods exist (operator vs. the same client POSTing N equivalent pods itself) and their ratio;
mutating API calls by the operator per Sandbox until all are Pending, and after a played kubelet made them
Running (the emulator counts mutations by User-Agent at GET /leap0/stats; kopf's is ``kopf/...``; until
Pending: the Sandbox's NetworkPolicy, its pod and one status write, against the floor's NetworkPolicy and pod
POSTed directly; the Sandboxes use the default policy, Internet); writes
by the operator during an idle window once all are Running; and the operator's peak RSS (VmHWM), once all
are Pending and again after the burst: every pod turned Running by ``--burst-concurrency`` PATCHes in flight
(default 64), the event rate that used to decide the operator's peak memory.

The operator serves its Prometheus metrics (``--metrics-port``) and is scraped once at the end, so their cost
is inside the figures; ``--metrics-off`` runs it without them (the baseline of that cost).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "operator")]

import leap0_contract as contract  # noqa: E402
from leap0_operator.config import OperatorConfig  # noqa: E402
from leap0_operator.network import build_network_policy  # noqa: E402
from leap0_operator.pod import build_pod  # noqa: E402
from leap0_operator.resolve import resolve  # noqa: E402

CONCURRENCY = 16
# --profile: the operator under cProfile timed by CPU time (the machine is shared: wall time would charge the
# operator for the moments it waits to be scheduled).
PROFILED = (
    "import cProfile, runpy, sys, time\n"
    "out, sys.argv = sys.argv[1], ['leap0_operator', *sys.argv[2:]]\n"
    "profile = cProfile.Profile(time.process_time)\n"
    "try:\n"
    "    profile.runcall(runpy.run_module, 'leap0_operator', run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    profile.dump_stats(out)\n"
)
SANDBOXES = f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{{ns}}/{contract.SANDBOX_PLURAL}"
PODS = "/api/v1/namespaces/{ns}/pods"
NETWORK_POLICIES = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "operator"), str(REPO / "sidecar")])
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def embedded_apiserver(folder: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    """``python -m leap0_dev.apiserver`` on a free port, its kubeconfig written to ``folder``; once it
    answers: its URL, the kubeconfig, and the list of the benchmark's child processes (append the others),
    all stopped on the way out, the last started first."""
    kubeconfig = folder / "kubeconfig"
    port = free_port()
    apiserver = subprocess.Popen(
        [sys.executable, "-m", "leap0_dev.apiserver", "--port", str(port), "--kubeconfig", str(kubeconfig)],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children = [apiserver]
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            if time.monotonic() > deadline or apiserver.poll() is not None:
                raise RuntimeError("the embedded API server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", kubeconfig, children
    finally:
        for child in reversed(children):
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmHWM") -> float:
    """VmHWM: peak resident set size; VmRSS: current."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    """The same client for the floor and for the operator run: aiohttp, CONCURRENCY requests in flight."""

    def __init__(self, url: str, concurrency: int = CONCURRENCY) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            headers={"User-Agent": "bench/1"}, connector=aiohttp.TCPConnector(limit=max(100, concurrency))
        )
        self.gate = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Content-Type": content_type} if content_type else None
        async with (
            self.gate,
            self.session.request(method, self.url + path, json=body, headers=headers) as rsp,
        ):
            data = await rsp.json()
            if rsp.status >= 400:
                raise RuntimeError(f"{method} {path}: {rsp.status} {data}")
            return data

    async def create_all(self, path: str, bodies: list[dict[str, Any]]) -> None:
        await asyncio.gather(*(self.request("POST", path, body) for body in bodies))

    async def count(self, path: str, predicate: Any = None) -> int:
        items = (await self.request("GET", path))["items"]
        return sum(1 for item in items if predicate is None or predicate(item))

    async def wait_count(self, path: str, n: int, predicate: Any = None, limit_s: float = 600) -> None:
        deadline = time.monotonic() + limit_s
        while await self.count(path, predicate) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {n} at {path}")
            await asyncio.sleep(0.1)

    async def watch_until(self, path: str, n: int, predicate: Any = None, limit_s: float = 600) -> None:
        """Follow a watch until ``n`` objects satisfy ``predicate`` (cheaper for the server than listing)."""
        matching: set[str] = set()
        timeout = aiohttp.ClientTimeout(total=limit_s)
        async with self.session.get(self.url + path, params={"watch": "true"}, timeout=timeout) as rsp:
            async for line in rsp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                name = event["object"]["metadata"]["name"]
                if event["type"] != "DELETED" and (predicate is None or predicate(event["object"])):
                    matching.add(name)
                else:
                    matching.discard(name)
                if len(matching) >= n:
                    return
        raise RuntimeError(f"the watch on {path} ended before {n} objects matched")

    async def operator_mutations(self) -> int:
        stats = await self.request("GET", "/leap0/stats")
        return int(stats["mutations"].get("kopf", 0))

    async def settled_mutations(self, quiet_s: float = 1.0) -> int:
        """The operator's mutation count once it stopped moving for ``quiet_s`` (an Event is posted just
        after the status write the bench waits for, so the last ones land a moment later)."""
        last = await self.operator_mutations()
        while True:
            await asyncio.sleep(quiet_s)
            now = await self.operator_mutations()
            if now == last:
                return now
            last = now


def running_status(name: str) -> dict[str, Any]:
    started = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    return {
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{"name": "telemetry", "ready": True, "state": started}],
            "containerStatuses": [{"name": "sandbox", "ready": True, "state": started}],
        }
    }


def phase_is(phase: str) -> Any:
    return lambda item: (item.get("status") or {}).get("phase") == phase


def scrape(url: str) -> dict[str, float]:
    """The operator's /metrics: sample name (with its labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def bench(
    n: int, idle: float, url: str, start_operator: Any, burst: int, metrics_url: str | None
) -> dict[str, float]:
    client = Client(url)
    burster = Client(url, burst)
    try:
        for ns in ("bench-raw", "bench-op"):
            await client.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})

        # The floor: the same client creating N equivalent NetworkPolicies and pods itself.
        config = OperatorConfig()
        owners = [
            {
                "apiVersion": contract.API_VERSION,
                "kind": contract.SANDBOX_KIND,
                "metadata": {"name": f"s{i}", "namespace": "bench-raw", "uid": f"uid-{i}"},
            }
            for i in range(n)
        ]
        effective = resolve({}, None, config)
        pods = [build_pod(owner=o, effective=effective, org_id="x", config=config) for o in owners]
        policies = [
            p
            for o in owners
            if (p := build_network_policy(owner=o, network=effective.network, settings=config.network))
        ]
        for obj in [
            *pods,
            *policies,
        ]:  # no owner here (the emulator would collect objects whose owner is gone)
            del obj["metadata"]["ownerReferences"]
        watching = asyncio.create_task(client.watch_until(PODS.format(ns="bench-raw"), n))
        await asyncio.sleep(0.2)  # the watch is open
        t0 = time.monotonic()

        async def policy_then_pod(
            policy: dict[str, Any], pod: dict[str, Any]
        ) -> None:  # as the operator does
            await client.request("POST", NETWORK_POLICIES.format(ns="bench-raw"), policy)
            await client.request("POST", PODS.format(ns="bench-raw"), pod)

        await asyncio.gather(*(policy_then_pod(p, q) for p, q in zip(policies, pods, strict=True)))
        await watching
        raw_s = time.monotonic() - t0

        # The operator: N Sandboxes, until N pods exist.
        operator = start_operator()
        warm = {
            "apiVersion": contract.API_VERSION,
            "kind": "Sandbox",
            "metadata": {"name": "warmup"},
            "spec": {},
        }
        await client.request("POST", SANDBOXES.format(ns="bench-op"), warm)
        await client.wait_count(PODS.format(ns="bench-op"), 1, limit_s=60)
        await client.wait_count(SANDBOXES.format(ns="bench-op"), 1, phase_is("Pending"), limit_s=60)
        base = await client.operator_mutations()
        cpu_before = cpu_seconds(operator.pid)
        sandboxes = [
            {
                "apiVersion": contract.API_VERSION,
                "kind": "Sandbox",
                "metadata": {"name": f"s{i}"},
                "spec": {},
            }
            for i in range(n)
        ]
        watching = asyncio.create_task(client.watch_until(PODS.format(ns="bench-op"), n + 1))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await client.create_all(SANDBOXES.format(ns="bench-op"), sandboxes)
        await watching
        op_s = time.monotonic() - t0
        await client.watch_until(SANDBOXES.format(ns="bench-op"), n + 1, phase_is("Pending"))
        until_pending = await client.operator_mutations() - base
        rss_pending = rss_mib(operator.pid)

        # Play the kubelet, in a burst: every pod Running; the operator follows with one status write each.
        before_running = await client.operator_mutations()
        t0 = time.monotonic()
        await asyncio.gather(
            *(
                burster.request(
                    "PATCH",
                    f"{PODS.format(ns='bench-op')}/s{i}/status",
                    running_status(f"s{i}"),
                    "application/merge-patch+json",
                )
                for i in range(n)
            )
        )
        burst_rate = n / (time.monotonic() - t0)
        await client.watch_until(SANDBOXES.format(ns="bench-op"), n, phase_is("Running"))
        to_running = await client.settled_mutations() - before_running
        cpu_ms = (cpu_seconds(operator.pid) - cpu_before) * 1000 / n

        # Idle: nothing changes, nothing should be written.
        before_idle = await client.operator_mutations()
        await asyncio.sleep(idle)
        idle_writes = await client.operator_mutations() - before_idle
        scraped = await asyncio.to_thread(scrape, metrics_url) if metrics_url else {}
        rss = rss_mib(operator.pid)
        rss_now = rss_mib(operator.pid, "VmRSS")
    finally:
        await client.close()
        await burster.close()
    return {
        "rss_pending": rss_pending,
        "burst_rate": burst_rate,
        "raw_s": raw_s,
        "op_s": op_s,
        "until_pending": until_pending / n,
        "to_running": to_running / n,
        "idle_writes": idle_writes,
        "rss": rss,
        "rss_now": rss_now,
        "cpu_ms": cpu_ms,
        "running": scraped.get(f"{contract.OPERATOR_METRIC_SANDBOXES}{{phase=Running}}", float("nan")),
        "startups": scraped.get(f"{contract.OPERATOR_METRIC_STARTUP_DURATION}_count", float("nan")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--sandboxes", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=60.0, help="idle window in seconds (default 60)")
    parser.add_argument("--profile", metavar="FILE", help="profile the operator (cProfile, CPU time) to FILE")
    parser.add_argument(
        "--burst-concurrency", type=int, default=64, help="PATCHes in flight turning the pods Running (64)"
    )
    parser.add_argument("--metrics-off", action="store_true", help="run the operator without --metrics-port")
    args = parser.parse_args()
    metrics_port = None if args.metrics_off else free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}{contract.OPERATOR_METRICS_PATH}" if metrics_port else None

    with (
        tempfile.TemporaryDirectory(prefix="leap0-bench-") as tmp,
        embedded_apiserver(Path(tmp)) as (api_url, kubeconfig, children),
    ):

        def start_operator() -> subprocess.Popen[bytes]:
            log = open(Path(tmp) / "operator.log", "wb")  # noqa: SIM115
            operator = subprocess.Popen(
                [
                    sys.executable,
                    *(["-c", PROFILED, args.profile] if args.profile else ["-m", "leap0_operator"]),
                    "--standalone",
                    "-n",
                    "bench-op",
                    *(["--metrics-port", str(metrics_port)] if metrics_port else []),
                ],
                env=child_env(KUBECONFIG=str(kubeconfig)),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            children.append(operator)
            return operator

        time.sleep(0.2)
        figures = asyncio.run(
            bench(args.sandboxes, args.idle, api_url, start_operator, args.burst_concurrency, metrics_url)
        )

    n = args.sandboxes
    metrics = "off" if args.metrics_off else "on"
    print(f"leap0 operator benchmark: {n} sandboxes against the embedded API server, metrics {metrics}")
    print(f"{'':44}{'operator':>12}{'raw floor':>12}{'ratio':>8}   goal")
    print(f"{'seconds until all pods exist':44}{figures['op_s']:12.2f}{figures['raw_s']:12.2f}"
          f"{figures['op_s'] / figures['raw_s']:8.2f}   ratio <= 2")  # fmt: skip
    pending = figures["until_pending"]
    print(f"{'mutating calls per sandbox until Pending':44}{pending:12.2f}{2:12.2f}{'':8}   <= 3")
    print(
        f"{'mutating calls per sandbox, Pending->Running':44}{figures['to_running']:12.2f}{'':12}{'':8}   "
        "2 (status + its Event)"
    )
    print(
        f"{f'operator writes during {args.idle:g} s idle':44}{figures['idle_writes']:12.0f}{'':12}{'':8}   0"
    )
    print(f"{'operator CPU per sandbox, to Running (ms)':44}{figures['cpu_ms']:12.2f}")
    goal = "<= 110" if n <= 1000 else "<= 200" if n <= 10000 else ""
    print(f"{'operator peak RSS until all Pending (MiB)':44}{figures['rss_pending']:12.1f}")
    print(f"{'pods turned Running per second (burst)':44}{figures['burst_rate']:12.0f}")
    print(f"{'operator peak RSS, after the burst (MiB)':44}{figures['rss']:12.1f}{'':12}{'':8}   {goal}")
    print(f"{'operator RSS after the idle window (MiB)':44}{figures['rss_now']:12.1f}")
    if not args.metrics_off:
        print(f"{'scraped: leap0_sandboxes{phase=Running}':44}{figures['running']:12.0f}{'':12}{'':8}   {n}")
        startups = figures["startups"]
        print(f"{'scraped: startup histogram count':44}{startups:12.0f}{'':12}{'':8}   {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
