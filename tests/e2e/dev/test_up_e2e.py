"""``leap0 dev up``'s orchestration: what it starts, what it applies, and that Ctrl-C stops it all.

The operator here is a stand-in process (``UpOptions.operator_argv``), so what is checked is dev up's own
part; tests/e2e/dev/test_chain_e2e.py runs the real chain.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support import alive, kubectl_path, stop_process_tree, subprocess_env, wait_for

pytestmark = pytest.mark.e2e

# Runs dev up with a stand-in operator that records its argv and KUBECONFIG, then sleeps like an operator.
LAUNCHER = """
import sys
from pathlib import Path
from leap0_dev.up import UpOptions, run
work = Path(sys.argv[1])
record = str(work / "op.json")
stand_in = (
    "import json, os, sys, time; "
    "seen = {'argv': sys.argv[1:], 'kubeconfig': os.environ['KUBECONFIG']}; "
    f"json.dump(seen, open({record!r}, 'w')); "
    "time.sleep(600)"
)
options = UpOptions(
    port=0,
    kubeconfig=work / "kubeconfig.yaml",
    sink_port=int(sys.argv[2]),
    workdir=work / "state",
    operator_argv=[sys.executable, "-c", stand_in],
)
sys.exit(run(options))
"""


def start(tmp_path: Path, sink_port: int) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "up.out"
    with open(out, "wb") as stream:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(tmp_path), str(sink_port)],
            env=subprocess_env(),
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    return process, out


def test_up_starts_everything_applies_the_demo_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process, out = start(tmp_path, 0)
    try:
        wait_for(lambda: "up: Ctrl-C stops everything" in out.read_text(), 30, f"dev up started:\n{out}")
        text = out.read_text()
        assert "sink: OTLP/HTTP on http://127.0.0.1:" in text
        assert "SandboxTemplate default/default created" in text
        assert "example: Sandbox default/demo applied" in text
        operator = json.loads(
            wait_for(
                lambda: (tmp_path / "op.json").exists() and (tmp_path / "op.json").read_text(),
                10,
                "the operator",
            )
        )
        metrics_url = text.split("operator: metrics at ", 1)[1].split()[0]
        port = metrics_url.removeprefix("http://127.0.0.1:").removesuffix("/metrics")
        sink_url = text.split("sink: OTLP/HTTP on ", 1)[1].split(" ", 1)[0]
        assert operator["argv"] == [
            "--all-namespaces",
            "--standalone",
            "--metrics-port",
            port,
            "--metrics-bind-address",
            "127.0.0.1",
            "--default-otlp-endpoint",
            sink_url,
        ]
        assert Path(operator["kubeconfig"]) == (tmp_path / "kubeconfig.yaml").resolve()

        kubectl = [kubectl_path(), "--kubeconfig", str(tmp_path / "kubeconfig.yaml"), "-n", "default"]
        got = subprocess.run(
            [*kubectl, "get", "sandbox,sandboxtemplate", "-o", "name"], capture_output=True, text=True
        )
        assert got.returncode == 0, got.stderr
        assert set(got.stdout.split()) == {"sandbox.leap0.dev/demo", "sandboxtemplate.leap0.dev/default"}
        demo = json.loads(
            subprocess.run(
                [*kubectl, "get", "sandbox", "demo", "-o", "json"], capture_output=True, text=True, check=True
            ).stdout
        )
        endpoints = [e["value"] for e in demo["spec"]["env"] if e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert endpoints == [sink_url]

        children = [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
        assert children
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert out.read_text().rstrip().endswith("up: stopped")
        assert not [pid for pid in children if alive(pid)]
    finally:
        stop_process_tree(process)
