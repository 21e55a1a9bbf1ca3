"""The sampler against REAL cgroup v1 limits on this machine: a CPU burner and a memory allocator in a cgroup
with a 0.5 CPU quota and a 256 MiB memory limit (needs root and the v1 cpu, cpuacct and memory controllers).

Tolerances: CPU utilization over a 1.5 s interval must be within 5 points of the same figure computed
independently from the processes' own CPU times (``/proc/<pid>/stat`` via psutil), and reach 80-100 % of the
independently from the processes' own CPU times (``/proc/<pid>/stat`` via psutil), and reach 80-100 % of
a machine shared with other work may starve it for a while).
Memory usage (working set) must be at least the 150 MiB the allocator touched and at most 48 MiB more (two
Python interpreters' own pages).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from support import gauge_values

from leap0_sidecar.cgroups import cgroup_mounts, parse_mountinfo
from leap0_sidecar.config import SamplerConfig, load_sampler
from leap0_sidecar.sandbox_metrics import MetricsSampler

pytestmark = [pytest.mark.e2e, pytest.mark.root]

MIB = 1 << 20
ALLOCATED = 150 * MIB
ALLOCATOR = f"""
import sys
sys.stdin.readline()
block = bytearray(b"\\1") * {ALLOCATED}
print("ready", flush=True)
sys.stdin.readline()
"""
BURNER = "while True: pass"


def _v1_dirs() -> dict[str, Path]:
    """Mount point of each needed v1 controller, or skip with the reason."""
    if os.geteuid() != 0:
        pytest.skip("real cgroups need root (creating cgroups and moving processes into them)")
    mounts = cgroup_mounts(parse_mountinfo(Path("/proc/self/mountinfo").read_text()))
    found: dict[str, Path] = {}
    for controller in ("cpu", "cpuacct", "memory"):
        mount = next((m for m in mounts if m.version == 1 and controller in m.controllers), None)
        if mount is None:
            pytest.skip(f"the cgroup v1 {controller} controller is not mounted (cgroup v2-only host?)")
        found[controller] = Path(mount.mount_point)
    return found


@dataclass
class Sandbox:
    dirs: dict[str, Path]  # controller -> the cgroup directory
    allocator: subprocess.Popen[str]
    burner: subprocess.Popen[str]

    @property
    def pids(self) -> list[int]:
        return [self.allocator.pid, self.burner.pid]


def _join(dirs: dict[str, Path], pid: int) -> None:
    for directory in set(dirs.values()):
        (directory / "cgroup.procs").write_text(f"{pid}\n")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    mounts = _v1_dirs()
    name = f"leap0-test-{uuid.uuid4().hex[:12]}"
    dirs: dict[str, Path] = {}
    processes: list[subprocess.Popen[str]] = []
    try:
        for controller, mount in mounts.items():
            directory = mount / name
            if not directory.exists():
                try:
                    directory.mkdir()
                except OSError as error:
                    pytest.skip(f"cannot create a cgroup under {mount}: {error}")
            dirs[controller] = directory
        (dirs["cpu"] / "cpu.cfs_period_us").write_text("100000\n")
        (dirs["cpu"] / "cpu.cfs_quota_us").write_text("50000\n")
        (dirs["memory"] / "memory.limit_in_bytes").write_text(f"{256 * MIB}\n")

        allocator = subprocess.Popen(
            [sys.executable, "-c", ALLOCATOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        processes.append(allocator)
        _join(dirs, allocator.pid)  # before it allocates: v1 charges memory where it is first touched
        assert allocator.stdin is not None
        assert allocator.stdout is not None
        allocator.stdin.write("go\n")
        allocator.stdin.flush()
        assert allocator.stdout.readline().strip() == "ready"
        burner = subprocess.Popen([sys.executable, "-c", BURNER], text=True)
        # a high priority (we are root), so other work on a shared machine does not keep it from its quota
        os.setpriority(os.PRIO_PROCESS, burner.pid, -10)
        processes.append(burner)
        _join(dirs, burner.pid)
        yield Sandbox(dirs, allocator, burner)
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait(timeout=10)
            if process.stdin is not None:
                process.stdin.close()
            if process.stdout is not None:
                process.stdout.close()
        for directory in set(dirs.values()):
            deadline = time.monotonic() + 5
            while directory.exists():
                try:
                    directory.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _throttling(sandbox: Sandbox) -> tuple[int, int]:
    """(nr_periods, nr_throttled) of the sandbox's CFS bandwidth control (v1 ``cpu.stat``)."""
    stat = dict(line.split() for line in (sandbox.dirs["cpu"] / "cpu.stat").read_text().splitlines())
    return int(stat["nr_periods"]), int(stat["nr_throttled"])


