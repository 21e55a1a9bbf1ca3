"""Nothing ``leap0 dev up`` started outlives it: not after Ctrl-C with its output pipe closed
(``leap0 dev up | tee log``, then Ctrl-C, which ends tee first), not after SIGKILL. That covers the operator,
each sidecar, the demo app, and a process a sandbox's app started itself."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import yaml
from support import alive, dev_up_command, kubectl, stop_process_tree, subprocess_env, wait_for

import leap0_contract as contract

pytestmark = pytest.mark.e2e

MARK = "leap0-test-grandchild"
# A sandbox app that starts a process of its own, as apps do (a worker, a shell): it must go too.
PARENT_APP = (
    "import subprocess, sys, time; "
    f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {MARK!r}]); "
    "time.sleep(600)"
)


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    output: int  # the read end of its stdout pipe (non-blocking)
    kubeconfig: Path
    text: str = ""
    started: list[psutil.Process] = field(default_factory=list)

    def read(self) -> str:
        """What it printed so far (reading keeps the pipe from filling)."""
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self.output, 65536):
                self.text += chunk.decode(errors="replace")
        return self.text

    def close_output(self) -> None:
        """Close the read end of its stdout: as ``tee`` ending, every later line it prints fails."""
        if self.output >= 0:
            os.close(self.output)
            self.output = -1

    def tree(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    """``leap0 dev up`` on free ports, its stdout a pipe, with the demo and a sandbox whose app starts a child
    process, once all of them run."""
    read_end, write_end = os.pipe()
    command = dev_up_command("--metrics-interval=1")
    process = subprocess.Popen(
        command, env=subprocess_env(), stdout=write_end, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    os.close(write_end)
    os.set_blocking(read_end, False)
    running = Up(process, read_end, tmp_path / "kubeconfig.yaml")
    try:
        wait_for(lambda: "up: Ctrl-C stops everything" in running.read(), 60, "dev up to start")
        sandbox = {
            "apiVersion": contract.API_VERSION,
            "kind": contract.SANDBOX_KIND,
            "metadata": {"name": "parent", "namespace": "default"},
            "spec": {"memory": 512, "timeout": 600, "command": ["python", "-c", PARENT_APP]},
        }
        kubectl(running.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(sandbox))

        def everything_runs() -> bool:
            running.read()
            lines = [command_line(p) for p in running.tree()]
            return (
                sum("leap0_sidecar" in line for line in lines) == 2
                and any("leap0_operator" in line for line in lines)
                and any("leap0-demo" in line for line in lines)
                and any(MARK in line for line in lines)
            )

        what = "the operator, two sidecars, the demo and the grandchild"
        wait_for(everything_runs, 90, f"{what}:\n{running.text}")
        running.started = running.tree()
        yield running
    finally:
        running.close_output()
        stop_process_tree(process)
        for child in running.started:  # after a failure: what the test saw running must not stay
            with contextlib.suppress(psutil.Error):
                child.kill()


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone meanwhile
        return ""


def test_ctrl_c_with_the_output_pipe_closed_stops_everything(up: Up) -> None:
    started = up.started
    up.close_output()
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(60) == 0
    wait_for(lambda: not any(map(alive, started)), 20, f"every process dev up started to end: {started}")


def test_sigkill_of_dev_up_ends_every_process_it_started(up: Up) -> None:
    started = up.started
    up.process.kill()
    up.process.wait(10)
    wait_for(lambda: not any(map(alive, started)), 20, f"every process dev up started to end: {started}")
