"""`python -m leap0_operator` as a process: what it does before it talks to any cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import subprocess_env

pytestmark = pytest.mark.e2e


def test_the_command_refuses_a_bad_setting_before_starting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "leap0_operator", "--sidecar-memory", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(KUBECONFIG="/nonexistent"),
    )
    assert result.returncode == 2
    assert "sidecar memory" in result.stderr
    assert "'lots'" in result.stderr


def test_leap0_operator_hides_the_installed_kubernetes_clients_from_kopf() -> None:
    """Where the SDK's dependencies are installed (here, `pip install 'leap0[operator]'`), kopf would import
    the kubernetes client (~50 MiB) for nothing: `leap0-operator` hides it before importing kopf."""
    code = (
        "import sys\n"
        "from leap0_operator.__main__ import hide_unused_kubernetes_clients\n"
        "print(hide_unused_kubernetes_clients())\n"
        "import kopf\n"
        "print(sorted(n for n in ('kubernetes', 'kubernetes_asyncio') if sys.modules.get(n) is not None))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=subprocess_env()
    )
    hidden, loaded = result.stdout.splitlines()
    assert "kubernetes" in hidden
    assert loaded == "[]"


def test_reading_the_settings_does_not_import_kopf() -> None:
    """``leap0-operator`` parses its settings before hiding the unused Kubernetes clients from kopf; a kopf
    imported by the settings would load them (about 50 MiB more RSS, bench/operator_bench.py)."""
    code = "import sys, leap0_operator.config; print('kopf' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=subprocess_env()
    )
    assert result.stdout.strip() == "False", result.stderr
