"""The MCP server's tools: sandboxes for agents, built on ``leap0.Leap0Client`` and ``mcp``'s ``MCPServer``.

Each tool is a thin function: check ownership, call the SDK, shape the answer (``leap0.mcp.logic``). A tool
answers with structured content (its output schema) plus a readable text; a failure is a tool error
(``isError``) whose text is one line: the cause and what to do.
"""

# No ``from __future__ import annotations``: MCPServer reads the tools' signatures at run time.

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

import leap0_contract as c
from leap0 import Leap0Client, Sandbox
from leap0.exceptions import SandboxFailedError, SandboxTimeoutError
from leap0.mcp import logic
from leap0.mcp.logic import ToolFailure

INSTRUCTIONS = """\
Sandboxes are isolated Linux containers on a Kubernetes cluster, for running code and commands.
Create one with create_sandbox, run commands with execute_command, move files with write_file/read_file,
look around with list_files. A sandbox lives until its timeout (seconds from creation) or until you delete
it: this server never deletes sandboxes on its own, so call delete_sandbox when you are done.
"""

SandboxId = Annotated[
    str, Field(description="The sandbox id returned by create_sandbox (or listed by list_sandboxes).")
]


class NetworkSpec(BaseModel):
    """Egress of the sandbox (ingress is always closed)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not silently dropped

    policy: Literal["Internet", "DenyAll", "AllowAll", "Custom"] = Field(
        description="Internet: public addresses and DNS only (no private ranges, no cloud metadata server); "
        "DenyAll: DNS only; AllowAll: everything; Custom: DNS plus allow_cidrs."
    )
    allow_cidrs: list[str] | None = Field(
        default=None,
        description="With policy Custom: the address ranges the sandbox may reach, e.g. ['10.0.0.0/8'].",
    )


class SandboxInfo(BaseModel):
    sandbox_id: str = Field(description="The sandbox id: pass it to the other tools.")
    phase: str = Field(description="Pending, Running, Failed or Expired.")
    reason: str | None = Field(default=None, description="Why it is in this phase (from the operator).")
    message: str | None = Field(default=None, description="Details of the reason.")
    template: str | None = Field(default=None, description="The template it was made from.")
    vcpu: int | None = Field(default=None, description="Logical CPUs.")
    memory: int | None = Field(default=None, description="Memory limit in MiB.")
    timeout: int | None = Field(default=None, description="Lifetime in seconds, counted from creation.")
    created_at: str | None = Field(default=None, description="Creation time (RFC 3339, UTC).")
    expires_at: str | None = Field(
        default=None, description="When it will be deleted unless its timeout is raised (RFC 3339, UTC)."
    )


class SandboxList(BaseModel):
    sandboxes: list[SandboxInfo]


class Deleted(BaseModel):
    sandbox_id: str
    deleted: bool = Field(description="Always true: deletion was accepted (the pod stops in a moment).")


class ExecuteResult(BaseModel):
    exit_code: int = Field(description="The command's exit status (0: success).")
    stdout: str = Field(description="Standard output (UTF-8; head and tail kept when over the cap).")
    stderr: str = Field(description="Standard error (same cap).")
    truncated: bool = Field(description="True when stdout or stderr was cut to the output cap.")
    stdout_bytes_cut: int = Field(description="Bytes of stdout left out (0 when complete).")
    stderr_bytes_cut: int = Field(description="Bytes of stderr left out (0 when complete).")


class WriteResult(BaseModel):
    path: str
    size: int = Field(description="Bytes written.")


class ReadResult(BaseModel):
    path: str
    encoding: Literal["utf-8", "base64"] = Field(description="How content is encoded.")
    content: str
    size: int = Field(description="Size of the file in bytes.")


class FileEntry(BaseModel):
    name: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int | None = Field(description="Bytes, for regular files; null otherwise.")


class FileList(BaseModel):
    path: str
    entries: list[FileEntry]
    truncated: bool = Field(description="True when the directory has more entries than were listed.")


@dataclass(frozen=True)
class ServerOptions:
    owner: str
    template: str | None = None
    max_output: int = logic.DEFAULT_MAX_OUTPUT
    max_read: int = logic.DEFAULT_MAX_READ
    create_timeout: float = logic.DEFAULT_CREATE_TIMEOUT
    all_sandboxes: bool = False


def random_owner() -> str:
    return f"mcp-{secrets.token_hex(6)}"


def _ok(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=model.model_dump(mode="json")
    )


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


class SandboxTools:
    """The tools' behaviour over one ``Leap0Client`` (synchronous: MCPServer runs them on worker threads)."""

    def __init__(self, client: Leap0Client, options: ServerOptions) -> None:
        self.client = client
        self.options = options

    # --- helpers ----------------------------------------------------------------------------------
    def _call(
        self, tool: str, sandbox_id: str | None, body: Callable[[Any], CallToolResult]
    ) -> CallToolResult:
        """Run ``body`` in the span ``mcp.tool <tool>``; a failure becomes a tool error for the model."""
        try:
            with self.client._telemetry.span(c.MCP_TOOL_SPAN_PREFIX + tool, sandbox_id) as op:
                return body(op)
        except Exception as exc:
            return _error(logic.failure_message(exc, sandbox_id))

    def _owned(self, sandbox_id: str) -> Sandbox:
        """The sandbox, if this server may act on it; otherwise (or if it is gone) 'not found'."""
        sandbox = self.client.sandboxes.get(sandbox_id)
        if not logic.is_visible(sandbox.labels, self.options.owner, self.options.all_sandboxes):
            raise ToolFailure(logic.not_found_message(sandbox_id))
        return sandbox

    def _info(self, sandbox: Sandbox) -> tuple[SandboxInfo, str]:
        summary = logic.sandbox_summary(sandbox)
        return SandboxInfo.model_validate(summary), logic.sandbox_text(summary)

    # --- tools ------------------------------------------------------------------------------------
    def create_sandbox(
        self,
        template: str | None,
        vcpu: int | None,
        memory: int | None,
        timeout: int | None,
        env_vars: dict[str, str] | None,
        network: NetworkSpec | None,
        telemetry_logs: bool | None = None,
    ) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            kwargs = logic.create_kwargs(
                template=template,
                default_template=self.options.template,
                vcpu=vcpu,
                memory=memory,
                timeout=timeout,
                env_vars=env_vars,
                network=None if network is None else network.model_dump(),
                owner=self.options.owner,
                wait_timeout=self.options.create_timeout,
                telemetry_logs=telemetry_logs,
            )
            try:
                sandbox = self.client.sandboxes.create(**kwargs)
            except (SandboxFailedError, SandboxTimeoutError) as exc:
                if exc.sandbox_id:  # created, but not Running: the span names it too
                    op.set_sandbox_id(exc.sandbox_id)
                raise
            op.set_sandbox_id(sandbox.id)
            info, text = self._info(sandbox)
            return _ok(info, f"created {text}. Delete it with delete_sandbox when done.")

        return self._call("create_sandbox", None, body)

    def get_sandbox(self, sandbox_id: str) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            return _ok(*self._info(self._owned(sandbox_id)))

        return self._call("get_sandbox", sandbox_id, body)

    def list_sandboxes(self) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            selector = logic.owner_selector(self.options.owner, self.options.all_sandboxes)
            infos = [self._info(sb) for sb in self.client.sandboxes.list(label_selector=selector)]
            op.set_attribute("leap0.sandbox.count", len(infos))
            text = "\n".join(t for _, t in infos) or "no sandboxes (create one with create_sandbox)"
            return _ok(SandboxList(sandboxes=[i for i, _ in infos]), text)

        return self._call("list_sandboxes", None, body)

    def set_timeout(self, sandbox_id: str, timeout: int) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            self._owned(sandbox_id)
            summary = logic.after_set_timeout(self.client.sandboxes.set_timeout(sandbox_id, timeout), timeout)
            text = logic.sandbox_text(summary)
            return _ok(SandboxInfo.model_validate(summary), f"timeout set to {timeout} s: {text}")

        return self._call("set_timeout", sandbox_id, body)

    def delete_sandbox(self, sandbox_id: str) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            self._owned(sandbox_id)
            self.client.sandboxes.delete(sandbox_id)
            return _ok(Deleted(sandbox_id=sandbox_id, deleted=True), f"sandbox {sandbox_id} deleted")

        return self._call("delete_sandbox", sandbox_id, body)

    def execute_command(
        self,
        sandbox_id: str,
        command: str,
        cwd: str | None,
        env: dict[str, str] | None,
        timeout: float | None,
    ) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            sandbox = self._owned(sandbox_id)
            result = sandbox.process.execute(command, cwd=cwd, env=env, timeout=timeout)
            out = logic.cap_output(result.stdout, self.options.max_output)
            err = logic.cap_output(result.stderr, self.options.max_output)
            model = ExecuteResult(
                exit_code=result.exit_code,
                stdout=out.text,
                stderr=err.text,
                truncated=bool(out.cut or err.cut),
                stdout_bytes_cut=out.cut,
                stderr_bytes_cut=err.cut,
            )
            return _ok(model, logic.execute_text(result.exit_code, out.text, err.text, out.cut, err.cut))

        return self._call("execute_command", sandbox_id, body)

    def write_file(self, sandbox_id: str, path: str, content: str, encoding: str) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            data = logic.decode_content(content, encoding)
            sandbox = self._owned(sandbox_id)
            sandbox.filesystem.write(path, data)
            return _ok(WriteResult(path=path, size=len(data)), f"wrote {len(data)} bytes to {path}")

        return self._call("write_file", sandbox_id, body)

    def read_file(self, sandbox_id: str, path: str, encoding: str | None) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            sandbox = self._owned(sandbox_id)
            data = sandbox.filesystem.read(path)
            if len(data) > self.options.max_read:
                raise ToolFailure(
                    f"{path} is {len(data)} bytes, over the read limit of {self.options.max_read} bytes: "
                    "read parts of it with execute_command (head -c, tail -c, sed -n, grep)"
                )
            content, used = logic.encode_content(data, encoding)
            model = ReadResult(path=path, encoding=used, content=content, size=len(data))  # type: ignore[arg-type]
            if used == "utf-8":
                return _ok(model, content)
            return _ok(model, f"{path}: {len(data)} bytes of binary data, base64 in the structured result")

        return self._call("read_file", sandbox_id, body)

    def list_files(self, sandbox_id: str, path: str) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            sandbox = self._owned(sandbox_id)
            result = sandbox.process.execute(logic.list_argv(path))
            if result.exit_code != 0:
                raise ToolFailure(
                    f"cannot list {path}: {result.stderr.strip() or f'exit code {result.exit_code}'}. "
                    "Give an existing directory (list_files with '.' shows the working directory)"
                )
            entries, truncated = logic.parse_listing(result.stdout)
            model = FileList(
                path=path, entries=[FileEntry.model_validate(e) for e in entries], truncated=truncated
            )
            return _ok(model, logic.listing_text(path, entries, truncated))

        return self._call("list_files", sandbox_id, body)


