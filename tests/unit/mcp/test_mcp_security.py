"""The MCP server's security decisions, without servers: ownership signatures, sandbox ids, the
administrator's limits, bounded output, redaction, the owner key and the bearer token."""

from __future__ import annotations

import os
import random
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import urllib3

import leap0_contract as c
from leap0._exec import HeadTail, HeadTailSink, LimitSink
from leap0._redact import redact
from leap0.mcp import logic
from leap0.mcp.logic import AdminLimits, ToolFailure
from leap0.mcp.run import load_owner_key

KEY = b"k" * 32


# --- ownership ----------------------------------------------------------------------------------------------
def sandbox(
    name: str = "sbx-1", uid: str = "uid-1", owner: str = "alice", signature: str | None = "sign"
) -> dict[str, Any]:
    annotations = {}
    if signature == "sign":
        signature = logic.owner_signature(KEY, "team", name, uid, owner)
    if signature is not None:
        annotations[c.ANNOTATION_MCP_OWNER_SIGNATURE] = signature
    return {
        "metadata": {
            "name": name,
            "namespace": "team",
            "uid": uid,
            "labels": logic.owner_labels(owner),
            "annotations": annotations,
        }
    }


def test_a_sandbox_signed_by_the_server_for_itself_is_owned() -> None:
    assert logic.is_owned(sandbox(), "alice", KEY, all_sandboxes=False)


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        (sandbox(signature=None), "a planted owner label without a signature"),
        (sandbox(signature="v1." + "0" * 64), "a forged signature"),
        (sandbox(signature="garbage"), "not a signature"),
        (
            {
                **sandbox(),
                "metadata": {**sandbox()["metadata"], "uid": "uid-2"},
            },  # same name re-created, signature copied
            "a signature copied onto another object (another uid)",
        ),
        (
            {**sandbox(), "metadata": {**sandbox()["metadata"], "name": "sbx-2"}},
            "a signature copied onto another name",
        ),
        (
            sandbox(owner="bob", signature=logic.owner_signature(KEY, "team", "sbx-1", "uid-1", "alice")),
            "owner",
        ),
        (
            sandbox(signature=logic.owner_signature(b"x" * 32, "team", "sbx-1", "uid-1", "alice")),
            "another key",
        ),
        ({"metadata": {"name": "sbx-1", "uid": "u"}}, "no labels at all"),
    ],
)
def test_planted_or_copied_ownership_is_not_ownership(obj: dict[str, Any], why: str) -> None:
    assert not logic.is_owned(obj, "alice", KEY, all_sandboxes=False), why
    assert logic.is_owned(obj, "alice", KEY, all_sandboxes=True)  # --all-sandboxes: every sandbox


def test_the_signature_binds_every_field() -> None:
    base = ("team", "sbx-1", "uid-1", "alice")
    signatures = {logic.owner_signature(KEY, *base)}
    for i in range(4):
        changed = list(base)
        changed[i] += "x"
        signatures.add(logic.owner_signature(KEY, *changed))
    # no ambiguity by moving the separator either
    signatures.add(logic.owner_signature(KEY, "team\nsbx-1", "", "uid-1", "alice"))
    assert len(signatures) == 6
    assert logic.owner_signature(KEY, *base).startswith("v1.")


def test_an_owner_key_or_a_token_under_32_bytes_is_refused_unquoted() -> None:
    with pytest.raises(ValueError, match="is 9 bytes: use at least 32") as caught:
        logic.owner_key(b" too-short\n", "FILE")
    assert "too-short" not in str(caught.value)
    assert logic.owner_key(b"  " + KEY + b"\n", "FILE") == KEY
    with pytest.raises(ValueError, match="bearer token is 5 bytes"):
        logic.check_token("abcde")


def test_the_default_owner_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    key, warning = load_owner_key(None, env)
    path = tmp_path / "leap0" / "mcp-owner.key"
    assert warning is None
    assert len(key) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert load_owner_key(None, env) == (key, None)


