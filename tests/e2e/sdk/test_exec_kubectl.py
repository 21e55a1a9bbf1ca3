"""The emulator's exec endpoint is the real protocol: kubectl exec (websocket v5) works against it too."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from kubernetes import client
from support import kubectl_path

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


def _kubectl(apiserver: ServerThread, namespace: str, *args: str, stdin: str | None = None) -> Any:
    return subprocess.run(
        [kubectl_path(), "--kubeconfig", str(apiserver.kubeconfig), "-n", namespace, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kubectl_exec_gets_output_exit_code_and_stdin(
    apiserver: ServerThread, namespace: str, exec_runner: Any
) -> None:
    core = client.CoreV1Api(apiserver.api_client())
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "sandbox", "image": "x"}]}}
    core.create_namespaced_pod(namespace, pod)
    core.patch_namespaced_pod_status("p", namespace, {"status": {"phase": "Running"}})

    result = _kubectl(
        apiserver, namespace, "exec", "p", "-c", "sandbox", "--", "sh", "-c", "echo out; echo err >&2; exit 3"
    )
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert result.stderr.startswith("err\n")
    assert "command terminated with exit code 3" in result.stderr

    piped = _kubectl(apiserver, namespace, "exec", "-i", "p", "--", "cat", stdin="piped\n")
    assert (piped.returncode, piped.stdout) == (0, "piped\n")
