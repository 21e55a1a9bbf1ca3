"""leap0: Leap0-style sandboxes on Kubernetes. The SDK; shared names live in ``leap0.constants``."""

from __future__ import annotations

__version__ = "0.1.0"
