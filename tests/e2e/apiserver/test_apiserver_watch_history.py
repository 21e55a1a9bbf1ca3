"""`leap0 dev apiserver --watch-history N`: a watch resumes from at most N events back, older ones get 410."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import http, subprocess_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url with --watch-history 3, url with the default history): two `leap0 dev apiserver` processes."""
    urls: list[str] = []
    processes: list[subprocess.Popen[str]] = []
    for name, extra in (("short", ["--watch-history", "3"]), ("default", [])):
        command = [sys.executable, "-m", "leap0.cli", "dev", "apiserver", "--port", "0",
                   "--kubeconfig", str(tmp_path / f"{name}.yaml"), *extra]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=subprocess_env())
        processes.append(process)
        assert process.stdout is not None
        found = re.search(r"listening on (http://\S+)", process.stdout.readline())
        assert found, "the API server did not start"
        urls.append(found.group(1))
    try:
        yield urls[0], urls[1]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def resume_from_the_first_of_five_changes(url: str) -> list[dict[str, object]]:
    """Create five ConfigMaps, then watch from the first one's resourceVersion: the events that follow."""
    versions = []
    for i in range(5):
        body = json.dumps({"metadata": {"name": f"c{i}"}})
        status, _, created = http(url, "POST", "/api/v1/namespaces/default/configmaps", body,
                                  {"Content-Type": "application/json"})  # fmt: skip
        assert status == 201
        versions.append(json.loads(created)["metadata"]["resourceVersion"])
    query = f"?watch=true&resourceVersion={versions[0]}&timeoutSeconds=1"
    status, _, stream = http(url, "GET", "/api/v1/namespaces/default/configmaps" + query)
    assert status == 200
    return [json.loads(line) for line in stream.splitlines() if line.strip()]


def test_a_watch_older_than_the_history_gets_410_gone(served: tuple[str, str]) -> None:
    short, default = served
    events = resume_from_the_first_of_five_changes(short)
    assert [e["type"] for e in events] == ["ERROR"]
    assert events[0]["object"]["code"] == 410  # type: ignore[index]
    resumed = resume_from_the_first_of_five_changes(default)
    assert [e["object"]["metadata"]["name"] for e in resumed] == ["c1", "c2", "c3", "c4"]  # type: ignore[index]


def test_the_history_must_be_positive(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "leap0.cli", "dev", "apiserver", "--watch-history", "0",
               "--kubeconfig", str(tmp_path / "kc.yaml")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert result.returncode == 2
    assert "--watch-history" in result.stderr
