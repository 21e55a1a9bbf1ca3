"""``leap0 dev up`` shows where the operator's metrics are and, with ``-v``, a summary line of them."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from support import stop_process_tree, subprocess_env, wait_for

import leap0_contract as contract

pytestmark = pytest.mark.e2e

# dev up with the real operator, no demo Sandbox, verbose, a summary every second instead of every minute.
LAUNCHER = """
import sys
from pathlib import Path
from leap0_dev.up import UpOptions, run
work = Path(sys.argv[1])
options = UpOptions(
    port=0,
    kubeconfig=work / "kubeconfig.yaml",
    sink_port=0,
    workdir=work / "state",
    example=False,
    verbose=True,
    summary_every=1.0,
)
sys.exit(run(options))
"""


def test_up_prints_the_operator_metrics_url_and_a_summary_when_verbose(tmp_path: Path) -> None:
    out = tmp_path / "up.out"
    with open(out, "wb") as stream:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(tmp_path)],
            env=subprocess_env(),
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "operator: metrics at " in out.read_text(), 30, "the metrics URL")
        url = out.read_text().split("operator: metrics at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith(contract.OPERATOR_METRICS_PATH)
        summary = "operator: sandboxes Pending 0, Running 0, Paused 0, Failed 0, Expired 0; no startup yet"
        wait_for(lambda: summary in out.read_text(), 60, f"the summary line in:\n{out}")
        with urllib.request.urlopen(url, timeout=10) as response:  # the URL printed is the operator's
            assert f'{contract.OPERATOR_METRIC_SANDBOXES}{{phase="Running"}} 0.0' in response.read().decode()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        stop_process_tree(process)
