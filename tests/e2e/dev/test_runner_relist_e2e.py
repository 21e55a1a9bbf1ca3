"""The runner lists, then watches, as an informer does: a pod deleted while it could not watch is stopped."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
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


def _main_pid(runner: Runner, namespace: str, name: str) -> int | None:
    local = runner.find(namespace, name)
    return local.main[0].pid if local is not None and local.main and local.main[0].pid else None


@contextlib.contextmanager
def _runner_behind_a_proxy(
    tmp_path: Path, namespace: str, history_size: int | None = None, watch_timeout: float = 300.0
) -> Iterator[tuple[Runner, FreezingProxy, client.CoreV1Api]]:
    """The embedded API server, a runner of ``namespace`` reaching it through a proxy the test controls, and a
    client reaching it directly."""
    extra = {} if history_size is None else {"history_size": history_size}
    with (
        ServerThread(**extra) as server,
        FreezingProxy("127.0.0.1", int(server.url.rsplit(":", 1)[1])) as proxy,
    ):
        direct = client.CoreV1Api(server.api_client())
        direct.create_namespace({"metadata": {"name": namespace}})
        through_proxy = server.api_client()
        through_proxy.configuration.host = proxy.url
        config = RunnerConfig(
            namespace=namespace,
            workdir=tmp_path,
            cgroups=False,
            watch_timeout=watch_timeout,
            log=lambda line: None,
        )
        with Runner(through_proxy, config) as runner:
            yield runner, proxy, direct


def test_a_pod_deleted_while_the_watch_was_down_is_stopped_after_the_relist(tmp_path: Path) -> None:
    # A watch history of 2 events: once the runner is back, its resourceVersion is gone (410) and it lists.
    with _runner_behind_a_proxy(tmp_path, "relist", history_size=2) as (runner, proxy, direct):
        direct.create_namespaced_pod("relist", _pod("gone"))
        direct.create_namespaced_pod("relist", _pod("kept"))

        gone, kept = (
            wait_for(lambda n=n: _main_pid(runner, "relist", n), 30, f"{n} running here")
            for n in ("gone", "kept")
        )
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


def test_a_silent_watch_is_given_up_and_a_pod_deleted_meanwhile_is_stopped(tmp_path: Path) -> None:
    # The watch's connection goes silent and stays open (a stuck proxy): nothing cuts it, so only the runner's
    # own read timeout (the watch's length plus a grace) gets it listing again.
    with _runner_behind_a_proxy(tmp_path, "silent", watch_timeout=2) as (runner, proxy, direct):
        direct.create_namespaced_pod("silent", _pod("gone"))
        gone = wait_for(lambda: _main_pid(runner, "silent", "gone"), 30, "the pod running here")
        proxy.freeze()
        direct.delete_namespaced_pod("gone", "silent", grace_period_seconds=0)
        wait_for(lambda: not alive(gone), 60, "the pod deleted behind a silent watch stopped")
        direct.create_namespaced_pod("silent", _pod("later"))
        wait_for(lambda: runner.find("silent", "later"), 30, "a pod created after it started")


def test_pods_keep_running_while_the_api_server_is_away_and_their_status_comes_after(tmp_path: Path) -> None:
    # A kubelet keeps its pods while the API server is away: a status write that finds no server fails, the
    # pods go on, and the status is written once the server answers again.
    with _runner_behind_a_proxy(tmp_path, "away") as (runner, proxy, direct):
        exits = ["python3", "-c", "import time; time.sleep(8); raise SystemExit(3)"]
        short = {
            "metadata": {"name": "short"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "app", "image": "x", "command": exits}],
            },
        }
        direct.create_namespaced_pod("away", short)
        direct.create_namespaced_pod("away", _pod("kept"))
        short_pid = wait_for(lambda: _main_pid(runner, "away", "short"), 30, "the short pod running here")
        kept = wait_for(lambda: _main_pid(runner, "away", "kept"), 30, "the kept pod running here")
        proxy.refuse()
        wait_for(lambda: not alive(short_pid), 30, "the short pod's command exited")
        time.sleep(3)  # the runner's ticks try to write the exit, and fail
        assert alive(kept), "the runner stopped a pod while the API server was away"
        proxy.refuse(False)

        def exit_code() -> int | None:
            statuses = direct.read_namespaced_pod("short", "away").status.container_statuses or []
            terminated = statuses[0].state.terminated if statuses and statuses[0].state else None
            return None if terminated is None else int(terminated.exit_code)

        assert wait_for(exit_code, 60, "the exit written once the server answers") == 3
        assert alive(kept)
