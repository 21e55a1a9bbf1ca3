"""One container as a local process: started (held until its sidecars run), watched, restarted as its restart
policy says, probed for readiness, and stopped with its whole process group."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from leap0_dev import children, podspec
from leap0_dev.podspec import ContainerState, Obj

from .cgroups import Cgroup
from .config import Log
from .logs import ContainerLog


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- processes ---------------------------------------------------------------------------------------------
# Joins the cgroups given before "--", waits for a line on stdin (the runner releases the container once its
# sidecars run), then becomes the container's command with stdin from /dev/null. The pid stays the same.
_WRAPPER = (
    'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 126; shift; done; shift; '
    'read -r _ || true; exec "$@" </dev/null'
)


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
        self.output = ContainerLog(log_path)
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
        # Process groups of the commands ``kubectl exec`` ran in this container: they end with it.
        self.exec_groups: set[int] = set()
        # Mount path -> the local folder standing in for its volume (exec commands' paths are mapped too).
        self.mounts: dict[str, str] = {}

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
        self.process = children.popen(
            argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        self.output.relay(self.process.stdout, self.cgroup_name)  # to log_path, each line's time kept
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
        process = self.process
        if process is None or process.poll() is None:
            return False
        oom = self.cgroup.oom_killed() if self.cgroup else False
        code, reason = podspec.exit_reason(process.returncode, oom)
        self.state.running = False
        self.state.ready = False
        self.state.exit_code = code
        self.state.reason = reason
        self.state.finished_at = now_iso()
        # What the container's command left running goes with it, as a container's processes go with its
        # first process.
        for group in (process.pid, *self.exec_groups):
            children.kill_group(group)
            children.forget(group)
        self.exec_groups.clear()
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
        children.kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            children.kill_group(process.pid, signal.SIGKILL)
            process.wait(5)
        self.poll()  # also kills what the container left behind in its group
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
