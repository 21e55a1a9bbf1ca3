"""Locate and load the CRDs in ``crds/``: the one source of truth for the operator, chart and emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_PACKAGED = Path(__file__).parent / "_crds"
_REPO = Path(__file__).resolve().parent.parent.parent / "crds"


def crd_dir() -> Path:
    """The folder holding the CRD manifests: ``crds/`` in a checkout, else the copy packaged here."""
    return _REPO if _REPO.is_dir() else _PACKAGED


def load_crds() -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in the CRD folder, in file-name order."""
    docs: list[dict[str, Any]] = []
    for path in sorted(crd_dir().glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return docs