def _check(sampler: MetricsSampler, sandbox: Sandbox) -> None:
    assert sampler.source == "cgroup-v1"
    seen: list[tuple[float, float, float]] = []
    # Up to three 1.5 s intervals: on a machine shared with other work the burner may get less than its half
    # CPU for a while. Each interval must agree with the processes' own CPU times, and with the kernel's
    # throttling count: in a throttled period the burner used its whole quota, so the utilization is at least
    # the throttled share of periods (less 10 points for partial periods at the ends).
    for _ in range(3):
        sampler.sample()  # a fresh baseline for the interval measured below
        cpu_before, wall_before = _cpu_seconds(sandbox.pids), time.monotonic()
        periods_before, throttled_before = _throttling(sandbox)
        time.sleep(1.5)
        attributes, values = gauge_values(sampler.sample())
        cpu_after, wall_after = _cpu_seconds(sandbox.pids), time.monotonic()
        periods_after, throttled_after = _throttling(sandbox)
        independent = (cpu_after - cpu_before) / ((wall_after - wall_before) * 0.5) * 100
        throttled = (throttled_after - throttled_before) / max(1, periods_after - periods_before) * 100
        print(f"sampled {values}, from process times {independent:.1f} %, throttled {throttled:.0f} %")

        assert attributes["leap0.metrics.source"] == "cgroup-v1"
        assert values["leap0.sandbox.cpu.limit"] == 0.5
        assert values["leap0.sandbox.memory.limit"] == 256 * MIB
        utilization = values["leap0.sandbox.cpu.utilization"]
        assert 0.0 <= utilization <= 100.0
        assert abs(utilization - independent) <= 5.0, (utilization, independent)
        assert utilization >= throttled - 10.0, (utilization, throttled)
        usage = values["leap0.sandbox.memory.usage"]
        assert ALLOCATED <= usage <= ALLOCATED + 48 * MIB, usage / MIB
        assert values["leap0.sandbox.memory.utilization"] == pytest.approx(usage / (256 * MIB) * 100)
        seen.append((utilization, independent, throttled))
        if utilization >= 80.0:
            return
    if max(t for _, _, t in seen) >= 80.0:
        pytest.fail(f"throttled in most periods yet under 80 % (sampled, process times, throttled %): {seen}")
    pytest.skip(
        f"machine too busy: the burner rarely reached its 0.5 CPU quota (sampled, times, throttled): {seen}"
    )


def test_real_v1_cgroup_by_pid(sandbox: Sandbox) -> None:
    # configured as the sidecar is, from its environment (cgroup sources ignore the downward-API limits)
    environ = {
        "LEAP0_SANDBOX_PID": str(sandbox.burner.pid),
        "LEAP0_SANDBOX_CPU_LIMIT_MILLICORES": "4000",
        "LEAP0_SANDBOX_MEMORY_LIMIT_BYTES": str(8 << 30),
        "LEAP0_SANDBOX_ID": "sbx-real",
    }
    sampler = MetricsSampler(load_sampler(environ))
    try:
        _check(sampler, sandbox)
    finally:
        sampler.close()


def test_real_v1_cgroup_by_proc_scan(sandbox: Sandbox, tmp_path: Path) -> None:
    # The pod's view built from real parts: pid 1 and our own process as they are, the two sandbox processes
    # linked to their real /proc entries, the real /sys: the scan must pick the sandbox's processes.
    root = tmp_path / "root"
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/1").mkdir()
    for name in ("cgroup", "mountinfo"):
        (root / "proc/self" / name).write_bytes(Path("/proc/self", name).read_bytes())
    for name in ("cgroup", "cmdline"):
        (root / "proc/1" / name).write_bytes(Path("/proc/1", name).read_bytes())
    with contextlib.suppress(FileExistsError):
        (root / "proc" / str(os.getpid())).symlink_to(f"/proc/{os.getpid()}")
    for pid in sandbox.pids:
        (root / "proc" / str(pid)).symlink_to(f"/proc/{pid}")
    (root / "sys").symlink_to("/sys")
    sampler = MetricsSampler(SamplerConfig(root=root))
    try:
        _check(sampler, sandbox)
    finally:
        sampler.close()
