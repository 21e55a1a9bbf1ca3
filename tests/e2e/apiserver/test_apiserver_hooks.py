"""The exec hook, the mutation counters at /leap0/stats, and the `leap0 dev apiserver` command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from kubernetes import client
from support import http, kubectl, subprocess_env

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

POD = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}


def test_exec_is_a_400_status_by_default_and_404_for_a_missing_pod(
    apiserver: ServerThread, namespace: str
) -> None:
    client.CoreV1Api(apiserver.api_client()).create_namespaced_pod(namespace, POD)
    status, _, body = http(apiserver.url, "POST", f"/api/v1/namespaces/{namespace}/pods/p/exec?command=ls")
    assert status == 400
    assert json.loads(body)["kind"] == "Status"
    status, _, _ = http(apiserver.url, "POST", f"/api/v1/namespaces/{namespace}/pods/none/exec?command=ls")
    assert status == 404


def test_exec_handler_can_be_replaced() -> None:
    seen: list[tuple[str, str, str, str]] = []

    async def handler(request: web.Request, namespace: str, name: str, sub: str) -> web.StreamResponse:
        seen.append((request.method, namespace, name, sub))
        return web.Response(text="hooked")

    with ServerThread() as server:
        assert server.server is not None
        server.server.exec_handler = handler
        client.CoreV1Api(server.api_client()).create_namespaced_pod("default", POD)
        status, _, body = http(server.url, "GET", "/api/v1/namespaces/default/pods/p/exec?command=ls")
        assert (status, body) == (200, b"hooked")
        http(server.url, "POST", "/api/v1/namespaces/default/pods/p/attach")
    assert seen == [("GET", "default", "p", "exec"), ("POST", "default", "p", "attach")]


def test_stats_count_mutations_by_user_agent_product(tmp_path: Path) -> None:
    with ServerThread(kubeconfig=tmp_path / "kubeconfig") as server:
        core = client.CoreV1Api(server.api_client())
        http(server.url, "DELETE", "/leap0/stats")
        core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
        core.patch_namespaced_config_map("a", "default", {"data": {"x": "y"}})
        core.list_namespaced_config_map("default")  # reads are not mutations
        kubectl(server.kubeconfig, "delete", "configmap", "a", "--wait=false")
        status, _, body = http(server.url, "GET", "/leap0/stats")
        stats = json.loads(body)
        assert status == 200
        assert stats["mutations"] == {"OpenAPI-Generator": 2, "kubectl": 1}
        assert stats["total"] == 3
        http(server.url, "DELETE", "/leap0/stats")
        assert json.loads(http(server.url, "GET", "/leap0/stats")[2])["total"] == 0


def _command(port: str, kubeconfig: Path) -> list[str]:
    """``leap0 dev apiserver --port PORT --kubeconfig FILE`` run from this checkout."""
    return [
        sys.executable,
        "-m",
        "leap0.cli",
        "dev",
        "apiserver",
        "--port",
        port,
        "--kubeconfig",
        str(kubeconfig),
    ]


def test_the_command_serves_writes_a_kubeconfig_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc.yaml"
    proc = subprocess.Popen(
        _command("0", kubeconfig),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first
        assert kubeconfig.exists()
        out = kubectl(kubeconfig, "get", "crd", "-o", "name").stdout
        assert "customresourcedefinition.apiextensions.k8s.io/sandboxes.leap0.dev" in out
        assert "default" in kubectl(kubeconfig, "get", "namespaces", "-o", "name").stdout
        pod = '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},'
        pod += '"spec":{"containers":[{"name":"c","image":"i"}]}}'
        kubectl(kubeconfig, "apply", "-f", "-", input=pod)
        # kubectl exec reaches the command's exec stand-in, which runs the command locally.
        assert kubectl(kubeconfig, "exec", "p", "--", "echo", "hello").stdout == "hello\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0


def test_the_command_fails_clearly_when_the_port_is_taken(apiserver: ServerThread, tmp_path: Path) -> None:
    port = apiserver.url.rsplit(":", 1)[1]
    result = subprocess.run(
        _command(port, tmp_path / "k"),
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "k").exists()


def test_server_thread_on_a_taken_port_raises_and_cleans_up(apiserver: ServerThread) -> None:
    port = int(apiserver.url.rsplit(":", 1)[1])
    server = ServerThread(port=port)
    with pytest.raises(OSError, match="address already in use"):
        server.start()
    assert not server._thread.is_alive()
