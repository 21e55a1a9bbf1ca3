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

import psutil

from leap0_sidecar import names

# A process: (pid, create time in seconds since the epoch), so a reused pid is a different process.
ProcessKey = tuple[int, float]


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def list_pids(root: Path) -> list[int]:
    """Every pid under ``<root>/proc``, ascending."""
    try:
        entries = os.listdir(root / "proc")
    except OSError:
        return []
    return sorted(int(entry) for entry in entries if entry.isdigit())


def sandbox_pids(root: Path, own_pid: int | None = None) -> list[int]:
    """The sandbox container's processes under ``<root>/proc`` by the rules in this module's docstring."""
    proc = root / "proc"
    own = _read(proc / "self" / "cgroup")
    pause = _read(proc / "1" / "cgroup")
    found: list[int] = []
    for pid in list_pids(root):
        if pid == 1 or pid == own_pid:
            continue
        cgroup = _read(proc / str(pid) / "cgroup")
        if not cgroup or cgroup in (own, pause):
            continue
        if not _read(proc / str(pid) / "cmdline"):
            continue
        found.append(pid)
    return found


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

    source = names.SOURCE_PSUTIL

    def __init__(self, root: Path, sandbox_pid: int | None = None) -> None:
        self.root = root
        self.sandbox_pid = sandbox_pid
        self._own_pid = os.getpid()
        self._processes: dict[int, psutil.Process] = {}
        self._previous: dict[ProcessKey, float] = {}
        self._previous_time: float | None = None
        self._total_ns = 0

    def pids(self) -> list[int]:
        if self.sandbox_pid is None:
            return sandbox_pids(self.root, self._own_pid)
        try:
            tree = psutil.Process(self.sandbox_pid).children(recursive=True)
        except psutil.Error:
            return []
        return [self.sandbox_pid, *(p.pid for p in tree)]

    def _process(self, pid: int) -> psutil.Process:
        process = self._processes.get(pid)
        if process is None or not process.is_running():
            process = self._processes[pid] = psutil.Process(pid)
        return process

    def read(self) -> ProcessesReading:
        now = time.time()
        current: dict[ProcessKey, float] = {}
        rss = 0
        pids = self.pids()
        for pid in pids:
            try:
                process = self._process(pid)
                with process.oneshot():
                    times = process.cpu_times()
                    memory = process.memory_info()
                    key = (pid, process.create_time())
            except psutil.Error:
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
