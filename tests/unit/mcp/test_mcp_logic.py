"""The MCP server's pure decisions: output caps, create arguments, ownership, listings, encodings, errors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import urllib3

from leap0.exceptions import (
    ApiError,
    ConfigurationError,
    FilesystemError,
    ProcessError,
    ProcessTimeoutError,
    SandboxFailedError,
    SandboxNotFoundError,
    SandboxNotRunningError,
    SandboxTimeoutError,
    SandboxValidationError,
)
from leap0.mcp import logic
from leap0.models import SandboxData


# --- output caps -------------------------------------------------------------------------------------
def test_output_under_the_cap_is_untouched() -> None:
    assert logic.cap_output("hello\n", 64) == logic.Capped("hello\n", 0)
    exact = "x" * 64
    assert logic.cap_output(exact, 64) == logic.Capped(exact, 0)


def test_output_over_the_cap_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    text = "H" * 500 + "M" * 10_000 + "T" * 500
    capped = logic.cap_output(text, 1000)
    assert capped.cut == len(text) - 1000
    head, marker, tail = capped.text.split("\n")
    assert head == "H" * 500
    assert tail == "T" * 500
    assert marker == f"[... {len(text) - 1000} bytes cut: output longer than 1000 bytes ...]"


def test_output_cap_counts_utf8_bytes_and_never_splits_a_character() -> None:
    text = "é" * 1000  # 2000 bytes
    capped = logic.cap_output(text, 101)
    assert capped.cut == 1899
    head, _, tail = capped.text.split("\n")
    assert set(head) == {"é"}
    assert set(tail) == {"é"}
    assert len(head.encode()) <= 50
    assert len(tail.encode()) <= 51


def test_execute_text_is_readable() -> None:
    assert logic.execute_text(0, "out\n", "", 0, 0) == "exit code 0\n--- stdout ---\nout"
    assert logic.execute_text(2, "o", "e\n", 5, 7) == (
        "exit code 2\n--- stdout (5 bytes cut) ---\no\n--- stderr (7 bytes cut) ---\ne"
    )


def test_unknown_arguments_are_named_with_the_known_ones() -> None:
    allowed = frozenset({"sandbox_id", "path"})
    assert logic.unknown_arguments("read_file", {"sandbox_id": "x", "path": "p"}, allowed) is None
    assert logic.unknown_arguments("read_file", {"sandbox_id": "x", "file": "p", "enc": 1}, allowed) == (
        "read_file has no parameter 'enc', 'file': its parameters are path, sandbox_id. "
        "Call again with those names"
    )


# --- create_sandbox ----------------------------------------------------------------------------------
def _kwargs(**overrides: object) -> dict[str, object]:
    args: dict[str, object] = {
        "template": None,
        "default_template": None,
        "vcpu": None,
        "memory": None,
        "timeout": None,
        "env_vars": None,
        "network": None,
        "owner": "me",
    }
    args.update(overrides)
    return logic.create_kwargs(**args)  # type: ignore[arg-type]


def test_create_passes_only_what_was_given_plus_the_owner_labels() -> None:
    assert _kwargs() == {
        "labels": {"leap0.dev/created-by": "mcp", "leap0.dev/mcp-owner": "me"},
        "wait_timeout": logic.DEFAULT_CREATE_TIMEOUT,
    }
    full = _kwargs(template="py", vcpu=2, memory=2048, timeout=60, env_vars={"A": "1"}, owner="o")
    assert full == {
        "labels": {"leap0.dev/created-by": "mcp", "leap0.dev/mcp-owner": "o"},
        "wait_timeout": logic.DEFAULT_CREATE_TIMEOUT,
        "template": "py",
        "vcpu": 2,
        "memory": 2048,
        "timeout": 60,
        "env_vars": {"A": "1"},
    }


def test_create_uses_the_servers_template_unless_one_is_given() -> None:
    assert _kwargs(default_template="node")["template"] == "node"
    assert _kwargs(default_template="node", template="py")["template"] == "py"


def test_create_network_becomes_the_sandboxes_spec_network() -> None:
    assert "network" not in _kwargs()
    assert _kwargs(network={"policy": "DenyAll", "allow_cidrs": None})["network"] == {"policy": "DenyAll"}
    custom = _kwargs(network={"policy": "Custom", "allow_cidrs": ["10.0.0.0/8"]})
    assert custom["network"] == {"policy": "Custom", "allowCidrs": ["10.0.0.0/8"]}


def test_create_telemetry_logs_becomes_the_sandboxes_spec_telemetry_logs() -> None:
    assert "telemetry_logs" not in _kwargs()
    assert _kwargs(telemetry_logs=False)["telemetry_logs"] is False
    assert _kwargs(telemetry_logs=True)["telemetry_logs"] is True


def test_summary_and_set_timeout_expiry() -> None:
    created = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    sb = SandboxData(
        id="sb-1",
        namespace="ns",
        created_at=created,
        phase="Running",
        reason="Running",
        effective_vcpu=2,
        effective_memory=2048,
        timeout=300,
        expires_at=datetime(2026, 1, 1, 12, 5, 0, tzinfo=UTC),
    )
    summary = logic.sandbox_summary(sb)
    assert summary["expires_at"] == "2026-01-01T12:05:00Z"
    assert (summary["vcpu"], summary["memory"]) == (2, 2048)
    text = logic.sandbox_text(summary)
    assert text == "sandbox sb-1: Running 2 vCPU, 2048 MiB expires 2026-01-01T12:05:00Z"
    after = logic.after_set_timeout(sb, 3600)
    assert (after["timeout"], after["expires_at"]) == (3600, "2026-01-01T13:00:00Z")
    failed = logic.sandbox_summary(SandboxData(id="x", namespace="ns", phase="Failed", reason="OOMKilled"))
    assert logic.sandbox_text(failed) == "sandbox x: Failed (OOMKilled)"


def test_create_passes_the_pause_settings_but_no_storage_class() -> None:
    kwargs = _kwargs(persistent_workspace=True, idle_timeout=600, on_timeout="Pause")
    assert (kwargs["workspace"], kwargs["idle_timeout"], kwargs["on_timeout"]) == (
        {"persistent": True},
        600,
        "Pause",
    )
    assert "workspace" not in _kwargs()


def test_a_paused_sandbox_says_so_and_its_timeout_counts_from_the_resume() -> None:
    created = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    paused = SandboxData(
        id="sb-1",
        namespace="ns",
        created_at=created,
        phase="Paused",
        reason="IdlePaused",
        timeout=300,
        paused_at=datetime(2026, 1, 1, 12, 3, 0, tzinfo=UTC),
        effective_workspace={"persistent": True, "claimName": "sb-1-workspace"},
    )
    summary = logic.sandbox_summary(paused)
    assert (summary["persistent_workspace"], summary["paused_at"], summary["expires_at"]) == (
        True,
        "2026-01-01T12:03:00Z",
        None,
    )
    assert "paused since 2026-01-01T12:03:00Z (resume_sandbox, or any tool call, resumes it)" in (
        logic.sandbox_text(summary)
    )
    assert logic.after_set_timeout(paused, 600)["expires_at"] is None
    resumed = paused.model_copy(
        update={"phase": "Running", "paused_at": None, "resumed_at": datetime(2026, 1, 1, 13, 0, tzinfo=UTC)}
    )
    assert logic.after_set_timeout(resumed, 600)["expires_at"] == "2026-01-01T13:10:00Z"


# --- ownership ---------------------------------------------------------------------------------------
def test_ownership_labels_and_selector() -> None:
    assert logic.owner_labels("a") == {"leap0.dev/created-by": "mcp", "leap0.dev/mcp-owner": "a"}
    assert logic.owner_selector("a", False) == "leap0.dev/mcp-owner=a"
    assert logic.owner_selector("a", True) is None


@pytest.mark.parametrize("owner", ["a", "team-1", "A.b_c", "x" * 63])
def test_valid_owners(owner: str) -> None:
    assert logic.check_owner(owner) == owner


@pytest.mark.parametrize("owner", ["", "-a", "a-", "a b", "x" * 64, "a/b"])
def test_invalid_owners(owner: str) -> None:
    with pytest.raises(ValueError, match="not a valid label value"):
        logic.check_owner(owner)


# --- files -------------------------------------------------------------------------------------------
def test_content_encodings() -> None:
    assert logic.decode_content("héllo", "utf-8") == "héllo".encode()
    assert logic.decode_content(base64.b64encode(b"\x00\xff").decode(), "base64") == b"\x00\xff"
    with pytest.raises(logic.ToolFailure, match="not valid base64"):
        logic.decode_content("%%%", "base64")
    assert logic.encode_content("héllo".encode(), None) == ("héllo", "utf-8")
    assert logic.encode_content(b"\xff\xfe", None) == ("//4=", "base64")
    assert logic.encode_content(b"text", "base64") == ("dGV4dA==", "base64")
    with pytest.raises(logic.ToolFailure, match="encoding 'base64'"):
        logic.encode_content(b"\xff", "utf-8")


def test_listing_is_parsed_and_sorted() -> None:
    output = "file\t12\tb.txt\0directory\t\ta dir\0symlink\t\tlink\0file\t0\tname\twith tab\0"
    entries, truncated = logic.parse_listing(output)
    assert entries == [
        {"name": "a dir", "type": "directory", "size": None},
        {"name": "b.txt", "type": "file", "size": 12},
        {"name": "link", "type": "symlink", "size": None},
        {"name": "name\twith tab", "type": "file", "size": 0},
    ]
    assert not truncated
    many = "".join(f"file\t1\tf{i:04d}\0" for i in range(5))
    entries, truncated = logic.parse_listing(many, limit=3)
    assert [e["name"] for e in entries] == ["f0000", "f0001", "f0002"]
    assert truncated
    assert logic.listing_text("d", [], False) == "d: empty directory"
    assert logic.listing_text("d", entries[:1], True) == "d: 1 entries (more not shown)\nf0000  1 bytes"


# --- HTTP --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8765", ("127.0.0.1", 8765)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("8765", ("127.0.0.1", 8765)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_host_port(value: str, expected: tuple[str, int]) -> None:
    assert logic.parse_host_port(value) == expected


@pytest.mark.parametrize("value", ["host", ":80", "host:port", "1.2.3.4:70000", "[::1]9000"])
def test_bad_host_port(value: str) -> None:
    with pytest.raises(ValueError, match="--http"):
        logic.parse_host_port(value)


def test_auth_decision() -> None:
    assert logic.auth_decision("t", "0.0.0.0", False) is None
    assert "needs a bearer token" in (logic.auth_decision(None, "127.0.0.1", False) or "")
    assert logic.auth_decision(None, "127.0.0.1", True) is None
    assert logic.auth_decision(None, "::1", True) is None
    assert "loopback address only" in (logic.auth_decision(None, "0.0.0.0", True) or "")


# --- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (SandboxNotFoundError("sb", "ns"), "sandbox 'sb' not found"),
        (SandboxValidationError("spec.vcpu: Invalid value", status=422), "rejected the request: spec.vcpu"),
        (
            SandboxValidationError("sandbox 'sb' cannot be paused: emptyDir", reason="PauseRefused"),
            "create a new sandbox with persistent_workspace=true",
        ),
        (SandboxFailedError("sb", "Failed", "ImagePullError", "no such image"), "delete_sandbox"),
        (SandboxTimeoutError("sandbox 'sb' not Running after 5 s"), "call get_sandbox later"),
        (ProcessTimeoutError("command in sandbox 'sb' did not finish within 1 s"), "longer timeout"),
        (SandboxNotRunningError("sandbox 'sb' has no running pod"), "If it is Pending, wait"),
        (FilesystemError("read 'x' failed", path="x"), "list_files"),
        (ProcessError("exec failed"), "Call again"),
        (ConfigurationError("no kubeconfig"), "misconfigured: no kubeconfig"),
        (ApiError("forbidden", status=403), "lack access"),
        (ApiError("boom", status=500), "answered 500"),
        (
            ApiError('namespaces "agents" not found', status=404, kind="namespaces", name="agents"),
            "namespace agents does not exist; create it with kubectl create namespace agents",
        ),
        (ApiError("the server could not find the requested resource", status=404), "is leap0 installed"),
        (urllib3.exceptions.MaxRetryError(None, "/x", "refused"), "cannot reach the Kubernetes API"),
        (ConnectionRefusedError("refused"), "cannot reach the Kubernetes API"),
        (ValueError("command must not be empty"), "invalid argument: command must not be empty"),
        (logic.ToolFailure("as is"), "as is"),
        (RuntimeError("surprise"), "unexpected error (RuntimeError: surprise)"),
    ],
)
def test_every_error_becomes_one_actionable_line(exc: BaseException, expected: str) -> None:
    message = logic.failure_message(exc)
    assert expected in message
    assert "\n" not in message


def test_only_what_may_pass_says_call_again_later() -> None:
    assert "later" in logic.failure_message(ApiError("boom", status=500))
    for status in (401, 403, 404):
        assert "later" not in logic.failure_message(ApiError("x", status=status))
    gone = ApiError('namespaces "agents" not found', status=404, kind="namespaces", name="agents")
    assert "later" not in logic.failure_message(gone)


def test_not_found_names_the_asked_id() -> None:
    assert "'asked'" in logic.failure_message(SandboxNotFoundError("other", "ns"), "asked")
