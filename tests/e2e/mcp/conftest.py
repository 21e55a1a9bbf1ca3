"""Fixtures of the MCP server's end-to-end tests.

The chain is the real one: the official MCP client (``mcp``'s stdio and streamable-HTTP clients) talks to
``leap0 mcp`` (a child process), which uses the SDK against the embedded API server; the operator runs as a
process serving the test's namespace; the test plays only the kubelet (pod status), and the emulator answers
exec with the kubelet's protocol, running commands as local processes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_support import HttpServer, mcp_command, stdio_session
from sdk_support import StandInKubelet
from support import subprocess_env

from leap0_dev.apiserver import ServerThread
from leap0_dev.apiserver.exec import LocalProcessRunner


@pytest.fixture
def cluster(
    apiserver: ServerThread,
    namespace: str,
    exec_runner: LocalProcessRunner,
    operator: subprocess.Popen[bytes],
    kubelet: StandInKubelet,
) -> ServerThread:
    """The API server with the operator and a kubelet serving the test's namespace."""
    return apiserver


@pytest.fixture
def mcp_args(apiserver: ServerThread, namespace: str) -> list[str]:
    """The ``leap0 mcp`` command line for the test's namespace (add --owner etc. to it)."""
    return mcp_command(apiserver.kubeconfig, namespace)


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    """The servers' $XDG_CONFIG_HOME (where `leap0 mcp --owner` keeps its owner key): the test's own."""
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
def stdio(config_home: Path) -> Callable[..., Any]:
    def session(args: list[str], **env: str) -> Any:
        return stdio_session(args, **{"XDG_CONFIG_HOME": str(config_home), **env})

    return session


@pytest.fixture
def http_server(tmp_path: Path, config_home: Path) -> Iterator[Callable[..., HttpServer]]:
    started: list[HttpServer] = []

    def start(args: list[str], **env: str) -> HttpServer:
        full_env = subprocess_env(**{"XDG_CONFIG_HOME": str(config_home), **env})
        server = HttpServer(args, full_env, tmp_path / f"mcp-http-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
