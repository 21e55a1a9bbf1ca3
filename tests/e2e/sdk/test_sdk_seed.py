"""The issue's seed example, run as written in a child process, with SDK telemetry exported for real.

The child sees only the standard environment: KUBECONFIG (the emulator's), OTEL_EXPORTER_OTLP_ENDPOINT and
OTEL_EXPORTER_OTLP_HEADERS. The endpoint is a real OTLP/HTTP receiver decoding what the SDK sent; its presence
alone turns SDK telemetry on. The operator is played by ``stand_in_operator`` here (the real one runs in
test_sdk_with_operator.py).
"""

from __future__ import annotations

import base64
import subprocess
import sys
from typing import Any

import pytest
from kubernetes import client
from sdk_support import OtlpReceiver
from support import subprocess_env

import leap0_contract as c
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

SEED = """\
from leap0 import Leap0Client
client = Leap0Client()
sandbox = client.sandboxes.create(vcpu=2, memory=2048, timeout=30, otel_export=True)
print(sandbox.id)
client.close()
"""


def run_seed(apiserver: ServerThread, receiver_url: str) -> str:
    env = subprocess_env(
        KUBECONFIG=str(apiserver.kubeconfig),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver_url,
        OTEL_EXPORTER_OTLP_HEADERS="x-api-key=abc123",
    )
    env.pop("LEAP0_SDK_OTEL_ENABLED", None)
    result = subprocess.run(
        [sys.executable, "-c", SEED], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def check_seed_sandbox(apiserver: ServerThread, sandbox_id: str, receiver: OtlpReceiver) -> None:
    custom = client.CustomObjectsApi(apiserver.api_client())
    obj: dict[str, Any] = custom.get_namespaced_custom_object(
        c.GROUP, c.VERSION, "default", c.SANDBOX_PLURAL, sandbox_id
    )
    assert obj["status"]["phase"] == c.PHASE_RUNNING
    spec = obj["spec"]
    assert (spec["vcpu"], spec["memory"], spec["timeout"]) == (2, 2048, 30)
    env = {e["name"]: e for e in spec["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == receiver.url
    assert "value" not in env["OTEL_EXPORTER_OTLP_HEADERS"]
    ref = env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"]
    secret = client.CoreV1Api(apiserver.api_client()).read_namespaced_secret(ref["name"], "default")
    assert base64.b64decode(secret.data[ref["key"]]) == b"x-api-key=abc123"

    # SDK telemetry, decoded from the OTLP/HTTP protobuf the SDK's own exporters sent at close().
    spans = [s for s in receiver.spans() if s["name"] == "sandboxes.create"]
    assert len(spans) == 1
    assert spans[0]["scope"] == "leap0-sdk-python"
    assert spans[0]["attributes"]["leap0.sandbox.id"] == sandbox_id
    assert spans[0]["status"] == 1  # STATUS_CODE_OK
    points = receiver.histograms()["sandboxes_create_duration"]
    assert [(p["attributes"], p["count"], p["unit"], p["scope"]) for p in points] == [
        ({"status": "success"}, 1, "ms", "leap0-sdk-python")
    ]
    # The exporters used the standard env: the headers went along with the export.
    assert all(headers.get("x-api-key") == "abc123" for _, headers, _ in receiver.requests)


def test_seed_example_as_written(apiserver: ServerThread, stand_in_operator: Any) -> None:
    stand_in_operator("default")
    with OtlpReceiver() as receiver:
        sandbox_id = run_seed(apiserver, receiver.url)
        assert sandbox_id.startswith("sbx-")
        try:
            check_seed_sandbox(apiserver, sandbox_id, receiver)
        finally:
            client.CustomObjectsApi(apiserver.api_client()).delete_namespaced_custom_object(
                c.GROUP, c.VERSION, "default", c.SANDBOX_PLURAL, sandbox_id
            )
