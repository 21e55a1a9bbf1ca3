"""Benchmark: what the MCP layer adds per call over the Python SDK called directly, and the MCP server's
memory while a command prints far more than its output cap.

    python bench/mcp.py [--iterations 40] [--flood-mb 300] [--before REF]

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

Then the flood: ``execute_command`` of a command printing ``--flood-mb`` MB (``yes | head -c``) through a
fresh ``leap0 mcp``, and the server's peak RSS (VmHWM) before and after the call, against its output cap
(``--max-output``, 64 KiB of each stream); beside it, the same command through the SDK's
``process.execute`` in this process (which returns the whole output) as the baseline of the same run, and
with ``--before REF`` the MCP server of git revision REF (``git archive``) under the same flood.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

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


MiB = 1024 * 1024
MAX_OUTPUT = 64 * 1024  # leap0 mcp's default --max-output


def peak_rss(pid: int) -> int:
    """VmHWM of a process: its peak resident memory so far, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def mcp_server_pid() -> int:
    """The ``leap0 mcp`` child of this process (the stdio client started it)."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmdline = child.cmdline()
            if "leap0.cli" in cmdline and "mcp" in cmdline:
                return child.pid
    raise RuntimeError("leap0 mcp is not running")


def flood_command(size: int) -> str:
    return f"yes 0123456789abcdef | head -c {size}"


async def mcp_flood(kubeconfig: Path, size: int, pythonpath: Path) -> tuple[int, int, float, int]:
    """(peak RSS before, after, seconds, bytes cut) of a fresh ``leap0 mcp`` (code from ``pythonpath``)
    running a command that prints ``size`` bytes."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "leap0.cli", "mcp", "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE],
        env={"PYTHONPATH": str(pythonpath), "LEAP0_SDK_OTEL_ENABLED": "false"},
        cwd=str(pythonpath),
    )
    with open("/dev/null", "w") as errlog:  # noqa: ASYNC230
        async with stdio_client(params, errlog=errlog) as streams, ClientSession(*streams) as session:
            await session.initialize()
            pid = mcp_server_pid()
            created = await session.call_tool("create_sandbox", {})
            assert created.structured_content is not None, created.content
            sid = created.structured_content["sandbox_id"]
            warm = {"sandbox_id": sid, "command": flood_command(300_000)}
            await session.call_tool("execute_command", warm)
            before = peak_rss(pid)
            started = time.perf_counter()
            flood = {"sandbox_id": sid, "command": flood_command(size)}
            result = await session.call_tool("execute_command", flood)
            elapsed = time.perf_counter() - started
            after = peak_rss(pid)
            await session.call_tool("delete_sandbox", {"sandbox_id": sid})
    structured = result.structured_content or {}
    if result.is_error:
        raise RuntimeError(f"the flood failed: {result.content}")
    return before, after, elapsed, int(structured.get("stdout_bytes_cut", 0))


def sdk_flood(kubeconfig: Path, size: int) -> tuple[int, int]:
    """(peak RSS of this process before, after) the same command through the SDK's process.execute."""
    with Leap0Client(namespace=NAMESPACE, kubeconfig=kubeconfig, sdk_otel_enabled=False) as sdk:
        sandbox = sdk.sandboxes.create(labels={"leap0.dev/created-by": "bench"})
        sandbox.process.execute(flood_command(300_000))
        before = peak_rss(os.getpid())
        result = sandbox.process.execute(flood_command(size))
        after = peak_rss(os.getpid())
        assert len(result.stdout) == size
        del result
        sdk.sandboxes.delete(sandbox.id)
    return before, after


def checkout(ref: str, into: Path) -> Path:
    """The SDK, the MCP server and the contract as they were at a git revision."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "leap0", "leap0_contract"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--flood-mb", type=int, default=300, help="MB the flood command prints (default 300)")
    parser.add_argument("--before", metavar="REF", help="also flood the MCP server of this git revision")
    args = parser.parse_args(argv)
    flood_size = args.flood_mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="leap0-bench-mcp-") as tmp:
        apiserver, kubeconfig = start_apiserver(Path(tmp))
        # Each new Sandbox Running at once (its pod created, its status written).
        operator = StandInOperator(
            config.new_client_from_config(str(kubeconfig)), NAMESPACE, running_status, 0
        )
        threading.Thread(target=operator.run, daemon=True).start()
        try:
            mcp_times, sdk_times = asyncio.run(run(args.iterations, kubeconfig))
            flood = asyncio.run(mcp_flood(kubeconfig, flood_size, ROOT))
            then = None
            if args.before:
                old = checkout(args.before, Path(tmp) / "before")
                then = asyncio.run(mcp_flood(kubeconfig, flood_size, old))
            sdk_before, sdk_after = sdk_flood(kubeconfig, flood_size)
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
    print()
    before, after, elapsed, cut = flood
    print(
        f"a command printing {args.flood_mb} MB (output cap {MAX_OUTPUT // 1024} KiB of each stream, "
        f"{cut} bytes cut, {args.flood_mb / elapsed:.0f} MB/s):"
    )
    grew = (after - before) / MiB
    print(f"  leap0 mcp peak RSS:         {before / MiB:7.1f} -> {after / MiB:7.1f} MiB (+{grew:.1f})")
    if then is not None:
        old_before, old_after, old_elapsed, _ = then
        print(
            f"  leap0 mcp at {args.before}: {old_before / MiB:7.1f} -> {old_after / MiB:7.1f} MiB "
            f"(+{(old_after - old_before) / MiB:.1f}, {args.flood_mb / old_elapsed:.1f} MB/s)"
        )
    print(
        f"  SDK process.execute (all of it): {sdk_before / MiB:7.1f} -> {sdk_after / MiB:7.1f} MiB "
        f"(+{(sdk_after - sdk_before) / MiB:.1f}), in this process"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
