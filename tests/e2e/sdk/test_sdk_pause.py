"""Pause and resume from both SDKs, with the real operator against the embedded API server (a stand-in kubelet
reports each new pod Running; the emulator answers exec): pause() and resume(), the auto-resume of an
operation on a paused sandbox (on by default, refusable), a pause refused without a persistent workspace, and
the activity annotation (throttled, and only for sandboxes that can go idle)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sdk_support import StandInKubelet
from support import REPO

import leap0_contract as c
from leap0 import Leap0Client, SandboxNotRunningError, SandboxValidationError
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e
JS_DIST = REPO / "js" / "dist" / "index.js"
PERSISTENT = {"persistent": True}


def raw(apiserver: ServerThread, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(apiserver.api_client()).get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, name
    )
    return obj


def pod_uid(apiserver: ServerThread, namespace: str, name: str) -> str:
    return str(client.CoreV1Api(apiserver.api_client()).read_namespaced_pod(name, namespace).metadata.uid)


def test_python_pause_resume_and_auto_resume_on_execute(
    apiserver: ServerThread,
    namespace: str,
    operator: Any,
    running_kubelet: StandInKubelet,
    sdk: Leap0Client,
) -> None:
    sandbox = sdk.sandboxes.create(workspace=PERSISTENT, timeout=600)
    first_pod = pod_uid(apiserver, namespace, sandbox.id)
    assert sandbox.effective_workspace == {"persistent": True, "claimName": f"{sandbox.id}-workspace"}
    sandbox.pause()
    assert sandbox.phase == c.PHASE_PAUSED
    assert sandbox.is_paused
    assert sandbox.paused_at is not None
    # an operation on the paused sandbox resumes it, waits for Running, then runs
    result = sandbox.process.execute("echo hello")
    assert (result.exit_code, result.stdout) == (0, "hello\n")
    assert sandbox.phase == c.PHASE_RUNNING
    assert sandbox.resumed_at is not None
    assert pod_uid(apiserver, namespace, sandbox.id) != first_pod
    # explicit resume of a running sandbox does nothing; pause twice does nothing either
    assert sandbox.resume().phase == c.PHASE_RUNNING
    sdk.sandboxes.pause(sandbox.id)
    assert sdk.sandboxes.pause(sandbox.id).phase == c.PHASE_PAUSED
    # with auto_resume off, the operation is refused and says how to resume
    with Leap0Client(
        namespace=namespace, kubeconfig=apiserver.kubeconfig, sdk_otel_enabled=False, auto_resume=False
    ) as strict:
        with pytest.raises(SandboxNotRunningError, match=r"is paused: call sandbox.resume\(\) first"):
            strict.sandboxes.get(sandbox.id).filesystem.write("/tmp/x", "y")
        assert strict.sandboxes.get(sandbox.id).phase == c.PHASE_PAUSED
        resumed = strict.sandboxes.resume(sandbox.id)
        assert resumed.phase == c.PHASE_RUNNING


def test_a_pause_without_a_persistent_workspace_is_refused_and_changes_nothing(
    apiserver: ServerThread,
    namespace: str,
    operator: Any,
    running_kubelet: StandInKubelet,
    sdk: Leap0Client,
) -> None:
    sandbox = sdk.sandboxes.create(timeout=600)
    with pytest.raises(SandboxValidationError, match=r"workspace=\{'persistent': True\}") as caught:
        sandbox.pause()
    assert caught.value.reason == c.REASON_PAUSE_REFUSED
    assert "paused" not in raw(apiserver, namespace, sandbox.id)["spec"]
    # the workspace from a template (the status not written yet): the operator refuses, the ask is taken back
    template = {
        "apiVersion": c.API_VERSION,
        "kind": c.TEMPLATE_KIND,
        "metadata": {"name": "plain"},
        "spec": {"workspace": {"persistent": False}},
    }
    client.CustomObjectsApi(apiserver.api_client()).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.TEMPLATE_PLURAL, template
    )
    other = sdk.sandboxes.create(template="plain", timeout=600, wait=False)
    with pytest.raises(SandboxValidationError, match="emptyDir") as refused:
        sdk.sandboxes.pause(other.id)
    assert refused.value.reason == c.REASON_PAUSE_REFUSED
    assert raw(apiserver, namespace, other.id)["spec"].get("paused") is False


def test_use_is_recorded_at_most_every_30_s_and_only_for_sandboxes_that_can_go_idle(
    apiserver: ServerThread,
    namespace: str,
    operator: Any,
    running_kubelet: StandInKubelet,
    sdk: Leap0Client,
) -> None:
    custom = client.CustomObjectsApi(apiserver.api_client())
    busy = sdk.sandboxes.create(workspace=PERSISTENT, idle_timeout=3600, timeout=600)
    busy.process.execute("true")
    stamp = raw(apiserver, namespace, busy.id)["metadata"]["annotations"][c.ANNOTATION_LAST_ACTIVITY]
    assert stamp.endswith("Z")
    # a second use within 30 s writes nothing
    custom.patch_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, busy.id,
        {"metadata": {"annotations": {c.ANNOTATION_LAST_ACTIVITY: "2000-01-01T00:00:00Z"}}},
    )  # fmt: skip
    busy.filesystem.write("/tmp/f", "x")
    busy.filesystem.read("/tmp/f")
    annotations = raw(apiserver, namespace, busy.id)["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_LAST_ACTIVITY] == "2000-01-01T00:00:00Z"
    # a sandbox that cannot go idle costs no write at all
    plain = sdk.sandboxes.create(timeout=600)
    plain.process.execute("true")
    assert c.ANNOTATION_LAST_ACTIVITY not in (
        raw(apiserver, namespace, plain.id)["metadata"].get("annotations") or {}
    )


JS_AUTO_RESUME = """
import { Leap0Client, SandboxValidationError } from %(dist)s;
const { NS: namespace, KC: kubeconfig } = process.env;
const client = new Leap0Client({ namespace, kubeconfig, sdkOtelEnabled: false });
const out = {};
const persistent = { workspace: { persistent: true }, timeout: 600, idleTimeout: 3600 };
const sandbox = await client.sandboxes.create(persistent);
await sandbox.pause();
out.paused = sandbox.phase;
const result = await sandbox.process.execute("echo from js");
out.stdout = result.stdout;
out.after = sandbox.phase;
out.resumedAt = sandbox.resumedAt !== undefined;
const plain = await client.sandboxes.create({ timeout: 600 });
try {
  await plain.pause();
} catch (err) {
  out.refused = err instanceof SandboxValidationError ? err.reason : String(err);
}
const strict = new Leap0Client({ namespace, kubeconfig, sdkOtelEnabled: false, autoResume: false });
await client.sandboxes.pause(sandbox.id);
try {
  await (await strict.sandboxes.get(sandbox.id)).process.execute("true");
} catch (err) {
  out.strict = err.constructor.name;
}
out.resumed = (await strict.sandboxes.resume(sandbox.id)).phase;
out.id = sandbox.id;
console.log(JSON.stringify(out));
await client.close();
await strict.close();
"""


def test_javascript_pause_resume_and_auto_resume_on_execute(
    apiserver: ServerThread,
    namespace: str,
    operator: Any,
    running_kubelet: StandInKubelet,
    exec_runner: Any,
    tmp_path: Path,
) -> None:
    node = shutil.which("node")
    assert node is not None, "node (20+) is needed for the JavaScript SDK"
    assert JS_DIST.exists(), "js/dist is missing: run `npm ci` in js/ (scripts/test.sh does)"
    script = tmp_path / "pause.mjs"
    script.write_text(JS_AUTO_RESUME % {"dist": json.dumps(JS_DIST.as_uri())})
    env = {**os.environ, "NS": namespace, "KC": str(apiserver.kubeconfig)}
    result = subprocess.run(
        [node, str(script)], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["paused"] == c.PHASE_PAUSED
    assert (out["stdout"], out["after"], out["resumedAt"]) == ("from js\n", c.PHASE_RUNNING, True)
    assert out["refused"] == c.REASON_PAUSE_REFUSED
    assert out["strict"] == "SandboxNotRunningError"
    assert out["resumed"] == c.PHASE_RUNNING
    # the JavaScript SDK recorded the use too
    annotations = raw(apiserver, namespace, out["id"])["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_LAST_ACTIVITY].endswith("Z")
