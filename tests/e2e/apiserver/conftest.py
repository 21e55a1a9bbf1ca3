"""Fixtures for the embedded API server's end-to-end tests: typed clients of the session server."""

from __future__ import annotations

import pytest
from kubernetes import client

from leap0_dev.apiserver import ServerThread


@pytest.fixture
def core(apiserver: ServerThread) -> client.CoreV1Api:
    return client.CoreV1Api(apiserver.api_client())


@pytest.fixture
def custom(apiserver: ServerThread) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(apiserver.api_client())
