"""``leap0 dev up``: the whole chain on one machine, no cluster.

Starts, in this order: a console OTLP sink (:mod:`leap0_dev.sink`), the embedded API server with the CRDs
(:mod:`leap0_dev.apiserver`) and a ``default`` SandboxTemplate, the operator (``python -m leap0_operator``,
a child process), the local pod runner (:mod:`leap0_dev.runner`, with this checkout's leap0 supervisor built
for sandbox logs), then applies the quickstart Sandbox (``examples/quickstart/demo-sandbox.yaml``) with its
endpoint pointed at the sink. The sink prints the sandbox's metrics, the demo's spans and each line it prints
(sandbox logs) as they arrive. Ctrl-C (or SIGTERM, or SIGHUP) stops everything, in
the reverse order, whether or not its output can still be written; and every process it starts ends with it
whatever ends it, SIGKILL included (:mod:`leap0_dev.children`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

import leap0_contract as contract
from leap0_contract.cli import EXIT_USAGE, file_problem, port_problem

from . import children, operator_metrics
from .apiserver import ServerThread
from .apiserver.exec import ExecHandler
from .crds import load_crds
from .nodespec import NodeOptions
from .runner import PodExecRunner, Runner, RunnerConfig
from .sink import OtlpSink

# The demo Sandbox (examples/quickstart/demo-sandbox.yaml is a link to it), packaged with leap0.
EXAMPLE = Path(__file__).parent / "demo-sandbox.yaml"
NAMESPACE = "default"
_OPERATOR_NOISE = ("[DEBUG", "[INFO")
_ANY_PORT = "%s PORT (0: any free port)"
# Ctrl-C, kill, and the terminal closing: each stops everything in order.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class UpOptions:
    port: int = 6443
    kubeconfig: Path = Path("kubeconfig.yaml")
    sink_port: int = 4319
    otlp_grpc_port: int = contract.OTLP_GRPC_PORT
    otlp_http_port: int = contract.OTLP_HTTP_PORT
    health_port: int = contract.SIDECAR_HEALTH_PORT
    metrics_interval: float | None = None
    example: bool = True
    duration: float | None = None  # stop by itself after this many seconds (tests, demos)
    workdir: Path | None = None
    verbose: bool = False  # also print the sidecars' own leap0.sidecar.* metrics and an operator summary
    operator_metrics_port: int = operator_metrics.DEFAULT_PORT  # a free one when taken
    summary_every: float = operator_metrics.SUMMARY_EVERY_S  # with verbose: the operator's summary line
    operator_argv: list[str] = field(default_factory=lambda: [sys.executable, "-m", "leap0_operator"])
    # "emulator" (the embedded API server, the default) or "real" (the control plane built from source,
    # this machine its Node: docs/control-plane.md), with the Node's name and size.
    control_plane: str = "emulator"
    node: NodeOptions = field(default_factory=NodeOptions)


class Console:
    """Timestamped lines on stdout, one at a time. Once stdout cannot be written (``leap0 dev up | tee log``
    and the reader is gone), output stops and nothing else does: a console line never raises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True

    def __call__(self, line: str) -> None:
        with self._lock:
            if not self._open:
                return
            try:
                print(f"{datetime.now():%H:%M:%S} {line}", flush=True)
            except (OSError, ValueError):
                self._open = False
                _discard_stdout()


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so what is left in its buffer (and the interpreter's flush at exit) goes
    nowhere instead of failing again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def example_sandbox(sink_url: str, path: Path | None = None) -> dict[str, Any]:
    """The quickstart Sandbox with its OTLP endpoint pointed at the sink."""
    source = path or EXAMPLE
    sandbox: dict[str, Any] = yaml.safe_load(source.read_text())
    env = [e for e in sandbox["spec"].get("env", []) if e["name"] != contract.OTEL_EXPORTER_OTLP_ENDPOINT]
    env.append({"name": contract.OTEL_EXPORTER_OTLP_ENDPOINT, "value": sink_url})
    sandbox["spec"]["env"] = env
    return sandbox


def default_template() -> dict[str, Any]:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.TEMPLATE_KIND,
        "metadata": {"name": contract.DEFAULT_TEMPLATE_ID},
        "spec": {
            "vcpu": contract.DEFAULT_VCPU,
            "memory": contract.DEFAULT_MEMORY_MIB,
            "timeout": contract.DEFAULT_TIMEOUT_S,
        },
    }


