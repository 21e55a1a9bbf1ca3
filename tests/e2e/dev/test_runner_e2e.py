"""The local pod runner against the embedded API server: pods created through the API run here."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from support import alive, http, kubectl_path, wait_for

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread
from leap0_dev.runner import Runner, RunnerConfig
from leap0_dev.up import _log_handler as log_handler

pytestmark = pytest.mark.e2e

# Stands for the telemetry sidecar in these tests (the runner's job is to start it with the pod's env): it
# dumps its environment to $DUMP and answers the health endpoint the runner gave it.
FAKE_SIDECAR = """
import http.server, json, os
json.dump(dict(os.environ), open(os.environ["DUMP"], "w"))
host, port = os.environ["LEAP0_HEALTH_ENDPOINT"].rsplit(":", 1)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer((host, int(port)), H).serve_forever()
"""


wait_until = functools.partial(wait_for, timeout=20)


@pytest.fixture
def runner(apiserver: ServerThread, namespace: str, tmp_path: Path) -> Iterator[Runner]:
    config = RunnerConfig(
        otlp_grpc_port=0,
        otlp_http_port=0,
        health_port=0,
        workdir=tmp_path / "runner",
        cgroups=os.geteuid() == 0,
        max_grace_seconds=2,
        sidecar_argv=[sys.executable, "-c", FAKE_SIDECAR],
        namespace=namespace,
    )
    with Runner(apiserver.api_client(), config) as started:
        yield started


@pytest.fixture
def core(apiserver: ServerThread) -> Iterator[client.CoreV1Api]:
    with apiserver.api_client() as api_client:
        yield client.CoreV1Api(api_client)


def sandbox_pod(name: str, dump: Path, command: list[str], memory: str = "256Mi") -> dict[str, Any]:
    limits = {"cpu": "500m", "memory": memory}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": contract.TELEMETRY_CONTAINER,
                    "image": "ghcr.io/leap0-dev/leap0-sidecar:0.1.0",
                    "restartPolicy": "Always",
                    "env": [
                        {"name": "DUMP", "value": str(dump)},
                        {
                            "name": contract.ENV_SANDBOX_CPU_LIMIT_MILLICORES,
                            "valueFrom": {
                                "resourceFieldRef": {
                                    "containerName": "sandbox",
                                    "resource": "limits.cpu",
                                    "divisor": "1m",
                                }
                            },
                        },
                        {
                            "name": contract.ENV_K8S_POD_NAME,
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        },
                        {
                            "name": contract.OTEL_EXPORTER_OTLP_HEADERS,
                            "valueFrom": {"secretKeyRef": {"name": "otlp", "key": "headers"}},
                        },
                    ],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": contract.SIDECAR_HEALTH_PORT}},
                }
            ],
            "containers": [
                {
                    "name": contract.SANDBOX_CONTAINER,
                    "image": "python:3.12-slim",
                    "command": command,
                    "resources": {"limits": limits, "requests": limits},
                }
            ],
        },
    }


def status_of(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    pod = core.read_namespaced_pod(name, namespace)
    return dict(core.api_client.sanitize_for_serialization(pod).get("status", {}))


def container_pid(status: dict[str, Any], name: str) -> int:
    every = [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]
    (found,) = [c for c in every if c["name"] == name]
    return int(found["containerID"].removeprefix("local://"))


def secret(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "otlp"}, "stringData": {"headers": "x-api-key=s3cret"}}
    )


def test_pod_runs_here_with_its_env_and_stops_when_deleted(
    apiserver: ServerThread, runner: Runner, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    secret(core, namespace)
    dump = tmp_path / "sidecar-env.json"
    command = ["python3", "-c", "import time; print('hello from sbx', flush=True); time.sleep(600)"]
    core.create_namespaced_pod(namespace, sandbox_pod("sbx", dump, command))

    def running_and_ready() -> dict[str, Any] | None:
        status = status_of(core, namespace, "sbx")
        ready = {c["type"]: c["status"] for c in status.get("conditions") or []}.get("Ready")
        return status if status.get("phase") == "Running" and ready == "True" else None

    status = wait_until(running_and_ready, what="pod Running and Ready")
    assert status["podIP"] == "127.0.0.1"
    sandbox_pid = container_pid(status, contract.SANDBOX_CONTAINER)
    sidecar_pid = container_pid(status, contract.TELEMETRY_CONTAINER)
    assert alive(sandbox_pid)
    assert alive(sidecar_pid)
    env = json.loads(wait_until(lambda: dump.exists() and dump.read_text(), what="sidecar env dump"))
    assert env[contract.ENV_SANDBOX_CPU_LIMIT_MILLICORES] == "500"
    assert env[contract.ENV_K8S_POD_NAME] == "sbx"
    assert env[contract.OTEL_EXPORTER_OTLP_HEADERS] == "x-api-key=s3cret"
    assert env["LEAP0_SANDBOX_PID"] == str(sandbox_pid)
    assert env[contract.ENV_OTLP_HTTP_ENDPOINT].startswith("127.0.0.1:")

    assert apiserver.server is not None
    previous = apiserver.server.log_handler
    apiserver.server.log_handler = log_handler(runner)
    try:
        kubectl = [kubectl_path(), "--kubeconfig", str(apiserver.kubeconfig), "-n", namespace]
        logs = lambda: subprocess.run([*kubectl, "logs", "sbx"], capture_output=True, text=True).stdout  # noqa: E731
        assert wait_until(lambda: "hello from sbx" in logs(), what="kubectl logs")
    finally:
        apiserver.server.log_handler = previous

    core.delete_namespaced_pod("sbx", namespace)
    wait_until(lambda: not alive(sandbox_pid) and not alive(sidecar_pid), what="processes stopped")


# Five lines; two more once the file <argv[1]>.late exists; one more once <argv[1]>.end does; then exit.
LOGGING_APP = """
import os, sys, time
def after(path):
    while not os.path.exists(path):
        time.sleep(0.05)
