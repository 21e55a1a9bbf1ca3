"""The SDK with the real operator running against the embedded API server (kubelet played by the test).

The operator runs as a process (``python -m leap0_operator``) serving the test's namespace; the test plays
only the kubelet (pod status), and the emulator answers exec with the kubelet's protocol.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from sdk_support import OtlpReceiver, StandInKubelet, kubelet_image_pull_status
from support import subprocess_env, wait_for

import leap0_contract as c
from leap0 import Leap0Client, SandboxFailedError
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


@pytest.fixture
def kubeconfig_here(apiserver: ServerThread, namespace: str, tmp_path: Path) -> Path:
    """The emulator's kubeconfig with the test's namespace as the context's namespace."""
    doc = yaml.safe_load(apiserver.kubeconfig.read_text())
    for ctx in doc["contexts"]:
        ctx["context"]["namespace"] = namespace
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


SEED = """\
from leap0 import Leap0Client
client = Leap0Client()
sandbox = client.sandboxes.create(vcpu=2, memory=2048, timeout=30, otel_export=True)
print(sandbox.id)
client.close()
"""


def test_seed_example_with_the_operator(
    apiserver: ServerThread,
    namespace: str,
    operator: Any,
    kubelet: StandInKubelet,
    kubeconfig_here: Path,
) -> None:
    with OtlpReceiver() as receiver:
        env = subprocess_env(
            KUBECONFIG=str(kubeconfig_here),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_EXPORTER_OTLP_HEADERS="x-api-key=abc123",
        )
        result = subprocess.run(
            [sys.executable, "-c", SEED], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        sandbox_id = result.stdout.strip()
        assert [s["attributes"]["leap0.sandbox.id"] for s in receiver.spans()] == [sandbox_id]

    api = apiserver.api_client()
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, sandbox_id
    )
    assert obj["status"]["phase"] == c.PHASE_RUNNING
    pod = client.CoreV1Api(api).read_namespaced_pod(obj["status"]["podName"], namespace)
    # The operator handed the user's endpoint and the headers' secretKeyRef to the sidecar.
    containers = [*(pod.spec.init_containers or []), *pod.spec.containers]
    env = {e.name: e for ctr in containers if ctr.name == c.TELEMETRY_CONTAINER for e in ctr.env or []}
    assert env[c.OTEL_EXPORTER_OTLP_ENDPOINT].value == receiver.url
    ref = env[c.OTEL_EXPORTER_OTLP_HEADERS].value_from.secret_key_ref
    secret = client.CoreV1Api(api).read_namespaced_secret(ref.name, namespace)
    assert base64.b64decode(secret.data[ref.key]) == b"x-api-key=abc123"


def test_lifecycle_and_tool_calls_with_the_operator(
    apiserver: ServerThread, namespace: str, operator: Any, kubelet: StandInKubelet, sdk: Leap0Client
) -> None:
    sandbox = sdk.sandboxes.create(vcpu=2, memory=2048, timeout=60, wait_timeout=60)
    assert sandbox.phase == c.PHASE_RUNNING
    assert sandbox.pod_name
    assert sandbox.expires_at is not None
    result = sandbox.process.execute("echo hello; exit 2")
    assert (result.exit_code, result.stdout) == (2, "hello\n")
    sandbox.filesystem.write("x.txt", "via the operator's pod")
    assert sandbox.filesystem.read_text("x.txt") == "via the operator's pod"
    assert [s.id for s in sdk.sandboxes.list()] == [sandbox.id]

    sandbox.delete()
    core = client.CoreV1Api(apiserver.api_client())
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, timeout=20)


def test_image_pull_failure_reaches_the_caller_with_the_operators_reason(
    apiserver: ServerThread, namespace: str, operator: Any, kubelet: StandInKubelet, sdk: Leap0Client
) -> None:
    kubelet.behaviour = kubelet_image_pull_status
    with pytest.raises(SandboxFailedError) as info:
        sdk.sandboxes.create(image="registry.invalid/nope:1", wait_timeout=60)
    assert info.value.reason == c.REASON_IMAGE_PULL_ERROR
    assert "registry.invalid/nope:1" in str(info.value)


def test_create_naming_a_template_that_arrives_a_moment_later_waits_for_it(
    apiserver: ServerThread, namespace: str, operator: Any, kubelet: StandInKubelet, sdk: Leap0Client
) -> None:
    # `kubectl apply -f sandbox.yaml -f template.yaml`, or a script creating both: the Sandbox may reach the
    # operator before its template. The sandbox waits Pending (TemplateNotFound), and create() with it.
    template = {
        "apiVersion": c.API_VERSION,
        "kind": c.TEMPLATE_KIND,
        "metadata": {"name": "arrives-late"},
        "spec": {"vcpu": 3},
    }
    custom = client.CustomObjectsApi(apiserver.api_client())
    plural = c.TEMPLATE_PLURAL
    timer = threading.Timer(
        2.0, lambda: custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, template)
    )
    timer.start()
    try:
        sandbox = sdk.sandboxes.create(template="arrives-late", wait_timeout=60)
    finally:
        timer.join()
    assert sandbox.phase == c.PHASE_RUNNING
    obj = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, sandbox.id)
    assert obj["status"]["vcpu"] == 3  # the template's
    reasons = [
        e.reason
        for e in client.CoreV1Api(apiserver.api_client()).list_namespaced_event(namespace).items
        if e.involved_object.name == sandbox.id
    ]
    assert reasons[0] == c.REASON_TEMPLATE_NOT_FOUND  # it did wait
    assert c.PHASE_FAILED not in reasons
