"""``leap0 mcp``: run the MCP server over stdio (default) or streamable HTTP with a bearer token."""

from __future__ import annotations

import hmac
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leap0._redact import redact
from leap0.mcp import logic
from leap0_contract.cli import EXIT_USAGE, file_problem, port_problem


@dataclass(frozen=True)
class McpCommand:
    namespace: str | None = None
    kubeconfig: Path | None = None
    template: str | None = None
    allowed_templates: str | None = None
    network_policy: str | None = None
    network_allow_cidrs: str | None = None
    owner_key_file: Path | None = None
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
    """The bearer token: the file's content (stripped), else ``LEAP0_MCP_TOKEN``, else None; ValueError
    when it is shorter than 32 bytes (guessable)."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            how = f"write the token there, or give it in ${logic.ENV_TOKEN} instead"
            raise ValueError(file_problem(exc, "--token-file", token_file, how)) from None
        if not token:
            raise ValueError(f"--token-file {token_file} is empty")
        return logic.check_token(token)
    token = env.get(logic.ENV_TOKEN, "").strip()
    return logic.check_token(token) if token else None


def default_owner_key_file(env: dict[str, str]) -> Path:
    """Where the owner key is kept when ``--owner-key-file`` is not given: ``$XDG_CONFIG_HOME/leap0`` or
    ``~/.config/leap0``, file ``mcp-owner.key``."""
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "leap0" / "mcp-owner.key"


def load_owner_key(path: Path | None, env: dict[str, str]) -> tuple[bytes, str | None]:
    """The key that signs ownership, and a warning to print (or None).

    ``--owner-key-file`` must exist and hold at least 32 bytes. Without it, the default file is read, or
    created (mode 0600, 32 random bytes) on first use; where it cannot be, the key lives in this process
    only, and a restarted server no longer sees the sandboxes it created (said in the warning).
    """
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            how = "write at least 32 random bytes there (head -c 32 /dev/urandom > FILE), or name another"
            raise ValueError(file_problem(exc, "--owner-key-file", path, how)) from None
        return logic.owner_key(data, f"--owner-key-file {path}"), None
    default = default_owner_key_file(env)
    try:
        try:
            return logic.owner_key(default.read_bytes(), str(default)), None
        except FileNotFoundError:
            pass
        default.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(default, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        return logic.owner_key(default.read_bytes(), str(default)), None
    except OSError as exc:
        warning = (
            f"cannot keep an owner key in {default} ({exc.strerror or exc}): this process signs with a key "
            "of its own, so after a restart it will not see the sandboxes it created; pass --owner-key-file"
        )
        return secrets.token_bytes(32), warning


def run(cmd: McpCommand) -> int:
    from leap0 import Leap0Client
    from leap0.exceptions import ConfigurationError, Leap0Error
    from leap0.mcp.server import SandboxTools, ServerOptions, build_server, random_owner

    try:
        owner = logic.check_owner(cmd.owner) if cmd.owner else random_owner()
        limits = logic.admin_limits(
            allowed_templates=cmd.allowed_templates,
            template=cmd.template,
            network_policy=cmd.network_policy,
            network_allow_cidrs=cmd.network_allow_cidrs,
        )
        if cmd.owner or cmd.owner_key_file:
            owner_key, key_warning = load_owner_key(cmd.owner_key_file, dict(os.environ))
        else:  # a random owner: nothing to keep across restarts
            owner_key, key_warning = secrets.token_bytes(32), None
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
        how = "name the cluster's kubeconfig with --kubeconfig FILE or $KUBECONFIG"
        print(f"leap0 mcp: {redact(str(exc))}; {how}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError, Leap0Error) as exc:
        print(f"leap0 mcp: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    if key_warning:
        print(f"leap0 mcp: {key_warning}", file=sys.stderr)
    options = ServerOptions(
        owner=owner,
        owner_key=owner_key,
        limits=limits,
        max_output=cmd.max_output,
        max_read=cmd.max_read,
        create_timeout=cmd.create_timeout,
        all_sandboxes=cmd.all_sandboxes,
    )
    print(
        f"leap0 mcp: namespace {client.namespace}, owner {owner}"
        + (" (all sandboxes of the namespace)" if cmd.all_sandboxes else "")
        + (f", templates {', '.join(limits.templates)}" if limits.templates else "")
        + (f", network {logic.network_text(limits.network)}" if limits.network else ""),
        file=sys.stderr,
    )
    tools = SandboxTools(client, options)
    server = build_server(tools)
    # SIGTERM (kubelet, process managers) ends the server like Ctrl-C, so the client's close() below flushes
    # the SDK's telemetry. In HTTP mode uvicorn shuts down gracefully first, then re-raises the signal here.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if sock is None:
            _serve_stdio(server)
        else:
            _serve_http(server, sock, host_port[0] if host_port else "", token)
    except KeyboardInterrupt:
        pass
    finally:
        tools.stop_all()  # commands of calls still running (their client left) are stopped first
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


def _serve_stdio(server: Any) -> None:
    """Serve stdio until the client closes it. A client that left without closing cleanly (its pipe broken
    while an answer was being written) ends the server the same way: calls still running are cancelled (the
    caller stops their commands), and nothing more is written to the broken pipe."""
    try:
        server.run("stdio")
    except* (BrokenPipeError, ConnectionResetError):
        print("leap0 mcp: the client closed the connection", file=sys.stderr)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing buffered is flushed into the broken pipe at exit
        os.close(devnull)


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
