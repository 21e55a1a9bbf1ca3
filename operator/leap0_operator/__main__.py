"""``leap0-operator``: run the operator (the same handlers as ``kopf run -m leap0_operator``)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    from . import config

    try:
        operator_config, options = config.parse(sys.argv[1:] if argv is None else argv, os.environ)
    except config.ConfigError as exc:
        print(f"leap0-operator: {exc}", file=sys.stderr)
        return 2

    import kopf

    from . import handlers

    handlers.ACTIVE_CONFIG = operator_config
    handlers.ACTIVE_OPTIONS = options
    kopf.configure(verbose=options.verbose, debug=options.debug)
    kopf.run(
        clusterwide=options.clusterwide,
        namespaces=options.namespaces,
        standalone=options.standalone,
        priority=options.priority or None,
        liveness_endpoint=options.liveness_endpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
