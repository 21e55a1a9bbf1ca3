"""Fixtures for the sidecar's end-to-end tests: an upstream receiver and a launcher for the real sidecar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sidecar_support import IDENTITY_ENV, SidecarProcess, Upstream


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sidecar_factory(tmp_path: Path) -> Iterator[Callable[..., SidecarProcess]]:
    """Start sidecars: ``sidecar_factory(upstream_url_or_None, **env)``; all stopped after the test."""
    started: list[SidecarProcess] = []

    def start(endpoint: str | None, wait: bool = True, **env: str) -> SidecarProcess:
        full_env = {**IDENTITY_ENV, "LEAP0_METRICS_INTERVAL": "3600", **env}
        if endpoint is not None:
            full_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        process = SidecarProcess(full_env, tmp_path / f"sidecar-{len(started)}.log")
        started.append(process)
        return process.start(wait=wait)

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def sidecar(upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]) -> SidecarProcess:
    """A sidecar forwarding to ``upstream``, with short retry intervals."""
    return sidecar_factory(
        upstream.url,
        LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL="0.05",
        LEAP0_SIDECAR_RETRY_MAX_INTERVAL="0.2",
    )
