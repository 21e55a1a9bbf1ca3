"""The local pod runner: plays the kubelet for ``leap0 dev up`` against the embedded API server.

It watches pods and, for each one:

- starts the native sidecars (init containers with ``restartPolicy: Always``) first: the ``telemetry``
  container as a local ``leap0-sidecar`` process; then the main containers: a Python command runs with this
  machine's interpreter, another command when its executable exists here, and a container relying on its
  image's entrypoint gets an idle stand-in process (the image is not available here);
- gives each container the environment its spec gives it (values, ``$(VAR)``, downward-API ``fieldRef``
  and ``resourceFieldRef``, ``secretKeyRef``/``configMapKeyRef``), with local stand-ins for what pods do not
  share here: each pod's sidecar gets receiver and health ports of its own (4317/4318/13133 when free), the
  sandbox's ``127.0.0.1:4317/4318`` endpoints follow them, volume mount paths become a directory per pod,
  and the sidecar learns the sandbox's pid (``LEAP0_SANDBOX_PID``) instead of scanning a shared process
  namespace;
- when running as root, puts each main container in a real cgroup (v1: cpu, cpuacct, memory; v2: cpu,
  memory) with the container's CPU and memory limits, so an allocation past the limit is OOM-killed and
  reported as such;
- reports the pod's status (phase, conditions, container states with exit codes and reasons, podIP
  127.0.0.1);
- when the pod goes, stops the main containers, then the sidecars (SIGTERM, then SIGKILL after the grace
  period).

The decisions are pure functions in :mod:`leap0_dev.podspec`; this module does the processes and API calls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import leap0_contract as contract

from . import podspec
from .podspec import ContainerState, Host, Obj, PodSpecError

Log = Callable[[str], None]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> Host:
    memory = 0
    with contextlib.suppress(OSError, ValueError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    disk = shutil.disk_usage(tempfile.gettempdir()).total
    return Host(
        cpus=os.cpu_count() or 1, memory_bytes=memory, ephemeral_bytes=disk, name=socket.gethostname()
    )


def sidecar_command() -> tuple[list[str], dict[str, str]]:
    """How to start ``leap0-sidecar`` here: this interpreter with the package's source root on PYTHONPATH."""
    spec = importlib.util.find_spec("leap0_sidecar")
    env: dict[str, str] = {}
    if spec is not None and spec.origin:
        root = str(Path(spec.origin).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-m", "leap0_sidecar"], env


@dataclass
class RunnerConfig:
    """Settings of the local runner (``leap0 dev up`` exposes the ports)."""

    otlp_grpc_port: int = contract.OTLP_GRPC_PORT
    otlp_http_port: int = contract.OTLP_HTTP_PORT
    health_port: int = contract.SIDECAR_HEALTH_PORT
    # LEAP0_METRICS_INTERVAL for every sidecar (None: what the pod spec says).
    metrics_interval: float | None = None
    workdir: Path | None = None
    cgroups: bool = field(default_factory=lambda: os.geteuid() == 0)
    max_grace_seconds: float = 5.0
    # Only pods matching this label selector (None: every pod).
    label_selector: str | None = None
    # Only pods of this namespace (None: every namespace).
    namespace: str | None = None
    # The command standing for the telemetry container (None: this checkout's leap0-sidecar).
    sidecar_argv: list[str] | None = None
    log: Log = _stderr


# --- cgroups -----------------------------------------------------------------------------------------------
def _v1_mounts() -> dict[str, Path]:
    mounts: dict[str, Path] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] == "cgroup":
                for option in parts[3].split(","):
                    if option in ("cpu", "cpuacct", "memory"):
                        mounts[option] = Path(parts[1])
    return mounts


