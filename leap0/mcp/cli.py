"""``leap0 mcp``'s arguments (the ``leap0`` command loads this part only with the ``mcp`` extra installed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from leap0.mcp import logic


def add_commands(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve sandboxes as Model Context Protocol tools (create_sandbox, execute_command, write_file, "
        "read_file, list_files, list_sandboxes, get_sandbox, set_timeout, delete_sandbox) over stdio, "
        "or over streamable HTTP with --http. Cluster access as for the SDK: --kubeconfig, else "
        "$KUBECONFIG, else ~/.kube/config, else in-cluster. Sandboxes are never deleted on exit."
    )
    parser.add_argument(
        "--namespace", "-n", default=None, help="namespace of the sandboxes (default: the context's)"
    )
    parser.add_argument("--kubeconfig", type=Path, default=None, help="kubeconfig file")
    parser.add_argument(
        "--template", default=None, help="SandboxTemplate of create_sandbox when none is given"
    )
    parser.add_argument(
        "--allowed-templates",
        metavar="A,B,...",
        default=None,
        help="the only SandboxTemplates clients may use (create_sandbox refuses others); the default "
        "template is --template, else the first of these",
    )
    parser.add_argument(
        "--network-policy",
        choices=logic.NETWORK_POLICIES,
        default=None,
        help="the network policy of every sandbox it creates; clients cannot change it (create_sandbox "
        "refuses another network)",
    )
    parser.add_argument(
        "--network-allow-cidrs",
        metavar="CIDR,...",
        default=None,
        help="with --network-policy Custom: the address ranges its sandboxes may reach",
    )
    parser.add_argument(
        "--max-output",
        type=int,
        default=logic.DEFAULT_MAX_OUTPUT,
        help=f"bytes kept of each of stdout and stderr of a command (default {logic.DEFAULT_MAX_OUTPUT})",
    )
    parser.add_argument(
        "--max-read",
        type=int,
        default=logic.DEFAULT_MAX_READ,
        help=f"largest file read_file returns, in bytes (default {logic.DEFAULT_MAX_READ})",
    )
    parser.add_argument(
        "--create-timeout",
        type=float,
        default=logic.DEFAULT_CREATE_TIMEOUT,
        help=f"seconds create_sandbox waits for Running (default {logic.DEFAULT_CREATE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--owner",
        default=None,
        help="owner label of the sandboxes this server creates and may use (default: a random id per "
        "process; set it to keep access to them across restarts)",
    )
    parser.add_argument(
        "--owner-key-file",
        type=Path,
        default=None,
        help="file holding the key (at least 32 bytes) that signs its sandboxes' ownership, so a label "
        "planted by someone else is not ownership (default: ~/.config/leap0/mcp-owner.key, created on "
        "first use; set it with --owner to keep access across restarts on another machine or pod)",
    )
    parser.add_argument(
        "--all-sandboxes",
        action="store_true",
        help="act on every sandbox of the namespace, not only this owner's",
    )
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        default=None,
        help="serve streamable HTTP on HOST:PORT (path /mcp) instead of stdio; a bearer token is required",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help=f"file holding the bearer token (else ${logic.ENV_TOKEN})",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve HTTP without a token (allowed on a loopback address only)",
    )


def run(args: argparse.Namespace) -> int:
    from leap0.mcp.run import McpCommand
    from leap0.mcp.run import run as run_server

    return run_server(
        McpCommand(
            namespace=args.namespace,
            kubeconfig=args.kubeconfig,
            template=args.template,
            allowed_templates=args.allowed_templates,
            network_policy=args.network_policy,
            network_allow_cidrs=args.network_allow_cidrs,
            owner_key_file=args.owner_key_file,
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
