"""The ``leap0`` command. Each subcommand belongs to a part installed by an extra, loaded only when used."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import NamedTuple

from leap0_contract.cli import EXIT_USAGE, OneLineArgumentParser


class _Part(NamedTuple):
    module: str  # has add_commands(parser) and run(args)
    extra: str  # the extra that installs its dependencies
    requires: tuple[str, ...]  # modules that extra brings


# subcommand -> the part that serves it
_PARTS = {
    "dev": _Part(
        "leap0_dev.cli", "dev", ("aiohttp", "jsonpatch", "cel_expr_python", "kopf", "leap0_sidecar")
    ),
    "mcp": _Part("leap0.mcp.cli", "mcp", ("mcp", "uvicorn")),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = OneLineArgumentParser(prog="leap0", description="leap0 sandboxes on Kubernetes")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "dev", help="development tools: embedded API server, local quickstart (extra: dev)", add_help=False
    )
    sub.add_parser(
        "mcp", help="the MCP server: sandboxes as tools for AI agents (extra: mcp)", add_help=False
    )
    known, _ = parser.parse_known_args(argv)
    spec = _PARTS[known.command]
    missing = [name for name in spec.requires if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"leap0 {known.command} needs the {spec.extra!r} extra ({', '.join(missing)} not installed): "
            f"pip install 'leap0[{spec.extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    part = importlib.import_module(spec.module)
    # The part's own parser, now that it is importable: the full help and argument checking.
    parser = OneLineArgumentParser(prog="leap0", description="leap0 sandboxes on Kubernetes")
    sub = parser.add_subparsers(dest="command", required=True)
    part.add_commands(sub.add_parser(known.command, help=f"(extra: {spec.extra})"))
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the (sub)command they were given to
        chosen = [v for k, v in vars(args).items() if k.endswith("command") and isinstance(v, str)]
        command = " ".join(["leap0", *chosen])
        print(
            f"{command}: unrecognized arguments: {' '.join(unknown)}; see {command} --help", file=sys.stderr
        )
        return EXIT_USAGE
    result: int = part.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
