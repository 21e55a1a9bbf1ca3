"""Workspace disk use: when statvfs is exact, and the bounded walk on a real temporary directory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from leap0_sidecar.cgroups import parse_mountinfo
from leap0_sidecar.filesystem import WorkspaceProbe, statvfs_is_exact, walk_usage

MIB = 1 << 20

MOUNTINFO = (
    "22 1 0:21 / / rw - overlay overlay rw\n"
    # a tmpfs emptyDir (medium: Memory): a whole filesystem
    "60 22 0:50 / /scratch rw - tmpfs tmpfs rw,size=65536k\n"
    # a disk emptyDir: a bind mount of a directory of the node's disk
    "61 22 259:1 /var/lib/kubelet/pods/uid/volumes/kubernetes.io~empty-dir/ws /workspace rw"
    " - ext4 /dev/root rw\n"
)


def test_statvfs_exact_only_for_a_whole_filesystem() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert statvfs_is_exact(mounts, "/scratch")
    assert not statvfs_is_exact(mounts, "/workspace")
    assert not statvfs_is_exact(mounts, "/scratch/sub")  # a directory inside a filesystem
    # a later mount over the same point hides the earlier one
    over = [*mounts, *parse_mountinfo("70 60 0:51 /x /scratch rw - ext4 /dev/sdb rw\n")]
    assert not statvfs_is_exact(over, "/scratch")


def _tree(top: Path) -> None:
    (top / "a/b").mkdir(parents=True)
    (top / "a/one.bin").write_bytes(os.urandom(1 * MIB))
    (top / "a/b/two.bin").write_bytes(os.urandom(2 * MIB))
    os.link(top / "a/b/two.bin", top / "a/two-again.bin")  # a hard link counts once
    (top / "a/link").symlink_to("/usr")  # not followed


def test_walk_counts_allocated_bytes(tmp_path: Path) -> None:
    _tree(tmp_path)
    result = walk_usage(tmp_path, max_entries=1000, max_seconds=5.0)
    assert result.complete
    assert 3 * MIB <= result.usage <= 3 * MIB + 128 * 1024
    assert result.entries == 7  # top, a, b, one, two, two-again, link


def test_walk_stops_at_the_entry_cap(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"f{i}").write_bytes(b"x" * 5000)
    result = walk_usage(tmp_path, max_entries=10, max_seconds=5.0)
    assert not result.complete
    assert result.entries == 10
    assert 0 < result.usage < 50 * 4096


def test_probe_walk_mode_and_limits(tmp_path: Path) -> None:
    _tree(tmp_path)
    probe = WorkspaceProbe(tmp_path, limit_bytes=12 * MIB, walk_interval=0.05)
    try:
        assert probe.mode == "walk"
        assert probe.wait_ready(5.0)
        reading = probe.read()
        assert reading is not None
        assert reading.limit == 12 * MIB
        assert 3 * MIB <= reading.usage <= 3 * MIB + 128 * 1024
        # a later walk sees new data
        (tmp_path / "more.bin").write_bytes(os.urandom(1 * MIB))
        probe.walk_now()
        later = probe.read()
        assert later is not None
        assert later.usage >= reading.usage + MIB
    finally:
        probe.close()
    unlimited = WorkspaceProbe(tmp_path, walk_interval=60)
    try:
        assert unlimited.wait_ready(5.0)
        reading = unlimited.read()
        assert reading is not None
        st = os.statvfs(tmp_path)
        assert reading.limit == st.f_blocks * st.f_frsize  # the volume's capacity
    finally:
        unlimited.close()


def test_probe_of_a_missing_workspace(tmp_path: Path) -> None:
    probe = WorkspaceProbe(tmp_path / "missing", walk_interval=60)
    try:
        assert probe.wait_ready(5.0)
        assert probe.read() is None
    finally:
        probe.close()


def test_walk_stops_when_asked(tmp_path: Path) -> None:
    for i in range(3000):
        (tmp_path / f"f{i}").touch()
    stop = threading.Event()
    stop.set()
    result = walk_usage(tmp_path, max_entries=1_000_000, max_seconds=60.0, stop=stop)
    assert not result.complete
    assert result.entries <= 1024
