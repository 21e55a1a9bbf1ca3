"""``leap0 dev up --control-plane real`` and ``leap0 dev control-plane up --kubelet`` as a user runs them."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support import (
    alive,
    demo_shown,
    dev_up_process,
    subprocess_env,
    wait_for,
)

from leap0_dev.controlplane.build import MODULES_DIR

pytestmark = pytest.mark.e2e


@pytest.mark.realk8s
def test_leap0_dev_up_on_the_real_control_plane_shows_metrics_and_spans_then_stops(tmp_path: Path) -> None:
    """The quickstart, unchanged, on kube-apiserver with the runner as the kubelet; Ctrl-C leaves nothing."""
    with dev_up_process(tmp_path, "--control-plane=real", "--metrics-interval=2") as (process, out):
        wait_for(
            lambda: demo_shown(out, printed=False),
            180,
            f"the seven metrics and the demo's spans in:\n{out}",
            interval=0.5,
        )
        text = out.read_text()
        assert "(kube-apiserver); export KUBECONFIG=" in text
        assert "kubelet: node " in text
        assert "sandbox default/demo: Running" in text
        children = [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
        names = {psutil.Process(pid).name() for pid in children if alive(pid)}
        assert {"etcd", "kube-apiserver", "leap0-kubelet"} <= names
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        assert "up: stopped" in out.read_text()
        wait_for(lambda: not any(map(alive, children)), 20, "every process dev up started to stop")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node-cpu=four"], "--node-cpu 'four': not a Kubernetes quantity"),
        (["--node-memory=0"], "--node-memory '0': must be more than 0"),
        (
            ["--node-name=Not_A_Name"],
            "--node-name 'Not_A_Name': a node name must be a lower-case DNS subdomain",
        ),
    ],
)
def test_a_bad_node_option_is_one_line_naming_it_before_anything_starts(
    args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "leap0.cli", "dev", "control-plane", "up", "--kubelet", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"leap0 dev control-plane up: {message}")


def test_the_go_code_is_gofmt_formatted() -> None:
    gofmt = shutil.which("gofmt")
    assert gofmt is not None, "gofmt (with Go 1.26+) is needed: the control plane is built with Go"
    unformatted = subprocess.run(
        [gofmt, "-l", str(MODULES_DIR)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert unformatted == []
