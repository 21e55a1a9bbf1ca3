"""Quickstart of the leap0 Python SDK.

Against the local emulator::

    leap0 dev apiserver --port 6443 --kubeconfig kubeconfig.yaml &     # the Kubernetes API, in memory
    export KUBECONFIG=$PWD/kubeconfig.yaml
    python examples/sdk_quickstart.py --no-wait                         # API only: nothing starts pods

With something that runs sandboxes (``leap0 dev up``, or a real cluster with the operator installed), drop
``--no-wait``: the script then waits for the sandbox to be Running and runs a command and a file round trip in
it. Set ``OTEL_EXPORTER_OTLP_ENDPOINT`` to also get the SDK's own spans and metrics, and ``--otel-export`` to
forward the sandbox's telemetry there.
"""

from __future__ import annotations

import argparse
import sys

from leap0 import Leap0Client, Leap0Error, SandboxTimeoutError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--namespace", default=None, help="default: the kubeconfig context's, else 'default'")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for Running (API emulator only)")
    parser.add_argument("--otel-export", action="store_true", help="forward the sandbox's telemetry")
    parser.add_argument("--wait-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    with Leap0Client(namespace=args.namespace) as client:
        print(f"namespace: {client.namespace}")
        try:
            sandbox = client.sandboxes.create(
                vcpu=1,
                memory=1024,
                timeout=300,
                env_vars={"GREETING": "hello from leap0"},
                otel_export=args.otel_export,
                wait=not args.no_wait,
                wait_timeout=args.wait_timeout,
            )
        except SandboxTimeoutError as exc:
            print(f"error: {exc} (is an operator running? try --no-wait)", file=sys.stderr)
            if exc.sandbox_id:
                client.sandboxes.delete(exc.sandbox_id)
            return 1
        except Leap0Error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            print(f"created sandbox {sandbox.id} (phase: {sandbox.phase or 'Pending'})")
            print("sandboxes here:", ", ".join(s.id for s in client.sandboxes.list()))
            if not args.no_wait:
                result = sandbox.process.execute("echo hello from leap0; uname -s")
                print(f"exit code {result.exit_code}, stdout: {result.stdout.strip()!r}")
                sandbox.filesystem.write("hello.txt", "written by the SDK\n")
                print("read back:", sandbox.filesystem.read_text("hello.txt").strip())
        except Leap0Error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            sandbox.delete()
            print(f"deleted sandbox {sandbox.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
