"""``leap0 dev apiserver``: serve until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from leap0_dev.crds import load_crds

from .exec import ExecHandler
from .kubeconfig import write_kubeconfig
from .server import ApiServer
from .store import DEFAULT_HISTORY


async def serve(host: str, port: int, kubeconfig: Path, watch_history: int = DEFAULT_HISTORY) -> None:
    server = ApiServer(load_crds(), history_size=watch_history)
    # `kubectl exec` and the SDK's process.execute run the command as a local process (a kubelet stand-in).
    server.exec_handler = ExecHandler()
    url = await server.start(host, port)
    write_kubeconfig(kubeconfig, url)
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


def run(host: str, port: int, kubeconfig: Path, watch_history: int = DEFAULT_HISTORY) -> int:
    try:
        asyncio.run(serve(host, port, kubeconfig.absolute(), watch_history))
    except OSError as exc:
        print(f"leap0 dev apiserver: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
