"""Shared fixtures. Plain helpers live in ``support.py``."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from support import subprocess_env

from leap0_dev.apiserver import ServerThread


@pytest.fixture
def child_env() -> dict[str, str]:
    return subprocess_env()


# --- The embedded API server (leap0_dev.apiserver) ---------------------------------------------------
@pytest.fixture(scope="session")
def apiserver() -> Iterator[ServerThread]:
    """One embedded API server for the session, with the CRDs of crds/ and a `default` namespace.

    ``.url``, ``.kubeconfig`` (Path) and ``.api_client()`` (an explicitly configured kubernetes ApiClient).
    Tests share it: use the ``namespace`` fixture to keep apart; ``fresh_apiserver`` is a pristine one.
    """
    with ServerThread() as server:
        yield server


@pytest.fixture
def fresh_apiserver() -> Iterator[ServerThread]:
    """A server of this test's own (nothing shared with other tests); slower than ``apiserver``."""
    with ServerThread() as server:
        yield server


@pytest.fixture
def namespace(apiserver: ServerThread) -> Iterator[str]:
    """A fresh, uniquely named namespace on the session server, deleted after the test."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    with apiserver.api_client() as api_client:
        api = client.CoreV1Api(api_client)
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        yield name
        with contextlib.suppress(client.ApiException):
            api.delete_namespace(name)
