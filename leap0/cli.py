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
    up = dev_sub.add_parser(
        "up",
        help="the local quickstart: API server, operator, local pod runner, OTLP console sink, demo sandbox",
        description="Run the whole chain on this machine: the embedded API server (with the CRDs and "
        "a default SandboxTemplate), the operator, a local pod runner playing the kubelet (each sandbox "
        "pod's sidecar, and its command where it can run here, as local processes; in real cgroups when "
        "root) and a console OTLP sink, then apply a demo Sandbox sending spans. Ctrl-C stops everything.",
    )
    up.add_argument("--port", type=int, default=6443, help="API server port (default 6443; 0: any free port)")
    up.add_argument(
        "--kubeconfig", type=Path, default=Path("kubeconfig.yaml"), help="kubeconfig file to write"
    )
    up.add_argument("--sink-port", type=int, default=4319, help="console OTLP/HTTP sink port (default 4319)")
    up.add_argument(
        "--otlp-grpc-port",
        type=int,
        default=4317,
        help="the first sidecar's OTLP/gRPC port (default 4317; a free one when taken)",
    )
    up.add_argument(
        "--otlp-http-port",
        type=int,
        default=4318,
        help="the first sidecar's OTLP/HTTP port (default 4318; a free one when taken)",
    )
    up.add_argument(
        "--metrics-interval",
        type=float,
        default=None,
        help="seconds between the sidecars' metric samples (default: the sidecar's, 10)",
    )
    up.add_argument("--no-example", action="store_true", help="do not apply the demo Sandbox")
    up.add_argument(
        "-v", "--verbose", action="store_true", help="also print the sidecars' own leap0.sidecar.* metrics"
    )
    up.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    up.add_argument(
        "--workdir", type=Path, default=Path(".leap0"), help="logs and pod files (default .leap0)"
    )
    mcp = sub.add_parser(
        "mcp",
        help="the MCP server: sandboxes as tools for AI agents (extra: pip install 'leap0[mcp]')",
        description="Serve sandboxes as Model Context Protocol tools (create_sandbox, execute_command, "
        "write_file, read_file, list_files, list_sandboxes, get_sandbox, set_timeout, delete_sandbox) over "
        "stdio, or over streamable HTTP with --http. Cluster access as for the SDK: --kubeconfig, else "
        "$KUBECONFIG, else ~/.kube/config, else in-cluster. Sandboxes are never deleted on exit.",
    )
    mcp.add_argument(
        "--namespace", "-n", default=None, help="namespace of the sandboxes (default: the context's)"
    )
    mcp.add_argument("--kubeconfig", type=Path, default=None, help="kubeconfig file")
    mcp.add_argument("--template", default=None, help="SandboxTemplate of create_sandbox when none is given")
    mcp.add_argument(
        "--max-output",
        type=int,
        default=64 * 1024,
        help="bytes kept of each of stdout and stderr of a command (default 65536)",
    )
    mcp.add_argument(
        "--max-read",
        type=int,
        default=1024 * 1024,
        help="largest file read_file returns, in bytes (default 1048576)",
    )
    mcp.add_argument(
        "--create-timeout",
        type=float,
        default=180.0,
        help="seconds create_sandbox waits for a sandbox to be Running (default 180)",
    )
    mcp.add_argument(
        "--owner",
        default=None,
        help="owner label of the sandboxes this server creates and may use (default: a random id per "
        "process; set it to keep access to them across restarts)",
    )
    mcp.add_argument(
        "--all-sandboxes",
        action="store_true",
        help="act on every sandbox of the namespace, not only this owner's",
    )
    mcp.add_argument(
        "--http",
        metavar="HOST:PORT",
        default=None,
        help="serve streamable HTTP on HOST:PORT (path /mcp) instead of stdio; a bearer token is required",
    )
    mcp.add_argument(
        "--token-file", type=Path, default=None, help="file holding the bearer token (else $LEAP0_MCP_TOKEN)"
    )
    mcp.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve HTTP without a token (allowed on a loopback address only)",
    )
    args = parser.parse_args(argv)
    if args.command == "mcp":
        return _run_mcp(args)
    if args.command == "dev" and args.dev_command == "apiserver":
        from leap0.dev.apiserver.run import run  # the dev extra's dependencies load only here

        return run(args.host, args.port, args.kubeconfig)
    if args.command == "dev" and args.dev_command == "up":
        from leap0.dev.up import UpOptions  # the dev extra's dependencies load only here
        from leap0.dev.up import run as run_up

        return run_up(
            UpOptions(
                port=args.port,
                kubeconfig=args.kubeconfig,
                sink_port=args.sink_port,
                otlp_grpc_port=args.otlp_grpc_port,
                otlp_http_port=args.otlp_http_port,
                metrics_interval=args.metrics_interval,
                example=not args.no_example,
                duration=args.duration,
                workdir=args.workdir,
                verbose=args.verbose,
            )
        )
    print(f"leap0 {args.command} {args.dev_command}: unknown command", file=sys.stderr)
    return 2


def _run_mcp(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        print(
            "leap0 mcp: the MCP server needs the mcp extra: pip install 'leap0[mcp]'",
            file=sys.stderr,
        )
        return 2
    from leap0.mcp.run import McpCommand, run

    return run(
        McpCommand(
            namespace=args.namespace,
            kubeconfig=args.kubeconfig,
            template=args.template,
            max_output=args.max_output,
            max_read=args.max_read,
            create_timeout=args.create_timeout,
            owner=args.owner,
            all_sandboxes=args.all_sandboxes,
            http=args.http,
            token_file=args.token_file,
            insecure_no_auth=args.insecure_no_auth,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
