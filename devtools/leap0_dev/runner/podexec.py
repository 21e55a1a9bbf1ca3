"""``kubectl exec`` and the SDK's ``process.execute()`` in a pod's container, as the runner runs it."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

from leap0_dev import children, podspec

if TYPE_CHECKING:
    from .watch import Runner

_JOIN = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"'


class PodExecRunner:
    """Runs ``kubectl exec`` / SDK ``process.execute`` commands in the pod's container as the runner runs it:
    the container's environment and directory, its cgroup when it has one, and its mounts (a path under one,
    such as ``/workspace/notes.txt``, points at the folder standing in for the volume).

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
        if self.runner.config.supervisor is None:  # its pods run without the supervisor: so do commands
            argv = podspec.unwrap_supervisor(argv) or argv
        # Paths in the container's volumes (the supervisor among them, and words of a `sh -c` script) are
        # local directories here; Python is this machine's (the command's own, and the one the supervisor
        # runs).
        argv = podspec.local_argv(argv, container.env, sys.executable, container.mounts) or podspec.map_argv(
            argv, container.mounts
        )
        if container.cgroup is not None:
            argv = ["/bin/sh", "-c", _JOIN, "sh", *container.cgroup.procs_files, "--", *argv]
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=container.cwd,
            env=container.env,
            stdin=pipe if target.stdin else devnull,
            stdout=pipe if target.stdout else devnull,
            stderr=pipe if target.stderr else devnull,
            start_new_session=True,
            preexec_fn=children.die_with_parent(),  # dies with the server's event loop
        )
        # What it starts lives in the container until the container stops, as on a node.
        children.adopt(process.pid)
        container.exec_groups.add(process.pid)
        return process
