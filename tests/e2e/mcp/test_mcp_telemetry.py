"""The MCP server is an SDK user: with SDK telemetry on, each tool call is a span ``mcp.tool <name>``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_support import call, ok
from sdk_support import OtlpReceiver
from support import wait_for

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


async def test_each_tool_call_is_a_span_with_the_sandbox_id(
    stdio: Callable[..., Any], mcp_args: list[str], cluster: ServerThread
) -> None:
    with OtlpReceiver() as receiver:
        async with stdio(mcp_args, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url) as session:
            sid = (await ok(session, "create_sandbox"))["sandbox_id"]
            await ok(session, "execute_command", sandbox_id=sid, command="true")
            is_error, _, _ = await call(session, "get_sandbox", sandbox_id="no-such-sandbox")
            assert is_error
            await ok(session, "delete_sandbox", sandbox_id=sid)
        # the server flushes its spans when it exits
        spans = wait_for(
            lambda: [s for s in receiver.spans() if s["name"].startswith("mcp.tool ")], timeout=30
        )
        tool_spans = [(s["name"], s["attributes"].get("leap0.sandbox.id")) for s in spans]
        assert tool_spans == [
            ("mcp.tool create_sandbox", sid),
            ("mcp.tool execute_command", sid),
            ("mcp.tool get_sandbox", "no-such-sandbox"),
            ("mcp.tool delete_sandbox", sid),
        ]
        assert {s["scope"] for s in spans} == {"leap0-sdk-python"}
        # the SDK's own spans are there too
        names = {s["name"] for s in receiver.spans()}
        assert {"sandboxes.create", "process.execute", "sandboxes.delete"} <= names


async def test_telemetry_off_sends_nothing(
    stdio: Callable[..., Any], mcp_args: list[str], apiserver: ServerThread
) -> None:
    with OtlpReceiver() as receiver:
        async with stdio(
            mcp_args, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, LEAP0_SDK_OTEL_ENABLED="false"
        ) as session:
            await ok(session, "list_sandboxes")
        assert receiver.requests == []


async def test_sigterm_flushes_the_spans_of_the_http_server(
    http_server: Callable[..., Any], mcp_args: list[str], apiserver: ServerThread
) -> None:
    with OtlpReceiver() as receiver:
        server = http_server(
            [*mcp_args, "--http", "127.0.0.1:0", "--insecure-no-auth"],
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        )
        url = server.wait_url()
        async with streamable_http_client(url) as streams, ClientSession(*streams) as session:
            await session.initialize()
            await ok(session, "list_sandboxes")
        server.stop()  # SIGTERM, as the kubelet sends
        assert server.proc.returncode == 0
        assert [s["name"] for s in receiver.spans() if s["name"].startswith("mcp.tool ")] == [
            "mcp.tool list_sandboxes"
        ]
