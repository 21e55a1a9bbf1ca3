"""``leap0-operator``: run the operator (the same handlers as ``kopf run -m leap0_operator``)."""

from __future__ import annotations

import gc
import importlib.util
import os
import sys

# kopf imports these optional clients, when installed, only to recognise their model objects in kopf.adopt()
# and the like; the operator never passes such objects and talks to the API through kopf's own session.
# The operator's image does not have them (it installs the operator extra alone), so there this does nothing.
# `pip install 'leap0[operator]'` and the dev venv do have `kubernetes` (a base dependency of the SDK), and
# there hiding the clients from this process saves ~50 MiB of RSS (kopf alone ~42 MiB, ~95 MiB with them).
UNUSED_CLIENTS = ("kubernetes", "kubernetes_asyncio", "pykube")
# kopf allocates many short-lived objects per watch event: with CPython's default generation-0 threshold (700)
# the cyclic collector runs every few events. Collecting less often, with everything imported at startup
# frozen out of the scans, cut the operator's CPU per sandbox by 6-10% in bench/operator_bench.py (1,000
# sandboxes, mean of 5 runs: 3.31 -> 3.10 ms), peak RSS unchanged. Only when collection happens changes.
GC_THRESHOLDS = (10_000, 20, 20)


def hide_unused_kubernetes_clients() -> list[str]:
    """Hide the installed clients of ``UNUSED_CLIENTS`` from kopf (only those installed: in the operator's
    image there are none and nothing changes). Returns the names hidden."""
    if "kopf" in sys.modules:
        return []  # too late: kopf has imported whatever it found
    hidden = []
    for name in UNUSED_CLIENTS:
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            sys.modules[name] = None  # type: ignore[assignment]  # then `import name` raises ImportError
            hidden.append(name)
    return hidden


def main(argv: list[str] | None = None) -> int:
    from leap0_contract.cli import EXIT_USAGE, bind_error, host_port, port_problem

    from . import config

    try:
        operator_config, options = config.parse(sys.argv[1:] if argv is None else argv, os.environ)
    except config.ConfigError as exc:
        print(f"leap0-operator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problem = config.cluster_access_problem(os.environ, os.path.exists)
    for what, host, port, how in config.listen_addresses(options):
        error = bind_error(host, port)
        if problem is None and error is not None:
            problem = port_problem(error, what, host_port(host, port), how)
    if problem is not None:
        print(f"leap0-operator: {problem}", file=sys.stderr)
        return EXIT_USAGE

    hide_unused_kubernetes_clients()
    import kopf

    from . import handlers as handlers  # registers the handlers with kopf

    memo = kopf.Memo(config=operator_config, options=options)  # read by handlers.configure (startup)
    if options.metrics_port is not None:
        from .metrics import Metrics

        memo.metrics = Metrics()
        address = options.metrics_bind_address
        try:
            port = memo.metrics.serve(options.metrics_port, address)
        except OSError as exc:  # (taken between the check above and now)
            where = host_port(address, options.metrics_port)
            how = "--metrics-port PORT (or LEAP0_OPERATOR_METRICS_PORT; 0: any free port)"
            print(f"leap0-operator: {port_problem(exc, 'the metrics', where, how)}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"leap0-operator: metrics at http://{host_port(address, port)}/metrics",
            file=sys.stderr,
            flush=True,
        )

    gc.freeze()  # the modules and objects of startup are long-lived: not scanned again
    gc.set_threshold(*GC_THRESHOLDS)
    kopf.configure(verbose=options.verbose, debug=options.debug)
    kopf.run(
        clusterwide=options.clusterwide,
        namespaces=options.namespaces,
        standalone=options.standalone,
        priority=options.priority or None,
        liveness_endpoint=options.liveness_endpoint,
        memo=memo,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
