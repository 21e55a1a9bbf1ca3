"""``pods/{name}/exec`` for the embedded API server: the Kubernetes exec websocket protocol, run locally.

A test double of the kubelet's exec endpoint. It speaks the real protocol (subprotocols
``v5.channel.k8s.io`` and ``v4.channel.k8s.io``; channel 0 stdin, 1 stdout, 2 stderr, 3 the final
``metav1.Status``, 4 resize, and in v5 255 to close a channel), so clients (the ``kubernetes`` Python client's
``stream``, kubectl) take the code path they take against real clusters. *Where* the command runs is
pluggable (:class:`ExecRunner`): the default :class:`LocalProcessRunner` runs it as a local subprocess in a
scratch directory per pod; the local pod runner of ``leap0 dev up`` can pass one that runs it in the pod's
cgroup. Plug it in with ``server.exec_handler = ExecHandler()`` (the server's hook signature).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

import leap0_contract as contract
from leap0_dev import podspec

from .errors import status_body

V5_PROTOCOL = "v5.channel.k8s.io"
V4_PROTOCOL = "v4.channel.k8s.io"
PROTOCOLS = (V5_PROTOCOL, V4_PROTOCOL)

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE = 255  # v5: [255, channel] closes that channel (the client's way to send EOF on stdin)

_CHUNK = 64 * 1024
_DRAIN_S = 5.0
_TRUE = frozenset({"true", "1", "yes"})


@dataclass(frozen=True)
class ExecTarget:
    """What to run and where: the request's pod, container and argv (``command`` query parameters)."""

    namespace: str
    pod: str
    container: str | None
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


class ExecRunner(Protocol):
    """Starts the command of an exec request; the handler streams its pipes and reports its exit."""

    async def start(self, target: ExecTarget) -> asyncio.subprocess.Process: ...


class LocalProcessRunner:
    """Runs exec commands as local subprocesses, each pod in its own scratch directory (cwd and HOME).

    The process gets its own session, so the whole group can be killed when the client goes away.
    """

    def __init__(
        self, root: Path | None = None, env: dict[str, str] | None = None, supervisor: Path | None = None
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="leap0-exec-")
            root = Path(self._tmp.name)
        self.root = root
        self._env = env
        # What stands for the leap0 supervisor a sandbox pod mounts (sandbox logs): the commands the SDKs run
        # through it run through this binary; without one they run as the supervisor would run them.
        self.supervisor = supervisor

    def argv(self, command: Sequence[str]) -> list[str]:
        """The command as it runs here: the supervisor of a sandbox pod is ``self.supervisor``."""
        argv = list(command)
        if argv and argv[0] == contract.SUPERVISOR_PATH:
            if self.supervisor is None:
                return podspec.unwrap_supervisor(argv) or argv
            argv[0] = str(self.supervisor)
        return argv

    def pod_dir(self, namespace: str, pod: str) -> Path:
        path = self.root / namespace / pod
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def start(self, target: ExecTarget) -> asyncio.subprocess.Process:
        workdir = self.pod_dir(target.namespace, target.pod)
        env = dict(os.environ if self._env is None else self._env)
        env["HOME"] = str(workdir)
        pipe = asyncio.subprocess.PIPE
        devnull = asyncio.subprocess.DEVNULL
        return await asyncio.create_subprocess_exec(
            *self.argv(target.command),
            cwd=workdir,
            env=env,
            stdin=pipe if target.stdin else devnull,
            stdout=pipe if target.stdout else devnull,
            stderr=pipe if target.stderr else devnull,
            start_new_session=True,
        )

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def exit_status(command: Sequence[str], returncode: int) -> dict[str, Any]:
    """The ``metav1.Status`` the kubelet sends on channel 3 when the command ends.

    A process killed by signal N reports exit code 128+N, as container runtimes do.
    """
    if returncode == 0:
        return {"metadata": {}, "status": "Success"}
    code = 128 - returncode if returncode < 0 else returncode
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            f"command terminated with non-zero exit code: error executing command {list(command)}, "
            f"exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def start_failure_status(command: Sequence[str], error: BaseException) -> dict[str, Any]:
    """The Status for a command that could not start (as runc words a missing executable)."""
    if isinstance(error, FileNotFoundError):
        text = f'exec: "{command[0]}": executable file not found in $PATH'
    else:
        text = f'exec: "{command[0]}": {error}'
    message = f"failed to exec in container: failed to start exec: OCI runtime exec failed: {text}: unknown"
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def _bad_request(message: str) -> web.Response:
    return web.json_response(status_body(400, "BadRequest", message), status=400)


