"""One behaviour, two languages: the Python and the JavaScript SDK create the same sandbox from the same
arguments, and the resulting Sandbox objects (spec, env, status fields) and OTLP Secrets are compared field by
field. The JavaScript SDK runs in a ``node`` child process from js/dist (``npm ci`` in js/ builds it)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from support import REPO

import leap0_contract as c
from leap0 import Leap0Client
from leap0._exec import build_exec_argv, supervised_argv
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

JS_DIST = REPO / "js" / "dist" / "index.js"
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# The same call in both SDKs' spellings.
PY_ARGS: dict[str, Any] = {
    "vcpu": 2,
    "memory": 2048,
    "timeout": 60,
    "env_vars": {"APP": "1", "OTEL_SERVICE_NAME": "svc"},
    "otel_export": True,
    "image": "python:3.12-slim",
    "command": ["sleep"],
    "args": ["600"],
    "labels": {"team": "parity"},
    "disk": 1024,
    "network": {"policy": "Custom", "allowCidrs": ["203.0.113.0/24", "2001:db8::/32"]},
    "workspace": {"persistent": True, "storageClassName": "fast"},
    "idle_timeout": 900,
    "on_timeout": "Pause",
    "telemetry_logs": False,
}
JS_ARGS: dict[str, Any] = {
    "vcpu": 2,
    "memory": 2048,
    "timeout": 60,
    "envVars": {"APP": "1", "OTEL_SERVICE_NAME": "svc"},
    "otelExport": True,
    "image": "python:3.12-slim",
    "command": ["sleep"],
    "args": ["600"],
    "labels": {"team": "parity"},
    "disk": 1024,
    "network": {"policy": "Custom", "allowCidrs": ["203.0.113.0/24", "2001:db8::/32"]},
    "workspace": {"persistent": True, "storageClassName": "fast"},
    "idleTimeout": 900,
    "onTimeout": "Pause",
    "telemetryLogs": False,
}
# Python field -> JavaScript field, where camelCase alone does not say it.
RENAMED = {"pod_ip": "podIP"}
# Identity and timing: different for two sandboxes by nature.
IDENTITY = {
    "id",
    "uid",
    "resource_version",
    "created_at",
    "started_at",
    "expires_at",
    "paused_at",
    "resumed_at",
}

JS_CHILD = """
import { Leap0Client } from %(dist)s;
const { NS: namespace, KC: kubeconfig, ARGS: args } = process.env;
const client = new Leap0Client({ namespace, kubeconfig, sdkOtelEnabled: false });
const sandbox = await client.sandboxes.create(JSON.parse(args));
console.log(JSON.stringify(sandbox));
await client.close();
"""


def camel(name: str) -> str:
    if name in RENAMED:
        return RENAMED[name]
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def anonymous(value: Any, sandbox_id: str) -> Any:
    """``value`` with the sandbox's id replaced by ``<id>`` everywhere (names derived from it included)."""
    return json.loads(json.dumps(value).replace(sandbox_id, "<id>"))


