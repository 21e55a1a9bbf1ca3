"""Benchmark of the telemetry sidecar's pipeline (a documented command, not a test).

    python bench/sidecar.py [--spans 20000] [--before REF]

Runs the real sidecar (``python -m leap0_sidecar``) as a child process, forwarding to a local upstream, and
prints in one run:

- CPU seconds of the sidecar process per 10,000 spans received over OTLP/HTTP and OTLP/gRPC, at 100 and at 10
  spans per request (about 500 B per span, eight string attributes), received + identity stamped + forwarded;
- the same for a naive baseline in the same run (the same sidecar with every request fully decoded, the
  attributes set, and re-encoded), and the ratio;
- idle RSS, and peak RSS with the upstream down and the queue full;
- what validating every request fully (a protobuf parse of the whole request) would add per request, against
  the identity stamp and against the whole pipeline's CPU per request (the choice between validating and
  splitting a batch the upstream refuses with 400 rests on it);
- with ``--before REF`` (a git revision), the same CPU figures for the sidecar as it was at REF, in the same
  run, and the ratio;
- the CPU cost of one sandbox metrics sample in microseconds (the sampler on this process's own cgroup; the
  metrics sampler's own benchmark, bench/sidecar_metrics.py, breaks it down per source). Figures and goals are
recorded in docs/sidecar.md. CPU time is the sidecar process's own (user + system, all threads), so other load
on the machine changes it little.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

REPO = Path(__file__).resolve().parent.parent
GOALS = {("http", 100): 0.05, ("grpc", 100): 0.1, ("http", 10): 0.25, ("grpc", 10): 0.25}
IDLE_RSS_GOAL_MIB = 40
SAMPLE_GOAL_US = 100.0
SIDECAR_MEMORY_LIMIT_MIB = 64  # the operator's default limit for the telemetry container


# --- the naive baseline, run inside the sidecar process -------------------------------------------------


def naive_rewrite(kvs: list[Any], signal: str, request: bytes) -> bytes:
    """Decode the whole request, remove the reserved (``leap0``) attributes at every level, set the identity
    attributes of each resource, re-encode: the same result as the sidecar's stamp, the obvious way."""
    from leap0_sidecar.identity import attribute_plan, is_reserved_key, scrub_message
    from leap0_sidecar.otlp import REQUEST_TYPES

    keys = {kv.key for kv in kvs}
    request_type = REQUEST_TYPES[signal]  # type: ignore[index]
    message: Any = request_type.FromString(request)
    scrub_message(message, attribute_plan(request_type.DESCRIPTOR) or ())
    for field in ("resource_spans", "resource_metrics", "resource_logs"):
        if field in message.DESCRIPTOR.fields_by_name:
            for resource_x in getattr(message, field):
                attributes = resource_x.resource.attributes
                kept = [kv for kv in attributes if kv.key not in keys and not is_reserved_key(kv.key)]
                del attributes[:]
                attributes.extend(kept)
                attributes.extend(kvs)
    data: bytes = message.SerializeToString()
    return data


def hostile_request(spans_per_request: int) -> bytes:
    """make_request with a reserved attribute (``leap0.org.id``) on every span: what an app posing as another
    tenant sends, and the most it can make the identity stamp do."""
    request = ExportTraceServiceRequest.FromString(make_request(spans_per_request, 0))
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.attributes.add(key="leap0.org.id").value.string_value = "victim-org"
    return request.SerializeToString()


def stamp_microbench() -> dict[int, float]:
    """The identity stamp alone, in this process: µs per request, the stamp (resource rewritten, scope data
    searched for reserved keys) vs naive, the resource rewrite alone (the stamp before reserved keys were
    removed at every level), and the stamp of a hostile request (a reserved key on every span); returns the µs
    of a full protobuf parse (what validating every request would add) per spans/request."""
    sys.path[:0] = [str(REPO / "sidecar")]
    from leap0_sidecar.identity import IdentityStamper, identity_key_values

    identity = [
        ("leap0.sandbox.id", "bench"),
        ("leap0.org.id", "bench-org"),
        ("leap0.template.id", "default"),
    ]
    stamper = IdentityStamper(identity)
    kvs = identity_key_values(identity)
    validation: dict[int, float] = {}
    for spans in (100, 10):
        request = make_request(spans, 0)
        hostile = hostile_request(spans)
        results = []
        runs: tuple[tuple[Any, bytes], ...] = (
            (lambda r: stamper.rewrite(r, "traces"), request),
            (lambda r: naive_rewrite(kvs, "traces", r), request),
            (ExportTraceServiceRequest.FromString, request),
            (stamper.rewrite, request),  # the resource alone (no signal: as for the sidecar's own data)
            (lambda r: stamper.rewrite(r, "traces"), hostile),
        )
        for function, payload in runs:
            n = 2000 if payload is request else 200
            start = time.process_time()
            for _ in range(n):
                function(payload)
            results.append((time.process_time() - start) / n * 1e6)
        print(
            f"identity stamp, {spans:>3} spans/request: {results[0]:6.1f} µs vs {results[1]:6.1f} µs (full "
            f"decode + re-encode): {results[1] / results[0]:.1f}x; resource alone {results[3]:5.1f} µs; "
            f"a reserved key on every span {results[4]:6.1f} µs"
        )
        validation[spans] = results[2]
    return validation


