"""An upstream answering 200 with an OTLP partial_success: the data counts as delivered (not retried: the OTLP
specification says a partial success must not be retried) and the rejection is logged with its reason."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from sidecar_support import SidecarProcess, post
from support import wait_for

pytestmark = pytest.mark.e2e


class PartialUpstream:
    """Answers every /v1/traces request with 200 and a partial_success rejecting 3 spans."""

    def __init__(self) -> None:
        self.attempts = 0
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                body = b""
                if self.path == "/v1/traces":
                    upstream.attempts += 1
                    response = trace_service_pb2.ExportTraceServiceResponse()
                    response.partial_success.rejected_spans = 3
                    response.partial_success.error_message = "spans without a name"
                    body = response.SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def partial_upstream() -> Iterator[PartialUpstream]:
    upstream = PartialUpstream()
    yield upstream
    upstream.server.shutdown()
    upstream.server.server_close()


def test_partial_success_is_logged_and_not_retried(
    partial_upstream: PartialUpstream, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    sidecar = sidecar_factory(partial_upstream.url)
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[Span(name="s")])])]
    )
    assert post(sidecar, request.SerializeToString())[0] == 200
    wait_for(
        lambda: "the upstream rejected 3 item(s): spans without a name" in sidecar.logs(), what="the log"
    )
    assert partial_upstream.attempts == 1
    assert "retrying" not in sidecar.logs()
