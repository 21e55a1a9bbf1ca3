"""Real parts for the sidecar's tests: an upstream OTLP/HTTP receiver decoding protobuf, the sidecar process.

No fixtures here (plain helpers, importable from any test); fixtures are in tests/e2e/sidecar/conftest.py.
"""

from __future__ import annotations

import contextlib
import gzip
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from support import free_port, subprocess_env, wait_for

REQUEST_TYPES: dict[str, type[Message]] = {
    "/v1/traces": ExportTraceServiceRequest,
    "/v1/metrics": ExportMetricsServiceRequest,
    "/v1/logs": ExportLogsServiceRequest,
}

IDENTITY_ENV = {
    "LEAP0_SANDBOX_ID": "sbx-real",
    "LEAP0_ORG_ID": "org-real",
    "LEAP0_TEMPLATE_ID": "tpl-real",
    "LEAP0_K8S_NAMESPACE": "team-a",
    "LEAP0_K8S_POD_NAME": "sbx-real-pod",
}
IDENTITY = {
    "leap0.sandbox.id": "sbx-real",
    "leap0.org.id": "org-real",
    "leap0.template.id": "tpl-real",
    "k8s.namespace.name": "team-a",
    "k8s.pod.name": "sbx-real-pod",
}


def resource_attributes(resource: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in resource.attributes}


def reserved_attributes(message: Message, path: str = "") -> list[str]:
    """Where an attribute with a reserved (``leap0``) key is, at any level below ``message`` but the
    resources' (whose identity the caller checks): ``.resource_spans[0].scope_spans[0].spans[1].attributes
    [leap0.org.id]``. Values (``AnyValue``) are data and not looked into."""
    from leap0_sidecar.identity import is_reserved_key

    found: list[str] = []
    for descriptor, value in message.ListFields():
        kind = descriptor.message_type
        if kind is None or kind.name in ("AnyValue", "Resource"):
            continue
        here = f"{path}.{descriptor.name}"
        if kind.name == "KeyValue":
            found += [f"{here}[{kv.key}]" for kv in value if is_reserved_key(kv.key)]
        elif descriptor.is_repeated:
            for i, item in enumerate(value):
                found += reserved_attributes(item, f"{here}[{i}]")
        else:
            found += reserved_attributes(value, here)
    return found


PROTOBUF = {"content-type": "application/x-protobuf"}


def traces_request(*names: str, padding: int = 0) -> bytes:
    """A serialized OTLP trace request: one span per name, each with a ``pad`` attribute of ``padding``
    bytes when ``padding`` is set."""
    spans = []
    for name in names:
        span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=name)
        if padding:
            span.attributes.add(key="pad").value.string_value = "x" * padding
        spans.append(span)
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    return request.SerializeToString()


def post(
    sidecar: SidecarProcess, body: bytes, path: str = "/v1/traces", headers: dict[str, str] = PROTOBUF
) -> tuple[int, dict[str, str], bytes]:
    """POST to the sidecar's OTLP/HTTP port: status, headers (names lower-cased), body."""
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.http_port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    message: Any
    at: float


