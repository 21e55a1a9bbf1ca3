"""The runner lists, then watches, as an informer does: a pod deleted while it could not watch is stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from support import FreezingProxy, alive, wait_for

from leap0_dev.apiserver import ServerThread
from leap0_dev.runner import Runner, RunnerConfig

pytestmark = pytest.mark.e2e


def _pod(name: str) -> dict[str, object]:
    command = ["python3", "-c", "import time; time.sleep(600)"]
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "x", "command": command}]},
    }


def test_a_pod_deleted_while_the_watch_was_down_is_stopped_after_the_relist(tmp_path: Path) -> None:
    # A watch history of 2 events: once the runner is back, its resourceVersion is gone (410) and it lists.
    with (
        ServerThread(history_size=2) as server,
        FreezingProxy("127.0.0.1", int(server.url.rsplit(":", 1)[1])) as proxy,
    ):
        direct = client.CoreV1Api(server.api_client())
        direct.create_namespace({"metadata": {"name": "relist"}})
        through_proxy = server.api_client()
        through_proxy.configuration.host = proxy.url
        config = RunnerConfig(namespace="relist", workdir=tmp_path, cgroups=False, log=lambda line: None)
        with Runner(through_proxy, config) as runner:
            direct.create_namespaced_pod("relist", _pod("gone"))
            direct.create_namespaced_pod("relist", _pod("kept"))

            def pid(name: str) -> int | None:
                local = runner.find("relist", name)
                return local.main[0].pid if local is not None and local.main and local.main[0].pid else None

            gone, kept = (wait_for(lambda n=n: pid(n), 30, f"{n} running here") for n in ("gone", "kept"))
            proxy.freeze()  # the runner's watch hangs: it sees nothing more
            direct.delete_namespaced_pod("gone", "relist", grace_period_seconds=0)
            for i in range(3):  # more pod events than the history keeps
                direct.create_namespaced_pod("relist", _pod(f"later-{i}"))
            proxy.cut()  # the watch fails; the runner lists again through new connections
            wait_for(lambda: not alive(gone), 30, "the deleted pod's process stopped")
            assert runner.find("relist", "gone") is None
            assert alive(kept)  # what the list still has keeps running
            assert runner.find("relist", "kept") is not None
            wait_for(lambda: runner.find("relist", "later-2"), 30, "the pods created meanwhile started")
