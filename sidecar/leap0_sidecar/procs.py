"""The sandbox's processes, seen through the pod's shared process namespace, and the psutil fallback source.

Which processes are the sandbox's (the pod runs with ``shareProcessNamespace: true``, so the sidecar sees
every process of the pod under ``/proc``):

- pid 1 is the pod's infrastructure ("pause") container: excluded, and so is every process in its cgroup;
- the sidecar's own processes share our cgroup (``/proc/self/cgroup``): excluded, and so is our own pid;
- kernel threads (empty ``cmdline``) and processes whose ``cgroup`` file cannot be read: excluded;
- what is left belongs to the sandbox container (the only other container of the pod).

The cgroup is taken from the lowest such pid (the sandbox's first process). Outside a pod (a developer
machine, the tests) that rule would match every other process of the host, so ``SamplerConfig.sandbox_pid``
names one process of the sandbox instead; its cgroup is used, and for the psutil source its process tree.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import leap0_contract as contract

if TYPE_CHECKING:
    import psutil

# A process: (pid, create time in seconds since the epoch), so a reused pid is a different process.
ProcessKey = tuple[int, float]


def _read(path: str) -> bytes | None:
    # os.open/os.read: a third of the cost of open() for the small /proc files read at every sample
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)


def list_pids(root: Path) -> list[int]:
    """Every pid under ``<root>/proc``, ascending."""
    try:
        entries = os.listdir(root / "proc")
    except OSError:
        return []
    return sorted(int(entry) for entry in entries if entry.isdigit())


class ProcessScanner:
    """Finds the sandbox's processes under ``<root>/proc`` (rules in this module's docstring).

    Each pid is classified once, when it first appears (two small reads); later scans list ``/proc`` only. The
    cgroups of our own process and of pid 1 are read once.
    """

    def __init__(self, root: Path, own_pid: int | None = None) -> None:
        self.proc = str(root / "proc")
        self.own_pid = own_pid
        self._own = _read(f"{self.proc}/self/cgroup")
        self._pause = _read(f"{self.proc}/1/cgroup")
        self._known: dict[int, bool] = {}

    def _is_sandbox(self, pid: int) -> bool:
        if pid == 1 or pid == self.own_pid:
            return False
        cgroup = _read(f"{self.proc}/{pid}/cgroup")
        if not cgroup or cgroup in (self._own, self._pause):
            return False
        return bool(_read(f"{self.proc}/{pid}/cmdline"))

    def scan(self) -> list[int]:
        try:
            entries = os.listdir(self.proc)
        except OSError:
            return []
        known = self._known
        current: dict[int, bool] = {}
        for entry in entries:
            if entry.isdigit():
                pid = int(entry)
                verdict = known.get(pid)
                current[pid] = self._is_sandbox(pid) if verdict is None else verdict
        self._known = current
        return sorted(pid for pid, verdict in current.items() if verdict)


def sandbox_pids(root: Path, own_pid: int | None = None) -> list[int]:
    """The sandbox container's processes under ``<root>/proc`` by the rules in this module's docstring."""
    return ProcessScanner(root, own_pid).scan()


def cpu_seconds_delta(
    previous: Mapping[ProcessKey, float], current: Mapping[ProcessKey, float], previous_time: float
) -> float:
    """CPU seconds the processes used between two readings (each a map of process -> cumulative CPU seconds).

    A process in both readings counts its increase; one started after ``previous_time`` counts all of its CPU;
    one seen for the first time but older counts nothing (its CPU was spent before we looked). CPU of
    processes that exited in between is lost unless their parent reaped them (then it is in the parent's
    children times, which the readings include).
    """
    total = 0.0
    for key, seconds in current.items():
        before = previous.get(key)
        if before is not None:
            total += max(0.0, seconds - before)
        elif key[1] >= previous_time:
            total += seconds
    return total


@dataclass(frozen=True)
class ProcessesReading:
    cpu_usage_ns: int  # cumulative since the source was created (monotonic)
    memory_usage: int  # sum of the processes' resident set sizes
    processes: int


class PsutilSource:
    """Usage summed over the sandbox's processes with psutil, when the cgroup cannot be read.

    psutil reads the live ``/proc`` (its ``PROCFS_PATH`` is process-wide, so it is left alone); the root
    override applies to choosing the processes. Memory is the sum of RSS (shared pages count once per
    process, so it can overstate; USS would need ``smaps``, which costs milliseconds per process and ptrace
    access).
    """

    source = contract.SOURCE_PSUTIL
    key = None  # each instance keeps its own CPU state: never the same as another

    def __init__(self, root: Path, sandbox_pid: int | None = None) -> None:
        # imported here: psutil adds about 2-4 MiB of RSS, paid only when the cgroup cannot be read
        import psutil

        self._psutil = psutil
        self.root = root
        self.sandbox_pid = sandbox_pid
        self._scanner = ProcessScanner(root, os.getpid())
        self._processes: dict[int, psutil.Process] = {}
        self._previous: dict[ProcessKey, float] = {}
        self._previous_time: float | None = None
        self._total_ns = 0

    def pids(self) -> list[int]:
        if self.sandbox_pid is None:
            return self._scanner.scan()
        try:
            tree = self._psutil.Process(self.sandbox_pid).children(recursive=True)
        except self._psutil.Error:
            return []
        return [self.sandbox_pid, *(p.pid for p in tree)]

    def _process(self, pid: int) -> psutil.Process:
        # Cached per pid; a pid that disappears from /proc is dropped at that scan. (Skipping psutil's
        # is_running() check saves a read per process; a pid reused between two scans keeps the old object,
        # whose create_time then names the old process: its CPU counts from its next reading on.)
        process = self._processes.get(pid)
        if process is None:
            process = self._processes[pid] = self._psutil.Process(pid)
        return process

    def read(self) -> ProcessesReading:
        now = time.time()
        current: dict[ProcessKey, float] = {}
        rss = 0
        pids = self.pids()
        for pid in pids:
            try:
                process = self._process(pid)
                # two reads (stat, statm); oneshot() would cost more than it saves for two calls, and
                # create_time() is the value psutil cached when the Process was made
                times = process.cpu_times()
                memory = process.memory_info()
                key = (pid, process.create_time())
            except self._psutil.Error:
                self._processes.pop(pid, None)
                continue
            current[key] = times.user + times.system + times.children_user + times.children_system
            rss += memory.rss
        for gone in set(self._processes) - set(pids):
            del self._processes[gone]
        if self._previous_time is not None:
            self._total_ns += int(cpu_seconds_delta(self._previous, current, self._previous_time) * 1e9)
        self._previous, self._previous_time = current, now
        return ProcessesReading(cpu_usage_ns=self._total_ns, memory_usage=rss, processes=len(current))

    def close(self) -> None:
        self._processes.clear()

    def __repr__(self) -> str:
        return f"PsutilSource(sandbox_pid={self.sandbox_pid})"