for i in range(1, 6):
    print(f"early {i}", flush=True)
after(sys.argv[1] + ".late")
print("late 1\\nlate 2", flush=True)
after(sys.argv[1] + ".end")
print("last", flush=True)
"""


def test_kubectl_logs_tail_since_timestamps_limit_and_follow_as_the_kubelet_answers(
    apiserver: ServerThread, runner: Runner, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    secret(core, namespace)
    trigger = tmp_path / "go"
    command = ["python3", "-c", LOGGING_APP, str(trigger)]
    core.create_namespaced_pod(namespace, sandbox_pod("talker", tmp_path / "dump.json", command))
    assert apiserver.server is not None
    previous = apiserver.server.log_handler
    apiserver.server.log_handler = log_handler(runner)
    kubectl = [kubectl_path(), "--kubeconfig", str(apiserver.kubeconfig), "-n", namespace, "logs", "talker"]

    def logs(*options: str) -> str:
        result = subprocess.run([*kubectl, *options], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        wait_until(lambda: logs().endswith("early 5\n"), what="the first five lines")
        assert logs("--tail=2") == "early 4\nearly 5\n"
        assert logs("--tail=0") == ""
        assert logs("--limit-bytes=7") == "early 1"
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z early 5\n", logs("--timestamps", "--tail=1")
        )
        assert logs("--since=1h") == "".join(f"early {i}\n" for i in range(1, 6))
        # --since-time has whole seconds: the next one starts after the early lines, before the late ones.
        since = math.floor(time.time()) + 1
        while time.time() < since:
            time.sleep(0.05)
        trigger.with_suffix(".late").touch()
        wait_until(lambda: logs().endswith("late 2\n"), what="the late lines")
        stamp = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert logs(f"--since-time={stamp}") == "late 1\nlate 2\n"
        # -f: what there is, then what comes, until the container ends
        follow = subprocess.Popen([*kubectl, "-f", "--tail=1"], stdout=subprocess.PIPE, text=True)
        assert follow.stdout is not None
        assert follow.stdout.readline() == "late 2\n"
        trigger.with_suffix(".end").touch()
        assert follow.stdout.read() == "last\n"
        assert follow.wait(60) == 0
        follow.stdout.close()
        status, _, body = http(
            apiserver.url, "GET", f"/api/v1/namespaces/{namespace}/pods/talker/log?tailLines=x"
        )
        assert (status, json.loads(body)["message"]) == (400, "tailLines: 'x' is not an integer")
    finally:
        apiserver.server.log_handler = previous


def test_failing_command_is_reported_with_its_exit_code(
    runner: Runner, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    secret(core, namespace)
    command = ["python", "-c", "raise SystemExit(3)"]
    core.create_namespaced_pod(namespace, sandbox_pod("fails", tmp_path / "env.json", command))
    status = wait_until(
        lambda: (s := status_of(core, namespace, "fails")).get("phase") == "Failed" and s, what="pod Failed"
    )
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_missing_secret_keeps_the_pod_pending_with_a_clear_reason_until_it_exists(
    runner: Runner, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    command = ["python", "-c", "pass"]
    core.create_namespaced_pod(namespace, sandbox_pod("nosecret", tmp_path / "env.json", command))

    def waiting() -> dict[str, Any] | None:
        statuses = status_of(core, namespace, "nosecret").get("containerStatuses") or []
        return statuses[0]["state"].get("waiting") if statuses else None

    state = wait_until(waiting, what="waiting state")
    assert state["reason"] == "CreateContainerConfigError"
    assert 'secret "otlp" key "headers" not found' in state["message"]
    assert status_of(core, namespace, "nosecret")["phase"] == "Pending"
    # the Secret created afterwards: the pod starts, as the kubelet retries (here every 2 s)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="otlp"), string_data={"headers": "x=1"}),
    )
    wait_until(lambda: status_of(core, namespace, "nosecret").get("phase") == "Succeeded", what="the pod ran")


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="real cgroups need root")
def test_memory_limit_is_enforced_in_a_real_cgroup_and_reported_as_oomkilled(
    runner: Runner, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    secret(core, namespace)
    command = ["python", "-c", "b = bytearray(256 * 1024 * 1024); import time; time.sleep(30)"]
    core.create_namespaced_pod(namespace, sandbox_pod("hog", tmp_path / "env.json", command, memory="64Mi"))
    status = wait_until(
        lambda: (s := status_of(core, namespace, "hog")).get("phase") == "Failed" and s,
        what="pod Failed",
    )
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


def test_kubectl_exec_runs_in_the_sandbox_container(
    apiserver: ServerThread, runner: Runner, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    from leap0_dev.apiserver import exec as exec_module
    from leap0_dev.runner import PodExecRunner

    secret(core, namespace)
    pod = sandbox_pod("execs", tmp_path / "env.json", ["python", "-c", "import time; time.sleep(600)"])
    pod["spec"]["containers"][0]["env"] = [{"name": "GREETING", "value": "hello"}]
    core.create_namespaced_pod(namespace, pod)
    wait_until(lambda: status_of(core, namespace, "execs").get("phase") == "Running", what="pod Running")
    assert apiserver.server is not None
    previous = apiserver.server.exec_handler
    apiserver.server.exec_handler = exec_module.ExecHandler(PodExecRunner(runner))
    try:
        kubectl = [kubectl_path(), "--kubeconfig", str(apiserver.kubeconfig), "-n", namespace]
        script = "import os; print(os.environ['GREETING']); raise SystemExit(4)"
        result = subprocess.run(
            [*kubectl, "exec", "execs", "--", "python", "-c", script], capture_output=True, text=True
        )
        assert result.stdout.strip() == "hello"
        assert result.returncode == 4
    finally:
        apiserver.server.exec_handler = previous


def test_taken_otlp_ports_move_the_sidecar_and_the_app_follows(
    apiserver: ServerThread, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    """With 4317/4318 taken on this machine (a local Collector), each pod's sidecar gets free ports of its own
    and the app's zero-config endpoint is rewritten to them: nothing to configure."""
    held = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(2)]
    try:
        for sock in held:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        grpc_taken, http_taken = (int(s.getsockname()[1]) for s in held)
        config = RunnerConfig(
            otlp_grpc_port=grpc_taken,
            otlp_http_port=http_taken,
            health_port=0,
            workdir=tmp_path / "runner",
            max_grace_seconds=2,
            sidecar_argv=[sys.executable, "-c", FAKE_SIDECAR],
            namespace=namespace,
        )
        secret(core, namespace)
        sidecar_dump, app_dump = tmp_path / "sidecar.json", tmp_path / "app.json"
        app = f"import json, os, time; json.dump(dict(os.environ), open({str(app_dump)!r}, 'w'))"
        app += "; time.sleep(600)"
        pod = sandbox_pod("ports", sidecar_dump, ["python", "-c", app])
        pod["spec"]["containers"][0]["env"] = [
            {"name": contract.OTEL_EXPORTER_OTLP_ENDPOINT, "value": "http://127.0.0.1:4318"},
            {"name": "GRPC_TARGET", "value": "127.0.0.1:4317"},
        ]
        with Runner(apiserver.api_client(), config):
            core.create_namespaced_pod(namespace, pod)
            sidecar_env = json.loads(wait_until(lambda: sidecar_dump.exists() and sidecar_dump.read_text()))
            app_env = json.loads(wait_until(lambda: app_dump.exists() and app_dump.read_text()))
            core.delete_namespaced_pod("ports", namespace)
    finally:
        for sock in held:
            sock.close()
    http_endpoint = sidecar_env[contract.ENV_OTLP_HTTP_ENDPOINT]
    grpc_endpoint = sidecar_env[contract.ENV_OTLP_GRPC_ENDPOINT]
    assert http_endpoint != f"127.0.0.1:{http_taken}"
    assert grpc_endpoint != f"127.0.0.1:{grpc_taken}"
    assert app_env[contract.OTEL_EXPORTER_OTLP_ENDPOINT] == f"http://{http_endpoint}"
    assert app_env["GRPC_TARGET"] == grpc_endpoint


