"""Fixtures of the operator's end-to-end tests: the operator as a process (``start_operator``) and a
kubernetes client on the session's API server (``api``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import Operator


@pytest.fixture
def start_operator(apiserver: Any, namespace: str, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(*extra: str, kubeconfig: Path | None = None, **env: str) -> Operator:
        log = tmp_path / f"operator-{len(started)}.log"
        operator = Operator(kubeconfig or apiserver.kubeconfig, namespace, log, *extra, **env)
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()
        print(f"--- {operator.log.name} ---\n{operator.tail()}")


@pytest.fixture
def api(apiserver: Any) -> Iterator[client.ApiClient]:
    with apiserver.api_client() as api_client:
        yield api_client
