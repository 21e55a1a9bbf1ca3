"""How every leap0 command answers input it cannot use: one line saying what to do, exit code 2.

``leap0``, ``leap0 dev up``, ``leap0 dev apiserver``, ``leap0 mcp``, ``leap0-operator`` and ``leap0-sidecar``
answer a bad flag, a taken port or a missing file alike: ``<command>: <what is wrong>; <what to do>`` on
stderr, exit code :data:`EXIT_USAGE`, no traceback. Standard library only, like the rest of the contract.
"""

from __future__ import annotations

import argparse
import errno
import socket
from typing import NoReturn

# The exit code of a command given something it cannot use (argparse's own, and the shells' usage code).
EXIT_USAGE = 2


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (the usage block is left to ``--help``); its
    subparsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; see {self.prog} --help\n")


def port_problem(exc: OSError, what: str, where: str, how: str) -> str:
    """The line for ``exc`` raised binding ``what`` (``the OTLP/HTTP receiver``) to ``where`` (``host:port``);
    ``how`` says how to choose another (``--port PORT`` or ``LEAP0_OTLP_HTTP_ENDPOINT=host:port``)."""
    if exc.errno == errno.EADDRINUSE or "address already in use" in str(exc).lower():
        why, fix = "the port is in use", f"stop what uses it, or choose another with {how}"
    elif exc.errno == errno.EACCES:
        why, fix = "permission denied (ports below 1024 need root)", f"choose another with {how}"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why, fix = "no such address on this machine", f"choose another with {how}"
    else:
        why, fix = exc.strerror or str(exc), f"choose another with {how}"
    return f"cannot listen on {where} for {what}: {why}; {fix}"


def bind_error(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be listened on now (taken, not this machine's), or None: for a server that
    binds later or says less (kopf's liveness endpoint, grpcio's "failed to bind")."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def file_problem(exc: OSError, what: str, path: object, how: str) -> str:
    """The line for ``exc`` raised reading or writing ``what`` (``the kubeconfig``) at ``path``; ``how`` says
    how to name another (``--kubeconfig FILE``)."""
    reasons = {
        errno.ENOENT: "no such file or directory",
        errno.ENOTDIR: "a part of its path is a file, not a directory",
        errno.EEXIST: "a part of its path is a file, not a directory",  # (mkdir of a directory's parents)
        errno.EISDIR: "it is a directory",
        errno.EACCES: "permission denied",
    }
    why = reasons.get(exc.errno or 0) or exc.strerror or str(exc)
    return f"cannot use {path} as {what}: {why}; {how}"