def test_an_owner_key_that_cannot_be_kept_is_said(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the directory should be
    key, warning = load_owner_key(None, {"XDG_CONFIG_HOME": str(blocker)})
    assert len(key) == 32
    assert warning is not None
    assert "after a restart it will not see the sandboxes it created" in warning


# --- sandbox ids --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("good", ["sbx-1a2b3c4d5e", "a", "my.sandbox-2", "x" * 63, "a." * 126 + "b"])
def test_kubernetes_names_are_sandbox_ids(good: str) -> None:
    logic.check_sandbox_id(good)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../secrets",
        "sbx/../../x",
        "x?watch=true",
        "Sbx",
        "-x",
        "x-",
        "x..y",
        "sbx 1",
        "é",
        "a" * 254,
        "%2e",
    ],
)
def test_other_ids_are_refused_saying_the_rule(bad: str) -> None:
    with pytest.raises(ToolFailure, match="is not a sandbox id: ids are Kubernetes names"):
        logic.check_sandbox_id(bad)


def test_a_long_bad_id_is_not_echoed_whole() -> None:
    with pytest.raises(ToolFailure) as caught:
        logic.check_sandbox_id("A" * 10_000)
    assert len(str(caught.value)) < 400


# --- the administrator's limits -----------------------------------------------------------------------------
def create(limits: AdminLimits, **given: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "template": None,
        "vcpu": None,
        "memory": None,
        "timeout": None,
        "env_vars": None,
        "network": None,
        "owner": "o",
        **given,
    }
    return logic.create_kwargs(limits=limits, **args)


def test_allowed_templates() -> None:
    limits = logic.admin_limits(allowed_templates="small, big")
    assert limits.templates == ("small", "big")
    assert create(limits)["template"] == "small"  # the first one, when neither the call nor --template says
    assert create(limits, template="big")["template"] == "big"
    with pytest.raises(
        ToolFailure, match="template 'huge' is not allowed on this server: use one of small, big"
    ):
        create(limits, template="huge")
    limits = logic.admin_limits(allowed_templates="small,big", template="big")
    assert create(limits)["template"] == "big"
    assert "template" not in create(logic.admin_limits())  # no limits: the Sandbox's default
    assert create(logic.admin_limits(), template="any")["template"] == "any"


def test_fixed_network() -> None:
    limits = logic.admin_limits(network_policy="DenyAll")
    assert create(limits)["network"] == {"policy": "DenyAll"}
    assert create(limits, network={"policy": "DenyAll"})["network"] == {"policy": "DenyAll"}
    for other in (
        {"policy": "AllowAll"},
        {"policy": "Internet"},
        {"policy": "Custom", "allow_cidrs": ["0.0.0.0/0"]},
    ):
        with pytest.raises(ToolFailure, match="network is fixed by this server's administrator to DenyAll"):
            create(limits, network=other)
    custom = logic.admin_limits(network_policy="Custom", network_allow_cidrs="10.1.0.0/16, 2001:db8::/32")
    assert create(custom)["network"] == {"policy": "Custom", "allowCidrs": ["10.1.0.0/16", "2001:db8::/32"]}
    with pytest.raises(ToolFailure, match=r"fixed .* to Custom \(10.1.0.0/16, 2001:db8::/32\)"):
        create(custom, network={"policy": "Custom", "allow_cidrs": ["0.0.0.0/0"]})
    # without a fixed network the client's choice is passed
    assert create(AdminLimits(), network={"policy": "AllowAll"})["network"] == {"policy": "AllowAll"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"allowed_templates": " , "}, "--allowed-templates needs at least one template"),
        ({"allowed_templates": "a", "template": "b"}, "--template 'b' is not in --allowed-templates"),
        (
            {"network_policy": "Open"},
            "--network-policy 'Open': use one of Internet, DenyAll, AllowAll, Custom",
        ),
        ({"network_policy": "Custom"}, "--network-policy Custom needs --network-allow-cidrs"),
        ({"network_policy": "Custom", "network_allow_cidrs": "10.0.0.1/8"}, "'10.0.0.1/8' is not a CIDR"),
        (
            {"network_policy": "DenyAll", "network_allow_cidrs": "10.0.0.0/8"},
            "only for --network-policy Custom",
        ),
    ],
)
def test_bad_admin_flags_name_the_flag(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        logic.admin_limits(**flags)


# --- bounded output -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(20))
def test_head_and_tail_of_any_chunking_match_the_whole_and_stay_bounded(seed: int) -> None:
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 5000)))
    head_n, tail_n = rng.randrange(0, 300), rng.randrange(0, 300)
    kept = HeadTail(head_n, tail_n)
    pos = 0
    while pos < len(data):
        size = rng.choice([1, 7, 100, 1000, 4096])
        kept.add(data[pos : pos + size])
        pos += size
        assert len(kept.head) + len(kept.tail) <= head_n + tail_n
    assert kept.total == len(data)
    assert bytes(kept.head) == data[:head_n]
    if len(data) <= head_n + tail_n:
        assert bytes(kept.head + kept.tail) == data
        assert kept.cut == 0
    else:
        assert bytes(kept.tail) == data[len(data) - tail_n :]
        assert kept.cut == len(data) - head_n - tail_n