def serve_naive() -> int:
    """The sidecar with a naive identity stamp: decode the whole request, set the attributes, re-encode."""
    sys.path[:0] = [str(REPO / "sidecar")]
    from leap0_contract import Signal
    from leap0_sidecar import __main__ as sidecar_main
    from leap0_sidecar.identity import identity_key_values
    from leap0_sidecar.pipeline import Pipeline

    def naive_stamp(self: Pipeline, signal: Signal, request: bytes) -> bytes:
        return naive_rewrite(identity_key_values(self.config.identity.attributes()), signal, request)

    Pipeline.stamp = naive_stamp  # type: ignore[method-assign]
    return sidecar_main.main([])


def serve_grpc_floor(port: int) -> int:
    """grpcio's asyncio server with an empty bytes-in handler: what any grpcio receiver costs per call."""
    import asyncio

    async def export(request: bytes, context: Any) -> bytes:
        return b""

    async def run() -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(export)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(GRPC_TRACE_SERVICE, {"Export": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())
    return 0


GRPC_TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class GrpcFloor:
    """A process running serve_grpc_floor, measured like a sidecar."""

    def __init__(self) -> None:
        self.grpc_port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-grpc-floor", str(self.grpc_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ps = psutil.Process(self.proc.pid)
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def grpc_floor_per_10k(spans_per_request: int, total_spans: int) -> float:
    floor = GrpcFloor()
    try:
        requests = [make_request(spans_per_request, i) for i in range(total_spans // spans_per_request)]
        send_grpc(floor, requests[:20])
        before = floor.cpu()
        send_grpc(floor, requests)
        return (floor.cpu() - before) * 10_000 / (len(requests) * spans_per_request)
    finally:
        floor.stop()


# --- payloads ---------------------------------------------------------------------------------------------


def make_request(spans_per_request: int, seq: int) -> bytes:
    def kv(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    spans = []
    for i in range(spans_per_request):
        spans.append(
            Span(
                trace_id=(seq * 1000 + i).to_bytes(16, "big"),
                span_id=(i + 1).to_bytes(8, "big"),
                parent_span_id=(i + 2).to_bytes(8, "big"),
                name=f"GET /api/v1/items/{i}",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=1_700_000_000_000_000_000 + i,
                end_time_unix_nano=1_700_000_000_000_500_000 + i,
                attributes=[kv(f"app.attribute.{j}", f"value-{j}-" + "x" * 24) for j in range(8)],
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[kv("service.name", "bench"), kv("leap0.sandbox.id", "spoofed")]
                ),
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


# --- upstream and processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Upstream:
    """A minimal keep-alive OTLP/HTTP endpoint answering 200 (in this process: its CPU is not counted)."""

    def __init__(self) -> None:
        self.requests = 0

        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                upstream.requests += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Sidecar:
    def __init__(self, endpoint: str, naive: bool = False, source: Path = REPO, **env: str) -> None:
        self.http_port, self.grpc_port, self.health_port = free_port(), free_port(), free_port()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        child_env.update(
            PYTHONPATH=os.pathsep.join([str(source), str(source / "sidecar")]),
            LEAP0_SANDBOX_ID="bench",
            LEAP0_ORG_ID="bench-org",
            LEAP0_TEMPLATE_ID="default",
            LEAP0_K8S_NAMESPACE="bench",
            LEAP0_K8S_POD_NAME="bench-pod",
            LEAP0_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{self.http_port}",
            LEAP0_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{self.grpc_port}",
            LEAP0_HEALTH_ENDPOINT=f"127.0.0.1:{self.health_port}",
            LEAP0_METRICS_INTERVAL="3600",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        )
        child_env.update(env)
        command = (
            [sys.executable, __file__, "--serve-naive"] if naive else [sys.executable, "-m", "leap0_sidecar"]
        )
        self.proc = subprocess.Popen(
            command, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        STARTED.append(self)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 30
        while not self.health():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the sidecar did not start")
            time.sleep(0.05)

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as response:
                result: dict[str, Any] = json.load(response)
                return result
        except OSError:
            return None

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss_mib(self, peak: bool = False) -> float:
        key = "VmHWM:" if peak else "VmRSS:"
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return float("nan")

    def wait_drained(self) -> None:
        deadline = time.monotonic() + 60
        while (state := self.health()) is None or state["queue_bytes"]:
            if time.monotonic() > deadline:
                raise SystemExit("the queue did not drain")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


STARTED: list[Sidecar] = []


# --- clients ----------------------------------------------------------------------------------------------


def send_http(sidecar: Sidecar, requests: list[bytes]) -> int:
    """Send each request, retrying (as an OTel SDK would) while the sidecar pushes back; the retries."""
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.http_port)
    refused = 0
    for body in requests:
        while True:
            conn.request("POST", "/v1/traces", body=body, headers={"content-type": "application/x-protobuf"})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                break
            if response.status != 503:
                raise SystemExit(f"unexpected answer {response.status}")
            refused += 1
            time.sleep(0.05)
    conn.close()
    return refused


def send_grpc(sidecar: Sidecar | GrpcFloor, requests: list[bytes]) -> int:
    refused = 0
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        for body in requests:
            while True:
                try:
                    export(body, timeout=30)
                    break
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    refused += 1
                    time.sleep(0.05)
    return refused


SENDERS = {"http": send_http, "grpc": send_grpc}


def cpu_per_10k(sidecar: Sidecar, transport: str, spans_per_request: int, total_spans: int) -> float:
    requests = [make_request(spans_per_request, i) for i in range(total_spans // spans_per_request)]
    SENDERS[transport](sidecar, requests[:20])  # warm up connections and code paths
    sidecar.wait_drained()
    before = sidecar.cpu()
    refused = SENDERS[transport](sidecar, requests)
    sidecar.wait_drained()
    used = sidecar.cpu() - before
    if refused:
        print(
            f"  ({transport}, {spans_per_request} spans/request: {refused} pushbacks, retried by the client)"
        )
    return used * 10_000 / (len(requests) * spans_per_request)


def metrics_sample_us(samples: int = 2000) -> tuple[float, str]:
    """CPU microseconds (user + system, best of 3) of one ``MetricsSampler.sample()`` on this process's own
    cgroup, read as the sidecar reads the sandbox's, and the source it used."""
    sys.path[:0] = [str(REPO / "sidecar")]
    from leap0_sidecar.config import SamplerConfig
    from leap0_sidecar.sandbox_metrics import MetricsSampler

    sampler = MetricsSampler(SamplerConfig(sandbox_pid=os.getpid()))
    try:
        sampler.sample()
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for _ in range(samples):
                sampler.sample()
            best = min(best, (time.process_time() - started) / samples * 1e6)
        return best, sampler.source
    finally:
        sampler.close()


def checkout(ref: str) -> Path:
    """The sidecar and the contract as they were at a git revision, in a temporary directory."""
    import io
    import tarfile
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="sidecar-before-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "sidecar", "leap0_contract"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def main() -> int:
    try:
        return run()
    finally:
        for sidecar in STARTED:
            sidecar.stop()


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=50_000, help="spans per measurement (default 50000)")
    parser.add_argument(
        "--before", metavar="REF", help="also measure the sidecar as it was at this git revision (same run)"
    )
    parser.add_argument("--serve-naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-grpc-floor", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_naive:
        return serve_naive()
    if args.serve_grpc_floor:
        return serve_grpc_floor(args.serve_grpc_floor)

    size = len(make_request(100, 0)) / 100
    print(f"payload: {size:.0f} B per span (8 string attributes), {args.spans} spans per measurement")
    validation = stamp_microbench()
    before_source = checkout(args.before) if args.before else None
    upstream = Upstream()
    endpoint = f"http://127.0.0.1:{upstream.port}"

    # Idle: a fresh sidecar taking a metrics sample every second, nothing else to do.
    idler = Sidecar(endpoint, LEAP0_METRICS_INTERVAL="1")
    time.sleep(1.0)
    idle = idler.rss_mib()
    cpu_before = idler.cpu()
    time.sleep(10.0)
    idle_cpu_ms = (idler.cpu() - cpu_before) * 1000 / 10
    idler.stop()

    sidecar = Sidecar(endpoint)
    naive = Sidecar(endpoint, naive=True)
    before = Sidecar(endpoint, source=before_source) if before_source else None
    print()
    header = f"{'transport':<10}{'spans/req':>10}{'sidecar':>12}{'naive':>12}{'ratio':>8}{'goal':>8}  met"
    print(header + (f"{'before':>12}{'now/before':>12}" if before else ""))
    per_request: dict[tuple[str, int], float] = {}
    for transport, spans_per_request in (("http", 100), ("grpc", 100), ("http", 10), ("grpc", 10)):
        ours = cpu_per_10k(sidecar, transport, spans_per_request, args.spans)
        baseline = cpu_per_10k(naive, transport, spans_per_request, args.spans)
        per_request[(transport, spans_per_request)] = ours / 10_000 * spans_per_request * 1e6
        goal = GOALS[(transport, spans_per_request)]
        line = (
            f"{transport:<10}{spans_per_request:>10}{ours:>11.4f}s{baseline:>11.4f}s{baseline / ours:>7.2f}x"
            f"{goal:>7.2f}s  {'yes' if ours <= goal else 'NO '}"
        )
        if before is not None:
            then = cpu_per_10k(before, transport, spans_per_request, args.spans)
            line += f"{then:>11.4f}s{ours / then:>11.2f}x"
        print(line)
    after = sidecar.rss_mib()
    sidecar.stop()
    naive.stop()
    if before is not None:
        before.stop()
    print("(CPU seconds of the sidecar process per 10,000 spans: receive + identity stamp + forward)")
    for spans_per_request in (100, 10):
        pipeline_us = per_request[("http", spans_per_request)]
        print(
            f"full validation (protobuf parse), {spans_per_request:>3} spans/request: "
            f"{validation[spans_per_request]:6.1f} µs per request, "
            f"+{validation[spans_per_request] / pipeline_us * 100:.0f}% of the HTTP pipeline's "
            f"{pipeline_us:.0f} µs per request"
        )
    for spans_per_request in (100, 10):
        floor = grpc_floor_per_10k(spans_per_request, args.spans)
        print(
            f"grpcio alone, empty handler, {spans_per_request:>3} spans/request: {floor:.4f}s per 10k spans"
        )

    # Peak memory with the upstream down: fill the default queue until the sidecar pushes back.
    down = Sidecar(f"http://127.0.0.1:{free_port()}")
    body = make_request(100, 0)
    conn = http.client.HTTPConnection("127.0.0.1", down.http_port)
    accepted = 0
    for _ in range(10_000):
        conn.request("POST", "/v1/traces", body=body, headers={"content-type": "application/x-protobuf"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            break
        accepted += 1
    state = down.health() or {}
    peak = down.rss_mib(peak=True)
    down.stop()
    print()
    print(
        f"idle RSS:                        {idle:6.1f} MiB (goal <= {IDLE_RSS_GOAL_MIB} MiB: "
        f"{'yes' if idle <= IDLE_RSS_GOAL_MIB else 'NO'})"
    )
    print(f"idle CPU (metrics every 1 s):    {idle_cpu_ms:6.1f} ms per second")
    print(f"RSS after the runs above:        {after:6.1f} MiB")
    queued, capacity = state.get("queue_bytes", 0) / 2**20, state.get("queue_capacity", 0) / 2**20
    limit = SIDECAR_MEMORY_LIMIT_MIB
    print(
        f"peak RSS, upstream down, full:   {peak:6.1f} MiB (queue {queued:.1f} of {capacity:.0f} MiB after "
        f"{accepted} requests; limit {limit} MiB: {'under' if peak < limit else 'OVER'})"
    )
    sample_us, source = metrics_sample_us()
    print(
        f"one metrics sample ({source}):   {sample_us:6.1f} us (goal <= {SAMPLE_GOAL_US:.0f} us: "
        f"{'yes' if sample_us <= SAMPLE_GOAL_US else 'NO'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
