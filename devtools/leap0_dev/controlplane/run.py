"""``leap0 dev control-plane build`` and ``leap0 dev control-plane up``."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from leap0_dev import children, gocache, nodespec
from leap0_dev.nodespec import NodeOptions
from leap0_dev.runner.kubelet import KubeletError

from .build import BuildError, ensure_binaries, ensure_kubelet
from .node import LocalNode
from .plane import ControlPlane, ControlPlaneError

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build() -> int:
    """Build what is missing; print one line, the folder holding the five binaries."""

    def ensure(say: Callable[[str], None]) -> Path:
        folder = ensure_binaries(progress=say)
        # and the kubelet endpoint of --kubelet (seconds, once the control plane's build warmed Go's cache)
        ensure_kubelet(progress=say)
        return folder

    return gocache.build_command("leap0 dev control-plane build", ensure)


def up(port: int, kubeconfig: Path, data_dir: Path | None, node: NodeOptions | None = None) -> int:
    """Run the control plane until Ctrl-C, SIGTERM or SIGHUP (or a component's exit: code 1); with ``node``,
    this machine as a Node too, the local runner its kubelet (``--kubelet``)."""
    try:
        if node is not None:
            node.node_name()  # a bad --node-name is said before anything starts
            nodespec.check_size(node.cpu, node.memory, node.pods)
        binaries = ensure_binaries(progress=_say)
        if node is not None:
            ensure_kubelet(progress=_say)
    except nodespec.NodeSpecError as exc:
        _say(f"leap0 dev control-plane up: {exc}")
        return 2
    except BuildError as exc:
        _say(f"leap0 dev control-plane up: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("leap0 dev control-plane up: interrupted while building")
        return 130
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    plane = ControlPlane(binaries, port=port, kubeconfig=kubeconfig.resolve(), data_dir=data_dir, log=_say)
    local: LocalNode | None = None
    code = 0
    try:
        plane.start()
        if node is not None:
            local = LocalNode(plane, node, log=_say).start()
        _say(f"control-plane: {plane.url} is up; export KUBECONFIG={plane.kubeconfig}")
        _say(f"control-plane: data and logs in {plane.data_dir}; Ctrl-C stops everything")
        while not stop.wait(0.5):
            failed = plane.exited()
            if failed is not None:
                _say(f"control-plane: {failed} exited; the end of its log:\n{plane.log_tail(failed)}")
                code = 1
                break
    except (ControlPlaneError, KubeletError) as exc:
        _say(f"control-plane: cannot start: {exc}")
        code = 1
    finally:
        _say("control-plane: stopping")
        if local is not None:
            local.stop()
        plane.stop()
        children.close()
        for sig, old in previous.items():
            signal.signal(sig, old)
        _say("control-plane: stopped")
    return code
