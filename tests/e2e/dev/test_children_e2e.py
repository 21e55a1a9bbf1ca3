"""``leap0_dev.children``: what a process starts with ``children.popen`` ends when that process ends, however
it ends, and so do the children's own children. Each guard on its own: the parent-death signal (through
``setpriv`` and through the ``preexec_fn`` used where setpriv is missing) and the reaper."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest
from support import alive, subprocess_env, wait_for

pytestmark = pytest.mark.e2e

# Starts a child (which starts a grandchild) with children.popen, prints the pids, then waits to be killed
# or, with "exit", exits at once without any cleanup of its own.
PARENT = """
import subprocess, sys, time
from leap0_dev import children
guard, end = sys.argv[1], sys.argv[2]
if guard == "preexec":
    children._setpriv = []  # as on a machine without util-linux's setpriv
child = children.popen(
    [sys.executable, "-c", "import subprocess, sys, time; "
     "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
     "print(p.pid, flush=True); time.sleep(600)"],
    stdout=subprocess.PIPE, text=True,
)
grandchild = child.stdout.readline().strip()
print(child.pid, grandchild, children._reaper.pid, flush=True)
if end == "exit":
    sys.exit(0)
time.sleep(600)
"""


@pytest.fixture
def started() -> Iterator[list[psutil.Process]]:
    """Processes a test saw: whatever is left is killed afterwards."""
    processes: list[psutil.Process] = []
    yield processes
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def parent(guard: str, end: str, started: list[psutil.Process]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", PARENT, guard, end], env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    pids = [int(pid) for pid in process.stdout.readline().split()]
    assert len(pids) == 3, pids
    started.extend(psutil.Process(pid) for pid in pids)
    return process


@pytest.mark.parametrize("guard", ["setpriv", "preexec"])
def test_sigkill_of_the_parent_ends_its_children_and_grandchildren(
    guard: str, started: list[psutil.Process]
) -> None:
    process = parent(guard, "wait", started)
    assert all(map(alive, started))  # the child, the grandchild, the reaper
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    wait_for(lambda: not any(map(alive, started)), 20, "the child, the grandchild and the reaper to end")


def test_a_parent_exiting_without_cleanup_leaves_nothing(started: list[psutil.Process]) -> None:
    process = parent("setpriv", "exit", started)
    assert process.wait(10) == 0
    wait_for(lambda: not any(map(alive, started)), 20, "the child, the grandchild and the reaper to end")


@pytest.mark.parametrize("guard", ["setpriv", "preexec"])
def test_the_parent_death_signal_alone_ends_the_child(guard: str, started: list[psutil.Process]) -> None:
    process = parent(guard, "wait", started)
    child, _grandchild, reaper = started
    reaper.kill()  # only the kernel's parent-death signal is left
    wait_for(lambda: not alive(reaper), 30, "the reaper to end")
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    wait_for(lambda: not alive(child), 20, "the child to end by its parent-death signal")
