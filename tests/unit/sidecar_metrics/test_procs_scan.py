"""Choosing the sandbox's processes in a pod's shared process namespace; the psutil CPU arithmetic."""

from __future__ import annotations

from pathlib import Path

from sidecar_metrics_fixtures import SIDECAR_CGROUP, process, v1_pod, v2_pod

from leap0_sidecar.procs import cpu_seconds_delta, list_pids, sandbox_pids


def test_scan_skips_pause_sidecar_and_kernel_threads(tmp_path: Path) -> None:
    v2_pod(tmp_path, sandbox_pid=42)
    process(tmp_path, 9, f"0::{SIDECAR_CGROUP}\n", "leap0-sidecar\0--child\0")  # the sidecar's own child
    assert list_pids(tmp_path) == [1, 2, 7, 9, 42, 43]
    assert sandbox_pids(tmp_path) == [42, 43]
    assert sandbox_pids(tmp_path, own_pid=42) == [43]


def test_scan_v1(tmp_path: Path) -> None:
    v1_pod(tmp_path, sandbox_pid=300)
    assert sandbox_pids(tmp_path) == [300]


def test_scan_of_missing_proc(tmp_path: Path) -> None:
    assert sandbox_pids(tmp_path / "nothing") == []


def test_cpu_seconds_delta() -> None:
    previous = {(10, 100.0): 5.0, (11, 100.0): 1.0, (12, 100.0): 3.0}
    current = {
        (10, 100.0): 5.5,  # +0.5
        (11, 100.0): 0.5,  # never negative
        (12, 160.0): 0.25,  # pid 12 reused by a new process started after the previous reading: all of it
        (13, 150.0): 0.25,  # new process: all of it
        (14, 50.0): 9.0,  # old process seen for the first time: none of it
    }
    assert cpu_seconds_delta(previous, current, previous_time=140.0) == 1.0
    assert cpu_seconds_delta({}, {}, 0.0) == 0.0
