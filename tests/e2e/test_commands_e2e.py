"""Every command line entry point answers a bad flag, a taken port or a missing (or unusable) file alike: one
line on stderr, starting with the command's name and saying what to do, exit code 2, no traceback
(leap0_contract/cli.py). Each case runs the real command as a child process."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import subprocess_env

pytestmark = pytest.mark.e2e

LEAP0 = [sys.executable, "-m", "leap0.cli"]
OPERATOR = [sys.executable, "-m", "leap0_operator"]
SIDECAR = [sys.executable, "-m", "leap0_sidecar"]
IDENTITY = {"LEAP0_SANDBOX_ID": "sbx", "LEAP0_ORG_ID": "org", "LEAP0_TEMPLATE_ID": "tpl"}
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# (command, what is wrong) -> argv, extra environment, what the line must say. "{port}" is the taken port,
# "{tmp}" the test's folder (with a kubeconfig in it), "{file}" a regular file there.
CASES: dict[tuple[str, str], tuple[list[str], dict[str, str], str]] = {
    ("leap0 dev up", "bad flag"): (
        [*LEAP0, "dev", "up", "--sink-prot", "1"],
        {},
        "leap0 dev up: unrecognized arguments: --sink-prot 1; see leap0 dev up --help",
    ),
    ("leap0 dev up", "taken port"): (
        [*LEAP0, "dev", "up", "--sink-port", "{port}", "--port", "0", "--workdir", "{tmp}/w"],
        {},
        "leap0 dev up: cannot listen on 127.0.0.1:{port} for the console sink: the port is in use; stop what "
        "uses it, or choose another with --sink-port PORT (0: any free port)",
    ),
    ("leap0 dev up", "unusable file"): (
        [*LEAP0, "dev", "up", "--kubeconfig", "{file}/kubeconfig.yaml", "--port", "0", "--sink-port", "0"],
        {},
        "leap0 dev up: cannot use {file}/kubeconfig.yaml as the kubeconfig: a part of its path is a file, "
        "not a directory; name another with --kubeconfig FILE",
    ),
    ("leap0 dev apiserver", "bad flag"): (
        [*LEAP0, "dev", "apiserver", "--prot", "0"],
        {},
        "leap0 dev apiserver: unrecognized arguments: --prot 0; see leap0 dev apiserver --help",
    ),
    ("leap0 dev apiserver", "taken port"): (
        [*LEAP0, "dev", "apiserver", "--port", "{port}", "--kubeconfig", "{tmp}/kc.yaml"],
        {},
        "leap0 dev apiserver: cannot listen on 127.0.0.1:{port} for the API server: the port is in use; stop "
        "what uses it, or choose another with --port PORT (0: any free port)",
    ),
    ("leap0 dev apiserver", "unusable file"): (
        [*LEAP0, "dev", "apiserver", "--port", "0", "--kubeconfig", "{file}/kc.yaml"],
        {},
        "leap0 dev apiserver: cannot use {file}/kc.yaml as the kubeconfig: a part of its path is a file, "
        "not a directory; name another with --kubeconfig FILE",
    ),
    ("leap0 mcp", "bad flag"): (
        [*LEAP0, "mcp", "--namspace", "x"],
        {},
        "leap0 mcp: unrecognized arguments: --namspace x; see leap0 mcp --help",
    ),
    ("leap0 mcp", "taken port"): (
        [
            *LEAP0,
            "mcp",
            "--kubeconfig",
            "{tmp}/kubeconfig",
            "--http",
            "127.0.0.1:{port}",
            "--insecure-no-auth",
        ],
        {},
        "leap0 mcp: cannot listen on 127.0.0.1:{port} for --http: the port is in use; stop what uses it, or "
        "choose another with --http HOST:PORT (port 0: any free one)",
    ),
    ("leap0 mcp", "missing file"): (
        [
            *LEAP0,
            "mcp",
            "--kubeconfig",
            "{tmp}/kubeconfig",
            "--http",
            "127.0.0.1:0",
            "--token-file",
            "{tmp}/t",
        ],
        {},
        "leap0 mcp: cannot use {tmp}/t as --token-file: no such file or directory; write the token there, or "
        "give it in $LEAP0_MCP_TOKEN instead",
    ),
    ("leap0-operator", "bad flag"): (
        [*OPERATOR, "--metrics-prot", "1"],
        {},
        "leap0-operator: unrecognized arguments: --metrics-prot 1; see leap0-operator --help",
    ),
    ("leap0-operator", "taken port"): (
        [*OPERATOR, "--metrics-port", "{port}", "--metrics-bind-address", "127.0.0.1"],
        {"KUBECONFIG": "{tmp}/kubeconfig"},
        "leap0-operator: cannot listen on 127.0.0.1:{port} for the metrics: the port is in use; stop what "
        "uses it, or choose another with --metrics-port PORT (or LEAP0_OPERATOR_METRICS_PORT; 0: any free "
        "port)",
    ),
    ("leap0-operator", "missing file"): (
        [*OPERATOR],
        {"KUBECONFIG": "{tmp}/missing"},
        "leap0-operator: KUBECONFIG names {tmp}/missing, which does not exist; set KUBECONFIG to the "
        "cluster's kubeconfig (in a cluster the operator uses its service account)",
    ),
    ("leap0-sidecar", "bad flag"): (
        [*SIDECAR, "--verbose"],
        IDENTITY,
        "leap0-sidecar: unrecognized arguments: --verbose; see leap0-sidecar --help",
    ),
    ("leap0-sidecar", "taken port"): (
        [*SIDECAR],
        {
            **IDENTITY,
            "LEAP0_OTLP_HTTP_ENDPOINT": "127.0.0.1:{port}",
            "LEAP0_OTLP_GRPC_ENDPOINT": "127.0.0.1:0",
        },
        "leap0-sidecar: cannot listen on 127.0.0.1:{port} for OTLP/HTTP: the port is in use; stop what uses "
        "it, or choose another with LEAP0_OTLP_HTTP_ENDPOINT=host:port",
    ),
    ("leap0-sidecar", "missing file"): (
        [*SIDECAR],
        {
            **IDENTITY,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": "{tmp}/ca.pem",
        },
        "leap0-sidecar: configuration error: OTEL_EXPORTER_OTLP_CERTIFICATE='{tmp}/ca.pem': no such file",
    ),
}


@pytest.mark.parametrize(("command", "wrong"), list(CASES), ids=[f"{c}: {w}" for c, w in CASES])
def test_one_line_saying_what_to_do_and_exit_code_2(
    command: str, wrong: str, taken_port: int, tmp_path: Path
) -> None:
    argv, env, expected = CASES[command, wrong]
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    (tmp_path / "a-file").write_text("")
    fill = {"port": str(taken_port), "tmp": str(tmp_path), "file": str(tmp_path / "a-file")}
    environment = subprocess_env(**{k: v.format(**fill) for k, v in env.items()})
    environment.setdefault("LEAP0_HEALTH_ENDPOINT", "off")  # (the sidecar's, on a port of its own otherwise)
    result = subprocess.run(
        [a.format(**fill) for a in argv],
        env=environment,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (2, "", expected.format(**fill) + "\n")
