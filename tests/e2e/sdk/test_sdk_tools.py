"""Tool calls (``sandbox.process``, ``sandbox.filesystem``) through the Kubernetes exec API of the emulator.

The emulator's exec endpoint speaks the kubelet's websocket protocol and runs commands as local processes,
so the SDK's code path is the one used against a real cluster.
"""

from __future__ import annotations

import pytest
from sdk_support import running_status, set_status, start_pod
from support import wait_for

from leap0 import (
    FilesystemError,
    Leap0Client,
    ProcessError,
    ProcessTimeoutError,
    Sandbox,
    SandboxNotRunningError,
)
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


@pytest.fixture
def sandbox(sdk: Leap0Client, apiserver: ServerThread, namespace: str) -> Sandbox:
    created = sdk.sandboxes.create(wait=False)
    start_pod(apiserver.api_client(), namespace, created.id)
    set_status(apiserver.api_client(), namespace, created.id, running_status(created.id))
    return created.refresh()


def test_execute_returns_stdout_stderr_and_exit_code(sandbox: Sandbox) -> None:
    result = sandbox.process.execute("echo hello from leap0; echo oops >&2; exit 3")
    assert result.exit_code == 3
    assert result.stdout == "hello from leap0\n"
    assert result.stderr == "oops\n"
    assert result.result == result.stdout  # the hosted SDK's name
    ok = sandbox.process.execute(command="true")
    assert ok.exit_code == 0
    assert ok.ok


def test_execute_argv_list_cwd_and_env(sandbox: Sandbox) -> None:
    sandbox.process.execute("mkdir -p work/dir")
    result = sandbox.process.execute('echo "$WHO in $(basename "$(pwd)")"', cwd="work/dir", env={"WHO": "me"})
    assert result.stdout == "me in dir\n"
    argv = sandbox.process.execute(["printf", "%s|", "a b", "$HOME"])
    assert argv.stdout == "a b|$HOME|"


def test_execute_timeout_stops_the_command(sandbox: Sandbox) -> None:
    with pytest.raises(ProcessTimeoutError) as info:
        sandbox.process.execute("echo started; echo $$ > sleeper.pid; exec sleep 30", timeout=2)
    assert info.value.stdout == "started\n"
    # The command itself is stopped, not only given up on by the client.
    wait_for(
        lambda: sandbox.process.execute('kill -0 "$(cat sleeper.pid)"').exit_code != 0,
        what="the timed-out command to be gone",
    )
    assert info.value.sandbox_id == sandbox.id
    assert sandbox.process.execute("echo still usable").stdout == "still usable\n"


def test_missing_command_is_exit_code_127(sandbox: Sandbox) -> None:
    result = sandbox.process.execute("leap0-no-such-command")
    assert result.exit_code == 127
    assert "not found" in result.stderr


def test_filesystem_write_then_read_round_trips_text_and_bytes(sandbox: Sandbox) -> None:
    sandbox.filesystem.write("notes/hello.txt", "héllo\n")
    assert sandbox.filesystem.read("notes/hello.txt") == "héllo\n".encode()
    assert sandbox.filesystem.read_text("notes/hello.txt") == "héllo\n"
    blob = bytes(range(256)) * 300
    sandbox.filesystem.write_bytes(path="data/blob.bin", content=blob)
    assert sandbox.filesystem.read_bytes(path="data/blob.bin") == blob
    sandbox.filesystem.write_file(path="notes/hello.txt", content="replaced")
    assert sandbox.filesystem.read_file(path="notes/hello.txt") == "replaced"
    assert sandbox.process.execute("cat notes/hello.txt").stdout == "replaced"
    sandbox.filesystem.write("empty", b"")
    assert sandbox.filesystem.read("empty") == b""


def test_reading_a_missing_file_is_a_filesystem_error(sandbox: Sandbox) -> None:
    with pytest.raises(FilesystemError, match="No such file") as info:
        sandbox.filesystem.read("does/not/exist")
    assert info.value.path == "does/not/exist"
    assert info.value.exit_code == 1


def test_tool_calls_need_a_running_pod(sdk: Leap0Client) -> None:
    pending = sdk.sandboxes.create(wait=False)
    with pytest.raises(SandboxNotRunningError, match="no running pod"):
        pending.process.execute("true")
    with pytest.raises(SandboxNotRunningError):
        pending.filesystem.read("x")


def test_exec_to_a_pod_that_is_gone_is_a_process_error(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str
) -> None:
    ghost = sdk.sandboxes.create(wait=False)
    set_status(apiserver.api_client(), namespace, ghost.id, running_status(ghost.id))  # no pod behind it
    with pytest.raises(ProcessError, match="failed"):
        ghost.process.execute("true")
