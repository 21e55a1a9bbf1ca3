"""Every error a tool meets comes back as a tool error (isError) the model can act on; the server lives on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from mcp_support import call, mcp_command, ok
from sdk_support import StandInKubelet, kubelet_image_pull_status
from support import dead_kubeconfig

import leap0_contract as c
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


async def assert_alive(session: Any) -> None:
    assert {t.name for t in (await session.list_tools()).tools} >= {"list_sandboxes"}


async def test_validation_error_names_the_field(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread
) -> None:
    async with stdio(mcp_args) as session:
        is_error, _, text = await call(session, "create_sandbox", vcpu=99)
        assert is_error
        assert text.startswith("the API server rejected the request:")
        assert "vcpu" in text
        assert "Fix that field" in text
        is_error, _, text = await call(session, "create_sandbox", memory=1025)
        assert is_error
        assert "memory" in text
        await assert_alive(session)


async def test_bad_arguments_are_tool_errors(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread
) -> None:
    async with stdio(mcp_args) as session:
        is_error, _, text = await call(session, "create_sandbox", memory_mib=2048)
        assert is_error
        assert text.startswith(
            "create_sandbox has no parameter 'memory_mib': its parameters are env_vars, idle_timeout, memory"
        )
        is_error, _, text = await call(session, "create_sandbox", vcpu="many")
        assert is_error
        assert "vcpu" in text
        is_error, _, text = await call(session, "execute_command", command="true")  # no sandbox_id
        assert is_error
        assert "sandbox_id" in text
        is_error, _, text = await call(session, "create_sandbox", network={"policy": "Sometimes"})
        assert is_error
        assert "policy" in text
        is_error, _, text = await call(
            session, "create_sandbox", network={"policy": "Custom", "allowCidrs": ["10.0.0.0/8"]}
        )
        assert is_error
        assert "allowCidrs" in text
        sid = (await ok(session, "create_sandbox"))["sandbox_id"]
        is_error, _, text = await call(
            session, "write_file", sandbox_id=sid, path="x", content="%%%", encoding="base64"
        )
        assert is_error
        assert "not valid base64" in text
        is_error, _, text = await call(session, "execute_command", sandbox_id=sid, command=" ")
        assert is_error
        assert "invalid argument: command must not be empty" in text
        is_error, _, text = await call(
            session, "execute_command", sandbox_id=sid, command="true", env={"1BAD": "x"}
        )
        assert is_error
        assert "invalid environment variable name" in text
        is_error, _, text = await call(session, "read_file", sandbox_id=sid, path="missing.txt")
        assert is_error
        assert "list_files" in text
        is_error, _, text = await call(session, "list_files", sandbox_id=sid, path="missing-dir")
        assert is_error
        assert "no such file or directory" in text
        await ok(session, "execute_command", sandbox_id=sid, command="printf '\\377\\376' > bin")
        is_error, _, text = await call(session, "read_file", sandbox_id=sid, path="bin", encoding="utf-8")
        assert is_error
        assert "base64" in text
        await ok(session, "delete_sandbox", sandbox_id=sid)
        await assert_alive(session)


async def test_not_found_and_a_vanished_sandbox(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread, namespace: str
) -> None:
    async with stdio(mcp_args) as session:
        for tool, extra in (
            ("get_sandbox", {}),
            ("delete_sandbox", {}),
            ("set_timeout", {"timeout": 60}),
            ("execute_command", {"command": "true"}),
            ("read_file", {"path": "x"}),
            ("write_file", {"path": "x", "content": "y"}),
            ("list_files", {"path": "."}),
        ):
            is_error, _, text = await call(session, tool, sandbox_id="no-such-sandbox", **extra)
            assert is_error, tool
            assert "sandbox 'no-such-sandbox' not found" in text
            assert "list_sandboxes" in text
        sid = (await ok(session, "create_sandbox"))["sandbox_id"]
        # deleted behind the server's back
        client.CustomObjectsApi(cluster.api_client()).delete_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, sid
        )
        is_error, _, text = await call(session, "execute_command", sandbox_id=sid, command="true")
        assert is_error
        assert f"sandbox {sid!r} not found" in text
        await assert_alive(session)


async def test_failed_sandbox_carries_the_operators_reason(
    apiserver: ServerThread,
    namespace: str,
    exec_runner: Any,
    operator: Any,
    stdio: Callable[..., Any],
    mcp_args: list[str],
) -> None:
    kubelet = StandInKubelet(apiserver.api_client(), namespace, kubelet_image_pull_status).start()
    try:
        async with stdio(mcp_args) as session:
            is_error, _, text = await call(session, "create_sandbox")
            assert is_error
            assert "is Failed: ImagePullError" in text
            assert "delete_sandbox" in text
            # the failed sandbox is kept and can be inspected and removed
            (listed,) = (await ok(session, "list_sandboxes"))["sandboxes"]
            assert (listed["phase"], listed["reason"]) == (c.PHASE_FAILED, c.REASON_IMAGE_PULL_ERROR)
            await ok(session, "delete_sandbox", sandbox_id=listed["sandbox_id"])
    finally:
        kubelet.stop()


async def test_wait_timeout_keeps_the_sandbox(
    apiserver: ServerThread, namespace: str, stdio: Callable[..., Any], mcp_args: list[str]
) -> None:
    # no operator: the sandbox stays without a phase
    async with stdio([*mcp_args, "--create-timeout", "1"]) as session:
        is_error, _, text = await call(session, "create_sandbox")
        assert is_error
        assert "not Running after 1 s" in text
        assert "get_sandbox" in text
        (listed,) = (await ok(session, "list_sandboxes"))["sandboxes"]
        assert listed["phase"] == c.PHASE_PENDING
        # no pod yet: the tools that need one say so, and what to do
        is_error, _, text = await call(
            session, "execute_command", sandbox_id=listed["sandbox_id"], command="true"
        )
        assert is_error
        assert "has no running pod" in text
        assert "If it is Pending, wait and call again" in text


async def test_a_dead_api_server_is_a_tool_error(
    stdio: Callable[..., Any], apiserver: ServerThread, tmp_path: Path
) -> None:
    kubeconfig, _ = dead_kubeconfig(apiserver.kubeconfig, tmp_path)
    async with stdio(["-m", "leap0.cli", "mcp", "--kubeconfig", str(kubeconfig)]) as session:
        for tool, args in (
            ("list_sandboxes", {}),
            ("create_sandbox", {}),
            ("get_sandbox", {"sandbox_id": "x"}),
        ):
            is_error, _, text = await call(session, tool, **args)
            assert is_error, tool
            assert text.startswith("cannot reach the Kubernetes API server"), text
        await assert_alive(session)


async def test_a_namespace_that_does_not_exist_says_how_to_create_it(
    stdio: Callable[..., Any], apiserver: ServerThread
) -> None:
    async with stdio(mcp_command(apiserver.kubeconfig, "no-such-team")) as session:
        is_error, _, text = await call(session, "create_sandbox")
        assert is_error
        assert text.startswith(
            "namespace no-such-team does not exist; create it with kubectl create namespace no-such-team"
        ), text
        assert "later" not in text
        await assert_alive(session)
