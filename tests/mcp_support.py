"""Helpers of the MCP server's end-to-end tests (importable: ``tests`` is on pytest's pythonpath)."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from support import subprocess_env, wait_for

from leap0_dev.apiserver import ServerThread


def mcp_command(kubeconfig: Path, namespace: str) -> list[str]:
    """``-m leap0.cli mcp --kubeconfig FILE --namespace NS``: the arguments of ``python`` for
    :func:`stdio_session` (add --owner etc. to them)."""
    return ["-m", "leap0.cli", "mcp", "--kubeconfig", str(kubeconfig), "--namespace", namespace]


@contextlib.asynccontextmanager
async def stdio_session(args: list[str], **env: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session with ``python <args>`` over stdio."""
    params = StdioServerParameters(command=sys.executable, args=args, env=subprocess_env(**env))
    with open("/dev/null", "w") as errlog:  # noqa: ASYNC230 - the server's log lines
        async with stdio_client(params, errlog=errlog) as streams, ClientSession(*streams) as session:
            await session.initialize()
            yield session


async def call(session: Any, name: str, **arguments: Any) -> tuple[bool, dict[str, Any] | None, str]:
    """(is_error, structured content, text) of a tool call."""
    result = await session.call_tool(name, arguments)
    text = "\n".join(block.text for block in result.content if block.type == "text")
    return result.is_error, result.structured_content, text


async def ok(session: Any, name: str, **arguments: Any) -> dict[str, Any]:
    is_error, structured, text = await call(session, name, **arguments)
    assert not is_error, text
    assert structured is not None
    return structured


def kubeconfig_for(apiserver: ServerThread, namespace: str, path: Path) -> Path:
    doc = yaml.safe_load(apiserver.kubeconfig.read_text())
    for ctx in doc["contexts"]:
        ctx["context"]["namespace"] = namespace
    path.write_text(yaml.safe_dump(doc))
    return path


class HttpServer:
    """``leap0 mcp --http 127.0.0.1:0`` as a child process; ``url`` is its /mcp endpoint."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self._log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=self._out, env=env
        )
        self.url = ""

    def wait_url(self) -> str:
        def announced() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"leap0 mcp exited {self.proc.returncode}: {self._log.read_text()}")
            found = re.search(r"streamable HTTP on (\S+)", self._log.read_text())
            return found.group(1) if found else None

        self.url = wait_for(announced, timeout=60, what="leap0 mcp --http to listen")
        return self.url

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
