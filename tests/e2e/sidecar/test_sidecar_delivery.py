"""Delivery that loses nothing: outages, throttling, backpressure, shutdown, no endpoint, headers and gzip."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from sidecar_support import (
    IDENTITY,
    SidecarProcess,
    Upstream,
    post,
    resource_attributes,
    traces_request,
    wait_for,
)

pytestmark = pytest.mark.e2e

FAST_RETRY = {"LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL": "0.05", "LEAP0_SIDECAR_RETRY_MAX_INTERVAL": "0.3"}


def test_upstream_outage_then_back_everything_arrives_once(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    # The scenario as stated: the upstream is down for 30 s while the app keeps sending.
    # Backoff is capped at 5 s (instead of 30) only so the test does not idle after the upstream is back.
    sidecar = sidecar_factory(
        upstream.url, LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL="0.5", LEAP0_SIDECAR_RETRY_MAX_INTERVAL="5"
    )
    assert post(sidecar, traces_request("before"))[0] == 200
    wait_for(lambda: upstream.span_names() == ["before"], what="the first span")
    upstream.stop()
    down_since = time.monotonic()
    sent = [f"during-{i}" for i in range(30)]
    for name in sent:
        assert post(sidecar, traces_request(name))[0] == 200
        time.sleep(1.0)
    assert time.monotonic() - down_since >= 30
    upstream.start()
    wait_for(lambda: len(upstream.span_names()) >= 31, timeout=20, what="the spans sent during the outage")
    time.sleep(0.5)  # anything duplicated would have arrived by now
    names = upstream.span_names()
    assert sorted(names) == sorted(["before", *sent])
    assert len(names) == len(set(names))
    assert "failed" in sidecar.logs()
    assert "delivered to" in sidecar.logs()


def test_upstream_429_retry_after_is_honoured(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    sidecar = sidecar_factory(upstream.url, **FAST_RETRY)
    upstream.script.append((429, {"retry-after": "2"}))
    assert post(sidecar, traces_request("throttled"))[0] == 200
    wait_for(lambda: upstream.span_names() == ["throttled"], timeout=30, what="the throttled span")
    first_attempt, second_attempt = upstream.attempts[0], upstream.attempts[1]
    # With backoff alone the retry would come after 0.05 s; the upstream asked for 2 s.
    assert second_attempt - first_attempt >= 1.9


def test_permanent_error_is_dropped_and_counted(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    sidecar = sidecar_factory(upstream.url, LEAP0_METRICS_INTERVAL="0.3", **FAST_RETRY)
    upstream.script.append((400, {}))
    assert post(sidecar, traces_request("rejected"))[0] == 200
    wait_for(lambda: upstream.attempts, what="the first attempt")  # (else both go in one batch)
    assert post(sidecar, traces_request("accepted"))[0] == 200
    wait_for(lambda: upstream.span_names() == ["accepted"], what="the second span")

    def dropped() -> int:
        for rm in upstream.resources("/v1/metrics"):
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "leap0.sidecar.requests.dropped":
                        for point in metric.sum.data_points:
                            attrs = resource_attributes(point)
                            if attrs == {"signal": "traces", "reason": "permanent_error"}:
                                return int(point.as_int)
        return 0

    wait_for(lambda: dropped() == 1, what="leap0.sidecar.requests.dropped{reason=permanent_error} = 1")
    assert "answered 400, a permanent error" in sidecar.logs()


def test_full_queue_pushes_back_on_http_and_grpc(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    upstream.stop()
    sidecar = sidecar_factory(
        upstream.url, LEAP0_SIDECAR_QUEUE_BYTES="64Ki", LEAP0_SIDECAR_MAX_REQUEST_BYTES="32Ki", **FAST_RETRY
    )
    statuses = [post(sidecar, traces_request(f"fill-{i}", padding=10_000))[0] for i in range(10)]
    assert statuses[:5] == [200] * 5
    assert 503 in statuses
    status, headers, body = post(sidecar, traces_request("refused", padding=10_000))
    assert status == 503
    assert int(headers["retry-after"]) >= 1
    assert "queue is full" in status_pb2.Status.FromString(body).message

    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            export(traces_request("refused-grpc", padding=10_000), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(info.value.trailing_metadata())
    details = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert details.details[0].Unpack(retry)
    assert retry.retry_delay.seconds >= 1

    # Back up: the queue drains, and the refused client's retry is accepted.
    upstream.start()
    wait_for(lambda: post(sidecar, traces_request("after"))[0] == 200, what="the queue to drain")
    wait_for(lambda: "after" in upstream.span_names(), what="the late span")
    accepted = {f"fill-{i}" for i, status in enumerate(statuses) if status == 200}
    assert accepted <= set(upstream.span_names())


def test_sigterm_with_a_full_queue_flushes_it_and_exits_0(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    upstream.stop()
    sidecar = sidecar_factory(upstream.url, LEAP0_SIDECAR_QUEUE_BYTES="256Ki", **FAST_RETRY)
    accepted = []
    for i in range(40):
        if post(sidecar, traces_request(f"queued-{i}", padding=10_000))[0] == 200:
            accepted.append(f"queued-{i}")
    assert len(accepted) >= 20
    sidecar.signal(signal.SIGTERM)

    def refuses_connections() -> bool:
        try:
            socket.create_connection(("127.0.0.1", sidecar.http_port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False

    # Stopped accepting, but still flushing: the upstream comes back within the deadline.
    wait_for(refuses_connections, 15, "the receivers to stop listening")
    with pytest.raises(ConnectionRefusedError):
        post(sidecar, traces_request("too-late"))
    upstream.start()
    assert sidecar.wait(30) == 0
    assert sorted(upstream.span_names()) == sorted(accepted)
    assert "flushed everything queued" in sidecar.logs()


def test_sigterm_deadline_drops_what_cannot_be_delivered(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    upstream.stop()
    sidecar = sidecar_factory(upstream.url, LEAP0_SIDECAR_SHUTDOWN_TIMEOUT="0.5", **FAST_RETRY)
    assert post(sidecar, traces_request("lost"))[0] == 200
    sidecar.signal(signal.SIGINT)
    # (without the deadline it would retry for as long as the upstream is down)
    assert sidecar.wait(60) == 0
    assert "shutdown deadline passed" in sidecar.logs()


def test_no_endpoint_accepts_and_says_once_that_export_is_off(
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    sidecar = sidecar_factory(None)
    exporter = OTLPSpanExporter(endpoint=f"{sidecar.http_url}/v1/traces")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("discarded"):
        pass
    for _ in range(3):
        assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    exporter.shutdown()
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(10) == 0
    assert sidecar.logs().count("export is OFF") == 1


def test_headers_and_gzip_reach_the_upstream(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    sidecar = sidecar_factory(
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=upstream.url + "/",
        OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20s3cret,x-tenant=acme",
        OTEL_EXPORTER_OTLP_TRACES_HEADERS="x-only-traces=yes",
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
        LEAP0_METRICS_INTERVAL="0.2",
    )
    assert post(sidecar, traces_request("with-headers"))[0] == 200
    wait_for(lambda: upstream.span_names() == ["with-headers"], what="the span")
    wait_for(lambda: upstream.messages("/v1/metrics"), what="the sidecar's metrics")
    by_path = {r.path: r.headers for r in upstream.received}
    assert by_path["/v1/traces"]["x-only-traces"] == "yes"
    assert "authorization" not in by_path["/v1/traces"]  # the per-signal variable replaces the general one
    assert by_path["/v1/metrics"]["authorization"] == "Bearer s3cret"
    assert by_path["/v1/metrics"]["x-tenant"] == "acme"
    assert all(h["content-encoding"] == "gzip" for h in by_path.values())


def test_own_metrics_carry_identity_and_counts(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    sidecar = sidecar_factory(upstream.url, LEAP0_METRICS_INTERVAL="0.2")
    assert post(sidecar, traces_request("counted"))[0] == 200

    def forwarded() -> dict[str, int]:
        counts: dict[str, int] = {}
        for rm in upstream.resources("/v1/metrics"):
            assert resource_attributes(rm.resource).items() >= IDENTITY.items()
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "leap0.sidecar.requests.forwarded":
                        for point in metric.sum.data_points:
                            counts[resource_attributes(point)["signal"]] = int(point.as_int)
        return counts

    wait_for(
        lambda: forwarded().get("traces") == 1, what="leap0.sidecar.requests.forwarded{signal=traces} = 1"
    )
    names = {
        m.name for rm in upstream.resources("/v1/metrics") for sm in rm.scope_metrics for m in sm.metrics
    }
    assert {
        "leap0.sidecar.requests.received",
        "leap0.sidecar.queue.bytes",
        "leap0.sidecar.queue.size",
    } <= names
    # The real metrics sampler's gauges travel the same way, with the same identity.
    assert {"leap0.sandbox.cpu.limit", "leap0.sandbox.memory.usage"} <= names


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEAP0_SANDBOX_ID": ""}, "LEAP0_SANDBOX_ID not set"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"}, "must start with http:// or https://"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "supported values are gzip and none"),
        ({"LEAP0_METRICS_INTERVAL": "soon"}, "LEAP0_METRICS_INTERVAL='soon': not a number"),
        ({"LEAP0_OTLP_HTTP_ENDPOINT": "localhost"}, "expected host:port"),
        # The sandbox metrics sampler's settings take the same path as every other setting.
        ({"LEAP0_SANDBOX_MEMORY_LIMIT_BYTES": "1Gi"}, "LEAP0_SANDBOX_MEMORY_LIMIT_BYTES='1Gi'"),
    ],
)
def test_bad_configuration_exits_non_zero_with_a_clear_message(
    sidecar_factory: Callable[..., SidecarProcess], env: dict[str, str], message: str
) -> None:
    sidecar = sidecar_factory(None, wait=False, **env)
    assert sidecar.wait(15) == 2
    assert "configuration error" in sidecar.logs()
    assert message in sidecar.logs()


def test_https_upstream_with_a_custom_ca(
    tmp_path: Path, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
            ),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    upstream = Upstream(tls=(cert, key))
    upstream.start()
    try:
        sidecar = sidecar_factory(upstream.url, OTEL_EXPORTER_OTLP_CERTIFICATE=str(cert))
        assert post(sidecar, traces_request("over-tls"))[0] == 200
        wait_for(lambda: upstream.span_names() == ["over-tls"], what="the span over https")
    finally:
        upstream.stop()


def test_batch_refused_as_too_large_is_sent_request_by_request(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    sidecar = sidecar_factory(upstream.url, LEAP0_SIDECAR_BATCH_LINGER="0.5", **FAST_RETRY)
    upstream.script.append((413, {}))  # the first (batched) request is too large for this upstream
    assert post(sidecar, traces_request("first"))[0] == 200
    assert post(sidecar, traces_request("second"))[0] == 200
    wait_for(lambda: sorted(upstream.span_names()) == ["first", "second"], what="both spans")
    assert len(upstream.received) == 2  # one request each
    assert "refused a 2-request batch" in sidecar.logs()


def test_sigterm_cuts_a_long_backoff_short_to_flush(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    upstream.stop()
    sidecar = sidecar_factory(
        upstream.url, LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL="600", LEAP0_SIDECAR_RETRY_MAX_INTERVAL="600"
    )
    assert post(sidecar, traces_request("waiting-out-a-backoff"))[0] == 200
    # The next attempt is 300-900 s away, far beyond the 20 s shutdown deadline: only cutting the backoff
    # short delivers it.
    wait_for(lambda: "retrying in" in sidecar.logs(), what="the first failed attempt")
    upstream.start()
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(60) == 0
    assert "flushed everything queued" in sidecar.logs()
    assert upstream.span_names() == ["waiting-out-a-backoff"]


def test_the_platform_token_is_the_bearer_of_every_request_and_follows_its_renewal(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess], tmp_path: Path
) -> None:
    """LEAP0_TELEMETRY_TOKEN_FILE (a projected ServiceAccount token): sent as Authorization, in place of any
    header of that name, read again when the kubelet swaps the file (an atomic rename of ..data)."""
    volume = tmp_path / "token-volume"
    volume.mkdir()
    (volume / "..data-1").mkdir()
    (volume / "..data-1" / "token").write_text("header.first.sig\n")
    (volume / "..data").symlink_to("..data-1")
    (volume / "token").symlink_to("..data/token")
    sidecar = sidecar_factory(
        upstream.url,
        OTEL_EXPORTER_OTLP_HEADERS="authorization=Basic%20shared,x-tenant=acme",
        LEAP0_TELEMETRY_TOKEN_FILE=str(volume / "token"),
    )
    assert post(sidecar, traces_request("first"))[0] == 200
    wait_for(lambda: upstream.span_names() == ["first"], what="the first span")
    (first,) = [r.headers for r in upstream.received if r.path == "/v1/traces"]
    assert first["authorization"] == "Bearer header.first.sig"
    assert first["x-tenant"] == "acme"
    # the kubelet renews the token: a new ..data directory, swapped in by renaming a link over the old one
    (volume / "..data-2").mkdir()
    (volume / "..data-2" / "token").write_text("header.second.sig")
    (volume / "..data-tmp").symlink_to("..data-2")
    (volume / "..data-tmp").rename(volume / "..data")
    assert post(sidecar, traces_request("second"))[0] == 200
    wait_for(lambda: upstream.span_names() == ["first", "second"], what="the second span")
    second = [r.headers for r in upstream.received if r.path == "/v1/traces"][-1]
    assert second["authorization"] == "Bearer header.second.sig"
    # a token that cannot be a header value is not sent (and never logged)
    (volume / "..data-2" / "token").write_text("bad token\r\nx-injected: 1")
    assert post(sidecar, traces_request("third"))[0] == 200
    wait_for(lambda: upstream.span_names() == ["first", "second", "third"], what="the third span")
    third = [r.headers for r in upstream.received if r.path == "/v1/traces"][-1]
    assert "authorization" not in third
    assert "x-injected" not in third
    assert "bad token" not in sidecar.logs()
