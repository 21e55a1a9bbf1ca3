"""kopf runs against the embedded API server: discovery, namespace listing, watches, patches, finalizers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from support import subprocess_env, wait_for

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

G, V, P = contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL

OPERATOR = """
import kopf

@kopf.on.create("leap0.dev", "v1alpha1", "sandboxes")
def created(name, patch, **_):
    patch.status["phase"] = "Running"

@kopf.on.delete("leap0.dev", "v1alpha1", "sandboxes")
def deleted(name, **_):
    pass
"""


@pytest.fixture
def kopf_operator(apiserver: ServerThread, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    script = tmp_path / "op.py"
    script.write_text(OPERATOR)
    env = subprocess_env(KUBECONFIG=str(apiserver.kubeconfig))
    cmd = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", str(script)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc
    proc.terminate()
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_kopf_handles_creation_and_deletion_with_its_finalizer(
    apiserver: ServerThread, namespace: str, kopf_operator: subprocess.Popen[str]
) -> None:
    custom = client.CustomObjectsApi(apiserver.api_client())
    body = {"apiVersion": f"{G}/{V}", "kind": "Sandbox", "metadata": {"name": "s"}, "spec": {"timeout": 60}}
    custom.create_namespaced_custom_object(G, V, namespace, P, body)

    def seen() -> bool:
        obj = custom.get_namespaced_custom_object(G, V, namespace, P, "s")
        return (obj.get("status") or {}).get("phase") == "Running"

    try:
        wait_for(seen, 30, "kopf to see the Sandbox")
    except AssertionError:
        kopf_operator.terminate()
        raise AssertionError(kopf_operator.communicate(timeout=20)[0]) from None
    obj = custom.get_namespaced_custom_object(G, V, namespace, P, "s")
    assert obj["metadata"]["finalizers"]  # kopf's own, for its delete handler
    custom.delete_namespaced_custom_object(G, V, namespace, P, "s")

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(G, V, namespace, P, "s")
        except client.ApiException as err:
            return err.status == 404
        return False

    wait_for(gone, 30, "the Sandbox to go")
    assert kopf_operator.poll() is None, "kopf exited"
