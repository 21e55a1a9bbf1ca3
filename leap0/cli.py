"""The ``leap0`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leap0", description="leap0 sandboxes on Kubernetes")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="development tools: embedded API server, local quickstart")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    api = dev_sub.add_parser("apiserver", help="run the embedded Kubernetes API with the leap0 CRDs")
    api.add_argument("--port", type=int, default=6443)
    api.add_argument("--kubeconfig", default="kubeconfig.yaml")
    dev_sub.add_parser("up", help="the local quickstart")
    args = parser.parse_args(argv)
    print(f"leap0 {args.command} {args.dev_command}: not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