def source_pythonpath() -> str:
    """PYTHONPATH for children running this checkout's packages (installed or not)."""
    import importlib.util

    roots: list[str] = []
    for module in ("leap0", "leap0_operator", "leap0_sidecar"):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            root = str(Path(spec.origin).resolve().parent.parent)
            if root not in roots:
                roots.append(root)
    if os.environ.get("PYTHONPATH"):
        roots.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(roots)


def _pipe_operator(process: subprocess.Popen[str], console: Console, log_path: Path) -> None:
    """Keep the operator's log in a file; show its warnings and errors."""
    assert process.stdout is not None
    with open(log_path, "a") as log:
        for line in process.stdout:
            log.write(line)
            log.flush()
            text = line.rstrip()
            if text and not any(noise in text for noise in _OPERATOR_NOISE):
                console(f"operator | {text}")


@contextlib.contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _phase_watch(custom: Any, console: Console, stop: threading.Event) -> None:
    """Print each Sandbox's phase as it changes (a poll: cheap, and survives anything)."""
    seen: dict[str, str] = {}
    while not stop.wait(1):
        with contextlib.suppress(Exception):
            items = custom.list_cluster_custom_object(
                contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL
            )["items"]
            for item in items:
                key = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
                status = item.get("status") or {}
                phase = status.get("phase") or "(no status yet)"
                conditions: list[dict[str, Any]] = status.get("conditions") or []
                ready = next((c for c in conditions if c.get("type") == "Ready"), {})
                text = f"{phase} {ready.get('reason', '')} {ready.get('message', '')}".strip()
                if seen.get(key) != text:
                    seen[key] = text
                    console(f"sandbox {key}: {text}")


class CannotStart(Exception):
    """What keeps dev up from starting (a taken port, an unusable path), as the one line to print."""


def _writable_paths(kubeconfig: Path, workdir: Path) -> None:
    """The kubeconfig's folder and the workdir, made if missing; CannotStart when either cannot be used."""
    checks = (
        (kubeconfig, kubeconfig.parent, "the kubeconfig", "name another with --kubeconfig FILE"),
        (workdir, workdir, "the work directory", "name another with --workdir DIR"),
    )
    for path, folder, what, how in checks:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if path.is_dir() and path is kubeconfig:
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
            if not os.access(folder, os.W_OK):
                raise PermissionError(errno.EACCES, "permission denied", str(folder))
        except OSError as exc:
            raise CannotStart(file_problem(exc, what, path, how)) from None