@dataclass
class Upstream:
    """An OTLP/HTTP receiver on a free port that decodes what it receives (with real protobuf) and, as the
    OpenTelemetry Collector does, answers 400 to a body it cannot decode (``rejected`` counts those).

    ``script`` holds (status, headers) answers used before the default 200; ``refuse`` maps a path to a
    status answered to every request for it; ``stall_s`` delays each answer (a slow upstream);
    ``stop()``/``start()`` simulate an outage (listening socket and kept-alive connections closed, so the
    sidecar sees connection errors).
    """

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    tls: tuple[Path, Path] | None = None  # (certificate, key): serve https
    refuse: dict[str, int] = field(default_factory=dict)
    stall_s: float = 0.0
    rejected: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _sockets: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with upstream._lock:
                    upstream._sockets.add(self.connection)

            def finish(self) -> None:
                with upstream._lock:
                    upstream._sockets.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with upstream._lock:
                    upstream.attempts.append(time.monotonic())
                    answer = upstream.script.pop(0) if upstream.script else None
                if self.path in upstream.refuse:
                    answer = (upstream.refuse[self.path], {})
                if upstream.stall_s:
                    time.sleep(upstream.stall_s)
                if answer is not None:
                    status, headers = answer
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    message = REQUEST_TYPES[self.path].FromString(body)
                except DecodeError as exc:
                    with upstream._lock:
                        upstream.rejected += 1
                    reason = f"cannot decode the request: {exc}".encode()
                    self.send_response(400)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", str(len(reason)))
                    self.end_headers()
                    self.wfile.write(reason)
                    return
                with upstream._lock:
                    upstream.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            message,
                            time.monotonic(),
                        )
                    )
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def messages(self, path: str) -> list[Any]:
        with self._lock:
            return [r.message for r in self.received if r.path == path]

    def resources(self, path: str) -> list[Any]:
        field_name = {
            "/v1/traces": "resource_spans",
            "/v1/metrics": "resource_metrics",
            "/v1/logs": "resource_logs",
        }
        return [rx for m in self.messages(path) for rx in getattr(m, field_name[path])]

    def span_names(self) -> list[str]:
        return [
            span.name for rs in self.resources("/v1/traces") for ss in rs.scope_spans for span in ss.spans
        ]


def readable_sidecar_install(folder: Path) -> str:
    """Install the sidecar into ``folder`` as its image does, readable by any user: its code, the contract's,
    and the distributions of pyproject's ``sidecar`` extra with what they require, copied from this
    environment. Returns the base interpreter to run it with (``PYTHONPATH=folder``). A process of another
    user (the sidecar's 65532) cannot always read this checkout and its venv: they may sit where only their
    owner may look (a ``mktemp -d`` clone, a home directory)."""
    import importlib.metadata
    import shutil
    import tomllib

    from packaging.requirements import Requirement

    repo = Path(__file__).resolve().parent.parent
    pending = list(
        tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]["sidecar"]
    )
    done: set[str] = set()
    while pending:
        requirement = Requirement(pending.pop())
        name = requirement.name.lower()
        if name in done or (
            requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})
        ):
            continue
        done.add(name)
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if file.parts[0] != ".." and source.is_file():
                (folder / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, folder / file)
        pending.extend(dist.requires or [])
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(repo / "sidecar" / "leap0_sidecar", folder / "leap0_sidecar", ignore=ignore)
    shutil.copytree(repo / "leap0_contract", folder / "leap0_contract", ignore=ignore)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return os.path.realpath(sys.executable)  # the venv's python links to it


@dataclass
class SidecarProcess:
    """``python -m leap0_sidecar`` on free ports, logging to a file."""

    env: dict[str, str]
    log_path: Path
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    # A command the sidecar runs under (setpriv with a container's user and capabilities, say).
    wrapper: tuple[str, ...] = ()
    # The interpreter (with PYTHONPATH in env: one of readable_sidecar_install, say).
    python: str = sys.executable

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, wait: bool = True) -> SidecarProcess:
        ports = {
            "LEAP0_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "LEAP0_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "LEAP0_HEALTH_ENDPOINT": f"127.0.0.1:{self.health_port}",
        }
        env = subprocess_env(**{**ports, **self.env})
        for name in list(env):
            if name.startswith("OTEL_") and name not in self.env:
                del env[name]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.wrapper, self.python, "-m", "leap0_sidecar"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            wait_for(self.ready, 15, "the sidecar's /readyz")
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the sidecar exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1) as r:
                return bool(json.load(r)["status"] == "ok")
        except OSError:
            return False

    def health_state(self) -> dict[str, Any]:
        """The /healthz document (status, export, queue_bytes, queue_capacity)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as response:
            state: dict[str, Any] = json.load(response)
            return state

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()


MIB = 1024 * 1024


class RssSampler:
    """Samples a process's RSS (psutil) in a thread until stopped; ``peak`` is the largest sample, and
    ``high_water()`` the kernel's own peak (VmHWM), which no sampling interval can miss."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.005)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def high_water(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")


@contextlib.contextmanager
def env_vars(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