def parse_target(namespace: str, pod: str, query: Any) -> ExecTarget:
    def flag(name: str, default: bool) -> bool:
        value = query.get(name)
        return default if value is None else value.strip().lower() in _TRUE

    return ExecTarget(
        namespace=namespace,
        pod=pod,
        container=query.get("container") or None,
        command=tuple(query.getall("command", [])),
        stdin=flag("stdin", False),
        stdout=flag("stdout", True),
        stderr=flag("stderr", True),
        tty=flag("tty", False),
    )


class ExecHandler:
    """The server hook ``(request, namespace, pod, subresource) -> response`` answering ``pods/exec``."""

    def __init__(self, runner: ExecRunner | None = None) -> None:
        self.runner: ExecRunner = runner if runner is not None else LocalProcessRunner()

    async def __call__(self, request: web.Request, namespace: str, name: str, sub: str) -> web.StreamResponse:
        if sub != "exec":
            return _bad_request(f"{sub} is not supported by the embedded API server")
        target = parse_target(namespace, name, request.query)
        if not target.command:
            return _bad_request("you must specify at least 1 command")
        if not (target.stdin or target.stdout or target.stderr):
            return _bad_request("you must specify at least one of stdin, stdout, stderr")
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            return _bad_request("Upgrade request required (exec speaks websocket: v5/v4.channel.k8s.io)")
        await ws.prepare(request)
        if ws.ws_protocol not in PROTOCOLS:
            await ws.close(code=1002, message=b"unsupported subprotocol: use v5.channel.k8s.io or v4")
            return ws
        try:
            proc = await self.runner.start(target)
        except OSError as exc:
            await self._send(ws, ERROR, json.dumps(start_failure_status(target.command, exc)).encode())
            await ws.close()
            return ws
        await self._session(ws, proc, target)
        return ws

    async def _session(
        self, ws: web.WebSocketResponse, proc: asyncio.subprocess.Process, target: ExecTarget
    ) -> None:
        pumps = [
            asyncio.ensure_future(self._pump(ws, stream, channel))
            for stream, channel in ((proc.stdout, STDOUT), (proc.stderr, STDERR))
            if stream is not None
        ]
        reader = asyncio.ensure_future(self._read_client(ws, proc))
        exited = asyncio.ensure_future(proc.wait())
        try:
            await asyncio.wait({exited, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():  # the client went away first: stop the command, like a lost session
                _kill(proc)
                await exited
                return
            # Output still in the pipes goes out before the status (bounded: a background child may keep them)
            # open).
            if pumps:
                await asyncio.wait(pumps, timeout=_DRAIN_S)
            status = exit_status(target.command, proc.returncode if proc.returncode is not None else 1)
            await self._send(ws, ERROR, json.dumps(status).encode())
            await ws.close()
        finally:
            if proc.returncode is None:
                _kill(proc)
                with contextlib.suppress(Exception):
                    await proc.wait()
            for task in (*pumps, reader, exited):
                if not task.done():
                    task.cancel()
            await asyncio.gather(*pumps, reader, exited, return_exceptions=True)

    @staticmethod
    async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
        if not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(bytes([channel]) + data)

    async def _pump(self, ws: web.WebSocketResponse, stream: asyncio.StreamReader, channel: int) -> None:
        while True:
            data = await stream.read(_CHUNK)
            if not data:
                return
            await self._send(ws, channel, data)

    async def _read_client(self, ws: web.WebSocketResponse, proc: asyncio.subprocess.Process) -> None:
        """Client frames: stdin data, v5 close of stdin, resize (ignored: no tty here)."""
        v5 = ws.ws_protocol == V5_PROTOCOL
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data: bytes = msg.data
            elif msg.type == WSMsgType.TEXT:
                data = msg.data.encode("utf-8") if msg.data else b""
                if data:
                    data = bytes([ord(msg.data[0])]) + msg.data[1:].encode("utf-8")
            else:
                continue
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if channel == STDIN and proc.stdin is not None and payload:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    proc.stdin.write(payload)
                    await proc.stdin.drain()
            elif channel == CLOSE and v5 and payload[:1] == bytes([STDIN]) and proc.stdin is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    proc.stdin.close()


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
