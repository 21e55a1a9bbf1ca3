"""The sampler against REAL cgroup v1 limits on this machine: a CPU burner and a memory allocator in a cgroup
with a 0.5 CPU quota and a 256 MiB memory limit (needs root and the v1 cpu, cpuacct and memory controllers).

CPU utilization over a 2 s interval must lie within what the processes' own CPU times (``/proc/<pid>/stat``
via psutil), read around the sampler's two samples, allow (``support.cpu_between_samples``: exact whatever
the scheduling, give or take clock ticks); intervals are sampled until the burner got a fifth of its quota in
one (a machine shared with other work may starve it for a while).
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

import pytest
from support import cpu_between_samples, gauge_values, wait_for

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


def _check(sampler: MetricsSampler, sandbox: Sandbox) -> None:
    assert sampler.source == "cgroup-v1"

    def interval() -> bool:
        seen = cpu_between_samples(sampler.sample, sandbox.pids, 0.5, 2.0)
        attributes, values = gauge_values(seen.sample)
        print(f"sampled {values}, from process times {seen.low:.1f}-{seen.high:.1f} %")
        assert attributes["leap0.metrics.source"] == "cgroup-v1"
        assert values["leap0.sandbox.cpu.limit"] == 0.5
        assert values["leap0.sandbox.memory.limit"] == 256 * MIB
        utilization = values["leap0.sandbox.cpu.utilization"]
        # The cgroup's CPU over its 0.5 CPU quota, as the processes' own times tell (a sampler dividing by
        # the machine's CPUs, or reading another cgroup, falls outside).
        assert seen.low <= utilization <= min(100.0, seen.high), (seen.low, utilization, seen.high)
        usage = values["leap0.sandbox.memory.usage"]
        assert ALLOCATED <= usage <= ALLOCATED + 48 * MIB, usage / MIB
        assert values["leap0.sandbox.memory.utilization"] == pytest.approx(usage / (256 * MIB) * 100)
        return utilization >= 20.0  # (the burner ran: the comparison means something)

    # On a machine shared with other work the burner may get little CPU for a while: every interval must
    # agree, until one in which it got a fifth of its quota.
    wait_for(interval, 120, "an interval in which the burner got 20 % of its quota", interval=0)


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