def test_streamed_cap_is_the_cap_of_the_whole_text() -> None:
    text = "début " + "é" * 3000 + " fin\n"
    sink = HeadTailSink(1001)
    encoded = text.encode()
    for i in range(0, len(encoded), 333):  # pieces split characters
        sink(1, encoded[i : i + 333])
    assert logic.cap_streamed(sink.stdout, 1001) == logic.cap_output(text, 1001)
    capped = logic.cap_streamed(sink.stdout, 1001)
    assert capped.text.startswith("début ")
    assert capped.text.endswith(" fin\n")
    assert "\ufffd" not in capped.text  # no character split at the cut
    assert sink.stderr.total == 0


def test_limit_sink_stops_the_reading_past_its_limit() -> None:
    cancel = threading.Event()
    sink = LimitSink(10, cancel, stderr_limit=4)
    sink(1, b"12345")
    sink(2, b"errors: a lot")
    assert not cancel.is_set()
    sink(1, b"67890")
    assert (bytes(sink.stdout), sink.over, cancel.is_set()) == (b"1234567890", False, False)
    sink(1, b"!")
    assert (bytes(sink.stdout), sink.over, cancel.is_set()) == (b"1234567890", True, True)
    sink(1, b"x" * 10_000)
    assert len(sink.stdout) == 10
    assert (bytes(sink.stderr.head), bytes(sink.stderr.tail), sink.stderr.cut) == (b"er", b"ot", 9)


def test_the_stop_script_finds_the_call_by_its_environment() -> None:
    argv = logic.stop_argv("abc123")
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[-2:] == [c.ENV_MCP_EXEC_ID, "abc123"]
    assert logic.exec_env({"A": "1"}, "abc123") == {"A": "1", c.ENV_MCP_EXEC_ID: "abc123"}
    assert logic.exec_env({c.ENV_MCP_EXEC_ID: "mine"}, "abc123")[c.ENV_MCP_EXEC_ID] == "abc123"


# --- redaction ----------------------------------------------------------------------------------------------
def test_connection_errors_do_not_show_the_exec_query_string() -> None:
    """urllib3's own error for an exec URL: its query holds the command and the env given to it."""
    url = "/api/v1/namespaces/team/pods/sbx-1/exec?command=%2Fbin%2Fsh&command=export+TOKEN%3Dsecret-value"
    error = urllib3.exceptions.MaxRetryError(urllib3.HTTPConnectionPool("k8s", 6443), url, OSError("refused"))
    text = logic.failure_message(error)
    assert "secret-value" not in text
    assert "command=" not in text
    assert "/api/v1/namespaces/team/pods/sbx-1/exec?<redacted>" in text
    assert text.startswith("cannot reach the Kubernetes API server")


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        (
            "https://user:pa55@otel.example.com:4318/v1/traces?api-key=k3y",
            ["pa55", "k3y", "user"],
            "otel.example.com",
        ),
        ("Authorization: Bearer abc.def.ghi", ["abc.def.ghi"], "Authorization"),
        ("headers x-api-key=k3y,other=1", ["k3y"], "other=1"),
        ("{'authorization': 'Basic dXNlcjpwYXNz'}", ["dXNlcjpwYXNz"], "authorization"),
    ],
)
def test_redact(text: str, hidden: list[str], kept: str) -> None:
    out = redact(text)
    for secret in hidden:
        assert secret not in out
    assert kept in out