def test_the_network_policy_of_a_pod_is_recorded_and_said_once_not_enforced(
    apiserver: ServerThread, namespace: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    config = RunnerConfig(
        otlp_grpc_port=0,
        otlp_http_port=0,
        health_port=0,
        workdir=tmp_path / "runner",
        cgroups=False,
        max_grace_seconds=2,
        sidecar_argv=[sys.executable, "-c", FAKE_SIDECAR],
        namespace=namespace,
        log=lines.append,
    )
    with apiserver.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        networking = client.NetworkingV1Api(api_client)
        for name, mode in (("one", "DenyAll"), ("two", "Internet")):
            networking.create_namespaced_network_policy(
                namespace,
                {
                    "metadata": {"name": name, "annotations": {contract.ANNOTATION_NETWORK_POLICY: mode}},
                    "spec": {
                        "podSelector": {"matchLabels": {contract.LABEL_SANDBOX_ID: name}},
                        "policyTypes": ["Ingress", "Egress"],
                    },
                },
            )
        with Runner(api_client, config) as runner:
            for name in ("one", "two", "three"):  # "three": no policy selects it
                pod = sandbox_pod(
                    name, tmp_path / f"{name}.json", ["python3", "-c", "import time; time.sleep(600)"]
                )
                pod["metadata"]["labels"] = {contract.LABEL_SANDBOX_ID: name}
                core.create_namespaced_pod(namespace, pod)
            found = {
                name: wait_until(lambda n=name: runner.find(namespace, n), what=f"pod {name} started")
                for name in ("one", "two", "three")
            }
            assert {name: local.network_policies for name, local in found.items()} == {
                "one": ["one"],
                "two": ["two"],
                "three": [],
            }
    said = [line for line in lines if "recorded, not enforced" in line]
    assert any(
        f"pod {namespace}/one: NetworkPolicy one (DenyAll) recorded, not enforced" in line for line in said
    )
    assert any(
        f"pod {namespace}/two: NetworkPolicy two (Internet) recorded, not enforced" in line for line in said
    )
    assert len(said) == 2
    assert sum("the local runner has no pod network" in line for line in lines) == 1


def test_a_claims_folder_outlives_its_pod_and_goes_with_the_claim(
    apiserver: ServerThread, runner: Runner, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    """A pod mounting a PersistentVolumeClaim gets the claim's folder, which the next pod on the claim finds
    again (what a pause and a resume rely on); the pod's own emptyDir does not outlive it; and the folder is
    removed once the claim is deleted."""
    from leap0_dev.apiserver import exec as exec_module
    from leap0_dev.runner import PodExecRunner

    secret(core, namespace)
    claim = {
        "metadata": {"name": "ws"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    core.create_namespaced_persistent_volume_claim(namespace, claim)

    def pod(name: str) -> dict[str, Any]:
        spec = sandbox_pod(name, tmp_path / f"{name}.json", ["python", "-c", "import time; time.sleep(600)"])
        spec["spec"]["volumes"] = [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "ws"}},
            {"name": "scratch", "emptyDir": {}},
        ]
        spec["spec"]["containers"][0]["volumeMounts"] = [
            {"name": "workspace", "mountPath": "/workspace"},
            {"name": "scratch", "mountPath": "/scratch"},
        ]
        return spec

    assert apiserver.server is not None
    previous = apiserver.server.exec_handler
    apiserver.server.exec_handler = exec_module.ExecHandler(PodExecRunner(runner))
    kubectl = [kubectl_path(), "--kubeconfig", str(apiserver.kubeconfig), "-n", namespace, "exec"]

    def sh(pod_name: str, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*kubectl, pod_name, "--", "/bin/sh", "-c", script], capture_output=True, text=True
        )

    try:
        core.create_namespaced_pod(namespace, pod("first"))
        wait_until(
            lambda: status_of(core, namespace, "first").get("phase") == "Running", what="first Running"
        )
        written = sh(
            "first",
            "mkdir -p /workspace/notes && echo kept > /workspace/notes/a.txt && echo lost > /scratch/b",
        )
        assert written.returncode == 0, written.stderr
        core.delete_namespaced_pod("first", namespace)
        core.create_namespaced_pod(namespace, pod("second"))
        wait_until(
            lambda: status_of(core, namespace, "second").get("phase") == "Running", what="second Running"
        )
        assert sh("second", "cat /workspace/notes/a.txt").stdout == "kept\n"
        assert sh("second", "cat /scratch/b").returncode != 0
        uid = str(
            core.api_client.sanitize_for_serialization(
                core.read_namespaced_persistent_volume_claim("ws", namespace)
            )["metadata"]["uid"]
        )
        folders = list((tmp_path / "runner" / "claims").iterdir())
        assert [f.name for f in folders] == [f"{namespace}_ws_{uid[:8]}"]
        core.delete_namespaced_persistent_volume_claim("ws", namespace)
        core.delete_namespaced_pod("second", namespace)
        wait_until(lambda: not folders[0].exists(), what="the claim's folder removed")
    finally:
        apiserver.server.exec_handler = previous
