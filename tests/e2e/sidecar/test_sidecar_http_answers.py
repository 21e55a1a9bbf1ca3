"""OTLP/HTTP and OTLP/gRPC answers to good and bad input, as the OTLP specification says (real sidecar)."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
from collections.abc import Callable

import grpc
import pytest
from google.rpc import status_pb2
from sidecar_support import (
    IDENTITY,
    PROTOBUF,
    SidecarProcess,
    Upstream,
    post,
    resource_attributes,
    traces_request,
    wait_for,
)

pytestmark = pytest.mark.e2e


JSON = {"content-type": "application/json"}


def test_protobuf_and_gzip_accepted_with_empty_response(upstream: Upstream, sidecar: SidecarProcess) -> None:
    status, headers, body = post(sidecar, traces_request("plain"), "/v1/traces", PROTOBUF)
    assert (status, headers["content-type"], body) == (200, "application/x-protobuf", b"")
    status, _, _ = post(
        sidecar,
        gzip.compress(traces_request("zipped")),
        "/v1/traces",
        {**PROTOBUF, "content-encoding": "gzip"},
    )
    assert status == 200
    wait_for(lambda: sorted(upstream.span_names()) == ["plain", "zipped"], what="both requests upstream")


def test_json_accepted_with_hex_ids_and_json_response(upstream: Upstream, sidecar: SidecarProcess) -> None:
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "leap0.sandbox.id", "value": {"stringValue": "spoof"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "json-client"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "from-json",
                                "kind": 2,
                                "startTimeUnixNano": "1544712660000000000",
                                "unknownFieldIsIgnored": True,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    status, headers, body = post(sidecar, json.dumps(document).encode(), "/v1/traces", JSON)
    assert (status, headers["content-type"]) == (200, "application/json")
    assert json.loads(body) == {}
    wait_for(lambda: upstream.span_names() == ["from-json"], what="the JSON span upstream")
    resource_spans = upstream.resources("/v1/traces")[0]
    span = resource_spans.scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    assert span.kind == 2
    assert span.start_time_unix_nano == 1544712660000000000
    assert resource_attributes(resource_spans.resource)["leap0.sandbox.id"] == IDENTITY["leap0.sandbox.id"]


def test_malformed_protobuf_is_400_with_the_reason(sidecar: SidecarProcess) -> None:
    truncated = traces_request("x")[:-3]
    status, headers, body = post(sidecar, truncated, "/v1/traces", PROTOBUF)
    assert status == 400
    assert headers["content-type"] == "application/x-protobuf"
    error = status_pb2.Status.FromString(body)
    assert error.code == 3  # INVALID_ARGUMENT
    assert "truncated" in error.message


def test_malformed_json_is_400_with_the_reason(sidecar: SidecarProcess) -> None:
    status, headers, body = post(sidecar, b'{"resourceSpans": [', "/v1/traces", JSON)
    assert (status, headers["content-type"]) == (400, "application/json")
    assert "invalid JSON" in json.loads(body)["message"]
    bad_id = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}).encode()
    status, _, body = post(sidecar, bad_id, "/v1/traces", JSON)
    assert status == 400
    assert "not a hex string" in json.loads(body)["message"]
    wrong_type = json.dumps({"resourceSpans": {"oops": 1}}).encode()
    status, _, body = post(sidecar, wrong_type, "/v1/traces", JSON)
    assert status == 400
    assert "resourceSpans" in json.loads(body)["message"]


def test_wrong_content_type_is_415_and_connection_stays_usable(sidecar: SidecarProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.http_port, timeout=10)
    conn.request("POST", "/v1/traces", body=b"hello", headers={"content-type": "text/plain"})
    response = conn.getresponse()
    assert response.status == 415
    assert b"unsupported content type" in response.read()
    conn.request("POST", "/v1/traces", body=traces_request("after-415"), headers=PROTOBUF)
    assert conn.getresponse().status == 200
    conn.close()
    status, _, _ = post(sidecar, b"x", "/v1/traces", {**PROTOBUF, "content-encoding": "br"})
    assert status == 415


def test_unknown_path_404_and_wrong_method_405(sidecar: SidecarProcess) -> None:
    assert post(sidecar, b"", "/v1/other", PROTOBUF)[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.http_port, timeout=10)
    conn.request("GET", "/v1/traces")
    response = conn.getresponse()
    assert (response.status, response.getheader("allow")) == (405, "POST")
    conn.close()


@pytest.fixture
def small_sidecar(upstream: Upstream, sidecar_factory: Callable[..., SidecarProcess]) -> SidecarProcess:
    return sidecar_factory(
        upstream.url,
        LEAP0_SIDECAR_MAX_REQUEST_BYTES="64Ki",
        LEAP0_SIDECAR_RECEIVE_TIMEOUT="0.5",
    )


def test_oversized_body_is_413(small_sidecar: SidecarProcess) -> None:
    status, _, body = post(small_sidecar, b"\x00" * (200 * 1024), "/v1/traces", PROTOBUF)
    assert status == 413
    assert b"exceeds the limit of 65536 bytes" in body


def test_oversized_chunked_body_is_413(small_sidecar: SidecarProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", small_sidecar.http_port, timeout=10)
    conn.request(
        "POST", "/v1/traces", body=iter([b"\x0a" * 50_000] * 3), headers=PROTOBUF, encode_chunked=True
    )
    assert conn.getresponse().status == 413
    conn.close()


def test_gzip_bomb_is_413(upstream: Upstream, small_sidecar: SidecarProcess) -> None:
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    status, _, body = post(small_sidecar, bomb, "/v1/traces", {**PROTOBUF, "content-encoding": "gzip"})
    assert status == 413
    assert b"decompressed body exceeds" in body
    assert upstream.received == []


def test_invalid_gzip_is_400(small_sidecar: SidecarProcess) -> None:
    status, _, body = post(small_sidecar, b"not gzip", "/v1/traces", {**PROTOBUF, "content-encoding": "gzip"})
    assert status == 400
    assert "invalid gzip" in status_pb2.Status.FromString(body).message


def test_slow_client_times_out(small_sidecar: SidecarProcess) -> None:
    # (a socket timeout far beyond the sidecar's 0.5 s: without the receive timeout, recv fails)
    with socket.create_connection(("127.0.0.1", small_sidecar.http_port), timeout=60) as sock:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n")
        sock.sendall(b"content-length: 100\r\n\r\nonly-part-of-the-body")
        answer = b""
        while chunk := sock.recv(65536):  # until the sidecar closes the connection
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408")
        assert answer.endswith(b"request not received completely within 0.5 s\n")


def test_grpc_invalid_protobuf_is_invalid_argument(sidecar: SidecarProcess) -> None:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            export(b"\x0a\x7f\x01", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "truncated" in info.value.details()
        assert export(traces_request("ok-grpc"), timeout=10) == b""


def test_health_endpoints(sidecar: SidecarProcess) -> None:
    for port in (sidecar.health_port, sidecar.http_port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for path in ("/healthz", "/readyz"):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["status"] == "ok"
        conn.close()
    # the health listener serves nothing else
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.health_port, timeout=10)
    conn.request("POST", "/v1/traces", body=traces_request("x"), headers=PROTOBUF)
    assert conn.getresponse().status == 404
    conn.close()


def test_expect_100_continue_is_answered(upstream: Upstream, sidecar: SidecarProcess) -> None:
    body = traces_request("after-continue")
    with socket.create_connection(("127.0.0.1", sidecar.http_port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n"
            b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    wait_for(lambda: upstream.span_names() == ["after-continue"], what="the span")


def test_keep_alive_and_pipelined_requests_on_one_connection(
    upstream: Upstream, sidecar: SidecarProcess
) -> None:
    def request(name: str) -> bytes:
        body = traces_request(name)
        head = b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n"
        return head + b"content-length: %d\r\n\r\n" % len(body) + body

    with socket.create_connection(("127.0.0.1", sidecar.http_port), timeout=5) as sock:
        sock.sendall(request("one"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        sock.sendall(request("two") + request("three"))  # pipelined: two requests in one write
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK") < 2:
            answers += sock.recv(65536)
        assert b"connection: close" not in answers
    wait_for(lambda: sorted(upstream.span_names()) == ["one", "three", "two"], what="the three spans")


def test_grpc_message_over_the_limit_is_refused(small_sidecar: SidecarProcess) -> None:
    with grpc.insecure_channel(small_sidecar.grpc_target) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            export(traces_request(*[f"span-{i}-" + "x" * 100 for i in range(1000)]), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("taken", ["http", "grpc"])
def test_a_taken_port_stops_the_sidecar_with_exit_2_saying_what_to_do(
    sidecar_factory: Callable[..., SidecarProcess], taken: str
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        variable = "LEAP0_OTLP_HTTP_ENDPOINT" if taken == "http" else "LEAP0_OTLP_GRPC_ENDPOINT"
        process = sidecar_factory(None, wait=False, **{variable: f"127.0.0.1:{port}"})
        assert process.wait(20) == 2
    what = "OTLP/HTTP" if taken == "http" else "OTLP/gRPC"
    assert process.logs() == (
        f"leap0-sidecar: cannot listen on 127.0.0.1:{port} for {what}: the port is in use; stop what uses "
        f"it, or choose another with {variable}=host:port\n"
    )
