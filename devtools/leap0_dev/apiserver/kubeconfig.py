"""The kubeconfig pointing kubectl, the kubernetes client and kopf at the embedded API server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONTEXT = "leap0-dev"
TOKEN = "leap0-dev-token"  # the server checks no credentials; clients just want something to send


def kubeconfig(url: str, namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig document with one cluster, user and (current) context named ``leap0-dev``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": TOKEN}}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path, url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig(url), sort_keys=False))
    return path
