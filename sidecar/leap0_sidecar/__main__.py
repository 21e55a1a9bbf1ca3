"""``leap0-sidecar``: run the telemetry sidecar (configured by environment variables, see docs/sidecar.md)."""

from __future__ import annotations

import logging
import os
import signal
import sys

from leap0_contract.cli import EXIT_USAGE, OneLineArgumentParser
from leap0_sidecar import config as config_module
from leap0_sidecar import malloc

# prctl(2): PR_SET_DUMPABLE 0 makes the process's /proc files (environ, mem, fd, root, cwd...) and ptrace need
# CAP_SYS_PTRACE, even for a process of the same UID: an app that became the sidecar's UID (root with SETUID,
# in the shared process namespace) cannot read its environment, memory or files. The sidecar image also makes
# the interpreter unreadable to it, which makes the process non-dumpable from its exec on (docs/security.md).
_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


def make_non_dumpable() -> bool:
    """Turn off dumpability; True when the process is (now) not dumpable."""
    import contextlib
    import ctypes

    with contextlib.suppress(AttributeError, OSError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        return bool(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)
    return False


def main(argv: list[str] | None = None) -> int:
    make_non_dumpable()  # first: before anything secret is read
    # A SIGTERM during start-up (imports take a moment) still means an orderly stop with exit code 0.
    early_signals: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, frame: early_signals.append(received))
    parser = OneLineArgumentParser(
        prog="leap0-sidecar",
        description="The leap0 telemetry sidecar: receives OTLP on localhost, samples the sandbox's cgroup, "
        "stamps the sandbox's identity and forwards everything as OTLP/HTTP. Configured by environment "
        "variables (OTEL_EXPORTER_OTLP_*, LEAP0_*); see docs/sidecar.md.",
    )
    parser.parse_args(argv)
    malloc.configure()
    try:
        config = config_module.load(os.environ)
    except config_module.ConfigError as exc:
        print(f"leap0-sidecar: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s leap0-sidecar: %(message)s",
        stream=sys.stderr,
    )
    if not any(u is not None and u.scheme == "https" for u in config.upstreams.values()):
        # Without an https upstream the ssl module (OpenSSL, about 4 MiB of the sidecar's memory) is never
        # needed: asyncio loads it at import unless it is marked absent, and then works without it.
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    import asyncio

    from leap0_sidecar.app import CannotListen, Sidecar, taken_endpoint
    from leap0_sidecar.sandbox_metrics import MetricsSampler

    problem = taken_endpoint(config)
    if problem is not None:
        print(f"leap0-sidecar: {problem}", file=sys.stderr)
        return EXIT_USAGE
    sampler = MetricsSampler(config.sampler)

    async def run() -> int:
        sidecar = Sidecar(config, sampler)
        for signum in early_signals:
            sidecar.request_stop(signal.Signals(signum).name)
        return await sidecar.run()

    try:
        return asyncio.run(run())
    except CannotListen as exc:
        print(f"leap0-sidecar: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