_LIFETIME = (
    "Sandboxes are never deleted when this server stops: their timeout bounds their life, so delete them "
    "with delete_sandbox when you are done."
)


def build_server(tools: SandboxTools) -> MCPServer[Any]:
    """The MCPServer with the nine sandbox tools bound to ``tools``."""
    from leap0 import __version__

    server: MCPServer[Any] = MCPServer("leap0", version=__version__, instructions=INSTRUCTIONS)
    max_output = tools.options.max_output
    max_read = tools.options.max_read

    @server.tool(
        name="create_sandbox",
        title="Create a sandbox",
        description="Create a sandbox (an isolated Linux container) and wait until it is Running (usually a "
        f"few seconds, at most {tools.options.create_timeout:g} s). Returns its sandbox_id, phase, "
        "expires_at and resources. "
        "Omitted settings come from the template, else the defaults (1 vCPU, 1024 MiB, 300 s). "
        f"{_LIFETIME} If the API rejects a value, the error names the field: fix it and call again.",
        annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=False),
    )
    def create_sandbox(
        template: Annotated[
            str | None,
            Field(description="SandboxTemplate name (image and defaults); omit for the server's default."),
        ] = None,
        vcpu: Annotated[int | None, Field(description="Logical CPUs, 1-8.")] = None,
        memory: Annotated[int | None, Field(description="Memory limit in MiB, 512-8192, even.")] = None,
        timeout: Annotated[
            int | None,
            Field(description="Lifetime in seconds from creation, 1-28800 (8 h); raise it with set_timeout."),
        ] = None,
        env_vars: Annotated[
            dict[str, str] | None, Field(description="Environment variables of the sandbox, NAME -> value.")
        ] = None,
        network: Annotated[
            NetworkSpec | None, Field(description="Egress policy; omit for the template's or the default.")
        ] = None,
        telemetry_logs: Annotated[
            bool | None,
            Field(
                description="Send what the sandbox's commands print to its telemetry endpoint as log records "
                "(false: do not); omit for the template's, else on."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, SandboxInfo]:
        return tools.create_sandbox(template, vcpu, memory, timeout, env_vars, network, telemetry_logs)

    @server.tool(
        name="get_sandbox",
        title="Get a sandbox",
        description="Phase (Pending, Running, Failed, Expired), reason, expires_at and resources of a "
        "sandbox.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    def get_sandbox(sandbox_id: SandboxId) -> Annotated[CallToolResult, SandboxInfo]:
        return tools.get_sandbox(sandbox_id)

    @server.tool(
        name="list_sandboxes",
        title="List sandboxes",
        description="Every sandbox this server created and that still exists (id, phase, expires_at, "
        f"resources). {_LIFETIME}",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    def list_sandboxes() -> Annotated[CallToolResult, SandboxList]:
        return tools.list_sandboxes()

    @server.tool(
        name="set_timeout",
        title="Set a sandbox's timeout",
        description="Set the sandbox's lifetime to `timeout` seconds counted from its creation (not from "
        "now): to keep it 10 more minutes, add 600 to its current timeout. 1-28800 s. Returns the new "
        "expires_at.",
        annotations=ToolAnnotations(idempotent_hint=True),
    )
    def set_timeout(
        sandbox_id: SandboxId,
        timeout: Annotated[int, Field(description="Lifetime in seconds from creation, 1-28800.")],
    ) -> Annotated[CallToolResult, SandboxInfo]:
        return tools.set_timeout(sandbox_id, timeout)

    @server.tool(
        name="delete_sandbox",
        title="Delete a sandbox",
        description="Delete a sandbox now: its processes stop and its files are gone. Call it when you are "
        "done with a sandbox.",
        annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True),
    )
    def delete_sandbox(sandbox_id: SandboxId) -> Annotated[CallToolResult, Deleted]:
        return tools.delete_sandbox(sandbox_id)

    @server.tool(
        name="execute_command",
        title="Run a command",
        description="Run a shell command (/bin/sh -c) in the sandbox and wait for it. Returns exit_code, "
        f"stdout and stderr; each output is capped at {max_output} bytes (head and tail kept, "
        "truncated=true and *_bytes_cut say how much was cut: redirect big outputs to a file and read "
        "parts of it). A non-zero exit code is a result, not an error. For long-running servers, start them "
        "in the background (nohup CMD > /tmp/log 2>&1 &).",
        annotations=ToolAnnotations(destructive_hint=True, open_world_hint=True),
    )
    def execute_command(
        sandbox_id: SandboxId,
        command: Annotated[str, Field(description="Shell command line, e.g. 'python3 main.py --n 3'.")],
        cwd: Annotated[
            str | None, Field(description="Working directory; default: the sandbox's working directory.")
        ] = None,
        env: Annotated[
            dict[str, str] | None, Field(description="Extra environment variables for this command.")
        ] = None,
        timeout: Annotated[
            float | None,
            Field(
                description="Seconds before the command is stopped (then an error with its partial output); "
                "default: no limit."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ExecuteResult]:
        return tools.execute_command(sandbox_id, command, cwd, env, timeout)

    @server.tool(
        name="write_file",
        title="Write a file",
        description="Write a file in the sandbox (parent directories are created, an existing file is "
        "replaced). Text as UTF-8, or binary as base64 with encoding='base64'.",
        annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True),
    )
    def write_file(
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="File path; relative paths start in the working directory.")],
        content: Annotated[str, Field(description="The file's content, encoded as `encoding` says.")],
        encoding: Annotated[
            Literal["utf-8", "base64"], Field(description="utf-8 for text (default), base64 for binary.")
        ] = "utf-8",
    ) -> Annotated[CallToolResult, WriteResult]:
        return tools.write_file(sandbox_id, path, content, encoding)

    @server.tool(
        name="read_file",
        title="Read a file",
        description=f"Read a file from the sandbox (at most {max_read} bytes; read bigger files in parts "
        "with execute_command). Text comes back as UTF-8, binary data as base64 (see the result's encoding).",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    def read_file(
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="File path; relative paths start in the working directory.")],
        encoding: Annotated[
            Literal["utf-8", "base64"] | None,
            Field(description="Force utf-8 or base64; default: utf-8 if the file is text, else base64."),
        ] = None,
    ) -> Annotated[CallToolResult, ReadResult]:
        return tools.read_file(sandbox_id, path, encoding)

    @server.tool(
        name="list_files",
        title="List a directory",
        description="The entries of a directory in the sandbox: name, type (file, directory, symlink, "
        f"other) and size in bytes for files; at most {logic.MAX_LIST_ENTRIES} entries, sorted by name.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    def list_files(
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="Directory path; '.' is the working directory.")] = ".",
    ) -> Annotated[CallToolResult, FileList]:
        return tools.list_files(sandbox_id, path)

    _refuse_unknown_arguments(server)
    return server


def _refuse_unknown_arguments(server: MCPServer[Any]) -> None:
    """Middleware: a tools/call naming a parameter the tool does not have is a tool error (the MCP SDK would
    otherwise drop it silently, and the call would run without what the model meant to set)."""
    allowed: dict[str, frozenset[str]] = {}

    async def check(ctx: Any, call_next: Any) -> Any:
        params = ctx.params or {}
        if ctx.method == "tools/call" and not allowed:
            for tool in await server.list_tools():
                allowed[tool.name] = frozenset(tool.input_schema.get("properties", {}))
        if ctx.method == "tools/call" and params.get("name") in allowed:
            arguments = params.get("arguments") or {}
            if isinstance(arguments, dict):
                refusal = logic.unknown_arguments(params["name"], arguments, allowed[params["name"]])
                if refusal:
                    return _error(refusal)
        return await call_next(ctx)

    server.middleware.append(check)