def run_js(tmp_path: Path, apiserver: ServerThread, namespace: str, env: dict[str, str]) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node (20+) is needed for the JavaScript SDK"
    assert JS_DIST.exists(), "js/dist is missing: run `npm ci` in js/ (scripts/test.sh does)"
    script = tmp_path / "parity.mjs"
    script.write_text(JS_CHILD % {"dist": json.dumps(JS_DIST.as_uri())})
    result = subprocess.run(
        [node, str(script)],
        env={**env, "NS": namespace, "KC": str(apiserver.kubeconfig), "ARGS": json.dumps(JS_ARGS)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def raw_sandbox(apiserver: ServerThread, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(apiserver.api_client()).get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, name
    )
    return obj


def secret_shape(apiserver: ServerThread, namespace: str, sandbox_id: str) -> dict[str, Any]:
    secret = client.CoreV1Api(apiserver.api_client()).read_namespaced_secret(f"{sandbox_id}-otlp", namespace)
    meta = secret.metadata
    assert meta is not None
    owners = [
        {
            "apiVersion": o.api_version,
            "kind": o.kind,
            "name": o.name,
            "blockOwnerDeletion": o.block_owner_deletion,
        }
        for o in meta.owner_references or []
    ]
    shape = {
        "type": secret.type,
        "labels": meta.labels,
        "data": {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()},
        "owners": owners,
    }
    return dict(anonymous(shape, sandbox_id))


def test_python_and_javascript_create_the_same_sandbox(
    apiserver: ServerThread,
    namespace: str,
    stand_in_operator: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example.com")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc123")
    monkeypatch.delenv("LEAP0_SDK_OTEL_ENABLED", raising=False)

    stand_in_operator(namespace)
    with Leap0Client(namespace=namespace, kubeconfig=apiserver.kubeconfig, sdk_otel_enabled=False) as sdk:
        py = sdk.sandboxes.create(**PY_ARGS)
    js = run_js(tmp_path, apiserver, namespace, dict(os.environ))

    assert re.fullmatch(r"sbx-[a-z0-9]{10}", js["id"])
    assert js["namespace"] == py.namespace == namespace
    assert py.phase == "Running"

    # The Sandbox objects as stored: metadata labels and the whole spec (env and Secret refs included).
    py_raw = raw_sandbox(apiserver, namespace, py.id)
    js_raw = raw_sandbox(apiserver, namespace, js["id"])
    assert anonymous(js_raw["spec"], js["id"]) == anonymous(py_raw["spec"], py.id)
    assert py_raw["spec"]["network"] == PY_ARGS["network"]  # sent as given, in both
    assert (py_raw["spec"]["workspace"], py_raw["spec"]["idleTimeout"], py_raw["spec"]["onTimeout"]) == (
        PY_ARGS["workspace"],
        900,
        "Pause",
    )
    assert js_raw["spec"]["telemetry"] == py_raw["spec"]["telemetry"] == {"logs": False}
    assert js_raw["metadata"].get("labels") == py_raw["metadata"].get("labels") == {"team": "parity"}
    assert js_raw["spec"]["env"][:2] == [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "https://otel.example.com"},
        {
            "name": "OTEL_EXPORTER_OTLP_HEADERS",
            "valueFrom": {"secretKeyRef": {"name": f"{js['id']}-otlp", "key": "OTEL_EXPORTER_OTLP_HEADERS"}},
        },
    ]

    # The SDKs' Sandbox objects, field by field (Python snake_case, JavaScript camelCase).
    py_fields = anonymous(py.model_dump(mode="json"), py.id)
    js_fields = anonymous(js, js["id"])
    compared = [name for name in py_fields if name not in IDENTITY]
    assert {"workspace", "paused", "idle_timeout", "on_timeout", "effective_workspace"} <= set(compared)
    assert len(compared) >= 20
    for name in compared:
        assert js_fields.get(camel(name)) == py_fields[name] or (
            py_fields[name] in (None, [], {}) and js_fields.get(camel(name)) in (None, [], {})
        ), f"{name}: python {py_fields[name]!r}, javascript {js_fields.get(camel(name))!r}"

    # The OTLP Secret: same type, labels, data and owner.
    assert secret_shape(apiserver, namespace, js["id"]) == secret_shape(apiserver, namespace, py.id)
    assert secret_shape(apiserver, namespace, py.id)["data"] == {
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc123"
    }


def test_python_and_javascript_build_the_same_exec_argv(tmp_path: Path) -> None:
    """The quoting-free prologue of process.execute is the same command line in both SDKs, and so is the
    command through the sandbox's supervisor (sandbox logs), with or without the caller's trace context."""
    cases: list[dict[str, Any]] = [
        {"command": "echo hi"},
        {"command": ["ls", "-l"]},
        {"command": ["ls"], "cwd": "/tmp/a b", "env": {"X": "it's $HOME"}, "timeout": 2.5},
        {"command": "sleep 9", "timeout": 30},
        {"command": "pwd", "cwd": "x'y"},
    ]
    node = shutil.which("node")
    assert node is not None, "node (20+) is needed for the JavaScript SDK"
    assert JS_DIST.exists(), "js/dist is missing: run `npm ci` in js/ (scripts/test.sh does)"
    exec_module = (REPO / "js" / "dist" / "exec.js").as_uri()
    script = tmp_path / "argv.mjs"
    script.write_text(
        f"import {{ buildExecArgv, supervisedArgv }} from {json.dumps(exec_module)};\n"
        "const cases = JSON.parse(process.env.CASES);\n"
        "const argvs = cases.map(({ command, ...opts }) => buildExecArgv(command, opts));\n"
        "const { SUP, TP } = process.env;\n"
        "const traced = argvs.map((a, i) => supervisedArgv(a, SUP, i % 2 ? TP : undefined));\n"
        "console.log(JSON.stringify([argvs, traced]));\n"
    )
    result = subprocess.run(
        [node, str(script)],
        env={
            "PATH": os.environ.get("PATH", ""),
            "CASES": json.dumps(cases),
            "SUP": c.SUPERVISOR_PATH,
            "TP": TP,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    expected = [
        build_exec_argv(case["command"], **{k: v for k, v in case.items() if k != "command"})
        for case in cases
    ]
    traced = [supervised_argv(a, c.SUPERVISOR_PATH, TP if i % 2 else None) for i, a in enumerate(expected)]
    assert json.loads(result.stdout) == [expected, traced]


JS_PAUSE_CHILD = """
import { Leap0Client } from %(dist)s;
const { NS: namespace, KC: kubeconfig } = process.env;
const client = new Leap0Client({ namespace, kubeconfig, sdkOtelEnabled: false });
const sandbox = await client.sandboxes.create({ workspace: { persistent: true }, timeout: 600 });
const paused = JSON.parse(JSON.stringify(await sandbox.pause()));
const resumed = JSON.parse(JSON.stringify(await sandbox.resume()));
console.log(JSON.stringify({ paused, resumed }));
await client.close();
"""
# Different for two sandboxes by nature, and the status fields a pause or resume sets at its own time.
TIMED = IDENTITY | {"observed_generation", "conditions", "message"}


def test_python_and_javascript_pause_and_resume_alike(
    apiserver: ServerThread,
    namespace: str,
    operator: Any,
    running_kubelet: Any,
    tmp_path: Path,
) -> None:
    """Both SDKs pause and resume a persistent sandbox through the real operator and show the same fields
    after each step (phase, reason, workspace, pausedAt and resumedAt set or not)."""
    node = shutil.which("node")
    assert node is not None, "node (20+) is needed for the JavaScript SDK"
    assert JS_DIST.exists(), "js/dist is missing: run `npm ci` in js/ (scripts/test.sh does)"
    with Leap0Client(namespace=namespace, kubeconfig=apiserver.kubeconfig, sdk_otel_enabled=False) as sdk:
        py = sdk.sandboxes.create(workspace={"persistent": True}, timeout=600)
        py_paused = anonymous(py.pause().model_dump(mode="json"), py.id)
        py_resumed = anonymous(py.resume().model_dump(mode="json"), py.id)
    script = tmp_path / "pause.mjs"
    script.write_text(JS_PAUSE_CHILD % {"dist": json.dumps(JS_DIST.as_uri())})
    env = {**os.environ, "NS": namespace, "KC": str(apiserver.kubeconfig)}
    result = subprocess.run(
        [node, str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    js = json.loads(result.stdout)
    js_id = js["paused"]["id"]
    for py_fields, js_fields, phase in (
        (py_paused, anonymous(js["paused"], js_id), c.PHASE_PAUSED),
        (py_resumed, anonymous(js["resumed"], js_id), c.PHASE_RUNNING),
    ):
        assert py_fields["phase"] == phase
        for name in (n for n in py_fields if n not in TIMED):
            assert js_fields.get(camel(name)) == py_fields[name] or (
                py_fields[name] in (None, [], {}) and js_fields.get(camel(name)) in (None, [], {})
            ), f"{phase} {name}: python {py_fields[name]!r}, javascript {js_fields.get(camel(name))!r}"
        for name in ("paused_at", "resumed_at"):
            assert (py_fields[name] is None) == (js_fields.get(camel(name)) is None), (phase, name)
