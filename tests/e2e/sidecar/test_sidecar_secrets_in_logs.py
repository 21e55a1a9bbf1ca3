"""The real sidecar's log, from start to shutdown, with an upstream that is down, a key in the endpoint's
user part and query string and in the headers: the key appears nowhere (the URL is shown without them)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sidecar_support import SidecarProcess, free_port, post, traces_request
from support import wait_for

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-k3y"


def test_the_log_never_shows_the_users_key(sidecar_factory: Callable[..., SidecarProcess]) -> None:
    port = free_port()  # nothing listens there: every attempt fails and is logged
    sidecar = sidecar_factory(
        f"http://user:{SECRET}@127.0.0.1:{port}/otel?api_key={SECRET}",
        OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer%20{SECRET},x-api-key={SECRET}",
        LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL="0.05",
        LEAP0_SIDECAR_SHUTDOWN_TIMEOUT="1",
    )
    status, _, _ = post(sidecar, traces_request("span"))
    assert status == 200
    wait_for(
        lambda: "failed" in sidecar.logs() and "retrying" in sidecar.logs(), what="a failed attempt logged"
    )
    sidecar.stop()
    logs = sidecar.logs()
    assert f"http://127.0.0.1:{port}/otel/v1/traces?<redacted>" in logs  # where it goes, without the key
    assert "not delivered" in logs
    assert SECRET not in logs
    assert "user:" not in logs
