"""``leap0 dev``: the development tools' command line (the embedded API server and the local quickstart)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leap0_dev.nodespec import NodeOptions


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def add_commands(dev: argparse.ArgumentParser) -> None:
    """The ``apiserver`` and ``up`` subcommands, on the ``dev`` parser of the ``leap0`` command."""
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
    api.add_argument(
        "--watch-history",
        type=_positive_int,
        default=None,
        metavar="N",
        help="events per resource a watch can resume from (default 10000); a watch from an older "
        "resourceVersion gets 410 Gone, as after etcd compaction",
    )
    _add_control_plane(dev_sub)
    supervisor = dev_sub.add_parser(
        "supervisor",
        help="build the leap0 supervisor (Go) into a cache outside the repository",
        description="Build the sandbox logs supervisor (supervisor/, a static Go binary) for Linux into "
        "$LEAP0_SUPERVISOR_CACHE (default ~/.cache/leap0/supervisor), once per source digest, and print "
        "the path of each binary. Needs Go 1.26+.",
    )
    supervisor_sub = supervisor.add_subparsers(dest="supervisor_command", required=True)
    supervisor_build = supervisor_sub.add_parser(
        "build", help="build (or find in the cache) and print the paths"
    )
    supervisor_build.add_argument(
        "--arch",
        action="append",
        choices=["amd64", "arm64"],
        help="an architecture to build for (repeatable; default: this machine's)",
    )
    collector = dev_sub.add_parser(
        "collector",
        help="the OpenTelemetry Collector of the tests, built with the Collector's builder",
        description="The OpenTelemetry Collector that verifies sidecars' ServiceAccount tokens in the tests "
        "(docs/security.md): see docs/control-plane.md.",
    )
    collector_sub = collector.add_subparsers(dest="collector_command", required=True)
    collector_sub.add_parser(
        "build",
        help="build it if missing and print its path",
        description="Build the Collector of devtools/otelcol/manifest.yaml with ocb, the Collector's builder "
        "(pinned in devtools/otelcol/builder), from the Go module proxy into a cache folder outside the "
        "repository (once per machine), and print one line: the binary's path. Exits 2 without Go.",
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
        "--operator-metrics-port",
        type=int,
        default=8081,
        help="the operator's /metrics port (default 8081; a free one when taken)",
    )
    up.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print the sidecars' own leap0.sidecar.* metrics, and every minute a summary of the "
        "operator's metrics (sandboxes per phase, startup p50)",
    )
    up.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    up.add_argument(
        "--control-plane",
        choices=("emulator", "real"),
        default="emulator",
        help="emulator: the embedded API server (default; starts in a second); real: kube-apiserver, "
        "etcd, the controller-manager and the scheduler built from source (docs/control-plane.md), this "
        "machine their Node and the runner its kubelet",
    )
    node_options(up)
    up.add_argument(
        "--workdir", type=Path, default=Path(".leap0"), help="logs and pod files (default .leap0)"
    )


def _add_control_plane(dev_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plane = dev_sub.add_parser(
        "control-plane",
        help="the real Kubernetes control plane, built from source (etcd, kube-apiserver, "
        "kube-controller-manager, kube-scheduler; and helm)",
        description="Build and run the real Kubernetes control plane on this machine: see "
        "docs/control-plane.md.",
    )
    plane_sub = plane.add_subparsers(dest="control_plane_command", required=True)
    plane_sub.add_parser(
        "build",
        help="build the missing binaries and print the folder that holds them",
        description="Build kube-apiserver, kube-controller-manager, kube-scheduler, etcd and helm at the "
        "versions pinned in devtools/k8s (with Go, into a cache folder outside the repository, once per "
        "machine) and print one line: the folder holding them. With KUBEBUILDER_ASSETS set, that folder is "
        "used instead. Exits 2, saying what to install, with neither Go nor KUBEBUILDER_ASSETS.",
    )
    plane_up = plane_sub.add_parser(
        "up",
        help="run etcd, the API server, the controller-manager and the scheduler",
        description="Start etcd, kube-apiserver (https on 127.0.0.1, RBAC, the default admission plugins, "
        "service-account tokens), kube-controller-manager and kube-scheduler; write an admin kubeconfig "
        "once the API answers. Ctrl-C or SIGTERM stops them all.",
    )
    plane_up.add_argument(
        "--port", type=int, default=6443, help="the API server's port (default 6443; 0: any free port)"
    )
    plane_up.add_argument(
        "--kubeconfig", type=Path, default=Path("kubeconfig.yaml"), help="admin kubeconfig file to write"
    )
    plane_up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="certificates, etcd's data and the logs (kept; default: a temporary folder removed at exit)",
    )
    _add_node_options(plane_up)


def _add_node_options(parser: argparse.ArgumentParser) -> None:
    """``--kubelet`` and the node's name and size (``control-plane up``)."""
    parser.add_argument(
        "--kubelet",
        action="store_true",
        help="make this machine a Node too: the local pod runner plays its kubelet (registers the Node, "
        "renews its Lease, runs the pods the scheduler binds to it, serves exec and logs)",
    )
    node_options(parser)


def node_options(parser: argparse.ArgumentParser) -> None:
    """The node's name and size (``control-plane up --kubelet``, ``up --control-plane real``; the
    embedded API server has no nodes)."""
    parser.add_argument(
        "--node-name", default=None, help="the Node's name (default: this host's name in lower case)"
    )
    parser.add_argument(
        "--node-cpu",
        default=None,
        metavar="QUANTITY",
        help="the Node's CPU capacity, e.g. 8 or 3500m (default: this machine's CPUs)",
    )
    parser.add_argument(
        "--node-memory",
        default=None,
        metavar="QUANTITY",
        help="the Node's memory capacity, e.g. 16Gi (default: this machine's memory)",
    )
    parser.add_argument(
        "--node-pods", type=_positive_int, default=110, help="the most pods the Node takes (default 110)"
    )


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed ``leap0 dev ...`` command."""
    if args.dev_command == "control-plane":
        from leap0_dev.controlplane import run as control_plane  # the dev extra's dependencies load here

        if args.control_plane_command == "build":
            return control_plane.build()
        return control_plane.up(
            args.port, args.kubeconfig, args.data_dir, _node(args) if args.kubelet else None
        )
    if args.dev_command == "collector":
        from leap0_dev import collector  # the dev extra's dependencies load here

        return collector.build()
    if args.dev_command == "apiserver":
        from leap0_dev.apiserver.run import run  # the dev extra's dependencies load only here

        if args.watch_history is None:
            return run(args.host, args.port, args.kubeconfig)
        return run(args.host, args.port, args.kubeconfig, watch_history=args.watch_history)
    if args.dev_command == "supervisor":
        from leap0_dev.supervisor import SupervisorBuildError, build

        try:
            for arch in args.arch or [None]:
                print(build(arch))
        except SupervisorBuildError as exc:
            print(f"leap0 dev supervisor build: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.dev_command == "up":
        from leap0_dev.up import UpOptions  # the dev extra's dependencies load only here
        from leap0_dev.up import run as run_up

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
                operator_metrics_port=args.operator_metrics_port,
                control_plane=args.control_plane,
                node=_node(args),
            )
        )
    raise AssertionError(f"unknown dev command {args.dev_command!r}")


def _node(args: argparse.Namespace) -> NodeOptions:
    from leap0_dev.nodespec import NodeOptions

    return NodeOptions(name=args.node_name, cpu=args.node_cpu, memory=args.node_memory, pods=args.node_pods)