class Cgroup:
    """A cgroup for one container with its CPU and memory limits (v1 when mounted, else v2)."""

    PERIOD_US = 100_000

    def __init__(self, name: str, cpu_millicores: int | None, memory_bytes: int | None) -> None:
        self.dirs: list[Path] = []
        self.version = 0
        mounts = _v1_mounts()
        if {"cpu", "memory"} <= mounts.keys():
            self.version = 1
            for mount in dict.fromkeys(mounts[c] for c in ("cpu", "cpuacct", "memory") if c in mounts):
                self.dirs.append(mount / "leap0-runner" / name)
        elif Path("/sys/fs/cgroup/cgroup.controllers").exists():
            self.version = 2
            parent = Path("/sys/fs/cgroup/leap0-runner")
            parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                (Path("/sys/fs/cgroup") / "cgroup.subtree_control").write_text("+cpu +memory")
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+cpu +memory")
            self.dirs.append(parent / name)
        else:
            raise OSError("no cgroup v1 cpu/memory controllers nor cgroup v2 here")
        for directory in self.dirs:
            directory.mkdir(parents=True, exist_ok=True)
        self._limit(cpu_millicores, memory_bytes)

    def _write(self, filename: str, value: str) -> bool:
        for directory in self.dirs:
            path = directory / filename
            if path.exists():
                path.write_text(value)
                return True
        return False

    def _read(self, filename: str) -> str:
        for directory in self.dirs:
            with contextlib.suppress(OSError):
                return (directory / filename).read_text()
        return ""

    def _limit(self, cpu_millicores: int | None, memory_bytes: int | None) -> None:
        if self.version == 1:
            if cpu_millicores is not None:
                self._write("cpu.cfs_period_us", str(self.PERIOD_US))
                self._write("cpu.cfs_quota_us", str(max(1000, cpu_millicores * self.PERIOD_US // 1000)))
            if memory_bytes is not None:
                self._write("memory.limit_in_bytes", str(memory_bytes))
                with contextlib.suppress(OSError):
                    self._write("memory.swappiness", "0")
        else:
            if cpu_millicores is not None:
                self._write(
                    "cpu.max", f"{max(1000, cpu_millicores * self.PERIOD_US // 1000)} {self.PERIOD_US}"
                )
            if memory_bytes is not None:
                self._write("memory.max", str(memory_bytes))
                with contextlib.suppress(OSError):
                    self._write("memory.swap.max", "0")

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_killed(self) -> bool:
        text = self._read("memory.oom_control" if self.version == 1 else "memory.events")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    def remove(self) -> None:
        for directory in self.dirs:
            for _ in range(50):
                with contextlib.suppress(OSError, ValueError):
                    for pid in (directory / "cgroup.procs").read_text().split():
                        os.kill(int(pid), signal.SIGKILL)
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


# --- processes ---------------------------------------------------------------------------------------------
# Joins the cgroups given before "--", waits for a line on stdin (the runner releases the container once its
# sidecars run), then becomes the container's command with stdin from /dev/null. The pid stays the same.
_WRAPPER = (
    'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 126; shift; done; shift; '
    'read -r _ || true; exec "$@" </dev/null'
)


def _free_port(preferred: int, taken: set[int]) -> int:
    for candidate in (preferred, 0):
        if candidate in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
            if port not in taken:
                return port
    return _free_port(0, taken)


class Container:
    """One container of a pod as a local process (restarted as its restart policy says)."""

    def __init__(
        self,
        spec: Obj,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        restart: str,
        cgroup_limits: tuple[int | None, int | None] | None,
        cgroup_name: str,
    ) -> None:
        self.spec = spec
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.restart = restart  # Always, OnFailure, Never
        self.cgroup_limits = cgroup_limits
        self.cgroup_name = cgroup_name
        self.cgroup: Cgroup | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.state = ContainerState(name=spec["name"], image=str(spec.get("image", "")))
        self.next_start = 0.0
        self.backoff = 1.0
        self.held = False
        self.probe_port: int | None = None
        self.last_probe = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def spawn(self, log: Log, hold: bool = False) -> None:
        argv = self.argv
        if self.cgroup_limits is not None or hold:
            files: list[str] = []
            if self.cgroup_limits is not None:
                try:
                    self.cgroup = Cgroup(self.cgroup_name, *self.cgroup_limits)
                    files = self.cgroup.procs_files
                except OSError as exc:
                    log(f"runner: no cgroup for {self.cgroup_name} ({exc}); running without limits")
                    self.cgroup = None
            argv = ["/bin/sh", "-c", _WRAPPER, "sh", *files, "--", *self.argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.held = True
        if not hold:
            self.release()
        self.state.pid = self.process.pid
        self.state.started_at = now_iso()
        self.state.running = True
        self.state.waiting_reason = None
        self.state.waiting_message = None
        self.state.exit_code = None
        self.state.reason = None
        self.state.ready = self.spec.get("readinessProbe") is None

    def release(self) -> None:
        if self.process is not None and self.process.stdin is not None and self.held:
            with contextlib.suppress(OSError):
                self.process.stdin.write(b"go\n")
                self.process.stdin.close()
        self.held = False

    def poll(self) -> bool:
        """Notice an exit; True when the state changed."""
        if self.process is None or self.process.poll() is None:
            return False
        oom = self.cgroup.oom_killed() if self.cgroup else False
        code, reason = podspec.exit_reason(self.process.returncode, oom)
        self.state.running = False
        self.state.ready = False
        self.state.exit_code = code
        self.state.reason = reason
        self.state.finished_at = now_iso()
        self.process = None
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        return True

    def wants_restart(self) -> bool:
        if self.state.exit_code is None or self.state.running:
            return False
        return self.restart == "Always" or (self.restart == "OnFailure" and self.state.exit_code != 0)

    def schedule_restart(self) -> None:
        """Move the finished run to lastState and wait out a CrashLoopBackOff before the next."""
        self.state.last_terminated = {
            "exitCode": self.state.exit_code,
            "reason": self.state.reason,
            "startedAt": self.state.started_at,
            "finishedAt": self.state.finished_at,
        }
        self.state.restart_count += 1
        self.state.waiting_reason = "CrashLoopBackOff"
        self.state.waiting_message = f"back-off {self.backoff:.0f}s restarting failed container"
        self.next_start = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, 30.0)

    def probe(self) -> bool:
        """Run the readiness probe (httpGet only) when due; True when readiness changed."""
        probe = self.spec.get("readinessProbe")
        if probe is None or not self.state.running:
            return False
        period = 1.0 if not self.state.ready else float(probe.get("periodSeconds", 10))
        if time.monotonic() - self.last_probe < period:
            return False
        self.last_probe = time.monotonic()
        ok = False
        http = probe.get("httpGet")
        if http is not None and self.probe_port is not None:
            url = f"http://127.0.0.1:{self.probe_port}{http.get('path', '/')}"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
                ok = 200 <= response.status < 400
        elif http is None:
            ok = True  # exec/tcp probes: trusted while the process runs
        changed = ok != self.state.ready
        self.state.ready = ok
        return changed

    def terminate(self, grace: float) -> None:
        process = self.process
        if process is None:
            return
        self.release()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        self.poll()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # anything the container left behind in its group
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None


@dataclass
class Lookups:
    secrets: podspec.Lookup
    config_maps: podspec.Lookup


class LocalPod:
    """The processes of one pod and the status they make."""

    def __init__(
        self, pod: Obj, config: RunnerConfig, host: Host, lookups: Lookups, taken_ports: set[int]
    ) -> None:
        meta = pod["metadata"]
        self.namespace = str(meta.get("namespace", "default"))
        self.name = str(meta["name"])
        self.uid = str(meta.get("uid", ""))
        self.pod = pod
        self.config = config
        self.start_time = now_iso()
        self.sidecars: list[Container] = []
        self.main: list[Container] = []
        self.error: str | None = None
        self.last_reported: Obj | None = None
        self.stopping = False
        self.ports: list[int] = []
        base = (config.workdir or Path(tempfile.gettempdir()) / "leap0-runner").resolve()
        self.dir = base / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        try:
            self._build(host, lookups, taken_ports)
        except PodSpecError as exc:
            self.error = str(exc)
            config.log(f"runner: pod {self.namespace}/{self.name}: {exc}")

    @property
    def containers(self) -> list[Container]:
        return [*self.sidecars, *self.main]

    def _volumes(self) -> dict[str, Path]:
        volumes: dict[str, Path] = {}
        for volume in self.pod.get("spec", {}).get("volumes", []):
            path = self.dir / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            volumes[volume["name"]] = path
        return volumes

    def _build(self, host: Host, lookups: Lookups, taken: set[int]) -> None:
        spec = self.pod.get("spec", {})
        volumes = self._volumes()
        grpc = _free_port(self.config.otlp_grpc_port, taken)
        http = _free_port(self.config.otlp_http_port, taken | {grpc})
        health = _free_port(self.config.health_port, taken | {grpc, http})
        self.ports = [grpc, http, health]
        remap = {contract.OTLP_GRPC_PORT: grpc, contract.OTLP_HTTP_PORT: http}
        sidecar_argv, sidecar_env = sidecar_command()
        if self.config.sidecar_argv is not None:
            sidecar_argv = list(self.config.sidecar_argv)
        base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")}
        # `python` in a shell command finds this interpreter (the image's is not here).
        path = os.pathsep.join(p for p in (str(Path(sys.executable).parent), base_env.get("PATH", "")) if p)
        base_env["PATH"] = path
        base_env["HOME"] = str(self.dir / "home")
        Path(base_env["HOME"]).mkdir(parents=True, exist_ok=True)
        init = [c for c in spec.get("initContainers", [])]
        unsupported = [c["name"] for c in init if not podspec.is_sidecar(c)]
        if unsupported:
            raise PodSpecError(
                f"init containers that run to completion are not supported here: {unsupported}"
            )
        for container_spec, is_main in [
            *((c, False) for c in init),
            *((c, True) for c in spec["containers"]),
        ]:
            name = container_spec["name"]
            mounts = {
                m["mountPath"]: str(volumes[m["name"]] / m.get("subPath", ""))
                for m in container_spec.get("volumeMounts", [])
                if m["name"] in volumes
            }
            env = podspec.resolve_env(self.pod, container_spec, host, lookups.secrets, lookups.config_maps)
            env = podspec.map_paths(podspec.rewrite_local_endpoints(env, remap), mounts)
            if name == contract.TELEMETRY_CONTAINER:
                argv = [*sidecar_argv, *container_spec.get("args", [])]
                env.update(sidecar_env)
                env[contract.ENV_OTLP_GRPC_ENDPOINT] = f"127.0.0.1:{grpc}"
                env[contract.ENV_OTLP_HTTP_ENDPOINT] = f"127.0.0.1:{http}"
                env[contract.ENV_HEALTH_ENDPOINT] = f"127.0.0.1:{health}"
                if self.config.metrics_interval is not None:
                    env[contract.ENV_METRICS_INTERVAL] = str(self.config.metrics_interval)
            else:
                command = podspec.local_command(container_spec, env, sys.executable)
                if command is None:
                    self.config.log(
                        f"runner: {self.namespace}/{self.name} container {name}: its image's entrypoint "
                        "cannot run here; an idle stand-in process runs instead"
                    )
                    command = [sys.executable, "-c", "import signal; signal.pause()"]
                argv = command
            workdir = container_spec.get("workingDir")
            cwd_text = podspec.map_paths({"d": workdir}, mounts)["d"] if workdir else ""
            cwd = Path(cwd_text) if cwd_text and Path(cwd_text).is_dir() else self.dir
            restart = container_spec.get("restartPolicy") or ("Always" if not is_main else None)
            restart = restart or spec.get("restartPolicy", "Always")
            limits = None
            if is_main and self.config.cgroups:
                limits = (podspec.cpu_millicores(container_spec), podspec.memory_bytes(container_spec))
            container = Container(
                container_spec,
                argv,
                {**base_env, **env},
                cwd,
                self.dir / f"{name}.log",
                restart,
                limits,
                f"{self.namespace}_{self.name}_{self.uid[:8]}_{name}",
            )
            if name == contract.TELEMETRY_CONTAINER:
                container.probe_port = health
            (self.main if is_main else self.sidecars).append(container)

    def start(self) -> None:
        if self.error is not None:
            return
        # Main containers are spawned held (their pid known), sidecars start knowing the sandbox's pid, then
        # the main containers are released: the order a kubelet keeps for native sidecars.
        for container in self.main:
            container.spawn(self.config.log, hold=True)
        sandbox = next((c for c in self.main if c.spec["name"] == contract.SANDBOX_CONTAINER), None)
        for container in self.sidecars:
            if sandbox is not None and sandbox.pid is not None:
                container.env["LEAP0_SANDBOX_PID"] = str(sandbox.pid)
            container.spawn(self.config.log)
        for container in self.main:
            container.release()

    def tick(self) -> Obj:
        """Notice exits, restart what must be, probe; return the status to report."""
        if self.error is None and not self.stopping:
            for container in self.containers:
                container.poll()
                if container.wants_restart() and container.state.waiting_reason is None:
                    container.schedule_restart()
                if (
                    container.state.waiting_reason == "CrashLoopBackOff"
                    and time.monotonic() >= container.next_start
                ):
                    if container in self.sidecars:
                        sandbox = next((c for c in self.main if c.pid is not None), None)
                        if sandbox is not None:
                            container.env["LEAP0_SANDBOX_PID"] = str(sandbox.pid)
                    container.spawn(self.config.log)
                container.probe()
            main_done = self.main and all(
                c.state.exit_code is not None and not c.state.running and c.state.waiting_reason is None
                for c in self.main
            )
            if main_done:  # the app is done for good: stop the sidecars, as the kubelet does
                for container in self.sidecars:
                    container.restart = "Never"
                    container.terminate(self.config.max_grace_seconds)
        if self.error is not None:
            spec = self.pod.get("spec", {})

            def stuck(specs: list[Obj]) -> list[ContainerState]:
                return [
                    ContainerState(
                        c["name"],
                        image=str(c.get("image", "")),
                        waiting_reason="CreateContainerConfigError",
                        waiting_message=self.error,
                    )
                    for c in specs
                ]

            sidecars, main = stuck(spec.get("initContainers", [])), stuck(spec.get("containers", []))
            return podspec.pod_status(self.pod, sidecars, main, self.start_time, now_iso())
        return podspec.pod_status(
            self.pod,
            [c.state for c in self.sidecars],
            [c.state for c in self.main],
            self.start_time,
            now_iso(),
        )

    def stop(self) -> None:
        """Main containers first, then the sidecars (so the app's last telemetry still gets out)."""
        self.stopping = True
        grace = float(self.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30))
        grace = min(grace, self.config.max_grace_seconds)
        for group in (self.main, self.sidecars):
            threads = [threading.Thread(target=c.terminate, args=(grace,)) for c in group]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def logs(self, container: str | None) -> bytes:
        names = [c.spec["name"] for c in self.main]
        name = container or (names[0] if names else "")
        with contextlib.suppress(OSError):
            return (self.dir / f"{name}.log").read_bytes()
        return b""


# --- exec ------------------------------------------------------------------------------------------------
_JOIN = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"'


class PodExecRunner:
    """Runs ``kubectl exec`` / SDK ``process.execute`` commands in the pod's container as the runner runs it:
    the container's environment and directory, and its cgroup when it has one.

    The ``ExecRunner`` of ``leap0_dev.apiserver.exec`` (plug it with ``ExecHandler(PodExecRunner(runner))``).
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def start(self, target: Any) -> asyncio.subprocess.Process:
        local = self.runner.find(target.namespace, target.pod)
        if local is None:
            raise ProcessLookupError(f"pod {target.namespace}/{target.pod} is not running here")
        name = target.container or (local.main[0].spec["name"] if local.main else None)
        container = next((c for c in local.containers if c.spec["name"] == name), None)
        if container is None or not container.state.running:
            raise ProcessLookupError(f"container {name} is not running")
        argv = list(target.command)
        if podspec.is_python(argv[0]):
            argv[0] = sys.executable
        if container.cgroup is not None:
            argv = ["/bin/sh", "-c", _JOIN, "sh", *container.cgroup.procs_files, "--", *argv]
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        return await asyncio.create_subprocess_exec(
            *argv,
            cwd=container.cwd,
            env=container.env,
            stdin=pipe if target.stdin else devnull,
            stdout=pipe if target.stdout else devnull,
            stderr=pipe if target.stderr else devnull,
            start_new_session=True,
        )


# --- the API side ------------------------------------------------------------------------------------------
class Runner:
    """Watches pods through the Kubernetes API and runs them here. ``start()`` / ``stop()``."""

    def __init__(self, api_client: Any, config: RunnerConfig | None = None) -> None:
        from kubernetes import client  # the dev extra's client; imported late to keep podspec light

        self.config = config or RunnerConfig()
        self.core = client.CoreV1Api(api_client)
        self.host = machine()
        self.pods: dict[str, LocalPod] = {}
        self.events: queue.Queue[tuple[str, Obj]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._response: Any = None
        self._lock = threading.Lock()
        self.lookups = Lookups(self._secret, self._config_map)

    # lookups for secretKeyRef / configMapKeyRef
    def _secret(self, namespace: str, name: str, key: str) -> str | None:
        from kubernetes.client import ApiException

        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException:
            return None
        if secret.data and key in secret.data:
            return base64.b64decode(secret.data[key]).decode()
        if secret.string_data and key in secret.string_data:
            return str(secret.string_data[key])
        return None

    def _config_map(self, namespace: str, name: str, key: str) -> str | None:
        from kubernetes.client import ApiException

        try:
            config_map = self.core.read_namespaced_config_map(name, namespace)
        except ApiException:
            return None
        return None if not config_map.data or key not in config_map.data else str(config_map.data[key])

    def start(self) -> Runner:
        for target, name in ((self._watch_loop, "leap0-runner-watch"), (self._run_loop, "leap0-runner")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._response is not None:
            with contextlib.suppress(Exception):
                self._response.shutdown()
        for thread in self._threads:
            thread.join(15)
        with self._lock:
            pods = list(self.pods.values())
            self.pods.clear()
        threads = [threading.Thread(target=p.stop) for p in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch_loop(self) -> None:
        """Watch pods (a raw watch, so ``stop()`` can cut the connection at once), reconnecting on failure."""
        while not self._stop.is_set():
            kwargs: dict[str, Any] = {"watch": True, "timeout_seconds": 300, "_preload_content": False}
            if self.config.label_selector:
                kwargs["label_selector"] = self.config.label_selector
            try:
                if self.config.namespace:
                    self._response = self.core.list_namespaced_pod(self.config.namespace, **kwargs)
                else:
                    self._response = self.core.list_pod_for_all_namespaces(**kwargs)
                for line in self._response:
                    if self._stop.is_set():
                        break
                    if line.strip():
                        event = json.loads(line)
                        self.events.put((event["type"], event["object"]))
            except Exception as exc:  # reconnect on any watch failure while running
                if not self._stop.is_set():
                    self.config.log(f"runner: pod watch failed ({exc}); reconnecting")
                    self._stop.wait(1)

    def _handle(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"].get("uid", "")
        gone = kind == "DELETED" or bool(pod["metadata"].get("deletionTimestamp"))
        with self._lock:
            local = self.pods.get(uid)
            if gone:
                if local is not None:
                    del self.pods[uid]
                    self.config.log(f"runner: pod {local.namespace}/{local.name} deleted: stopping it")
                    threading.Thread(target=local.stop, daemon=True).start()
                return
            if local is not None:
                local.pod["metadata"] = pod["metadata"]  # labels and annotations may change; the spec cannot
                return
            if kind == "ERROR":
                return
            taken = {port for p in self.pods.values() for port in p.ports}
            local = LocalPod(pod, self.config, self.host, self.lookups, taken)
            self.pods[uid] = local
        self.config.log(f"runner: starting pod {local.namespace}/{local.name}")
        local.start()

    def _run_loop(self) -> None:
        from kubernetes.client import ApiException

        while not self._stop.is_set():
            deadline = time.monotonic() + 0.5
            while True:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    kind, pod = self.events.get(timeout=timeout)
                except queue.Empty:
                    break
                try:
                    self._handle(kind, pod)
                except Exception as exc:  # one bad pod must not stop the runner
                    self.config.log(f"runner: cannot run pod {pod.get('metadata', {}).get('name')}: {exc}")
            with self._lock:
                pods = list(self.pods.values())
            for local in pods:
                if local.stopping:
                    continue
                status = local.tick()
                if local.last_reported == podspec.comparable(status):
                    continue
                try:
                    self.core.patch_namespaced_pod_status(
                        local.name,
                        local.namespace,
                        {"status": status},
                        _content_type="application/merge-patch+json",
                    )
                    local.last_reported = podspec.comparable(status)
                except ApiException as exc:
                    if exc.status != 404:
                        self.config.log(f"runner: status of {local.namespace}/{local.name}: {exc.reason}")

    def find(self, namespace: str, name: str) -> LocalPod | None:
        with self._lock:
            return next((p for p in self.pods.values() if p.namespace == namespace and p.name == name), None)
