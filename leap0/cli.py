"""The ``leap0`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leap0", description="leap0 sandboxes on Kubernetes")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="development tools: embedded API server, local quickstart")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    api = dev_sub.add_parser(
        "apiserver",
        help="run the embedded Kubernetes API with the leap0 CRDs",
        description="Serve an in-memory Kubernetes API (plain http on 127.0.0.1) with the CRDs of crds/ and "
        "write a kubeconfig for kubectl, the kubernetes client and kopf. Stops on Ctrl-C or SIGTERM.",
    )
    api.add_argument(
        "--port", type=int, default=6443, help="port to listen on (0: any free port; default 6443)"
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument(
        "--kubeconfig", type=Path, default=Path("kubeconfig.yaml"), help="kubeconfig file to write"
    )
    dev_sub.add_parser("up", help="the local quickstart")
    args = parser.parse_args(argv)
    if args.command == "dev" and args.dev_command == "apiserver":
        from leap0.dev.apiserver.run import run  # the dev extra's dependencies load only here

        return run(args.host, args.port, args.kubeconfig)
    print(f"leap0 {args.command} {args.dev_command}: not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
