"""One pod as local processes: its containers built from the spec (env, volumes, ports, commands), started in
the kubelet's order, ticked (exits, restarts, probes) into the pod status to report, and stopped."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import leap0_contract as contract
from leap0_dev import podspec
from leap0_dev.podspec import ContainerState, Host, Obj, PodSpecError

from .config import RunnerConfig
from .processes import Container, now_iso


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


# (namespace, claim) -> the PersistentVolumeClaim's uid, or None when it does not exist (or is being deleted).
ClaimLookup = Callable[[str, str], str | None]


@dataclass
class Lookups:
    secrets: podspec.Lookup
    config_maps: podspec.Lookup
    claims: ClaimLookup | None = None


class LocalPod:
    """The processes of one pod and the status they make."""

    # Seconds between attempts at a pod whose spec could not be set up yet (see ``error``).
    RETRY_S = 2.0

    def __init__(
        self,
        pod: Obj,
        config: RunnerConfig,
        host: Host,
        lookups: Lookups,
        taken_ports: set[int],
        previous: LocalPod | None = None,
    ) -> None:
        """``previous``: the earlier attempt at this pod, which could not be set up (its start time is kept,
        and the same error is not said again)."""
        meta = pod["metadata"]
        self.namespace = str(meta.get("namespace", "default"))
        self.name = str(meta["name"])
        self.uid = str(meta.get("uid", ""))
        self.pod = pod
        self.config = config
        self.start_time: str = previous.start_time if previous is not None else now_iso()
        self.init: list[Container] = []  # init containers that run to completion (the supervisor's copy)
        self.sidecars: list[Container] = []
        self.main: list[Container] = []
        self.started = False  # the sidecars and main containers were started (every init container done)
        # Why the pod could not be set up (a Secret, ConfigMap or claim missing or not readable yet): its
        # containers wait with that reason, and the runner tries again at ``retry_at`` (time.monotonic()), as
        # the kubelet retries.
        self.error: str | None = None
        self.retry_at = 0.0
        self.last_reported: Obj | None = None
        self.stopping = False
        self.ports: list[int] = []
        self.network_policies: list[str] = []  # the NetworkPolicies selecting the pod: recorded, not enforced
        base = (config.workdir or Path(tempfile.gettempdir()) / "leap0-runner").resolve()
        self.dir = base / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.claims_dir = base / "claims"
        # The PersistentVolumeClaims the pod mounts: (claim, its uid, its folder), kept after the pod.
        self.claims: list[tuple[str, str, Path]] = []
        try:
            self._build(host, lookups, taken_ports)
        except PodSpecError as exc:
            self.error = str(exc)
            self.retry_at = time.monotonic() + self.RETRY_S
            if previous is None or previous.error != self.error:
                config.log(f"runner: pod {self.namespace}/{self.name}: {exc}")

    @property
    def containers(self) -> list[Container]:
        return [*self.init, *self.sidecars, *self.main]

    def _volumes(self, lookups: Lookups) -> dict[str, Path]:
        """A folder per volume: the pod's own (gone with the pod's folder), or, for a PersistentVolumeClaim,
        the claim's (shared by the pods that mount it and kept after them, as the volume would be)."""
        volumes: dict[str, Path] = {}
        claims = podspec.claim_names(self.pod)
        for volume in self.pod.get("spec", {}).get("volumes", []):
            name = volume["name"]
            if name in claims:
                claim = claims[name]
                uid = lookups.claims(self.namespace, claim) if lookups.claims is not None else None
                if uid is None:
                    raise PodSpecError(f'persistentvolumeclaim "{claim}" not found')
                path = self.claims_dir / podspec.claim_dir_name(self.namespace, claim, uid)
                self.claims.append((claim, uid, path))
            else:
                path = self.dir / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            volumes[name] = path
        return volumes

    def _build(self, host: Host, lookups: Lookups, taken: set[int]) -> None:
        spec = self.pod.get("spec", {})
        volumes = self._volumes(lookups)
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
        # The sidecar image's supervisor is this checkout's build; without one (no Go here) the pod runs
        # without it: its init container does nothing and the command runs unwrapped.
        supervisor = self.config.supervisor
        substitutes = {contract.SUPERVISOR_IMAGE_PATH: str(supervisor)} if supervisor else {}
        unwrap = supervisor is None and any(c["name"] == contract.SUPERVISOR_INIT_CONTAINER for c in init)
        if unwrap:
            self.config.log(
                f"runner: {self.namespace}/{self.name}: no leap0 supervisor here "
                f"({self.config.supervisor_missing}); its command runs without it, so sandbox logs are off "
                "for this pod"
            )
        for container_spec, is_main in [
            *((c, False) for c in init),
            *((c, True) for c in spec["containers"]),
        ]:
            name = container_spec["name"]
            completes = not is_main and not podspec.is_sidecar(container_spec)
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
            elif completes:
                if unwrap and name == contract.SUPERVISOR_INIT_CONTAINER:
                    found: list[str] | None = ["true"]
                else:
                    found = podspec.local_command(container_spec, env, sys.executable, mounts, substitutes)
                if found is None:
                    raise PodSpecError(f"init container {name}: its image's command cannot run here")
                argv = found
            else:
                if unwrap:
                    container_spec = dict(container_spec)
                    container_spec["command"] = podspec.unwrap_supervisor(container_spec.get("command", []))
                local = podspec.local_command(container_spec, env, sys.executable, mounts, substitutes)
                if local is None:
                    self.config.log(
                        f"runner: {self.namespace}/{self.name} container {name}: its image's entrypoint "
                        "cannot run here; an idle stand-in process runs instead"
                    )
                    local = [sys.executable, "-c", "import signal; signal.pause()"]
                argv = local
            workdir = container_spec.get("workingDir")
            cwd_text = podspec.map_paths({"d": workdir}, mounts)["d"] if workdir else ""
            cwd = Path(cwd_text) if cwd_text and Path(cwd_text).is_dir() else self.dir
            restart = container_spec.get("restartPolicy") or ("Always" if not is_main else None)
            restart = restart or spec.get("restartPolicy", "Always")
            if completes:  # restarted on failure unless the pod never restarts anything
                restart = "Never" if spec.get("restartPolicy") == "Never" else "OnFailure"
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
            container.mounts = mounts
            container.state.completes = completes
            if name == contract.TELEMETRY_CONTAINER:
                container.probe_port = health
            if is_main:
                self.main.append(container)
                if init:
                    container.state.waiting_reason = "PodInitializing"
            else:
                (self.init if completes else self.sidecars).append(container)

    def start(self) -> None:
        if self.error is not None:
            return
        self._advance()

    def _advance(self) -> None:
        """Run the init containers that complete, one after the other; once each ended with 0, the rest."""
        for container in self.init:
            if container.state.running or container.state.waiting_reason == "CrashLoopBackOff":
                return
            if container.state.exit_code is None:
                container.spawn(self.config.log)
                return
            if container.state.exit_code != 0:
                return  # failed for good (restartPolicy Never): the pod is Failed
        if not self.started:
            self.started = True
            self._start_containers()

    def _start_containers(self) -> None:
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
            for container in self.init:
                if container.poll() and container.wants_restart():
                    container.schedule_restart()
                if (
                    container.state.waiting_reason == "CrashLoopBackOff"
                    and time.monotonic() >= container.next_start
                ):
                    container.spawn(self.config.log)
            self._advance()
            for container in [*self.sidecars, *self.main] if self.started else []:
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

            init, main = stuck(spec.get("initContainers", [])), stuck(spec.get("containers", []))
            return podspec.pod_status(self.pod, init, main, self.start_time, now_iso())
        order = [c["name"] for c in self.pod.get("spec", {}).get("initContainers", [])]
        init_states = sorted(
            (c.state for c in [*self.init, *self.sidecars]), key=lambda s: order.index(s.name)
        )
        return podspec.pod_status(
            self.pod, init_states, [c.state for c in self.main], self.start_time, now_iso()
        )

    def stop(self, grace: float | None = None) -> None:
        """Main containers first, then the sidecars (so the app's last telemetry still gets out). ``grace``:
        seconds from SIGTERM to SIGKILL (default: the pod's ``terminationGracePeriodSeconds``, at most
        ``max_grace_seconds``)."""
        self.stopping = True
        if grace is None:
            grace = float(self.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30))
            grace = min(grace, self.config.max_grace_seconds)
        for group in (self.main, self.sidecars):
            threads = [threading.Thread(target=c.terminate, args=(grace,)) for c in group]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def container(self, name: str | None) -> Container | None:
        """The container named (any of the pod's), or without a name its first main container."""
        if name is None:
            return self.main[0] if self.main else None
        return next((c for c in self.containers if c.spec["name"] == name), None)

    def logs(self, container: str | None) -> bytes:
        names = [c.spec["name"] for c in self.main]
        name = container or (names[0] if names else "")
        with contextlib.suppress(OSError):
            return (self.dir / f"{name}.log").read_bytes()
        return b""
