"""The emulator's exec endpoint is the real protocol: kubectl exec (websocket v5) works against it too."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from support import kubectl

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


def test_kubectl_exec_gets_output_exit_code_and_stdin(
    apiserver: ServerThread, namespace: str, exec_runner: Any
) -> None:
    core = client.CoreV1Api(apiserver.api_client())
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "sandbox", "image": "x"}]}}
    core.create_namespaced_pod(namespace, pod)
    core.patch_namespaced_pod_status("p", namespace, {"status": {"phase": "Running"}})

    result = kubectl(
        apiserver.kubeconfig,
        *("-n", namespace, "exec", "p", "-c", "sandbox", "--", "sh", "-c", "echo out; echo err >&2; exit 3"),
        check=False,
    )
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert result.stderr.startswith("err\n")
    assert "command terminated with exit code 3" in result.stderr

    piped = kubectl(
        apiserver.kubeconfig, "-n", namespace, "exec", "-i", "p", "--", "cat", input="piped\n", check=False
    )
    assert (piped.returncode, piped.stdout) == (0, "piped\n")
