"""The README's examples run as written against ``leap0 dev up``, as a newcomer runs them in a second shell.

One ``leap0 dev up`` for the module (every port picked by the OS, so the examples get its sink's URL through
``OTEL_EXPORTER_OTLP_ENDPOINT``, which they only default); each example is taken from README.md itself: the
kubectl one (with examples/sandbox.yaml), the Python SDK's, the JavaScript SDK's and the MCP configuration.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mcp_support import ok, stdio_session
from support import (
    REPO,
    dev_up_process,
    kubectl_path,
    subprocess_env,
    wait_for,
)

pytestmark = pytest.mark.e2e

README = REPO / "README.md"


def readme_block(language: str, containing: str) -> str:
    """The README's fenced ``language`` block that contains ``containing`` (exactly one)."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), re.DOTALL | re.MULTILINE)
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"{len(found)} {language} blocks of README.md contain {containing!r}"
    return str(found[0])


@dataclass
class DevUp:
    process: subprocess.Popen[bytes]
    out: Path
    kubeconfig: Path
    sink_url: str

    def console(self) -> str:
        return self.out.read_text()

    def env(self, **extra: str) -> dict[str, str]:
        """A second terminal's environment: `export KUBECONFIG=$PWD/kubeconfig.yaml` (and ``extra``)."""
        env = subprocess_env(KUBECONFIG=str(self.kubeconfig), **extra)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "LEAP0_SDK_OTEL_ENABLED"):
            if name not in extra:
                env.pop(name, None)
        return env


@pytest.fixture(scope="module")
def dev_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevUp]:
    work = tmp_path_factory.mktemp("dev-up")
    with dev_up_process(work, "--metrics-interval=2") as (process, out):
        wait_for(lambda: "up: Ctrl-C stops everything" in out.read_text(), 60, f"dev up started:\n{out}")
        sink_url = out.read_text().split("sink: OTLP/HTTP on ", 1)[1].split(" ", 1)[0]
        yield DevUp(process, out, work / "kubeconfig.yaml", sink_url)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0


def test_the_kubectl_example_with_its_file_in_examples(dev_up: DevUp) -> None:
    shown = yaml.safe_load(readme_block("yaml", "kind: Sandbox\nmetadata:\n  name: hello"))
    assert shown == yaml.safe_load((REPO / "examples" / "sandbox.yaml").read_text())
    commands = [
        shlex.split(line.split("#", 1)[0])
        for line in readme_block("bash", "kubectl apply -f examples/sandbox.yaml").splitlines()
        if line.strip()
    ]
    assert [c[:2] for c in commands] == [["kubectl", "apply"], ["kubectl", "get"], ["kubectl", "wait"]]
    for command in commands:
        generous = ["--timeout=120s"] if command[1] == "wait" else []  # (kubectl's own default is 30 s)
        result = subprocess.run(
            [kubectl_path(), *command[1:], *generous],
            env=dev_up.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, f"{shlex.join(command)}: {result.stderr}"
    assert "condition met" in result.stdout
    # No endpoint of its own: dev up's operator sends its telemetry to the console.
    shown_metric = re.compile(
        r"metric leap0\.sandbox\.cpu\.limit = 2\.00 \{cpu\} \[leap0\.sandbox\.id=hello,"
    )
    wait_for(
        lambda: shown_metric.search(dev_up.console()),
        60,
        "the hello sandbox's metrics on dev up's console",
    )


def test_the_python_example(dev_up: DevUp, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_block("python", "client = Leap0Client()"))
    result = subprocess.run(
        [sys.executable, str(script)],
        env=dev_up.env(OTEL_EXPORTER_OTLP_ENDPOINT=dev_up.sink_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sandbox_id, outcome = result.stdout.splitlines()[:2]
    assert sandbox_id.startswith("sbx-")
    assert outcome == "0 hello from leap0"  # (then stdout's newline and the empty stderr)
    # the SDK's own spans reach the console (its endpoint is the one the example defaults)
    wait_for(
        lambda: any(
            line.split(" ", 1)[1].startswith("span   sandboxes.create ") and sandbox_id in line
            for line in dev_up.console().splitlines()
            if " " in line
        ),
        60,
        "the SDK's sandboxes.create span on dev up's console",
    )


def test_the_javascript_example(dev_up: DevUp, tmp_path: Path) -> None:
    assert (REPO / "js" / "dist" / "index.js").exists(), "js/dist is missing: run `npm ci` in js/"
    node_modules = tmp_path / "node_modules"
    node_modules.mkdir()
    (node_modules / "leap0").symlink_to(REPO / "js")  # as `npm install` of the package would
    script = tmp_path / "example.mjs"
    script.write_text(readme_block("js", "new Leap0Client({ sdkOtelEnabled: true })"))
    result = subprocess.run(
        ["node", str(script)],
        env=dev_up.env(OTEL_EXPORTER_OTLP_ENDPOINT=dev_up.sink_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sandbox_id = result.stdout.strip()
    assert sandbox_id.startswith("sbx-")
    # the JS SDK's spans (OTLP/JSON, chunked) reach the console too
    wait_for(
        lambda: any(
            line.split(" ", 1)[1].startswith("span   sandboxes.create ") and sandbox_id in line
            for line in dev_up.console().splitlines()
            if " " in line
        ),
        60,
        "the JS SDK's sandboxes.create span on dev up's console",
    )


async def test_the_mcp_configuration(dev_up: DevUp) -> None:
    server = json.loads(readme_block("json", '"mcpServers"'))["mcpServers"]["leap0"]
    assert server["command"] == "leap0"
    async with stdio_session(
        ["-m", "leap0.cli", *server["args"]], KUBECONFIG=str(dev_up.kubeconfig)
    ) as session:
        created = await ok(session, "create_sandbox")
        assert created["phase"] == "Running"
        await ok(session, "delete_sandbox", sandbox_id=created["sandbox_id"])
