"""Benchmark: what the MCP layer adds per call over the Python SDK called directly.

    python bench/mcp.py [--iterations 40]

One run, one embedded API server (``leap0 dev apiserver`` as a child process, its exec endpoint running
commands as local processes) and a stand-in operator in this process that marks each new Sandbox Running at
once (both from ``bench/chain.py``). Each iteration does the same sequence twice, interleaved so load hits
both alike:

- through MCP: the official MCP client over stdio to ``leap0 mcp`` (a child process, SDK telemetry off):
  ``create_sandbox``, ``execute_command`` (``echo hello > f.txt``), ``read_file``, ``delete_sandbox``;
- through the SDK in this process: ``sandboxes.create``, ``process.execute``, ``filesystem.read``,
  ``sandboxes.delete``.

Prints p50 per call of each step for both paths and the difference (the MCP layer: JSON-RPC over stdio,
argument validation, the ownership check, result shaping). Goal: at most 5 ms per call at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file's folder, first on sys.path, would shadow the `mcp` package: the checkout takes its place.
sys.path[0] = str(ROOT)

from kubernetes import config  # noqa: E402
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from bench.chain import StandInOperator, running_status, start_apiserver, stop_apiserver  # noqa: E402
from leap0 import Leap0Client  # noqa: E402

STEPS = ("create", "execute", "read", "delete")
NAMESPACE = "default"


async def mcp_sequence(session: ClientSession, times: dict[str, list[float]]) -> None:
    async def timed(step: str, tool: str, **arguments: Any) -> Any:
        started = time.perf_counter()
        result = await session.call_tool(tool, arguments)
        times[step].append((time.perf_counter() - started) * 1000.0)
        if result.is_error:
            raise RuntimeError(f"{tool}: {result.content}")
        return result.structured_content

    sid = (await timed("create", "create_sandbox"))["sandbox_id"]
    await timed("execute", "execute_command", sandbox_id=sid, command="echo hello > f.txt")
    read = await timed("read", "read_file", sandbox_id=sid, path="f.txt")
    assert read["content"] == "hello\n", read
    await timed("delete", "delete_sandbox", sandbox_id=sid)


def sdk_sequence(sdk: Leap0Client, times: dict[str, list[float]]) -> None:
    def timed(step: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        value = fn(*args, **kwargs)
        times[step].append((time.perf_counter() - started) * 1000.0)
        return value

    sandbox = timed("create", sdk.sandboxes.create, labels={"leap0.dev/created-by": "bench"})
    timed("execute", sandbox.process.execute, "echo hello > f.txt")
    data = timed("read", sandbox.filesystem.read, "f.txt")
    assert data == b"hello\n", data
    timed("delete", sdk.sandboxes.delete, sandbox.id)


async def run(iterations: int, kubeconfig: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    mcp_times: dict[str, list[float]] = {s: [] for s in STEPS}
    sdk_times: dict[str, list[float]] = {s: [] for s in STEPS}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "leap0.cli", "mcp", "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE],
        env={"PYTHONPATH": str(ROOT), "LEAP0_SDK_OTEL_ENABLED": "false"},
        cwd=str(ROOT),
    )
    sdk = Leap0Client(namespace=NAMESPACE, kubeconfig=kubeconfig, sdk_otel_enabled=False)
    with open("/dev/null", "w") as errlog:  # noqa: ASYNC230
        async with stdio_client(params, errlog=errlog) as streams, ClientSession(*streams) as session:
            await session.initialize()
            warm_mcp: dict[str, list[float]] = {s: [] for s in STEPS}
            warm_sdk: dict[str, list[float]] = {s: [] for s in STEPS}
            await mcp_sequence(session, warm_mcp)  # warm up both paths
            await asyncio.to_thread(sdk_sequence, sdk, warm_sdk)
            for _ in range(iterations):
                await mcp_sequence(session, mcp_times)
                await asyncio.to_thread(sdk_sequence, sdk, sdk_times)
    sdk.close()
    return mcp_times, sdk_times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="leap0-bench-mcp-") as tmp:
        apiserver, kubeconfig = start_apiserver(Path(tmp))
        # Each new Sandbox Running at once (its pod created, its status written).
        operator = StandInOperator(
            config.new_client_from_config(str(kubeconfig)), NAMESPACE, running_status, 0
        )
        threading.Thread(target=operator.run, daemon=True).start()
        try:
            mcp_times, sdk_times = asyncio.run(run(args.iterations, kubeconfig))
        finally:
            operator.stop()
            stop_apiserver(apiserver)
    print(f"MCP over stdio vs the Python SDK directly, {args.iterations} iterations, p50 ms per call")
    print(f"{'call':<10}{'SDK':>10}{'MCP':>10}{'added':>10}{'ratio':>8}")
    worst = 0.0
    for step in STEPS:
        sdk_p50 = statistics.median(sdk_times[step])
        mcp_p50 = statistics.median(mcp_times[step])
        added = mcp_p50 - sdk_p50
        worst = max(worst, added)
        print(f"{step:<10}{sdk_p50:>10.2f}{mcp_p50:>10.2f}{added:>10.2f}{mcp_p50 / sdk_p50:>7.2f}x")
    verdict = "within" if worst <= 5.0 else "OVER"
    print(f"largest p50 added by MCP: {worst:.2f} ms per call ({verdict} the 5 ms goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
