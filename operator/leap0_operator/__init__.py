"""The leap0 operator: reconciles Sandbox resources into sandbox pods (kopf).

``leap0-operator`` (``python -m leap0_operator``) is the way to run it, with flags for its settings.
``kopf run -m leap0_operator`` works as well: when kopf is already loaded, importing this package registers
the handlers (``leap0_operator.handlers``); otherwise importing the package imports nothing else.
"""

from __future__ import annotations

import sys

if "kopf" in sys.modules:  # loaded by `kopf run -m leap0_operator` (or next to kopf): register the handlers
    from . import handlers as handlers
