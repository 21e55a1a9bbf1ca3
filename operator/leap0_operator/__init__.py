"""The leap0 operator: reconciles Sandbox resources into sandbox pods (kopf).

Importing the package registers its kopf handlers, so ``kopf run -m leap0_operator`` works; ``leap0-operator``
(``leap0_operator.__main__``) adds flags for the operator's settings.
"""

from __future__ import annotations

from . import handlers as handlers
