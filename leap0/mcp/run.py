"""``leap0 mcp``: run the MCP server over stdio (default) or streamable HTTP with a bearer token."""

from __future__ import annotations

import hmac
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leap0.mcp import logic
from leap0_contract.cli import EXIT_USAGE, file_problem, port_problem


@dataclass(frozen=True)
class McpCommand:
    namespace: str | None = None
    kubeconfig: Path | None = None
    template: str | None = None
    max_output: int = logic.DEFAULT_MAX_OUTPUT
    max_read: int = logic.DEFAULT_MAX_READ
    create_timeout: float = logic.DEFAULT_CREATE_TIMEOUT
    owner: str | None = None
    all_sandboxes: bool = False
    http: str | None = None
    token_file: Path | None = None
    insecure_no_auth: bool = False


class BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>`` (constant-time compare).

    Anything else is answered 401 before it reaches the MCP app. Lifespan events pass through.
    """

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for key, value in scope.get("headers") or []:
            if key.lower() == b"authorization":
                given = value
                break
        scheme, _, credentials = given.strip().partition(b" ")
        # the scheme is case-insensitive (RFC 7235); the token is compared in constant time
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._expected):
            await self.app(scope, receive, send)
            return
        body = b'{"error":"unauthorized","error_description":"a valid bearer token is required"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="leap0-mcp"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def read_token(token_file: Path | None, env: dict[str, str]) -> str | None:
    """The bearer token: the file's content (stripped), else ``LEAP0_MCP_TOKEN``, else None."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            how = f"write the token there, or give it in ${logic.ENV_TOKEN} instead"
            raise ValueError(file_problem(exc, "--token-file", token_file, how)) from None
        if not token:
            raise ValueError(f"--token-file {token_file} is empty")
        return token
    return env.get(logic.ENV_TOKEN, "").strip() or None


def run(cmd: McpCommand) -> int:
    from leap0 import Leap0Client
    from leap0.exceptions import ConfigurationError, Leap0Error
    from leap0.mcp.server import SandboxTools, ServerOptions, build_server, random_owner

    try:
        owner = logic.check_owner(cmd.owner) if cmd.owner else random_owner()
        if cmd.max_output < 64 or cmd.max_read < 1 or cmd.create_timeout <= 0:
            raise ValueError(
                "--max-output must be at least 64 bytes, --max-read at least 1 byte and --create-timeout "
                "positive"
            )
        host_port = logic.parse_host_port(cmd.http) if cmd.http else None
        token: str | None = None
        if host_port is not None:
            token = read_token(cmd.token_file, dict(os.environ))
            refusal = logic.auth_decision(token, host_port[0], cmd.insecure_no_auth)
            if refusal:
                raise ValueError(refusal)
        client = Leap0Client(namespace=cmd.namespace, kubeconfig=cmd.kubeconfig)
        sock = _listen(*host_port) if host_port is not None else None
    except ConfigurationError as exc:  # (the cluster's configuration: the only one read at start)
        print(
            f"leap0 mcp: {exc}; name the cluster's kubeconfig with --kubeconfig FILE or $KUBECONFIG",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (ValueError, OSError, Leap0Error) as exc:
        print(f"leap0 mcp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = ServerOptions(
        owner=owner,
        template=cmd.template,
        max_output=cmd.max_output,
        max_read=cmd.max_read,
        create_timeout=cmd.create_timeout,
        all_sandboxes=cmd.all_sandboxes,
    )
    print(
        f"leap0 mcp: namespace {client.namespace}, owner {owner}"
        + (" (all sandboxes of the namespace)" if cmd.all_sandboxes else ""),
        file=sys.stderr,
    )
    server = build_server(SandboxTools(client, options))
    # SIGTERM (kubelet, process managers) ends the server like Ctrl-C, so the client's close() below flushes
    # the SDK's telemetry. In HTTP mode uvicorn shuts down gracefully first, then re-raises the signal here.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if sock is None:
            server.run("stdio")
        else:
            _serve_http(server, sock, host_port[0] if host_port else "", token)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()  # sandboxes are left alone: their timeout bounds their life
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket of ``--http`` (bound here, so port 0, any free port, can be announced); a
    ValueError saying what to do when the address cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    except OSError as exc:
        sock.close()
        where = f"{_url_host(host)}:{port}"
        raise ValueError(
            port_problem(exc, "--http", where, "--http HOST:PORT (port 0: any free one)")
        ) from None
    return sock


def _serve_http(server: Any, sock: socket.socket, host: str, token: str | None) -> None:
    import anyio
    import uvicorn

    bound = sock.getsockname()[1]
    app: Any = server.streamable_http_app(host=host)
    if token is not None:
        app = BearerAuth(app, token)
    config = uvicorn.Config(app, host=host, port=bound, log_level="warning")
    userver = uvicorn.Server(config)
    print(f"leap0 mcp: streamable HTTP on http://{_url_host(host)}:{bound}/mcp", file=sys.stderr, flush=True)

    async def serve() -> None:
        await userver.serve(sockets=[sock])

    anyio.run(serve)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
