"""Inputs that once cost other requests' data or outgrew the sidecar's memory, each against the real process.

The sidecar runs beside untrusted code under a 64 MiB limit: with the default settings its RSS must stay at or
below 60 MiB whatever it is sent (sampled with psutil, and the kernel's own peak, VmHWM), and one bad request
must cost nothing but itself.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sidecar_support import (
    MIB,
    PROTOBUF,
    RssSampler,
    SidecarProcess,
    Upstream,
    post,
    resource_attributes,
    traces_request,
)
from support import wait_for

pytestmark = pytest.mark.e2e

RSS_LIMIT = 60 * MIB  # the goal, under the operator's default 64 MiB container limit
JSON = {"content-type": "application/json"}
FAST_RETRY = {"LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL": "0.05", "LEAP0_SIDECAR_RETRY_MAX_INTERVAL": "0.3"}
# Valid framing outside, corrupt inside: a ResourceSpans whose ScopeSpans holds a Span with a bad length.
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# A channel of its own (gRPC channels to one target share a connection unless told otherwise).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
POISON = bytes.fromhex("0a1c0a150a130a0c736572766963652e6e616d6512030a01781203120500")


def assert_rss_within_limit(rss: RssSampler) -> None:
    assert rss.peak <= RSS_LIMIT, f"sampled RSS peaked at {rss.peak / MIB:.1f} MiB"
    assert rss.high_water() <= RSS_LIMIT, f"VmHWM {rss.high_water() / MIB:.1f} MiB"


def test_a_request_corrupt_inside_costs_no_other_request(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    """The poison request is posted at the same moment as 20 good ones of 10 spans: all 200 good spans
    arrive exactly once; the upstream's 400 splits the batch until only the bad request is dropped."""
    sidecar = sidecar_factory(upstream.url, **FAST_RETRY)
    good = [traces_request(*(f"good-{i}-{j}" for j in range(10))) for i in range(20)]
    start = threading.Barrier(21)

    def send(body: bytes) -> int:
        start.wait()
        return post(sidecar, body)[0]

    with ThreadPoolExecutor(21) as pool:
        statuses = list(pool.map(send, [POISON, *good]))
    assert statuses[1:] == [200] * 20
    expected = sorted(f"good-{i}-{j}" for i in range(20) for j in range(10))
    wait_for(lambda: len(upstream.span_names()) >= 200, what="the 200 good spans")
    wait_for(lambda: statuses[0] != 200 or upstream.rejected >= 1, what="the upstream's 400 to the poison")
    assert sorted(upstream.span_names()) == expected  # each exactly once


