"""Fixtures of the tests on the real control plane with the local runner as its kubelet (``realk8s``).

One control plane (``control_plane``) and one kubelet (``kubelet_node``) serve the whole session; each test
has its namespace (``k8s_namespace``) and its operator process serving it, as admin, once the CRDs are
applied (``control_plane_crds``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from support import operator_process

from leap0_dev.controlplane import ControlPlane


@pytest.fixture
def real_api(control_plane: ControlPlane) -> Iterator[Any]:
    """An admin ApiClient of the real control plane."""
    with control_plane.api_client() as api_client:
        yield api_client


@pytest.fixture
def start_operator(
    control_plane: ControlPlane, control_plane_crds: Any, k8s_namespace: str, tmp_path: Path
) -> Callable[..., AbstractContextManager[Any]]:
    """``with start_operator(): ...``: the real operator serving the test's namespace (a process; its log is
    printed when the test fails). Call again to restart it."""
    runs = iter(range(1, 100))

    def start(*args: str) -> AbstractContextManager[Any]:
        log = tmp_path / f"operator-{next(runs)}.log"
        return operator_process(control_plane.kubeconfig, k8s_namespace, log, *args)

    return start
