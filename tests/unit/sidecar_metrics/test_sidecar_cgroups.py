"""cgroup parsing and discovery against fixture trees in the kernel's file formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from sidecar_metrics_fixtures import (
    MIB,
    SANDBOX_CGROUP,
    V1_MOUNTINFO,
    V1_UNLIMITED,
    V2_MOUNTINFO,
    process,
    v1_pod,
    v2_cgroup,
    v2_pod,
    write,
)

from leap0_sidecar import cgroups
from leap0_sidecar.cgroups import CgroupV1Reader, CgroupV2Reader, open_cgroup_of


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000\n", None), ("50000 100000\n", 0.5), ("200000 100000", 2.0), ("150000 300000\n", 0.5)],
)
def test_cpu_max(text: str, cpus: float | None) -> None:
    assert cgroups.parse_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("-1\n", "100000\n", None), ("50000\n", "100000\n", 0.5), ("400000", "100000", 4.0)],
)
def test_cfs_quota(quota: str, period: str, cpus: float | None) -> None:
    assert cgroups.parse_cfs_quota(quota, period) == cpus


def test_memory_limits() -> None:
    assert cgroups.parse_memory_max("max\n") is None
    assert cgroups.parse_memory_max("268435456\n") == 256 * MIB
    assert cgroups.parse_v1_memory_limit(V1_UNLIMITED + "\n") is None
    assert cgroups.parse_v1_memory_limit("-1") is None
    assert cgroups.parse_v1_memory_limit("268435456\n") == 256 * MIB


def test_empty_file_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        cgroups.parse_int("")
    with pytest.raises(ValueError, match="empty"):
        cgroups.parse_cpu_max("\n")


def test_flat_keyed_and_working_set() -> None:
    stat = "anon 100\nfile 50\ninactive_file 30\ntotal_inactive_file 70\n"
    assert cgroups.flat_keyed(stat, "inactive_file") == 30
    assert cgroups.flat_keyed(stat, "total_inactive_file") == 70
    assert cgroups.flat_keyed(stat, "usage_usec") is None
    assert cgroups.working_set(1000, 300) == 700
    assert cgroups.working_set(100, 300) == 0  # floored, as the kubelet does
    assert cgroups.working_set(100, None) == 100


def test_proc_cgroup_v1_and_v2() -> None:
    assert cgroups.parse_proc_cgroup("0::/kubepods.slice/a.scope\n") == {"": "/kubepods.slice/a.scope"}
    v1 = cgroups.parse_proc_cgroup(
        "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/y\n"
    )
    assert v1["memory"] == "/docker/abc"
    assert v1["cpu"] == v1["cpuacct"] == "/docker/abc"
    assert v1["name=systemd"] == "/x"
    assert v1[""] == "/y"


def test_mountinfo_cgroup_mounts() -> None:
    mounts = cgroups.cgroup_mounts(cgroups.parse_mountinfo(V1_MOUNTINFO + "bad line\n"))
    by_point = {m.mount_point: m for m in mounts}
    assert by_point["/sys/fs/cgroup/cpu,cpuacct"].controllers == {"cpu", "cpuacct"}
    assert by_point["/sys/fs/cgroup/memory"].controllers == {"memory"}
    assert by_point["/sys/fs/cgroup/systemd"].controllers == frozenset()  # a named hierarchy, no controller
    assert by_point["/sys/fs/cgroup/unified"].version == 2
    assert "/" not in by_point  # the overlay root is no cgroup mount
    (v2,) = cgroups.cgroup_mounts(cgroups.parse_mountinfo(V2_MOUNTINFO))
    assert (v2.mount_point, v2.root, v2.version) == ("/sys/fs/cgroup", "/", 2)


def test_mountinfo_octal_escapes() -> None:
    (mount,) = cgroups.parse_mountinfo("50 22 0:40 / /mnt/my\\040space rw - tmpfs tmpfs rw\n")
    assert mount.mount_point == "/mnt/my space"


def test_candidate_dirs_follow_the_mount_root(tmp_path: Path) -> None:
    # A mount showing the hierarchy from /kubepods (as inside a container without its own cgroup namespace).
    mount = cgroups.CgroupMount("/sys/fs/cgroup/memory", "/kubepods", 1, frozenset({"memory"}))
    assert cgroups.candidate_dirs(tmp_path, "/kubepods/pod1/c1", [mount]) == [
        tmp_path / "sys/fs/cgroup/memory/pod1/c1"
    ]
    assert cgroups.candidate_dirs(tmp_path, "/other/c1", [mount]) == []
    # outside our cgroup namespace: never through our mounts
    assert cgroups.candidate_dirs(tmp_path, "/../sandbox", [mount]) == []


def test_v2_nested_kubepods_path(tmp_path: Path) -> None:
    v2_pod(
        tmp_path,
        cpu_max="50000 100000",
        usage_usec=1_500_000,
        memory_max=str(512 * MIB),
        memory_current=300 * MIB,
        inactive_file=40 * MIB,
    )
    reader = open_cgroup_of(tmp_path, 42)
    assert isinstance(reader, CgroupV2Reader)
    assert reader.directory == tmp_path / "sys/fs/cgroup" / SANDBOX_CGROUP.lstrip("/")
    reading = reader.read()
    assert reading.cpu_usage_ns == 1_500_000_000
    assert reading.cpu_limit == 0.5
    assert reading.memory_usage == 260 * MIB
    assert reading.memory_limit == 512 * MIB
    reader.close()


def test_v2_max_values(tmp_path: Path) -> None:
    v2_pod(tmp_path, cpu_max="max 100000", memory_max="max", memory_current=10 * MIB)
    reader = open_cgroup_of(tmp_path, 42)
    assert reader is not None
    reading = reader.read()
    assert reading.cpu_limit is None
    assert reading.memory_limit is None
    reader.close()


def test_reader_rereads_changed_files(tmp_path: Path) -> None:
    directory = v2_pod(tmp_path, usage_usec=1000, memory_current=5 * MIB)
    reader = open_cgroup_of(tmp_path, 42)
    assert reader is not None
    assert reader.read().cpu_usage_ns == 1_000_000
    write(directory / "cpu.stat", "usage_usec 9000\n")
    write(directory / "memory.current", f"{7 * MIB}\n")
    reading = reader.read()
    assert (reading.cpu_usage_ns, reading.memory_usage) == (9_000_000, 7 * MIB)
    reader.close()


def test_v2_without_memory_controller_is_not_used(tmp_path: Path) -> None:
    directory = v2_pod(tmp_path)
    (directory / "memory.current").unlink()
    assert open_cgroup_of(tmp_path, 42) is None


def test_v2_through_the_process_own_view(tmp_path: Path) -> None:
    # Our cgroup namespace is private: the sandbox shows as /../<its scope> and our /sys/fs/cgroup shows
    # only our own cgroup; the sandbox's view (/proc/<pid>/root/sys/fs/cgroup) is its cgroup at the root.
    write(tmp_path / "proc/self/mountinfo", V2_MOUNTINFO)
    write(tmp_path / "proc/self/cgroup", "0::/\n")
    process(tmp_path, 42, "0::/../cri-containerd-5a1c.scope\n")
    v2_cgroup(tmp_path, "/", memory_current=1 * MIB)  # ours: must not be read
    v2_cgroup(tmp_path / "proc/42/root", "/", cpu_max="100000 100000", memory_current=3 * MIB)
    reader = open_cgroup_of(tmp_path, 42)
    assert isinstance(reader, CgroupV2Reader)
    assert reader.directory == tmp_path / "proc/42/root/sys/fs/cgroup"
    assert reader.read().memory_usage == 3 * MIB
    assert reader.read().cpu_limit == 1.0
    reader.close()


def test_v1_hybrid(tmp_path: Path) -> None:
    cpu, memory = v1_pod(tmp_path, usage_ns=2_000_000_000, usage=200 * MIB, total_inactive_file=50 * MIB)
    reader = open_cgroup_of(tmp_path, 42)
    assert isinstance(reader, CgroupV1Reader)
    assert (reader.cpuacct_dir, reader.memory_dir, reader.cpu_dir) == (cpu, memory, cpu)
    reading = reader.read()
    assert reading.cpu_usage_ns == 2_000_000_000
    assert reading.cpu_limit == 0.5
    assert reading.memory_usage == 150 * MIB  # total_inactive_file (hierarchical), not inactive_file
    assert reading.memory_limit == 256 * MIB
    reader.close()


def test_v1_unlimited(tmp_path: Path) -> None:
    v1_pod(tmp_path, quota=-1, limit=V1_UNLIMITED)
    reader = open_cgroup_of(tmp_path, 42)
    assert reader is not None
    reading = reader.read()
    assert (reading.cpu_limit, reading.memory_limit) == (None, None)
    reader.close()


def test_v1_separately_mounted_controllers(tmp_path: Path) -> None:
    # cpu and cpuacct each on their own hierarchy (as on this CI machine).
    write(
        tmp_path / "proc/self/mountinfo",
        "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
        "33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
    )
    process(tmp_path, 42, "4:memory:/box\n2:cpuacct:/box\n1:cpu:/box\n")
    write(tmp_path / "sys/fs/cgroup/cpu/box/cpu.cfs_quota_us", "25000\n")
    write(tmp_path / "sys/fs/cgroup/cpu/box/cpu.cfs_period_us", "100000\n")
    write(tmp_path / "sys/fs/cgroup/cpuacct/box/cpuacct.usage", "123\n")
    for name, value in (
        ("memory.usage_in_bytes", "10"),
        ("memory.limit_in_bytes", "1000"),
        ("memory.stat", ""),
    ):
        write(tmp_path / "sys/fs/cgroup/memory/box" / name, value + "\n")
    reader = open_cgroup_of(tmp_path, 42)
    assert isinstance(reader, CgroupV1Reader)
    reading = reader.read()
    assert (reading.cpu_usage_ns, reading.cpu_limit, reading.memory_usage, reading.memory_limit) == (
        123,
        0.25,
        10,
        1000,
    )
    reader.close()


def test_forced_version(tmp_path: Path) -> None:
    v1_pod(tmp_path)
    assert open_cgroup_of(tmp_path, 42, versions=(2,)) is None
    assert open_cgroup_of(tmp_path, 42, versions=(1,)) is not None


def test_unreadable_process(tmp_path: Path) -> None:
    assert open_cgroup_of(tmp_path, 99) is None


def test_v1_through_the_process_own_mounts(tmp_path: Path) -> None:
    # Our own mounts show only our container's cgroups (bind mounts of our directories, as Docker does on v1);
    # the sandbox's mounts (its /proc/<pid>/mountinfo) show its own: read them through /proc/<pid>/root.
    sandbox = "/kubepods/burstable/pod1/sandbox"
    write(
        tmp_path / "proc/self/mountinfo",
        "35 31 0:32 /kubepods/burstable/pod1/sidecar /sys/fs/cgroup/memory ro"
        " - cgroup cgroup rw,memory\n"
        "32 31 0:29 /kubepods/burstable/pod1/sidecar /sys/fs/cgroup/cpu,cpuacct ro"
        " - cgroup cgroup rw,cpu,cpuacct\n",
    )
    process(tmp_path, 42, f"12:memory:{sandbox}\n4:cpu,cpuacct:{sandbox}\n")
    write(
        tmp_path / "proc/42/mountinfo",
        f"35 31 0:32 {sandbox} /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
        f"32 31 0:29 {sandbox} /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n",
    )
    view = tmp_path / "proc/42/root/sys/fs/cgroup"
    write(view / "cpu,cpuacct/cpuacct.usage", "77\n")
    write(view / "cpu,cpuacct/cpu.cfs_quota_us", "200000\n")
    write(view / "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    for name, text in (
        ("memory.usage_in_bytes", "500"),
        ("memory.limit_in_bytes", "1000"),
        ("memory.stat", ""),
    ):
        write(view / "memory" / name, text + "\n")
    reader = open_cgroup_of(tmp_path, 42)
    assert isinstance(reader, CgroupV1Reader)
    assert reader.memory_dir == view / "memory"
    reading = reader.read()
    assert (reading.cpu_usage_ns, reading.cpu_limit, reading.memory_usage) == (77, 2.0, 500)
    reader.close()


def test_v2_private_namespace_with_readable_mounts(tmp_path: Path) -> None:
    write(tmp_path / "proc/self/mountinfo", V2_MOUNTINFO)
    write(tmp_path / "proc/self/cgroup", "0::/\n")
    process(tmp_path, 42, "0::/../cri-containerd-5a1c.scope\n")
    write(tmp_path / "proc/42/mountinfo", "30 22 0:26 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n")
    v2_cgroup(tmp_path / "proc/42/root", "/", memory_current=9 * MIB)
    reader = open_cgroup_of(tmp_path, 42)
    assert isinstance(reader, CgroupV2Reader)
    assert reader.read().memory_usage == 9 * MIB
    reader.close()


def test_v1_outside_our_namespace_is_not_guessed(tmp_path: Path) -> None:
    # v1 roots have every file a container cgroup has: never take the process's mount root on a guess.
    write(tmp_path / "proc/self/mountinfo", V1_MOUNTINFO)
    process(tmp_path, 42, "12:memory:/../box\n4:cpu,cpuacct:/../box\n")
    view = tmp_path / "proc/42/root/sys/fs/cgroup"
    write(view / "cpu,cpuacct/cpuacct.usage", "1\n")
    for name in ("memory.usage_in_bytes", "memory.limit_in_bytes", "memory.stat"):
        write(view / "memory" / name, "1\n")
    assert open_cgroup_of(tmp_path, 42) is None
