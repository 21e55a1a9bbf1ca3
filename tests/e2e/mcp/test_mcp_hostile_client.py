"""``leap0 mcp`` under a hostile client or a hostile neighbour: each attack reproduced and shown failing.

- A command printing far more than the output cap: the server streams it and keeps a head and a tail, so
  its memory does not follow the output (it used to hold all of it, twice).
- A call cancelled by the client, or a client that leaves mid-call: the command stops, children that
  detached from it (``setsid``) included; the call no longer runs on after the client is gone.
- Ownership planted by a third party (a Sandbox labelled as another owner's, or one with a signature copied
  from a real one): not ownership.
- Sandbox ids that are not Kubernetes names are refused before any request.
- The administrator's ``--allowed-templates`` and ``--network-policy``: clients cannot get anything else.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
import pytest
from kubernetes import client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_support import call, ok
from support import subprocess_env, wait_for

import leap0_contract as c
from leap0_dev.apiserver import ServerThread
from leap0_dev.apiserver.exec import LocalProcessRunner

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
FLOOD = 200_000_000  # bytes a command prints (the cap is 64 KiB)
# A command whose main process and a child that left its session (as a daemon would) both run until killed,
# each writing its pid to a file of the sandbox's working directory first.
LINGER = "setsid sh -c 'echo $$ > detached.pid; exec sleep 600' & sh -c 'echo $$ > main.pid; exec sleep 600'"


def sandbox_dir(cluster: ServerThread, runner: LocalProcessRunner, namespace: str, sandbox_id: str) -> Path:
    """The working directory of the sandbox's commands (the local exec runner's scratch dir of its pod)."""
    obj = client.CustomObjectsApi(cluster.api_client()).get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, sandbox_id
    )
    return runner.pod_dir(namespace, obj["status"]["podName"])


def started_pids(workdir: Path) -> list[int]:
    """The pids LINGER wrote, once both are there."""
    files = [workdir / "main.pid", workdir / "detached.pid"]
    texts = [f.read_text().strip() if f.exists() else "" for f in files]
    return [int(t) for t in texts] if all(texts) else []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# --- memory ------------------------------------------------------------------------------------------------
async def test_a_command_printing_far_more_than_the_cap_leaves_memory_bounded(
    http_server: Callable[..., Any], mcp_args: list[str], cluster: ServerThread
) -> None:
    server = http_server([*mcp_args, "--http", "127.0.0.1:0", "--insecure-no-auth"])
    url = server.wait_url()
    async with streamable_http_client(url) as streams, ClientSession(*streams) as session:
        await session.initialize()
        sid = (await ok(session, "create_sandbox"))["sandbox_id"]
        await ok(session, "execute_command", sandbox_id=sid, command="head -c 300000 /dev/zero")  # warm up
        before = peak_rss(server.proc.pid)
        result = await ok(
            session, "execute_command", sandbox_id=sid, command=f"yes 0123456789abcdef | head -c {FLOOD}"
        )
        after = peak_rss(server.proc.pid)
        await ok(session, "delete_sandbox", sandbox_id=sid)
    assert result["exit_code"] == 0
    assert result["truncated"] is True
    assert result["stdout_bytes_cut"] == FLOOD - 64 * 1024
    head, marker, tail = result["stdout"].partition("\n[... ")
    assert head.startswith("0123456789abcdef\n0123456789abcdef\n")
    assert marker
    assert f"{FLOOD - 64 * 1024} bytes cut" in tail
    # Before streaming, the whole output was held (twice): hundreds of MiB for this command.
    assert after - before < 48 * MiB, f"peak RSS grew by {(after - before) / MiB:.1f} MiB"


# --- cancellation ------------------------------------------------------------------------------------------
async def test_a_cancelled_call_stops_its_command_and_what_it_detached(
    stdio: Callable[..., Any],
    mcp_args: list[str],
    cluster: ServerThread,
    exec_runner: LocalProcessRunner,
    namespace: str,
) -> None:
    async with stdio([*mcp_args, "--owner", "canceller"]) as session:
        sid = (await ok(session, "create_sandbox"))["sandbox_id"]
        workdir = sandbox_dir(cluster, exec_runner, namespace, sid)
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.call_tool, "execute_command", {"sandbox_id": sid, "command": LINGER})
            pids = await anyio.to_thread.run_sync(
                lambda: wait_for(lambda: started_pids(workdir), timeout=60, what="the command to start")
            )
            assert all(alive(pid) for pid in pids)
            tg.cancel_scope.cancel()  # the client cancels the call (notifications/cancelled)
        await anyio.to_thread.run_sync(
            lambda: wait_for(lambda: not any(alive(p) for p in pids), timeout=60, what="the command to stop")
        )
        # the server is still serving
        assert (await ok(session, "get_sandbox", sandbox_id=sid))["phase"] == "Running"
        await ok(session, "delete_sandbox", sandbox_id=sid)


def _rpc(proc: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()


def _answer(proc: subprocess.Popen[bytes], request_id: int) -> dict[str, Any]:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, "the server closed stdout"
        message: dict[str, Any] = json.loads(line)
        if message.get("id") == request_id:
            return message


def test_a_client_that_leaves_mid_call_stops_the_command(
    mcp_args: list[str],
    cluster: ServerThread,
    exec_runner: LocalProcessRunner,
    namespace: str,
    config_home: Path,
    tmp_path: Path,
) -> None:
    """A raw stdio client: it starts a long command, then its pipes close (it crashed or was killed)."""
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *mcp_args, "--owner", "leaver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=subprocess_env(XDG_CONFIG_HOME=str(config_home)),
        )
    try:
        _rpc(proc, INITIALIZE)
        _answer(proc, 0)
        _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        _rpc(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "create_sandbox", "arguments": {}},
            },
        )
        created = _answer(proc, 2)["result"]["structuredContent"]
        workdir = sandbox_dir(cluster, exec_runner, namespace, created["sandbox_id"])
        _rpc(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {
                    "name": "execute_command",
                    "arguments": {"sandbox_id": created["sandbox_id"], "command": LINGER},
                },
            },
        )
        pids = wait_for(lambda: started_pids(workdir), timeout=60, what="the command to start")
        assert all(alive(pid) for pid in pids)
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.close()  # the client is gone
        proc.stdout.close()
        wait_for(lambda: not any(alive(p) for p in pids), timeout=60, what="the command to stop")
        assert proc.wait(timeout=60) == 0, (tmp_path / "server.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_an_http_client_that_drops_its_connection_mid_call_stops_the_command(
    http_server: Callable[..., Any],
    mcp_args: list[str],
    cluster: ServerThread,
    exec_runner: LocalProcessRunner,
    namespace: str,
) -> None:
    """Without an event store, the answer of a call whose connection closed can never be read: the call is
    cancelled like one the client cancelled (the official client's session is used to set things up, then a
    raw connection carries the call and is dropped)."""
    server = http_server([*mcp_args, "--http", "127.0.0.1:0", "--insecure-no-auth"])
    url = server.wait_url()
    async with streamable_http_client(url) as streams, ClientSession(*streams) as session:
        await session.initialize()
        sid = (await ok(session, "create_sandbox"))["sandbox_id"]
    workdir = sandbox_dir(cluster, exec_runner, namespace, sid)
    host, _, port = url.split("//", 1)[1].split("/", 1)[0].rpartition(":")
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "execute_command", "arguments": {"sandbox_id": sid, "command": LINGER}},
        }
    ).encode()
    # A session of the raw client's own (the server is stateful), opened and left open.
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=60) as http_client:
        answer = await http_client.post(url, headers=headers, content=json.dumps(INITIALIZE))
        session_id = answer.headers["mcp-session-id"]
        headers |= {"Mcp-Session-Id": session_id, "Mcp-Protocol-Version": "2025-06-18"}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await http_client.post(url, headers=headers, content=json.dumps(initialized))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request.encode() + body)
        pids = await anyio.to_thread.run_sync(
            lambda: wait_for(lambda: started_pids(workdir), timeout=60, what="the command to start")
        )
        assert all(alive(pid) for pid in pids)
    # the connection is closed: the client is gone
    await anyio.to_thread.run_sync(
        lambda: wait_for(lambda: not any(alive(p) for p in pids), timeout=60, what="the command to stop")
    )


# --- ownership ---------------------------------------------------------------------------------------------
async def test_a_planted_owner_label_or_a_copied_signature_is_not_ownership(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread, namespace: str
) -> None:
    api = client.CustomObjectsApi(cluster.api_client())
    async with stdio([*mcp_args, "--owner", "alice"]) as alice:
        real = (await ok(alice, "create_sandbox"))["sandbox_id"]
        real_obj = api.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, real)
        signature = real_obj["metadata"]["annotations"][c.ANNOTATION_MCP_OWNER_SIGNATURE]
        labels = real_obj["metadata"]["labels"]
        assert labels[c.LABEL_MCP_OWNER] == "alice"

        # Mallory may create Sandboxes in the namespace: she labels hers as alice's, and copies the signature.
        def plant(name: str, annotations: dict[str, str]) -> None:
            meta: dict[str, Any] = {"name": name, "labels": dict(labels), "annotations": annotations}
            body = {"apiVersion": c.API_VERSION, "kind": c.SANDBOX_KIND, "metadata": meta, "spec": {}}
            api.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, body)

        plant("planted", {})
        plant("copied", {c.ANNOTATION_MCP_OWNER_SIGNATURE: signature})
        plant("forged", {c.ANNOTATION_MCP_OWNER_SIGNATURE: "v1." + "0" * 64})

        listed = [s["sandbox_id"] for s in (await ok(alice, "list_sandboxes"))["sandboxes"]]
        assert listed == [real]
        for sid in ("planted", "copied", "forged"):
            for tool, extra in (
                ("get_sandbox", {}),
                ("execute_command", {"command": "echo secret-work"}),
                ("write_file", {"path": "notes.txt", "content": "alice's secrets"}),
                ("read_file", {"path": "x"}),
            ):
                is_error, _, text = await call(alice, tool, sandbox_id=sid, **extra)
                assert is_error, (tool, sid)
                assert f"sandbox {sid!r} not found" in text, text
        await ok(alice, "delete_sandbox", sandbox_id=real)


async def test_sandbox_ids_must_be_kubernetes_names(stdio: Callable[..., Any], mcp_args: list[str]) -> None:
    async with stdio(mcp_args) as session:
        for bad in (
            "../../api/v1/namespaces/default/secrets",
            "x?watch=true",
            "Sbx-1",
            "a" * 254,
            "sbx 1",
            "",
        ):
            is_error, _, text = await call(session, "get_sandbox", sandbox_id=bad)
            assert is_error
            assert "is not a sandbox id: ids are Kubernetes names" in text, text


# --- the administrator's limits ----------------------------------------------------------------------------
async def test_clients_get_only_the_allowed_templates_and_the_fixed_network(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread, namespace: str
) -> None:
    api = client.CustomObjectsApi(cluster.api_client())
    for name in ("small", "big"):
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.TEMPLATE_KIND,
            "metadata": {"name": name},
            "spec": {"vcpu": 1, "network": {"policy": "AllowAll"}},
        }
        api.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.TEMPLATE_PLURAL, body)
    limited = [*mcp_args, "--allowed-templates", "small", "--network-policy", "DenyAll"]
    async with stdio(limited) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        props = tools["create_sandbox"].input_schema["properties"]
        assert "one of small" in props["template"]["description"]
        assert "Fixed by this server's administrator to DenyAll" in props["network"]["description"]

        is_error, _, text = await call(session, "create_sandbox", template="big")
        assert is_error
        assert "template 'big' is not allowed on this server: use one of small" in text
        is_error, _, text = await call(session, "create_sandbox", network={"policy": "AllowAll"})
        assert is_error
        assert "network is fixed by this server's administrator to DenyAll" in text
        assert (
            api.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL)["items"] == []
        )

        sid = (await ok(session, "create_sandbox", network={"policy": "DenyAll"}))["sandbox_id"]
        obj = api.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, sid)
        assert obj["spec"]["template"] == "small"
        assert obj["spec"]["network"] == {
            "policy": "DenyAll"
        }  # set on the Sandbox: the template's AllowAll lost
        await ok(session, "delete_sandbox", sandbox_id=sid)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--allowed-templates", "a,b", "--template", "c"], "--template 'c' is not in --allowed-templates"),
        (["--network-policy", "Custom"], "--network-policy Custom needs --network-allow-cidrs"),
        (["--network-policy", "Custom", "--network-allow-cidrs", "10.0.0.1/8"], "is not a CIDR"),
        (["--owner", "x", "--owner-key-file", "SHORT"], "use at least 32 random bytes"),
    ],
)
def test_bad_admin_settings_stop_the_server_with_the_flag_named(
    mcp_args: list[str], tmp_path: Path, extra: list[str], message: str
) -> None:
    short = tmp_path / "short.key"
    short.write_text("too-short")
    args = [str(short) if a == "SHORT" else a for a in extra]
    result = subprocess.run(
        [sys.executable, *mcp_args, *args],
        env=subprocess_env(XDG_CONFIG_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "too-short" not in result.stderr  # the key is never printed
