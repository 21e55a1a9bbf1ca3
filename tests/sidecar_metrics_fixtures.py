"""Fixture trees for the sidecar's metrics sampler: a fake root with ``/proc`` and ``/sys/fs/cgroup`` in it.

The file formats follow the kernel documentation (``Documentation/admin-guide/cgroup-v2.rst``, ``cgroup-v1/``)
and ``proc(5)``. Used by the unit tests and by ``bench/sidecar_metrics.py``.
"""

from __future__ import annotations

from pathlib import Path

GIB = 1 << 30
MIB = 1 << 20
V1_UNLIMITED = "9223372036854771712"

# A pod's containers under the kubelet's systemd cgroup driver (cgroup v2, host cgroup namespace).
POD_SLICE = (
    "/kubepods.slice/kubepods-burstable.slice/"
    "kubepods-burstable-pod0d1f6a52_8c2e_4a8d_9d0a_5b7e3c1f2a90.slice"
)
SANDBOX_CGROUP = (
    POD_SLICE + "/cri-containerd-5a1c0ffee5a1c0ffee5a1c0ffee5a1c0ffee5a1c0ffee5a1c0ffee5a1c0ff.scope"
)
SIDECAR_CGROUP = (
    POD_SLICE + "/cri-containerd-7e1ede7e1ede7e1ede7e1ede7e1ede7e1ede7e1ede7e1ede7e1ede7e1ede.scope"
)
PAUSE_CGROUP = (
    POD_SLICE + "/cri-containerd-9a05e9a05e9a05e9a05e9a05e9a05e9a05e9a05e9a05e9a05e9a05e9a05e.scope"
)

V2_MOUNTINFO = (
    "22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n"
    "30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
)
# cgroup v1 as most distributions mount it: cpu and cpuacct co-mounted, memory on its own, a v2 "unified"
# hierarchy without controllers beside them (hybrid).
V1_MOUNTINFO = (
    "22 1 0:21 / / rw,relatime - overlay overlay rw\n"
    "31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def machine(root: Path, cpus: str = "0-3", mem_total_kib: int = 16 * GIB // 1024) -> None:
    """``/sys/devices/system/cpu/online`` and ``/proc/meminfo`` of a machine."""
    write(root / "sys/devices/system/cpu/online", cpus + "\n")
    write(
        root / "proc/meminfo",
        f"MemTotal:       {mem_total_kib} kB\nMemFree:         1000000 kB\nMemAvailable:    2000000 kB\n",
    )


def process(root: Path, pid: int | str, cgroup: str, cmdline: str = "python\0app.py\0") -> None:
    write(root / "proc" / str(pid) / "cgroup", cgroup)
    write(root / "proc" / str(pid) / "cmdline", cmdline)


def v2_cgroup(
    root: Path,
    path: str,
    *,
    cpu_max: str = "max 100000",
    usage_usec: int = 0,
    memory_max: str = "max",
    memory_current: int = 0,
    inactive_file: int = 0,
) -> Path:
    """A cgroup v2 directory under ``<root>/sys/fs/cgroup`` with the files the sampler reads."""
    directory = root / "sys/fs/cgroup" / path.lstrip("/")
    write(directory / "cpu.max", cpu_max + "\n")
    write(
        directory / "cpu.stat",
        f"usage_usec {usage_usec}\nuser_usec {usage_usec * 3 // 4}\nsystem_usec {usage_usec // 4}\n"
        "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n",
    )
    write(directory / "memory.max", memory_max + "\n")
    write(directory / "memory.current", f"{memory_current}\n")
    write(
        directory / "memory.stat",
        f"anon {max(0, memory_current - inactive_file)}\nfile {inactive_file}\nkernel 0\n"
        f"active_anon 0\ninactive_anon 0\nactive_file 0\ninactive_file {inactive_file}\n"
        "unevictable 0\n",
    )
    return directory


def set_v2_usage(directory: Path, usage_usec: int) -> None:
    write(directory / "cpu.stat", f"usage_usec {usage_usec}\nuser_usec 0\nsystem_usec 0\n")


def v2_pod(root: Path, sandbox_pid: int = 42, **cgroup: object) -> Path:
    """A whole pod as the sidecar sees it with cgroup v2: pause is pid 1, the sidecar pids 7 and 8 (self)."""
    machine(root)
    write(root / "proc/self/mountinfo", V2_MOUNTINFO)
    write(root / "proc/self/cgroup", f"0::{SIDECAR_CGROUP}\n")
    process(root, 1, f"0::{PAUSE_CGROUP}\n", "/pause\0")
    process(root, 7, f"0::{SIDECAR_CGROUP}\n", "leap0-sidecar\0")
    process(root, 2, "0::/\n", "")  # a kernel thread
    process(root, sandbox_pid, f"0::{SANDBOX_CGROUP}\n")
    process(root, sandbox_pid + 1, f"0::{SANDBOX_CGROUP}\n")
    v2_cgroup(root, SIDECAR_CGROUP, cpu_max="10000 100000", memory_max=str(64 * MIB))
    return v2_cgroup(root, SANDBOX_CGROUP, **cgroup)  # type: ignore[arg-type]


def v1_pod(
    root: Path,
    sandbox_pid: int = 42,
    *,
    quota: int = 50000,
    period: int = 100000,
    usage_ns: int = 0,
    limit: str = str(256 * MIB),
    usage: int = 0,
    total_inactive_file: int = 0,
) -> tuple[Path, Path]:
    """A pod on a cgroup v1 (hybrid) node: returns the sandbox's (cpu,cpuacct dir, memory dir)."""
    machine(root)
    write(root / "proc/self/mountinfo", V1_MOUNTINFO)
    path = "/kubepods/burstable/pod0d1f6a52-8c2e-4a8d-9d0a-5b7e3c1f2a90/5a1c0ffee5a1c0ffee"

    def cgroup_file(cpath: str) -> str:
        return f"12:memory:{cpath}\n4:cpu,cpuacct:{cpath}\n1:name=systemd:{cpath}\n0::{cpath}\n"

    write(root / "proc/self/cgroup", cgroup_file("/kubepods/burstable/pod0d1f/7e1ede"))
    process(root, 1, cgroup_file("/kubepods/burstable/pod0d1f/9a05e"), "/pause\0")
    process(root, sandbox_pid, cgroup_file(path))
    cpu = root / "sys/fs/cgroup/cpu,cpuacct" / path.lstrip("/")
    write(cpu / "cpu.cfs_quota_us", f"{quota}\n")
    write(cpu / "cpu.cfs_period_us", f"{period}\n")
    write(cpu / "cpuacct.usage", f"{usage_ns}\n")
    memory = root / "sys/fs/cgroup/memory" / path.lstrip("/")
    write(memory / "memory.limit_in_bytes", limit + "\n")
    write(memory / "memory.usage_in_bytes", f"{usage}\n")
    write(
        memory / "memory.stat",
        f"cache {total_inactive_file}\nrss {usage}\ninactive_file {total_inactive_file // 2}\n"
        f"hierarchical_memory_limit {limit}\ntotal_cache {total_inactive_file}\ntotal_rss {usage}\n"
        f"total_inactive_file {total_inactive_file}\ntotal_active_file 0\n",
    )
    # the unified hierarchy of a hybrid host has no controllers: no memory.current there
    write(root / "sys/fs/cgroup/unified" / path.lstrip("/") / "cgroup.procs", f"{sandbox_pid}\n")
    return cpu, memory
