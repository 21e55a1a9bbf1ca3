"""What the benchmarks stand up, in one place: the embedded API server as a child process (so its CPU is its
own and it shares no interpreter with what is measured), and a stand-in operator marking each new Sandbox
Running (the tests' own, ``tests/sdk_support.py``: one play-the-operator loop for tests and benchmarks).

Import as ``from bench.chain import ...`` with the repository's root on ``sys.path``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.append(str(REPO / "tests"))

from sdk_support import StandInOperator, running_status  # noqa: E402

__all__ = ["REPO", "StandInOperator", "running_status", "start_apiserver", "stop_apiserver"]


def start_apiserver(workdir: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Path]:
    """``leap0 dev apiserver --port 0`` writing ``workdir/kubeconfig.yaml``, once it listens."""
    kubeconfig = workdir / "kubeconfig.yaml"
    environment = env or dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "leap0.cli",
            "dev",
            "apiserver",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("kubeconfig written"):
            return proc, kubeconfig
    raise RuntimeError(f"leap0 dev apiserver did not start (exit code {proc.wait()})")


def stop_apiserver(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    if proc.stdout is not None:
        proc.stdout.close()
