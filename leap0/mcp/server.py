"""The MCP server's tools: sandboxes for agents, built on ``leap0.Leap0Client`` and ``mcp``'s ``MCPServer``.

Each tool is a thin function: check ownership, call the SDK, shape the answer (``leap0.mcp.logic``). A tool
answers with structured content (its output schema) plus a readable text; a failure is a tool error
(``isError``) whose text is one line: the cause and what to do.
"""

# No ``from __future__ import annotations``: MCPServer reads the tools' signatures at run time.

import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

import leap0_contract as c
from leap0 import Leap0Client, Sandbox
from leap0._exec import HeadTailSink, LimitSink
from leap0._redact import redact
from leap0.exceptions import ProcessError
from leap0.mcp import logic
from leap0.mcp.logic import AdminLimits, ToolFailure

INSTRUCTIONS = """\
Sandboxes are isolated Linux containers on a Kubernetes cluster, for running code and commands.
Create one with create_sandbox, run commands with execute_command, move files with write_file/read_file,
look around with list_files. A sandbox lives until its timeout (seconds from creation) or until you delete
it: this server never deletes sandboxes on its own, so call delete_sandbox when you are done.
A sandbox created with persistent_workspace=true can be paused (pause_sandbox: its processes stop, its files
under /workspace are kept, its timeout stops counting) and resumed (resume_sandbox); the other tools resume
a paused sandbox by themselves. Only files under /workspace survive a pause.
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
    phase: str = Field(description="Pending, Running, Paused, Failed or Expired.")
    reason: str | None = Field(default=None, description="Why it is in this phase (from the operator).")
    message: str | None = Field(default=None, description="Details of the reason.")
    template: str | None = Field(default=None, description="The template it was made from.")
    vcpu: int | None = Field(default=None, description="Logical CPUs.")
    memory: int | None = Field(default=None, description="Memory limit in MiB.")
    timeout: int | None = Field(
        default=None, description="Lifetime in seconds, counted from creation or from the last resume."
    )
    created_at: str | None = Field(default=None, description="Creation time (RFC 3339, UTC).")
    expires_at: str | None = Field(
        default=None,
        description="When its timeout is reached unless raised (RFC 3339, UTC); none while paused.",
    )
    persistent_workspace: bool | None = Field(
        default=None, description="True: /workspace is kept while paused, so the sandbox can be paused."
    )
    paused_at: str | None = Field(default=None, description="When it was paused (while Paused).")
    resumed_at: str | None = Field(default=None, description="When it was last resumed.")


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
    owner_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    limits: AdminLimits = field(default_factory=AdminLimits)
    max_output: int = logic.DEFAULT_MAX_OUTPUT
    max_read: int = logic.DEFAULT_MAX_READ
    create_timeout: float = logic.DEFAULT_CREATE_TIMEOUT
    all_sandboxes: bool = False


def random_owner() -> str:
    return f"mcp-{secrets.token_hex(6)}"


# Seconds the server gives cancelled calls to stop their commands before it exits.
STOP_GRACE_S = 15.0


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
        self._running: dict[threading.Event, threading.Event] = {}  # cancel -> done, per call in a thread
        self._lock = threading.Lock()

    # --- helpers ----------------------------------------------------------------------------------
    def _call(
        self, tool: str, sandbox_id: str | None, body: Callable[[Any], CallToolResult]
    ) -> CallToolResult:
        """Run ``body`` in the span ``mcp.tool <tool>``; a failure becomes a tool error for the model."""
        try:
            if sandbox_id is not None:
                logic.check_sandbox_id(sandbox_id)
            with self.client._telemetry.span(c.MCP_TOOL_SPAN_PREFIX + tool, sandbox_id) as op:
                return body(op)
        except Exception as exc:
            return _error(logic.failure_message(exc, sandbox_id))

    async def cancellable(
        self, work: Callable[[threading.Event], CallToolResult], ctx: Context[Any, Any] | None = None
    ) -> CallToolResult:
        """Run ``work(cancel)`` in a worker thread; ``cancel`` is set when the call is cancelled (the client
        sent ``notifications/cancelled``, or a stdio client left) or, over HTTP, when the client's connection
        of this call closes (without an event store the answer cannot be resumed, so nobody would read it).
        The work then stops reading and stops what it started in the sandbox."""
        cancel = threading.Event()
        done = threading.Event()
        with self._lock:
            self._running[cancel] = done

        def run() -> CallToolResult:
            try:
                return work(cancel)
            finally:
                done.set()
                with self._lock:
                    self._running.pop(cancel, None)

        request = _http_request(ctx)
        try:
            if request is None:
                return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
            async with anyio.create_task_group() as watchers:
                watchers.start_soon(_watch_disconnect, request, cancel, watchers.cancel_scope)
                result = await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
                watchers.cancel_scope.cancel()
            if cancel.is_set():  # the client left: nobody reads this
                return _error("the client closed the connection: the call was cancelled")
            return result
        except BaseException:
            cancel.set()  # the thread goes on alone, stops the command and ends
            raise

    def stop_all(self, timeout: float = STOP_GRACE_S) -> None:
        """Cancel the calls still running and wait (at most ``timeout`` s) until they stopped their commands:
        the server is exiting."""
        with self._lock:
            running = list(self._running.items())
        for cancel, _ in running:
            cancel.set()
        end = time.monotonic() + timeout
        for _, done in running:
            done.wait(max(0.0, end - time.monotonic()))

    def _raw(self, sandbox_id: str) -> dict[str, Any]:
        with self.client._telemetry.operation(c.SDK_OP_SANDBOXES_GET, sandbox_id):
            return self.client.sandboxes._get_obj(sandbox_id)

    def _mine(self, obj: dict[str, Any]) -> bool:
        o = self.options
        return logic.is_owned(obj, o.owner, o.owner_key, o.all_sandboxes)

    def _owned(self, sandbox_id: str) -> Sandbox:
        """The sandbox, if this server may act on it (its owner label *and* the server's signature for this
        very object); otherwise (or if it is gone) 'not found'."""
        obj = self._raw(sandbox_id)
        if not self._mine(obj):
            raise ToolFailure(logic.not_found_message(sandbox_id))
        return Sandbox.from_object(obj, self.client)

    def _sign(self, sandbox: Sandbox) -> dict[str, Any]:
        """Sign a sandbox this server just created (namespace, name, uid, owner); the object as patched. If
        that fails, the sandbox is deleted (nobody could use it) and the error raised."""
        from kubernetes.client.exceptions import ApiException

        signature = logic.owner_signature(
            self.options.owner_key, sandbox.namespace, sandbox.id, sandbox.uid or "", self.options.owner
        )
        patch = {"metadata": {"annotations": {logic.ANNOTATION_OWNER_SIGNATURE: signature}}}
        try:
            obj: dict[str, Any] = self.client._custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                sandbox.namespace,
                c.SANDBOX_PLURAL,
                sandbox.id,
                patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            try:
                self.client.sandboxes.delete(sandbox.id)
            except Exception as cleanup:
                print(
                    f"leap0 mcp: could not delete unsigned sandbox {sandbox.id}: {redact(str(cleanup))}",
                    file=sys.stderr,
                )
            from leap0.client import _raise_api

            _raise_api(exc, sandbox_id=sandbox.id, namespace=sandbox.namespace)
        return obj

    def _stop_command(self, sandbox: Sandbox, exec_id: str) -> None:
        """Stop every process a cancelled call started in the sandbox (closing the exec stream does not stop
        a command on every container runtime)."""
        try:
            sandbox._exec(logic.stop_argv(exec_id), deadline_s=30)
        except Exception as exc:
            print(
                f"leap0 mcp: could not stop a cancelled command in {sandbox.id}: {redact(str(exc))}",
                file=sys.stderr,
            )

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
        persistent_workspace: bool | None = None,
        idle_timeout: int | None = None,
        on_timeout: str | None = None,
        telemetry_logs: bool | None = None,
    ) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            kwargs = logic.create_kwargs(
                template=template,
                vcpu=vcpu,
                memory=memory,
                timeout=timeout,
                env_vars=env_vars,
                network=None if network is None else network.model_dump(),
                owner=self.options.owner,
                wait_timeout=self.options.create_timeout,
                telemetry_logs=telemetry_logs,
                limits=self.options.limits,
                persistent_workspace=persistent_workspace,
                idle_timeout=idle_timeout,
                on_timeout=on_timeout,
            )
            wait_timeout = kwargs.pop("wait_timeout")
            created = self.client.sandboxes.create(**kwargs, wait=False)
            op.set_sandbox_id(created.id)
            signed = self._sign(created)  # before anyone may see it as this server's
            running = self.client.sandboxes._wait_running(signed, wait_timeout)
            sandbox = Sandbox.from_object(running, self.client)
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
            with self.client._telemetry.operation(c.SDK_OP_SANDBOXES_LIST):
                objs = self.client.sandboxes._list_objs(selector)
            infos = [self._info(Sandbox.from_object(o, self.client)) for o in objs if self._mine(o)]
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

    def pause_sandbox(self, sandbox_id: str) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            self._owned(sandbox_id)
            sandbox = self.client.sandboxes.pause(sandbox_id, wait_timeout=self.options.create_timeout)
            info, text = self._info(sandbox)
            return _ok(
                info, f"paused {text}. Its files under /workspace are kept; resume it with resume_sandbox."
            )

        return self._call("pause_sandbox", sandbox_id, body)

    def resume_sandbox(self, sandbox_id: str) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            self._owned(sandbox_id)
            sandbox = self.client.sandboxes.resume(sandbox_id, wait_timeout=self.options.create_timeout)
            info, text = self._info(sandbox)
            return _ok(info, f"resumed {text}")

        return self._call("resume_sandbox", sandbox_id, body)

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
        cancel: threading.Event | None = None,
    ) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            sandbox = self._owned(sandbox_id)
            exec_id = secrets.token_hex(12)
            # The output is streamed into a head and a tail of each stream: bounded whatever it prints.
            sink = HeadTailSink(self.options.max_output)
            try:
                result = sandbox.process._execute(
                    command,
                    cwd=cwd,
                    env=logic.exec_env(env, exec_id),
                    timeout=timeout,
                    sink=sink,
                    cancel=cancel,
                )
            except ProcessError:
                if cancel is not None and cancel.is_set():
                    self._stop_command(sandbox, exec_id)
                raise
            out = logic.cap_streamed(sink.stdout, self.options.max_output)
            err = logic.cap_streamed(sink.stderr, self.options.max_output)
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

    def read_file(
        self, sandbox_id: str, path: str, encoding: str | None, cancel: threading.Event | None = None
    ) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            sandbox = self._owned(sandbox_id)
            data = sandbox.filesystem._read(path, limit=self.options.max_read, cancel=cancel)
            if data is None:
                raise ToolFailure(
                    f"{path} is larger than the read limit of {self.options.max_read} bytes: read parts "
                    "of it with execute_command (head -c, tail -c, sed -n, grep)"
                )
            content, used = logic.encode_content(data, encoding)
            model = ReadResult(path=path, encoding=used, content=content, size=len(data))  # type: ignore[arg-type]
            if used == "utf-8":
                return _ok(model, content)
            return _ok(model, f"{path}: {len(data)} bytes of binary data, base64 in the structured result")

        return self._call("read_file", sandbox_id, body)

    def list_files(self, sandbox_id: str, path: str, cancel: threading.Event | None = None) -> CallToolResult:
        def body(op: Any) -> CallToolResult:
            sandbox = self._owned(sandbox_id)
            stop = cancel if cancel is not None else threading.Event()
            sink = LimitSink(logic.MAX_LIST_BYTES, stop)  # bounded whatever the sandbox prints
            try:
                result = sandbox.process._execute(logic.list_argv(path), sink=sink, cancel=stop)
                exit_code: int | None = result.exit_code
            except ProcessError:
                if not sink.over:
                    raise
                exit_code = None  # more than MAX_LIST_BYTES of entries: the first ones are listed
            if exit_code not in (0, None):
                stderr = bytes(sink.stderr.head + sink.stderr.tail).decode("utf-8", "replace").strip()
                raise ToolFailure(
                    f"cannot list {path}: {stderr or f'exit code {exit_code}'}. "
                    "Give an existing directory (list_files with '.' shows the working directory)"
                )
            listing = bytes(sink.stdout).decode("utf-8", "replace")
            if sink.over:  # the last record may be cut
                listing = listing[: listing.rfind("\0") + 1]
            entries, truncated = logic.parse_listing(listing)
            truncated = truncated or sink.over
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
    """The MCPServer with the eleven sandbox tools bound to ``tools``."""
    from leap0 import __version__

    server: MCPServer[Any] = MCPServer("leap0", version=__version__, instructions=INSTRUCTIONS)
    max_output = tools.options.max_output
    max_read = tools.options.max_read
    limits = tools.options.limits
    template_text = "SandboxTemplate name (image and defaults); omit for the server's default."
    if limits.templates is not None:
        template_text = (
            f"SandboxTemplate name: one of {', '.join(limits.templates)} (this server allows no other); "
            f"omit for {limits.default_template}."
        )
    network_text = "Egress policy; omit for the template's or the default."
    if limits.network is not None:
        network_text = (
            f"Fixed by this server's administrator to {logic.network_text(limits.network)}: omit it (any "
            "other value is refused)."
        )

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
        template: Annotated[str | None, Field(description=template_text)] = None,
        vcpu: Annotated[int | None, Field(description="Logical CPUs, 1-8.")] = None,
        memory: Annotated[int | None, Field(description="Memory limit in MiB, 512-8192, even.")] = None,
        timeout: Annotated[
            int | None,
            Field(description="Lifetime in seconds from creation, 1-28800 (8 h); raise it with set_timeout."),
        ] = None,
        env_vars: Annotated[
            dict[str, str] | None, Field(description="Environment variables of the sandbox, NAME -> value.")
        ] = None,
        network: Annotated[NetworkSpec | None, Field(description=network_text)] = None,
        persistent_workspace: Annotated[
            bool | None,
            Field(
                description="True: /workspace is on a volume kept while the sandbox is paused (needed by "
                "pause_sandbox, idle_timeout and on_timeout 'Pause'); omit for the template's."
            ),
        ] = None,
        idle_timeout: Annotated[
            int | None,
            Field(
                description="Seconds without a tool call on the sandbox before it is paused (1-86400; needs "
                "persistent_workspace); a later tool call resumes it."
            ),
        ] = None,
        on_timeout: Annotated[
            Literal["Delete", "Pause"] | None,
            Field(description="At the timeout: Delete (default) or Pause (needs persistent_workspace)."),
        ] = None,
        telemetry_logs: Annotated[
            bool | None,
            Field(
                description="Send what the sandbox's commands print to its telemetry endpoint as log records "
                "(false: do not); omit for the template's, else on."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, SandboxInfo]:
        return tools.create_sandbox(
            template,
            vcpu,
            memory,
            timeout,
            env_vars,
            network,
            persistent_workspace,
            idle_timeout,
            on_timeout,
            telemetry_logs,
        )

    @server.tool(
        name="get_sandbox",
        title="Get a sandbox",
        description="Phase (Pending, Running, Paused, Failed, Expired), reason, expires_at and resources of "
        "a sandbox.",
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
        description="Set the sandbox's lifetime to `timeout` seconds counted from its creation, or from its "
        "last resume (not from now): to keep it 10 more minutes, add 600 to its current timeout. 1-28800 s. "
        "Returns the new expires_at.",
        annotations=ToolAnnotations(idempotent_hint=True),
    )
    def set_timeout(
        sandbox_id: SandboxId,
        timeout: Annotated[int, Field(description="Lifetime in seconds from creation, 1-28800.")],
    ) -> Annotated[CallToolResult, SandboxInfo]:
        return tools.set_timeout(sandbox_id, timeout)

    @server.tool(
        name="pause_sandbox",
        title="Pause a sandbox",
        description="Pause a sandbox created with persistent_workspace=true: its processes stop (memory is "
        "lost), its files under /workspace are kept, and its timeout stops counting. Resume it with "
        "resume_sandbox, or just call another tool on it. A sandbox without a persistent workspace cannot be "
        "paused (the error says so).",
        annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True),
    )
    def pause_sandbox(sandbox_id: SandboxId) -> Annotated[CallToolResult, SandboxInfo]:
        return tools.pause_sandbox(sandbox_id)

    @server.tool(
        name="resume_sandbox",
        title="Resume a sandbox",
        description="Resume a paused sandbox and wait until it is Running: a fresh start with the same "
        "/workspace files, and its timeout counted again from now.",
        annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=True),
    )
    def resume_sandbox(sandbox_id: SandboxId) -> Annotated[CallToolResult, SandboxInfo]:
        return tools.resume_sandbox(sandbox_id)

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
    async def execute_command(
        sandbox_id: SandboxId,
        command: Annotated[str, Field(description="Shell command line, e.g. 'python3 main.py --n 3'.")],
        cwd: Annotated[
            str | None, Field(description="Working directory; default: the sandbox's working directory.")
        ] = None,
        env: Annotated[
            dict[str, str] | None, Field(description="Extra environment variables for this command.")
        ] = None,
        timeout: Annotated[  # noqa: ASYNC109 - the tool's parameter, applied in the sandbox
            float | None,
            Field(
                description="Seconds before the command is stopped (then an error with its partial output); "
                "default: no limit."
            ),
        ] = None,
        ctx: Context[Any, Any] | None = None,
    ) -> Annotated[CallToolResult, ExecuteResult]:
        return await tools.cancellable(
            lambda cancel: tools.execute_command(sandbox_id, command, cwd, env, timeout, cancel), ctx
        )

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
    async def read_file(
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="File path; relative paths start in the working directory.")],
        encoding: Annotated[
            Literal["utf-8", "base64"] | None,
            Field(description="Force utf-8 or base64; default: utf-8 if the file is text, else base64."),
        ] = None,
        ctx: Context[Any, Any] | None = None,
    ) -> Annotated[CallToolResult, ReadResult]:
        return await tools.cancellable(
            lambda cancel: tools.read_file(sandbox_id, path, encoding, cancel), ctx
        )

    @server.tool(
        name="list_files",
        title="List a directory",
        description="The entries of a directory in the sandbox: name, type (file, directory, symlink, "
        f"other) and size in bytes for files; at most {logic.MAX_LIST_ENTRIES} entries, sorted by name.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    async def list_files(
        sandbox_id: SandboxId,
        path: Annotated[str, Field(description="Directory path; '.' is the working directory.")] = ".",
        ctx: Context[Any, Any] | None = None,
    ) -> Annotated[CallToolResult, FileList]:
        return await tools.cancellable(lambda cancel: tools.list_files(sandbox_id, path, cancel), ctx)

    _refuse_unknown_arguments(server)
    return server


def _http_request(ctx: Context[Any, Any] | None) -> Any:
    """The HTTP request that carried this call (None over stdio)."""
    if ctx is None:
        return None
    try:
        request = ctx.request_context.request
    except ValueError:
        return None
    return request if hasattr(request, "receive") else None


async def _watch_disconnect(request: Any, cancel: threading.Event, scope: anyio.CancelScope) -> None:
    """Set ``cancel`` and cancel ``scope`` (the wait for the worker) once the HTTP client disconnects."""
    while (await request.receive()).get("type") != "http.disconnect":
        pass  # the body was read already: the next message is the disconnect
    cancel.set()
    scope.cancel()


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
