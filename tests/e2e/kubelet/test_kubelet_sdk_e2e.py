"""The SDKs and ``leap0 mcp`` through kube-apiserver: sandboxes run by the local runner as the kubelet, exec
and files through the API server's exec (WebSocket from the client, SPDY to the kubelet endpoint)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from mcp_support import mcp_command, ok, stdio_session
from sdk_support import OtlpReceiver
from support import REPO, subprocess_env

import leap0_contract as c
from leap0_dev.controlplane import ControlPlane
from leap0_dev.controlplane.node import LocalNode

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

JS_DIR = REPO / "js"
# The JavaScript SDK's seed example (js/README.md), its endpoint and headers from the environment as the
# Python seed test gives them (js/test/seed.test.ts runs the verbatim text against the emulator).
JS_SEED = """\
import { Leap0Client } from "leap0";

const client = new Leap0Client({ sdkOtelEnabled: true });
const sandbox = await client.sandboxes.create({
  vcpu: 2,
  memory: 2048,
  timeout: 30,
  otelExport: true,
});

console.log(sandbox.id);
await client.close();
"""


def test_the_python_quickstart_runs_exec_and_files_through_kube_apiserver(
    control_plane: ControlPlane,
    kubelet_node: LocalNode,
    k8s_namespace: str,
    start_operator: Callable[..., AbstractContextManager[Any]],
) -> None:
    env = subprocess_env(KUBECONFIG=str(control_plane.kubeconfig))
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "LEAP0_SDK_OTEL_ENABLED"):
        env.pop(name, None)
    with start_operator():
        result = subprocess.run(
            [sys.executable, str(REPO / "examples" / "sdk_quickstart.py"), "--namespace", k8s_namespace],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "exit code 0, stdout: 'hello from leap0\\nLinux'" in result.stdout
    assert "read back: written by the SDK" in result.stdout
    assert "deleted sandbox sbx-" in result.stdout


def test_the_javascript_seed_example_through_kube_apiserver(
    control_plane: ControlPlane,
    kubelet_node: LocalNode,
    k8s_namespace: str,
    real_api: Any,
    start_operator: Callable[..., AbstractContextManager[Any]],
    tmp_path: Path,
) -> None:
    node = shutil.which("node")
    assert node is not None, "node (20+) is needed for the JavaScript SDK"
    assert (JS_DIR / "dist" / "index.js").exists(), (
        "js/dist is missing: run `npm ci` in js/ (scripts/test.sh does)"
    )
    # `import ... from "leap0"` as in a project that installed the package: node_modules/leap0 is js/.
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "leap0").symlink_to(JS_DIR)
    script = tmp_path / "seed.mjs"
    script.write_text(JS_SEED)
    with start_operator(), OtlpReceiver() as receiver:
        result = subprocess.run(
            [node, str(script)],
            env={
                "PATH": subprocess_env()["PATH"],
                "HOME": str(tmp_path),
                "KUBECONFIG": _namespaced_kubeconfig(control_plane, k8s_namespace, tmp_path),
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc123",
            },
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        sandbox_id = result.stdout.strip()
        obj = client.CustomObjectsApi(real_api).get_namespaced_custom_object(
            c.GROUP, c.VERSION, k8s_namespace, c.SANDBOX_PLURAL, sandbox_id
        )
        assert obj["status"]["phase"] == c.PHASE_RUNNING  # create() waits for Running: the runner ran it
        ref = next(e for e in obj["spec"]["env"] if e["name"] == "OTEL_EXPORTER_OTLP_HEADERS")
        secret_ref = ref["valueFrom"]["secretKeyRef"]
        secret = client.CoreV1Api(real_api).read_namespaced_secret(secret_ref["name"], k8s_namespace)
        assert base64.b64decode(secret.data[secret_ref["key"]]) == b"x-api-key=abc123"
        assert secret.metadata.owner_references[0].uid == obj["metadata"]["uid"]
        # The sidecar (a kubelet process here) got the headers from the Secret, through the Node authorizer.
        local = kubelet_node.runner.find(k8s_namespace, sandbox_id)
        assert local is not None
        sidecar = next(x for x in local.sidecars if x.spec["name"] == c.TELEMETRY_CONTAINER)
        assert sidecar.env["OTEL_EXPORTER_OTLP_HEADERS"] == "x-api-key=abc123"
        # SDK telemetry: the JS exporters' OTLP/JSON, sent at close() with the headers of the environment.
        spans = [
            (scope["scope"]["name"], span["name"])
            for path, headers, body in receiver.requests
            if path == "/v1/traces" and headers.get("content-type", "").startswith("application/json")
            for resource in json.loads(body)["resourceSpans"]
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
        ]
        assert ("leap0-sdk-js", "sandboxes.create") in spans
        assert all(headers.get("x-api-key") == "abc123" for _, headers, _ in receiver.requests)


def _namespaced_kubeconfig(control_plane: ControlPlane, namespace: str, folder: Path) -> str:
    """The admin kubeconfig with the test's namespace as its context's (the seed names none)."""
    import yaml

    doc = yaml.safe_load(control_plane.kubeconfig.read_text())
    for context in doc["contexts"]:
        context["context"]["namespace"] = namespace
    path = folder / "namespaced.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


async def test_the_mcp_tools_through_kube_apiserver(
    control_plane: ControlPlane,
    kubelet_node: LocalNode,
    k8s_namespace: str,
    start_operator: Callable[..., AbstractContextManager[Any]],
) -> None:
    with start_operator():
        async with stdio_session(mcp_command(control_plane.kubeconfig, k8s_namespace)) as session:
            created = await ok(session, "create_sandbox", vcpu=1, memory=512, timeout=300)
            sid = created["sandbox_id"]
            assert created["phase"] == c.PHASE_RUNNING
            result = await ok(
                session, "execute_command", sandbox_id=sid, command="echo out; echo err >&2; exit 3"
            )
            assert (result["exit_code"], result["stdout"], result["stderr"]) == (3, "out\n", "err\n")
            await ok(session, "write_file", sandbox_id=sid, path="notes/hello.txt", content="héllo\n")
            read = await ok(session, "read_file", sandbox_id=sid, path="notes/hello.txt")
            assert read["content"] == "héllo\n"
            listing = await ok(session, "list_files", sandbox_id=sid, path="notes")
            assert [entry["name"] for entry in listing["entries"]] == ["hello.txt"]
            deleted = await ok(session, "delete_sandbox", sandbox_id=sid)
            assert deleted["deleted"] is True
