"""``leap0 dev apiserver``: serve until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from leap0_contract.cli import EXIT_USAGE, file_problem, port_problem
from leap0_dev.crds import load_crds

from .exec import ExecHandler
from .kubeconfig import write_kubeconfig
from .server import ApiServer
from .store import DEFAULT_HISTORY


async def serve(host: str, port: int, kubeconfig: Path, watch_history: int = DEFAULT_HISTORY) -> None:
    server = ApiServer(load_crds(), history_size=watch_history)
    # `kubectl exec` and the SDK's process.execute run the command as a local process (a kubelet stand-in).
    server.exec_handler = ExecHandler()
    try:
        url = await server.start(host, port)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise CannotStart(
            port_problem(exc, "the API server", where, "--port PORT (0: any free port)")
        ) from None
    try:
        write_kubeconfig(kubeconfig, url)
    except OSError as exc:
        await server.stop()
        raise CannotStart(
            file_problem(exc, "the kubeconfig", kubeconfig, "name another with --kubeconfig FILE")
        ) from None
    print(f"leap0 dev apiserver: listening on {url} (plain http, no authentication)", flush=True)
    print(f"kubeconfig written to {kubeconfig}: export KUBECONFIG={kubeconfig}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
        print("leap0 dev apiserver: stopped", file=sys.stderr, flush=True)


class CannotStart(Exception):
    """What keeps the server from starting, as the one line to print."""


def run(host: str, port: int, kubeconfig: Path, watch_history: int = DEFAULT_HISTORY) -> int:
    try:
        asyncio.run(serve(host, port, kubeconfig.absolute(), watch_history))
    except CannotStart as exc:
        print(f"leap0 dev apiserver: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0
