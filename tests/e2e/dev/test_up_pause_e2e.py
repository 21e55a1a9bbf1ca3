"""``leap0 dev up`` keeps a paused sandbox's workspace: a file written under /workspace before a pause is
there after the resume (the local runner's folder for the sandbox's PersistentVolumeClaim outlives its pod),
and a file written elsewhere is not (it lived in the pod, as in a container's root filesystem)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import dev_up_process, wait_for

import leap0_contract as c
from leap0 import Leap0Client, Sandbox

pytestmark = pytest.mark.e2e


def test_a_file_in_the_workspace_survives_a_pause_in_dev_up(tmp_path: Path) -> None:
    with dev_up_process(tmp_path, "--no-example") as (_, out):
        wait_for(lambda: "runner: running pods here" in out.read_text(), 60, f"dev up ready:\n{out}")
        kubeconfig = tmp_path / "kubeconfig.yaml"
        with Leap0Client(namespace="default", kubeconfig=kubeconfig, sdk_otel_enabled=False) as sdk:
            sandbox: Sandbox = sdk.sandboxes.create(
                workspace={"persistent": True}, timeout=600, wait_timeout=60
            )
            sandbox.filesystem.write("/workspace/notes/todo.txt", "before the pause\n")
            sandbox.filesystem.write("outside.txt", "in the pod only\n")
            assert sandbox.process.execute("cat /workspace/notes/todo.txt").stdout == "before the pause\n"
            first_pod = sandbox.pod_name
            sandbox.pause()
            assert sandbox.phase == c.PHASE_PAUSED
            sandbox.resume()
            assert sandbox.phase == c.PHASE_RUNNING
            assert sandbox.filesystem.read_text("/workspace/notes/todo.txt") == "before the pause\n"
            assert sandbox.process.execute("cat outside.txt").exit_code != 0
            assert sandbox.pod_name == first_pod  # the same name, a new pod
            sandbox.delete()
        claims = tmp_path / ".leap0" / "pods" / "claims"
        wait_for(lambda: not any(claims.iterdir()), 30, "the claim's folder removed with the sandbox")
