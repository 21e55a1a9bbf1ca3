"""Real cgroups for the main containers when root: v1 when its controllers are mounted, else v2."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _v1_mounts() -> dict[str, Path]:
    mounts: dict[str, Path] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] == "cgroup":
                for option in parts[3].split(","):
                    if option in ("cpu", "cpuacct", "memory"):
                        mounts[option] = Path(parts[1])
    return mounts


class Cgroup:
    """A cgroup for one container with its CPU and memory limits (v1 when mounted, else v2)."""

    PERIOD_US = 100_000

    def __init__(self, name: str, cpu_millicores: int | None, memory_bytes: int | None) -> None:
        self.dirs: list[Path] = []
        self.version = 0
        mounts = _v1_mounts()
        if {"cpu", "memory"} <= mounts.keys():
            self.version = 1
            for mount in dict.fromkeys(mounts[c] for c in ("cpu", "cpuacct", "memory") if c in mounts):
                self.dirs.append(mount / "leap0-runner" / name)
        elif Path("/sys/fs/cgroup/cgroup.controllers").exists():
            self.version = 2
            parent = Path("/sys/fs/cgroup/leap0-runner")
            parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                (Path("/sys/fs/cgroup") / "cgroup.subtree_control").write_text("+cpu +memory")
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+cpu +memory")
            self.dirs.append(parent / name)
        else:
            raise OSError("no cgroup v1 cpu/memory controllers nor cgroup v2 here")
        for directory in self.dirs:
            directory.mkdir(parents=True, exist_ok=True)
        self._limit(cpu_millicores, memory_bytes)

    def _write(self, filename: str, value: str) -> bool:
        for directory in self.dirs:
            path = directory / filename
            if path.exists():
                path.write_text(value)
                return True
        return False

    def _read(self, filename: str) -> str:
        for directory in self.dirs:
            with contextlib.suppress(OSError):
                return (directory / filename).read_text()
        return ""

    def _limit(self, cpu_millicores: int | None, memory_bytes: int | None) -> None:
        if self.version == 1:
            if cpu_millicores is not None:
                self._write("cpu.cfs_period_us", str(self.PERIOD_US))
                self._write("cpu.cfs_quota_us", str(max(1000, cpu_millicores * self.PERIOD_US // 1000)))
            if memory_bytes is not None:
                self._write("memory.limit_in_bytes", str(memory_bytes))
                with contextlib.suppress(OSError):
                    self._write("memory.swappiness", "0")
        else:
            if cpu_millicores is not None:
                self._write(
                    "cpu.max", f"{max(1000, cpu_millicores * self.PERIOD_US // 1000)} {self.PERIOD_US}"
                )
            if memory_bytes is not None:
                self._write("memory.max", str(memory_bytes))
                with contextlib.suppress(OSError):
                    self._write("memory.swap.max", "0")

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_killed(self) -> bool:
        text = self._read("memory.oom_control" if self.version == 1 else "memory.events")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    def remove(self) -> None:
        for directory in self.dirs:
            for _ in range(50):
                with contextlib.suppress(OSError, ValueError):
                    for pid in (directory / "cgroup.procs").read_text().split():
                        os.kill(int(pid), signal.SIGKILL)
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
