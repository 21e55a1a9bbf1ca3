"""The exec path end to end at protocol level: the SDK's ``run_exec`` (the kubernetes client's websocket
``stream``) against the emulator's exec handler (the kubelet's protocol, commands run locally)."""

from __future__ import annotations

import json
import time

import pytest

from leap0._exec import build_exec_argv, parse_exec_status, run_exec
from leap0_dev.apiserver.exec import exit_status, start_failure_status

pytestmark = pytest.mark.e2e


def _run(endpoint, argv, **kw):
    cfg = endpoint.configuration()
    return run_exec(cfg, namespace="ns1", pod="pod1", container="sandbox", argv=argv, **kw)


def test_stdout_stderr_and_exit_code_come_back_separately(exec_endpoint) -> None:
    out = _run(exec_endpoint, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert out.stdout == b"out\n"
    assert out.stderr == b"err\n"
    assert out.status is not None
    assert out.status.exit_code == 3


def test_success_is_exit_code_zero(exec_endpoint) -> None:
    out = _run(exec_endpoint, ["true"])
    assert out.status is not None
    assert out.status.exit_code == 0
    assert out.status.error is None


def test_missing_executable_is_an_exec_error_not_an_exit_code(exec_endpoint) -> None:
    out = _run(exec_endpoint, ["leap0-no-such-binary"])
    assert out.status is not None
    assert out.status.exit_code is None
    assert "executable file not found" in (out.status.error or "")


def test_stdin_reaches_the_command_and_binary_output_is_kept(exec_endpoint) -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB, every byte value, several frames
    out = _run(exec_endpoint, ["/bin/sh", "-c", f"head -c {len(payload)}"], stdin=payload)
    assert out.status is not None
    assert out.status.exit_code == 0
    assert out.stdout == payload


def test_large_output_arrives_whole(exec_endpoint) -> None:
    out = _run(exec_endpoint, ["/bin/sh", "-c", "head -c 3000000 /dev/zero"])
    assert out.status is not None
    assert out.status.exit_code == 0
    assert len(out.stdout) == 3_000_000


def test_client_deadline_returns_no_status_and_the_command_is_killed(exec_endpoint, tmp_path) -> None:
    marker = tmp_path / "still-running"
    out = _run(exec_endpoint, ["/bin/sh", "-c", f"sleep 1.5; touch {marker}"], deadline_s=0.3)
    assert out.status is None  # the client gave up at its deadline (the command would have exited 0)
    time.sleep(1.7)
    assert not marker.exists(), "the command outlived the closed exec session"


def test_cwd_env_and_timeout_prologue_work_through_exec(exec_endpoint, tmp_path) -> None:
    argv = build_exec_argv('echo "$GREETING from $(pwd)"', cwd=str(tmp_path), env={"GREETING": "it's me"})
    out = _run(exec_endpoint, argv)
    assert out.stdout.decode() == f"it's me from {tmp_path}\n"
    out = _run(exec_endpoint, build_exec_argv("sleep 5", timeout=0.5))
    assert out.status is not None
    assert out.status.exit_code == 124  # timeout(1)'s code: stopped, not finished


def test_status_builders_round_trip_through_the_sdk_parser() -> None:
    assert parse_exec_status(json.dumps(exit_status(["x"], 0))).exit_code == 0
    assert parse_exec_status(json.dumps(exit_status(["x"], 42))).exit_code == 42
    assert parse_exec_status(json.dumps(exit_status(["x"], -9))).exit_code == 137
    failed = parse_exec_status(json.dumps(start_failure_status(["nope"], FileNotFoundError())))
    assert failed.exit_code is None
    assert "nope" in (failed.error or "")


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1]"])
def test_unreadable_status_is_an_error(raw: bytes | None) -> None:
    assert parse_exec_status(raw).exit_code is None


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v5.channel.k8s.io"])
def test_both_protocols_carry_stdin_output_and_status(exec_endpoint, protocol: str) -> None:
    """v4 cannot half-close stdin: a write sized up front (``head -c N``) still ends, as the SDK relies on."""
    from kubernetes import client
    from kubernetes.stream import stream

    with client.ApiClient(exec_endpoint.configuration()) as api:
        ws = stream(
            client.CoreV1Api(api).connect_get_namespaced_pod_exec,
            "pod1",
            "ns1",
            command=["/bin/sh", "-c", "head -c 5; echo; echo bye >&2; exit 9"],
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
            binary=True,
            _preload_content=False,
            _headers={"sec-websocket-protocol": protocol},
        )
        assert ws.subprotocol == protocol
        ws.write_stdin(b"hello")
        ws.run_forever(timeout=10)
        assert ws.read_channel(1) == b"hello\n"
        assert ws.read_channel(2) == b"bye\n"
        assert parse_exec_status(ws.read_channel(3)).exit_code == 9


def test_plain_http_request_is_refused_with_a_status(exec_endpoint) -> None:
    import urllib.error
    import urllib.request

    url = f"{exec_endpoint.url}/api/v1/namespaces/ns1/pods/pod1/exec?command=true&stdout=true"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)
    assert info.value.code == 400
    assert json.loads(info.value.read())["message"].startswith("Upgrade request required")
