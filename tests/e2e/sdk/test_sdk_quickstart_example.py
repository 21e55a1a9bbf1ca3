"""examples/sdk_quickstart.py runs as documented against the emulator (KUBECONFIG from the emulator)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from support import REPO, subprocess_env

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "sdk_quickstart.py"


def _run(apiserver: ServerThread, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(KUBECONFIG=str(apiserver.kubeconfig))
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "LEAP0_SDK_OTEL_ENABLED"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--namespace", namespace, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_quickstart_against_the_bare_api(apiserver: ServerThread, namespace: str) -> None:
    result = _run(apiserver, namespace, "--no-wait")
    assert result.returncode == 0, result.stderr
    assert "created sandbox sbx-" in result.stdout
    assert "deleted sandbox sbx-" in result.stdout


def test_quickstart_without_anything_running_pods_says_so(apiserver: ServerThread, namespace: str) -> None:
    result = _run(apiserver, namespace, "--wait-timeout", "0.5")
    assert result.returncode == 1
    assert "not Running after 0.5 s" in result.stderr
    assert "--no-wait" in result.stderr


def test_quickstart_full_path_with_pods_running(
    apiserver: ServerThread, namespace: str, stand_in_operator: Any, exec_runner: Any
) -> None:
    stand_in_operator(namespace)
    result = _run(apiserver, namespace)
    assert result.returncode == 0, result.stderr
    assert "exit code 0, stdout: 'hello from leap0\\nLinux'" in result.stdout
    assert "read back: written by the SDK" in result.stdout