def run(options: UpOptions) -> int:
    from kubernetes import client

    console = Console()
    stop = threading.Event()
    workdir = options.workdir or Path(".leap0")
    try:
        _writable_paths(options.kubeconfig.resolve(), workdir)
    except CannotStart as exc:
        print(f"leap0 dev up: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code = 0
    started = False
    # Each part registers its stop as it starts; they run in the reverse order (the pods first, their
    # sidecars flushing to the sink, then the operator, the API server, the sink last), each one even if
    # another failed.
    stopping = contextlib.ExitStack()
    stopping.callback(children.close)  # the last guard: whatever is still running ends
    with _signals(stop):
        try:
            # The listening ports first, before anything is said: a taken one is the only line printed.
            try:
                sink = OtlpSink(port=options.sink_port, printer=_telemetry_printer(console, options.verbose))
            except OSError as exc:
                where = f"127.0.0.1:{options.sink_port}"
                raise CannotStart(
                    port_problem(exc, "the console sink", where, _ANY_PORT % "--sink-port")
                ) from None
            sink.start()
            stopping.callback(sink.stop)
            start_cluster = _real_cluster if options.control_plane == "real" else _emulator
            api_client, run_pods = start_cluster(options, console, stopping)
            started = True
            console(f"sink: OTLP/HTTP on {sink.url} (prints what arrives)")
            custom = client.CustomObjectsApi(api_client)
            custom.create_namespaced_custom_object(
                contract.GROUP, contract.VERSION, NAMESPACE, contract.TEMPLATE_PLURAL, default_template()
            )
            console(f"apiserver: CRDs installed, SandboxTemplate {NAMESPACE}/default created")

            env = dict(os.environ)
            env["KUBECONFIG"] = str(options.kubeconfig.resolve())
            env["PYTHONPATH"] = source_pythonpath()
            env["PYTHONUNBUFFERED"] = "1"
            metrics_port = operator_metrics.free_port(options.operator_metrics_port)
            operator: subprocess.Popen[str] = children.popen(
                [
                    *options.operator_argv,
                    "--all-namespaces",
                    "--standalone",
                    "--metrics-port",
                    str(metrics_port),
                    "--metrics-bind-address",  # (this machine only)
                    "127.0.0.1",
                    # every sandbox without an endpoint of its own sends its telemetry to the console
                    "--default-otlp-endpoint",
                    sink.url,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            stopping.callback(_terminate, operator)
            log_path = workdir / "operator.log"
            threading.Thread(
                target=_pipe_operator, args=(operator, console, log_path), daemon=True, name="operator-log"
            ).start()
            console(f"operator: pid {operator.pid}, log {log_path}")
            console(f"operator: metrics at {operator_metrics.url(metrics_port)}")
            if options.verbose:
                threading.Thread(
                    target=operator_metrics.print_summaries,
                    args=(operator_metrics.url(metrics_port), console, stop, options.summary_every),
                    daemon=True,
                    name="operator-summary",
                ).start()

            supervisor, missing = local_supervisor(console)
            run_pods(
                RunnerConfig(
                    otlp_grpc_port=options.otlp_grpc_port,
                    otlp_http_port=options.otlp_http_port,
                    health_port=options.health_port,
                    metrics_interval=options.metrics_interval,
                    workdir=workdir / "pods",
                    supervisor=supervisor,
                    supervisor_missing=missing,
                    log=console,
                )
            )
            console(f"runner: running pods here (logs under {workdir / 'pods'})")

            if options.example:
                sandbox = example_sandbox(sink.url)
                custom.create_namespaced_custom_object(
                    contract.GROUP, contract.VERSION, NAMESPACE, contract.SANDBOX_PLURAL, sandbox
                )
                console(f"example: Sandbox {NAMESPACE}/{sandbox['metadata']['name']} applied")
            threading.Thread(target=_phase_watch, args=(custom, console, stop), daemon=True).start()
            console("up: Ctrl-C stops everything")
            code = _wait(stop, operator, options.duration, console, log_path)
        except CannotStart as exc:
            print(f"leap0 dev up: {exc}", file=sys.stderr)
            code = EXIT_USAGE
        except (OSError, StartError) as exc:
            console(f"up: cannot start: {exc}")
            code = 1
        finally:
            stop.set()
            if started:
                console("up: stopping")
            try:
                stopping.close()
            except Exception as exc:  # every stop has run; say what failed
                console(f"up: while stopping: {exc!r}")
                code = code or 1
            if started:
                console("up: stopped")
    return code


def local_supervisor(console: Callable[[str], None]) -> tuple[Path | None, str]:
    """The leap0 supervisor the sandbox pods' init container copies (sandbox logs): this checkout's build
    (built once into the cache; Go is needed the first time), or None and why."""
    from .supervisor import SupervisorBuildError, build, cache_root

    console(f"runner: the leap0 supervisor for sandbox logs (built once into {cache_root()})")
    try:
        path = build()
    except SupervisorBuildError as exc:
        reason = str(exc).splitlines()[0]
        console(f"runner: no leap0 supervisor ({reason}): sandbox commands run without it, no sandbox logs")
        return None, reason
    console(f"runner: leap0 supervisor {path}")
    return path, ""


class StartError(RuntimeError):
    """The chosen control plane cannot start (its build, a component, the node)."""


RunPods = Callable[[RunnerConfig], None]


def _emulator(options: UpOptions, console: Console, stopping: contextlib.ExitStack) -> tuple[Any, RunPods]:
    """The embedded API server (its CRDs installed); the runner plugged into its exec and log hooks."""
    try:
        server = ServerThread(port=options.port, kubeconfig=options.kubeconfig.resolve()).start()
    except OSError as exc:
        where = f"127.0.0.1:{options.port}"
        raise CannotStart(port_problem(exc, "the API server", where, _ANY_PORT % "--port")) from None
    stopping.callback(server.stop)
    console(f"apiserver: {server.url}; export KUBECONFIG={options.kubeconfig.resolve()}")

    def run_pods(config: RunnerConfig) -> None:
        runner = Runner(server.api_client(), config).start()
        stopping.callback(runner.stop)
        assert server.server is not None
        server.server.log_handler = _log_handler(runner)
        server.server.exec_handler = ExecHandler(PodExecRunner(runner))

    return server.api_client(), run_pods


def _real_cluster(
    options: UpOptions, console: Console, stopping: contextlib.ExitStack
) -> tuple[Any, RunPods]:
    """The real control plane (built from source when missing), the CRDs installed; this machine its Node,
    the runner its kubelet."""
    from .controlplane import BuildError, ControlPlane, ControlPlaneError, ensure_binaries
    from .controlplane.build import ensure_kubelet
    from .controlplane.node import LocalNode
    from .nodespec import NodeSpecError
    from .runner.kubelet import KubeletError

    try:
        options.node.node_name()
        binaries = ensure_binaries(progress=console)
        ensure_kubelet(progress=console)
    except (BuildError, NodeSpecError) as exc:
        raise StartError(str(exc)) from exc
    plane = ControlPlane(binaries, port=options.port, kubeconfig=options.kubeconfig.resolve(), log=console)
    stopping.callback(plane.stop)
    try:
        plane.start()
    except ControlPlaneError as exc:
        raise StartError(str(exc)) from exc
    console(f"apiserver: {plane.url} (kube-apiserver); export KUBECONFIG={plane.kubeconfig}")
    console(f"control-plane: logs in {plane.layout.log('kube-apiserver').parent} (removed when stopped)")
    api_client = plane.api_client()
    stopping.callback(api_client.close)
    install_crds(api_client, load_crds())
    # Pods need their namespace's ServiceAccount (the ServiceAccount admission), which the controller-manager
    # creates a moment after it starts.
    _wait_for_service_account(api_client, NAMESPACE)

    def run_pods(config: RunnerConfig) -> None:
        node = LocalNode(plane, options.node, config)
        try:
            node.start()
        except KubeletError as exc:
            raise StartError(str(exc)) from exc
        stopping.callback(node.stop)

    return api_client, run_pods


def _wait_for_service_account(api_client: Any, namespace: str, timeout: float = 60.0) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            return
        except client.ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise StartError(
                    f"the ServiceAccount {namespace}/default: {exc.status} {exc.reason}"
                ) from exc
        time.sleep(0.2)


def install_crds(api_client: Any, crds: list[dict[str, Any]], timeout: float = 60.0) -> None:
    """Create the CRDs that are missing (409: there already) and wait until each is Established."""
    from kubernetes import client

    api: Any = client.ApiextensionsV1Api(api_client)
    for crd in crds:
        try:
            api.create_custom_resource_definition(crd)
        except client.ApiException as exc:
            if exc.status != 409:
                raise StartError(
                    f"CRD {crd['metadata']['name']}: {exc.status} {exc.reason}: {exc.body}"
                ) from exc
    deadline = time.monotonic() + timeout
    for crd in crds:
        name = crd["metadata"]["name"]
        while True:
            conditions = api.read_custom_resource_definition(name).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise StartError(f"CRD {name} not Established after {timeout:.0f} s")
            time.sleep(0.2)


def _wait(
    stop: threading.Event,
    operator: subprocess.Popen[str],
    duration: float | None,
    console: Console,
    log_path: Path,
) -> int:
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set():
        if operator.poll() is not None:
            console(f"operator exited with code {operator.returncode}; see {log_path}")
            return 1
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return 0
        stop.wait(0.5 if remaining is None else min(0.5, remaining))
    return 0


def _terminate(process: subprocess.Popen[str]) -> None:
    """Stop the operator's process group: SIGTERM, SIGKILL after 10 s."""
    if process.poll() is None:
        children.kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            children.kill_group(process.pid, signal.SIGKILL)
            process.wait(5)
    children.kill_group(process.pid, signal.SIGKILL)
    children.forget(process.pid)


def _telemetry_printer(console: Console, verbose: bool) -> Callable[[str], None]:
    def show(line: str) -> None:
        if verbose or not line.startswith("metric leap0.sidecar."):
            console(line)

    return show


def _log_handler(runner: Any) -> Any:
    """``kubectl logs`` for the pods the runner runs, as the kubelet answers it (:mod:`.runner.logs`):
    ``--tail``, ``--since``, ``--since-time``, ``--timestamps``, ``--limit-bytes``, ``-f``, ``-c`` (default:
    the first main container)."""
    from aiohttp import web

    from .apiserver.errors import bad_request
    from .runner import logs

    async def handler(request: web.Request, namespace: str, name: str, sub: str) -> web.StreamResponse:
        pod = runner.find(namespace, name)
        if pod is None:
            return web.Response(status=404, text=f"pod {name} is not running here")
        wanted = request.query.get("container")
        container = pod.container(wanted)
        if container is None:
            raise bad_request(f"container {wanted} is not valid for pod {name}")
        return await logs.serve(request, container, name, lambda: runner.find(namespace, name) is pod)

    return handler