def test_pipelined_requests_never_read_do_not_grow_memory(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    """60 MB of pipelined GET /healthz on the OTLP/HTTP port, and 20 MB on the health port, answers never
    read: the sidecar stops reading those connections (the client's sends block), memory stays flat, and
    other clients are served."""
    sidecar = sidecar_factory(upstream.url)
    assert sidecar.proc is not None
    request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
    with RssSampler(sidecar.proc.pid) as rss:
        for port, total in ((sidecar.http_port, 60_000_000), (sidecar.health_port, 20_000_000)):
            block = request * (65536 // len(request))
            sent = 0
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(3)  # a send blocked this long: the sidecar has stopped reading
                try:
                    while sent < total:
                        sent += sock.send(block)
                except TimeoutError:
                    pass
                assert sent < total / 2, f"the sidecar kept reading ({sent} bytes sent to port {port})"
                assert sidecar.ready()  # another client is still answered
                assert post(sidecar, traces_request("still-served"))[0] == 200
    assert_rss_within_limit(rss)
    wait_for(lambda: upstream.span_names() == ["still-served"] * 2, what="the spans sent meanwhile")


def _post_concurrently(sidecar: SidecarProcess, bodies: list[bytes], headers: dict[str, str]) -> list[int]:
    start = threading.Barrier(len(bodies))

    def send(body: bytes) -> int:
        start.wait()
        try:
            return post(sidecar, body, headers=headers)[0]
        except (ConnectionError, http.client.HTTPException):
            return 0  # (refused early, the connection closed while still sending: also not accepted)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def _chunked(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 65536):
        yield body[start : start + 65536]


def _post_chunked_concurrently(sidecar: SidecarProcess, bodies: list[bytes]) -> list[int]:
    """Each body with ``Transfer-Encoding: chunked`` (no length known in advance), all at once."""
    start = threading.Barrier(len(bodies))

    def send(body: bytes) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", sidecar.http_port, timeout=30)
        start.wait()
        try:
            conn.request("POST", "/v1/traces", body=_chunked(body), headers=PROTOBUF, encode_chunked=True)
            return conn.getresponse().status
        except (ConnectionError, http.client.HTTPException):
            return 0  # (refused early, the connection closed while still sending: also not accepted)
        finally:
            conn.close()

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def _export_grpc_concurrently(sidecar: SidecarProcess, bodies: list[bytes]) -> list[int]:
    """Each body on its own channel (connection), all at once: 200 for OK, 503 for a retryable refusal."""
    start = threading.Barrier(len(bodies))

    def send(body: bytes) -> int:
        with grpc.insecure_channel(sidecar.grpc_target, OWN_CONNECTION) as channel:
            export = channel.unary_unary(TRACE_EXPORT)
            start.wait()
            try:
                export(body, timeout=60)
            except grpc.RpcError as error:
                return 503 if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else -1
            return 200

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


@pytest.mark.parametrize("transport", ["http", "http-chunked", "grpc"])
@pytest.mark.parametrize("queue", ["full", "empty"])
def test_twelve_concurrent_4mb_requests_stay_within_memory(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess], queue: str, transport: str
) -> None:
    """Twelve 4 MB requests at once, each on its own connection, with the queue full (upstream down) or
    empty: what does not fit in the queue's bound is refused (503, RESOURCE_EXHAUSTED) before it is read,
    and RSS stays within the limit."""
    # (a short shutdown: with the upstream down, the queue cannot be flushed)
    sidecar = sidecar_factory(upstream.url, LEAP0_SIDECAR_SHUTDOWN_TIMEOUT="1", **FAST_RETRY)
    assert sidecar.proc is not None
    big = traces_request(*(f"big-{i}" for i in range(4)), padding=1_000_000)  # just under 4 MiB
    assert 3_900_000 < len(big) <= 4 * MIB
    with RssSampler(sidecar.proc.pid) as rss:
        if queue == "full":
            upstream.stop()
            while post(sidecar, big)[0] == 200:
                pass
        if transport == "http":
            statuses = _post_concurrently(sidecar, [big] * 12, PROTOBUF)
        elif transport == "http-chunked":
            statuses = _post_chunked_concurrently(sidecar, [big] * 12)
        else:
            statuses = _export_grpc_concurrently(sidecar, [big] * 12)
    assert set(statuses) <= {200, 503, 0}
    if queue == "full":
        assert 200 not in statuses
    else:
        assert 200 in statuses
    assert_rss_within_limit(rss)
    if queue == "empty":  # what was accepted arrives whole (sent from the pieces it was stamped into)
        accepted = 4 * statuses.count(200)
        wait_for(lambda: len(upstream.span_names()) == accepted, what=f"the {accepted} accepted spans")


def _held_call(sidecar: SidecarProcess, release: threading.Event, name: str) -> Callable[[], object]:
    """A gRPC call whose message is sent only once ``release`` is set (or never, if it is not): it holds
    the receiving turn meanwhile. Returns a function giving its outcome (``b""`` or the RpcError)."""
    outcome: list[object] = []

    def messages() -> Iterator[bytes]:
        if release.wait(120):
            yield traces_request(name)

    def call() -> None:
        with grpc.insecure_channel(sidecar.grpc_target, OWN_CONNECTION) as channel:
            try:
                outcome.append(channel.stream_unary(TRACE_EXPORT)(messages(), timeout=120))
            except grpc.RpcError as error:
                outcome.append(error)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()

    def result() -> object:
        thread.join(120)
        return outcome[0]

    return result


def test_grpc_calls_wait_their_turn_and_too_many_waiting_are_refused(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    """gRPC messages are received one at a time. While one call holds the turn (its message not sent
    yet), 15 more wait for theirs, and further calls are refused at once with RESOURCE_EXHAUSTED and
    RetryInfo (the OTel SDKs retry it); once the message arrives, every waiting call is served."""
    sidecar = sidecar_factory(upstream.url, LEAP0_SIDECAR_RECEIVE_TIMEOUT="300")
    release = threading.Event()
    held = _held_call(sidecar, release, "held")
    # The call holding the turn has reserved three times the largest message in the queue's bound.
    wait_for(lambda: sidecar.health_state()["queue_bytes"] == 3 * 4 * MIB, what="the held call's turn")

    outcomes: dict[int, object] = {}

    def send(i: int) -> None:
        with grpc.insecure_channel(sidecar.grpc_target, OWN_CONNECTION) as channel:
            try:
                outcomes[i] = channel.unary_unary(TRACE_EXPORT)(traces_request(f"waiting-{i}"), timeout=120)
            except grpc.RpcError as error:
                outcomes[i] = error

    senders = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for thread in senders:
        thread.start()
    wait_for(lambda: len(outcomes) == 5, what="five calls refused at once")
    release.set()
    for thread in senders:
        thread.join(120)
    refused = [o for o in outcomes.values() if isinstance(o, grpc.RpcError)]
    assert len(refused) == 5
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
        assert status.details[0].Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    assert held() == b""
    served = sorted(f"waiting-{i}" for i, o in outcomes.items() if o == b"")
    assert len(served) == 15
    wait_for(lambda: len(upstream.span_names()) == 16, what="the 16 spans")
    assert sorted(upstream.span_names()) == sorted(["held", *served])


def test_a_grpc_call_that_never_sends_its_message_loses_its_turn(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    """A call that sends no message within LEAP0_SIDECAR_RECEIVE_TIMEOUT gets DEADLINE_EXCEEDED, and the
    call waiting behind it is served."""
    sidecar = sidecar_factory(upstream.url, LEAP0_SIDECAR_RECEIVE_TIMEOUT="1")
    stuck = _held_call(sidecar, threading.Event(), "never")
    wait_for(lambda: sidecar.health_state()["queue_bytes"] > 0, what="the stuck call's turn")
    with grpc.insecure_channel(sidecar.grpc_target, OWN_CONNECTION) as channel:
        assert channel.unary_unary(TRACE_EXPORT)(traces_request("behind"), timeout=120) == b""
    error = stuck()
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "not received within 1 s" in error.details()
    wait_for(lambda: upstream.span_names() == ["behind"], what="the span sent behind it")


def test_a_large_json_request_is_converted_within_memory(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    """One 3.9 MB OTLP/JSON request: converted (in a worker thread) and forwarded intact, RSS within the
    limit, and the sidecar's health answered meanwhile."""
    sidecar = sidecar_factory(upstream.url)
    assert sidecar.proc is not None
    spans = [
        {
            "traceId": f"{i:032x}",
            "spanId": f"{i + 1:016x}",
            "name": f"json-{i}",
            "kind": 2,
            "attributes": [{"key": f"a{j}", "value": {"stringValue": "v" * 40}} for j in range(12)],
        }
        for i in range(3390)
    ]
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    assert 3_800_000 < len(body) < 4 * MIB
    with RssSampler(sidecar.proc.pid) as rss:
        result: list[int] = []
        sender = threading.Thread(target=lambda: result.append(post(sidecar, body, headers=JSON)[0]))
        sender.start()
        assert sidecar.ready()
        sender.join()
    assert result == [200]
    wait_for(lambda: len(upstream.span_names()) == 3390, what="the 3390 spans")
    assert upstream.span_names() == [f"json-{i}" for i in range(3390)]
    assert_rss_within_limit(rss)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000, "must be a JSON object"),
        (b'{"a":' * 100_000, "unterminated object"),
        (
            b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"droppedAttributesCount":'
            + b"9" * 5000
            + b"}]}]}]}",
            "integer string conversion",
        ),
        (b'{"resourceSpans":[{"sc\\ud800opeSpans":[]}]}', "lone surrogate"),
        (b'{"resourceSpans":[{"resource":{"attributes":[{"key":"k\\udc00"}]}}]}', "lone surrogate"),
    ],
    ids=["brackets", "open-objects", "5000-digits", "surrogate-key", "surrogate-value"],
)
def test_malformed_json_is_400_with_the_reason(sidecar: SidecarProcess, body: bytes, reason: str) -> None:
    status, headers, answer = post(sidecar, body, headers=JSON)
    assert (status, headers["content-type"]) == (400, "application/json")
    assert reason in json.loads(answer)["message"]
    assert sidecar.ready()


def test_json_or_protobuf_by_the_media_type_alone(upstream: Upstream, sidecar: SidecarProcess) -> None:
    headers = {"content-type": "application/x-protobuf; profile=json"}
    status, answer_headers, _ = post(sidecar, traces_request("profile-json"), headers=headers)
    assert (status, answer_headers["content-type"]) == (200, "application/x-protobuf")
    wait_for(lambda: upstream.span_names() == ["profile-json"], what="the span")


def test_field_numbers_above_the_protobuf_maximum_are_400(sidecar: SidecarProcess) -> None:
    tag = (2**29 << 3) | 0  # field 2^29, a varint
    varint = bytearray()
    while tag > 0x7F:
        varint.append((tag & 0x7F) | 0x80)
        tag >>= 7
    varint.append(tag)
    status, _, answer = post(sidecar, bytes(varint) + b"\x01")
    assert status == 400
    assert "invalid field number 536870912" in status_pb2.Status.FromString(answer).message


def test_shutdown_counts_an_unanswered_attempt_apart_from_what_was_lost(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    """At the deadline, a request the upstream is still answering is not counted as lost (it arrives)."""
    upstream.stall_s = 3.0
    sidecar = sidecar_factory(upstream.url, LEAP0_SIDECAR_SHUTDOWN_TIMEOUT="0.5", **FAST_RETRY)
    assert post(sidecar, traces_request("slowly-received"))[0] == 200
    wait_for(lambda: upstream.attempts, what="the attempt")
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(15) == 0
    assert "not delivered" not in sidecar.logs()
    # (the traces request, and the last metrics sample the upstream is also slow to answer)
    assert "export request(s) were being sent and got no answer" in sidecar.logs()
    wait_for(lambda: "slowly-received" in upstream.span_names(), what="the span the upstream received")


def test_shutdown_loss_leaves_as_a_metric_before_exit(
    upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    upstream.refuse["/v1/traces"] = 503  # traces are never delivered, metrics are
    sidecar = sidecar_factory(upstream.url, LEAP0_SIDECAR_SHUTDOWN_TIMEOUT="0.5", **FAST_RETRY)
    assert post(sidecar, traces_request("lost-at-shutdown"))[0] == 200
    wait_for(lambda: upstream.attempts, what="the first attempt")
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(15) == 0
    assert "shutdown deadline passed: 1 export request(s) not delivered" in sidecar.logs()

    def shutdown_drops() -> int:
        latest = 0
        for rm in upstream.resources("/v1/metrics"):
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "leap0.sidecar.requests.dropped":
                        for point in metric.sum.data_points:
                            if resource_attributes(point) == {"signal": "traces", "reason": "shutdown"}:
                                latest = int(point.as_int)
        return latest

    assert shutdown_drops() == 1


def test_an_oversized_json_value_is_413_and_protobuf_of_it_is_accepted(
    upstream: Upstream, sidecar: SidecarProcess
) -> None:
    """One span of more JSON than the sidecar decodes at once (256 KiB) is refused with the reason."""
    span = {"name": "huge", "attributes": [{"key": "k", "value": {"stringValue": "x" * 300_000}}]}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
    status, _, answer = post(sidecar, body, headers=JSON)
    assert status == 413
    assert "OTLP/protobuf" in json.loads(answer)["message"]
    request = ExportTraceServiceRequest.FromString(traces_request("huge", padding=300_000))
    assert post(sidecar, request.SerializeToString())[0] == 200
    wait_for(lambda: upstream.span_names() == ["huge"], what="the protobuf span")
