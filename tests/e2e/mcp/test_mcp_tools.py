"""``leap0 mcp`` over stdio with the official MCP client: the tools, their schemas and a sandbox's life."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from mcp_support import call, ok

import leap0_contract as c
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

TOOLS = {
    "create_sandbox": (
        {
            "template",
            "vcpu",
            "memory",
            "timeout",
            "env_vars",
            "network",
            "persistent_workspace",
            "idle_timeout",
            "on_timeout",
            "telemetry_logs",
        },
        set(),
    ),
    "execute_command": ({"sandbox_id", "command", "cwd", "env", "timeout"}, {"sandbox_id", "command"}),
    "write_file": ({"sandbox_id", "path", "content", "encoding"}, {"sandbox_id", "path", "content"}),
    "read_file": ({"sandbox_id", "path", "encoding"}, {"sandbox_id", "path"}),
    "list_files": ({"sandbox_id", "path"}, {"sandbox_id"}),
    "list_sandboxes": (set(), set()),
    "get_sandbox": ({"sandbox_id"}, {"sandbox_id"}),
    "set_timeout": ({"sandbox_id", "timeout"}, {"sandbox_id", "timeout"}),
    "delete_sandbox": ({"sandbox_id"}, {"sandbox_id"}),
    "pause_sandbox": ({"sandbox_id"}, {"sandbox_id"}),
    "resume_sandbox": ({"sandbox_id"}, {"sandbox_id"}),
}


def _types(prop: dict[str, Any]) -> set[str]:
    """The JSON types a property accepts (``anyOf`` of a type and null included)."""
    if "anyOf" in prop:
        return {t for p in prop["anyOf"] for t in _types(p)}
    if "$ref" in prop:
        return {"object"}
    return {prop["type"]} if "type" in prop else set()


async def test_tools_and_their_schemas(stdio: Callable[..., Any], mcp_args: list[str]) -> None:
    async with stdio(mcp_args) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == set(TOOLS)
    for name, (properties, required) in TOOLS.items():
        schema = tools[name].input_schema
        assert set(schema.get("properties", {})) == properties, name
        assert set(schema.get("required", [])) == required, name
        for prop in schema.get("properties", {}).values():
            assert prop.get("description"), f"{name}: every parameter is described for the model"
        assert tools[name].output_schema is not None, name
        assert tools[name].description
    props = {name: tool.input_schema.get("properties", {}) for name, tool in tools.items()}
    assert _types(props["create_sandbox"]["vcpu"]) == {"integer", "null"}
    assert _types(props["create_sandbox"]["memory"]) == {"integer", "null"}
    assert _types(props["create_sandbox"]["timeout"]) == {"integer", "null"}
    assert _types(props["create_sandbox"]["env_vars"]) == {"object", "null"}
    assert _types(props["create_sandbox"]["network"]) == {"object", "null"}
    assert _types(props["create_sandbox"]["telemetry_logs"]) == {"boolean", "null"}
    network = tools["create_sandbox"].input_schema["$defs"]["NetworkSpec"]
    assert network["properties"]["policy"]["enum"] == ["Internet", "DenyAll", "AllowAll", "Custom"]
    assert _types(props["execute_command"]["timeout"]) == {"number", "null"}
    assert props["write_file"]["encoding"]["enum"] == ["utf-8", "base64"]
    assert props["write_file"]["encoding"]["default"] == "utf-8"
    assert _types(props["set_timeout"]["timeout"]) == {"integer"}
    assert set(tools["execute_command"].output_schema["properties"]) >= {
        "exit_code",
        "stdout",
        "stderr",
        "truncated",
    }
    assert set(tools["create_sandbox"].output_schema["properties"]) >= {
        "sandbox_id",
        "phase",
        "expires_at",
        "vcpu",
        "memory",
    }
    # the lifetime rule is said where an agent reads it
    for name in ("create_sandbox", "list_sandboxes"):
        text = tools[name].description
        assert "never deleted" in text
        assert "delete_sandbox" in text
    assert "seconds" in props["create_sandbox"]["timeout"]["description"]
    assert _types(props["create_sandbox"]["persistent_workspace"]) == {"boolean", "null"}
    on_timeout = props["create_sandbox"]["on_timeout"]["anyOf"][0]
    assert on_timeout["enum"] == ["Delete", "Pause"]
    assert "persistent_workspace" in tools["pause_sandbox"].description
    assert "MiB" in props["create_sandbox"]["memory"]["description"]


async def test_a_sandbox_life_through_the_tools(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread, namespace: str
) -> None:
    async with stdio([*mcp_args, "--owner", "life"]) as session:
        created = await ok(
            session, "create_sandbox", vcpu=2, memory=2048, timeout=600, env_vars={"GREETING": "hi"}
        )
        sid = created["sandbox_id"]
        assert created["phase"] == c.PHASE_RUNNING
        assert (created["vcpu"], created["memory"], created["timeout"]) == (2, 2048, 600)
        assert created["expires_at"]
        obj = client.CustomObjectsApi(cluster.api_client()).get_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, sid
        )
        assert obj["metadata"]["labels"]["leap0.dev/created-by"] == "mcp"
        assert obj["metadata"]["labels"]["leap0.dev/mcp-owner"] == "life"
        assert {"name": "GREETING", "value": "hi"} in obj["spec"]["env"]

        # execute: exit code, stdout, stderr, cwd, env
        command = "echo out; echo err >&2; exit 3"
        result = await ok(session, "execute_command", sandbox_id=sid, command=command)
        assert (result["exit_code"], result["stdout"], result["stderr"]) == (3, "out\n", "err\n")
        assert result["truncated"] is False
        is_error, _, text = await call(session, "execute_command", sandbox_id=sid, command="exit 3")
        assert not is_error  # a failing command is a result
        assert "exit code 3" in text
        await ok(session, "execute_command", sandbox_id=sid, command="mkdir -p work/sub")
        result = await ok(
            session,
            "execute_command",
            sandbox_id=sid,
            command='echo "$WHO in $(basename "$PWD")"',
            cwd="work/sub",
            env={"WHO": "agent"},
        )
        assert result["stdout"] == "agent in sub\n"

        # timeout: a tool error with the partial output and what to do
        is_error, _, text = await call(
            session, "execute_command", sandbox_id=sid, command="echo started; sleep 30", timeout=0.5
        )
        assert is_error
        assert "did not finish within 0.5 s" in text
        assert "longer timeout" in text

        # 1 MB of output: head and tail kept, the rest counted
        big = await ok(
            session,
            "execute_command",
            sandbox_id=sid,
            command="head -c 1000000 /dev/zero | tr '\\0' x; echo; echo THE-END",
        )
        assert big["truncated"] is True
        assert big["stdout_bytes_cut"] == 1000009 - 64 * 1024
        assert big["stdout"].startswith("xxxx")
        assert big["stdout"].rstrip().endswith("THE-END")
        assert f"{1000009 - 64 * 1024} bytes cut" in big["stdout"]
        assert len(big["stdout"].encode()) < 64 * 1024 + 200

        # files: text and binary, round trip and listing
        wrote = await ok(session, "write_file", sandbox_id=sid, path="notes/hello.txt", content="héllo\n")
        assert wrote["size"] == len("héllo\n".encode())
        read = await ok(session, "read_file", sandbox_id=sid, path="notes/hello.txt")
        assert (read["content"], read["encoding"]) == ("héllo\n", "utf-8")
        blob = bytes(range(256)) * 4
        await ok(
            session,
            "write_file",
            sandbox_id=sid,
            path="notes/blob.bin",
            content=base64.b64encode(blob).decode(),
            encoding="base64",
        )
        read = await ok(session, "read_file", sandbox_id=sid, path="notes/blob.bin")
        assert read["encoding"] == "base64"
        assert base64.b64decode(read["content"]) == blob
        assert read["size"] == len(blob)
        forced = await ok(session, "read_file", sandbox_id=sid, path="notes/hello.txt", encoding="base64")
        assert base64.b64decode(forced["content"]) == "héllo\n".encode()
        await ok(session, "execute_command", sandbox_id=sid, command="ln -s hello.txt notes/link")
        await ok(session, "execute_command", sandbox_id=sid, command="mkdir notes/dir && touch notes/.hidden")
        listing = await ok(session, "list_files", sandbox_id=sid, path="notes")
        assert listing["entries"] == [
            {"name": ".hidden", "type": "file", "size": 0},
            {"name": "blob.bin", "type": "file", "size": 1024},
            {"name": "dir", "type": "directory", "size": None},
            {"name": "hello.txt", "type": "file", "size": 7},
            {"name": "link", "type": "symlink", "size": None},
        ]
        assert listing["truncated"] is False

        # lifetime: get, set_timeout, list, delete
        got = await ok(session, "get_sandbox", sandbox_id=sid)
        assert got["phase"] == c.PHASE_RUNNING
        longer = await ok(session, "set_timeout", sandbox_id=sid, timeout=1200)
        assert longer["timeout"] == 1200
        assert longer["expires_at"] > created["expires_at"]
        listed = await ok(session, "list_sandboxes")
        assert [s["sandbox_id"] for s in listed["sandboxes"]] == [sid]
        deleted = await ok(session, "delete_sandbox", sandbox_id=sid)
        assert deleted == {"sandbox_id": sid, "deleted": True}
        is_error, _, text = await call(session, "get_sandbox", sandbox_id=sid)
        assert is_error
        assert "not found" in text
    assert sid not in [
        o["metadata"]["name"]
        for o in client.CustomObjectsApi(cluster.api_client()).list_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL
        )["items"]
    ]


async def test_the_server_leaves_its_sandboxes_when_it_exits(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread, namespace: str
) -> None:
    async with stdio(mcp_args) as session:
        sid = (await ok(session, "create_sandbox", timeout=300))["sandbox_id"]
    # the server process is gone; the sandbox is not
    obj = client.CustomObjectsApi(cluster.api_client()).get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, sid
    )
    assert obj["metadata"].get("deletionTimestamp") is None
    assert obj["status"]["phase"] == c.PHASE_RUNNING


async def test_network_policy_and_logs_switch_reach_the_sandbox_spec(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread, namespace: str
) -> None:
    network = {"policy": "Custom", "allow_cidrs": ["10.0.0.0/8"]}
    async with stdio(mcp_args) as session:
        is_error, structured, text = await call(
            session, "create_sandbox", network=network, telemetry_logs=False
        )
    assert not is_error, text
    assert structured is not None
    obj = client.CustomObjectsApi(cluster.api_client()).get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, structured["sandbox_id"]
    )
    assert obj["spec"]["network"] == {"policy": "Custom", "allowCidrs": ["10.0.0.0/8"]}


async def test_pause_resume_and_the_tools_waking_a_paused_sandbox(
    stdio: Callable[..., Any],
    mcp_args: list[str],
    apiserver: ServerThread,
    namespace: str,
    exec_runner: Any,
    operator: Any,
    running_kubelet: Any,
) -> None:
    async with stdio([*mcp_args, "--owner", "sleeper"]) as session:
        created = await ok(session, "create_sandbox", timeout=600, persistent_workspace=True)
        sid = created["sandbox_id"]
        assert created["persistent_workspace"] is True
        paused = await ok(session, "pause_sandbox", sandbox_id=sid)
        assert paused["phase"] == c.PHASE_PAUSED
        assert paused["paused_at"]
        assert paused["expires_at"] is None
        # a tool call on the paused sandbox resumes it first
        result = await ok(session, "execute_command", sandbox_id=sid, command="echo awake")
        assert result["stdout"] == "awake\n"
        got = await ok(session, "get_sandbox", sandbox_id=sid)
        assert (got["phase"], got["paused_at"]) == (c.PHASE_RUNNING, None)
        assert got["resumed_at"]
        await ok(session, "pause_sandbox", sandbox_id=sid)
        resumed = await ok(session, "resume_sandbox", sandbox_id=sid)
        assert resumed["phase"] == c.PHASE_RUNNING
        # a sandbox without a persistent workspace: refused, with what to do
        plain = (await ok(session, "create_sandbox", timeout=600))["sandbox_id"]
        is_error, _, text = await call(session, "pause_sandbox", sandbox_id=plain)
        assert is_error
        assert "emptyDir" in text
        assert "persistent_workspace=true" in text
        # and another owner's sandbox cannot be paused through this server
    async with stdio([*mcp_args, "--owner", "someone-else"]) as other:
        is_error, _, text = await call(other, "pause_sandbox", sandbox_id=sid)
        assert is_error
        assert "not found" in text
