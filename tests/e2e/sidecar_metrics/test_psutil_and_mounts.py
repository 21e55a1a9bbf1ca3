"""The psutil source with real processes, and the workspace probe on a real separate filesystem (tmpfs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support import cpu_between_samples, gauge_values, wait_for

from leap0_sidecar.config import SamplerConfig
from leap0_sidecar.sandbox_metrics import MetricsSampler

pytestmark = pytest.mark.e2e

MIB = 1 << 20
GIB = 1 << 30

# A parent holding 40 MiB with a child holding 40 MiB; the child burns CPU once told to.
TREE = """
import subprocess, sys
CHILD = '''
import sys
block = bytearray(b"\\\\2") * (40 << 20)
print("ready", flush=True)
if sys.stdin.readline().strip() == "burn":
    while True: pass
'''
block = bytearray(b"\\1") * (40 << 20)
child = subprocess.Popen(
    [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
)
print(child.stdout.readline().strip(), flush=True)
child.stdin.write(sys.stdin.readline())
child.stdin.flush()
sys.stdin.readline()
child.kill()
"""


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the parent reads EOF, kills its child and exits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_psutil_source_with_real_processes(tree: subprocess.Popen[str]) -> None:
    config = SamplerConfig(
        sandbox_pid=tree.pid,
        force_source="psutil",
        cpu_limit=1.0,
        memory_limit_bytes=1 * GIB,
        resource_attributes={"leap0.sandbox.id": "sbx-psutil"},
    )
    sampler = MetricsSampler(config)
    try:
        assert sampler.source == "psutil"
        time.sleep(0.3)
        attributes, idle = gauge_values(sampler.sample())
        assert attributes["leap0.metrics.source"] == "psutil"
        assert attributes["leap0.sandbox.id"] == "sbx-psutil"
        assert idle["leap0.sandbox.cpu.limit"] == 1.0
        assert idle["leap0.sandbox.memory.limit"] == 1 * GIB
        # two processes holding 40 MiB each, plus two interpreters (RSS, so shared pages count twice)
        assert 80 * MIB <= idle["leap0.sandbox.memory.usage"] <= 80 * MIB + 64 * MIB
        assert idle["leap0.sandbox.cpu.utilization"] < 10.0  # both wait on stdin

        assert tree.stdin is not None
        tree.stdin.write("burn\n")
        tree.stdin.flush()
        # One process spinning against a 1 CPU limit: near 100 % on an idle machine, on a busy one whatever it
        # gets; the sampler must report what the processes' own CPU times say, read around its samples.
        child = psutil.Process(tree.pid).children()[0].pid

        def interval() -> bool:
            seen = cpu_between_samples(sampler.sample, [tree.pid, child], 1.0, 1.0)
            utilization = gauge_values(seen.sample)[1]["leap0.sandbox.cpu.utilization"]
            assert seen.low <= utilization <= min(100.0, seen.high), (seen.low, utilization, seen.high)
            return utilization >= 10.0  # (it ran: the comparison means something)

        wait_for(interval, 120, "an interval in which the burning child got 10 % of a CPU", interval=0)
    finally:
        sampler.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / f"ws-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)
        if os.path.ismount(mount_point):
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_workspace_on_its_own_filesystem_uses_statvfs(tmpfs: Path, tmp_path: Path) -> None:
    (tmpfs / "data.bin").write_bytes(os.urandom(10 * MIB))
    for disk_limit, expected_limit in ((None, 64 * MIB), (32 * MIB, 32 * MIB)):
        config = SamplerConfig(workspace=tmpfs, disk_limit_bytes=disk_limit, force_source="psutil")
        sampler = MetricsSampler(config)
        try:
            assert sampler.workspace is not None
            assert sampler.workspace.mode == "statvfs"
            _, values = gauge_values(sampler.sample())  # exact mode: a reading from the first sample on
            usage = values["leap0.sandbox.filesystem.usage"]
            assert 10 * MIB <= usage <= 10 * MIB + 256 * 1024
            assert values["leap0.sandbox.filesystem.utilization"] == pytest.approx(
                usage / expected_limit * 100
            )
        finally:
            sampler.close()
    # a plain directory of a bigger filesystem is walked instead
    plain = SamplerConfig(workspace=tmp_path, force_source="psutil")
    sampler = MetricsSampler(plain)
    try:
        assert sampler.workspace is not None
        assert sampler.workspace.mode == "walk"
    finally:
        sampler.close()
