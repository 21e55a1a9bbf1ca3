"""Ownership (a server acts only on its owner's sandboxes) and the locked HTTP transport."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from kubernetes import client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_support import call, ok
from support import http, subprocess_env

import leap0_contract as c
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
)
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
TOKEN = "s3cret-token-of-at-least-32-bytes-for-the-test"
ENV_TOKEN = "token-from-the-environment-32-bytes-long"


async def test_a_server_sees_only_its_owners_sandboxes(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread, namespace: str
) -> None:
    async with stdio([*mcp_args, "--owner", "alice"]) as alice:
        mine = (await ok(alice, "create_sandbox", timeout=600))["sandbox_id"]
    # a sandbox made without the MCP server (no owner label) is not the MCP server's either
    outsider = client.CustomObjectsApi(cluster.api_client()).create_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        namespace,
        c.SANDBOX_PLURAL,
        {"apiVersion": c.API_VERSION, "kind": c.SANDBOX_KIND, "metadata": {"name": "outsider"}, "spec": {}},
    )["metadata"]["name"]

    async with stdio([*mcp_args, "--owner", "bob"]) as bob:
        assert (await ok(bob, "list_sandboxes"))["sandboxes"] == []
        for sid in (mine, outsider):
            for tool, extra in (
                ("get_sandbox", {}),
                ("execute_command", {"command": "touch bob-was-here"}),
                ("read_file", {"path": "x"}),
                ("write_file", {"path": "bob.txt", "content": "x"}),
                ("list_files", {"path": "."}),
                ("set_timeout", {"timeout": 1}),
                ("delete_sandbox", {}),
            ):
                is_error, _, text = await call(bob, tool, sandbox_id=sid, **extra)
                assert is_error, (tool, sid)
                assert f"sandbox {sid!r} not found" in text
    obj = client.CustomObjectsApi(cluster.api_client()).get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, mine
    )
    assert obj["spec"]["timeout"] == 600  # bob's set_timeout did not reach it

    # the same owner after a restart still has it
    async with stdio([*mcp_args, "--owner", "alice"]) as alice_again:
        assert [s["sandbox_id"] for s in (await ok(alice_again, "list_sandboxes"))["sandboxes"]] == [mine]
        result = await ok(alice_again, "execute_command", sandbox_id=mine, command="ls")
        assert "bob-was-here" not in result["stdout"]
        await ok(alice_again, "delete_sandbox", sandbox_id=mine)

    # --all-sandboxes: every sandbox of the namespace
    async with stdio([*mcp_args, "--all-sandboxes"]) as admin:
        listed = [s["sandbox_id"] for s in (await ok(admin, "list_sandboxes"))["sandboxes"]]
        assert outsider in listed
        await ok(admin, "delete_sandbox", sandbox_id=outsider)


def test_owner_must_be_a_label_value(mcp_args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, *mcp_args, "--owner", "not a label!"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--owner 'not a label!' is not a valid label value" in result.stderr


async def test_http_needs_the_bearer_token(
    http_server: Callable[..., Any], mcp_args: list[str], cluster: ServerThread, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    server = http_server([*mcp_args, "--http", "127.0.0.1:0", "--token-file", str(token_file)])
    url = server.wait_url()
    base, path = url.rsplit("/", 1)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, response_headers, _ = http(base, "POST", "/" + path, INITIALIZE, {**MCP_HEADERS, **headers})
        assert status == 401, headers
        assert response_headers.get("www-authenticate", response_headers.get("WWW-Authenticate"))
    status, _, _ = http(base, "GET", "/" + path, None, {"Authorization": "Bearer wrong"})
    assert status == 401

    # the right token: the official streamable-HTTP client works end to end
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as http_client,
        streamable_http_client(url, http_client=http_client) as streams,
        ClientSession(*streams) as session,
    ):
        await session.initialize()
        sid = (await ok(session, "create_sandbox"))["sandbox_id"]
        result = await ok(session, "execute_command", sandbox_id=sid, command="echo over http")
        assert result["stdout"] == "over http\n"
        await ok(session, "delete_sandbox", sandbox_id=sid)


async def test_http_token_from_the_environment(
    http_server: Callable[..., Any], mcp_args: list[str], apiserver: ServerThread
) -> None:
    server = http_server([*mcp_args, "--http", "127.0.0.1:0"], LEAP0_MCP_TOKEN=ENV_TOKEN)
    url = server.wait_url()
    base, path = url.rsplit("/", 1)
    status, _, _ = http(base, "POST", "/" + path, INITIALIZE, MCP_HEADERS)
    assert status == 401
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {ENV_TOKEN}"}, timeout=60) as http_client,
        streamable_http_client(url, http_client=http_client) as streams,
        ClientSession(*streams) as session,
    ):
        await session.initialize()
        assert (await ok(session, "list_sandboxes"))["sandboxes"] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--http", "127.0.0.1:0"], "needs a bearer token"),
        (["--http", "0.0.0.0:0", "--insecure-no-auth"], "loopback address only"),
    ],
)
def test_http_refuses_to_start_unlocked(mcp_args: list[str], extra: list[str], message: str) -> None:
    env = subprocess_env()
    env.pop("LEAP0_MCP_TOKEN", None)
    result = subprocess.run(
        [sys.executable, *mcp_args, *extra], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr


async def test_insecure_no_auth_on_loopback(
    http_server: Callable[..., Any], mcp_args: list[str], apiserver: ServerThread
) -> None:
    server = http_server([*mcp_args, "--http", "127.0.0.1:0", "--insecure-no-auth"])
    url = server.wait_url()
    async with streamable_http_client(url) as streams, ClientSession(*streams) as session:
        await session.initialize()
        is_error, _, _ = await call(session, "list_sandboxes")
        assert not is_error
