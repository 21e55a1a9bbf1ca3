"""Print the requirements of one extra of pyproject.toml, one per line (used by the Dockerfiles).

The images install the project's wheel with ``--no-deps`` plus exactly these, so the sidecar's image gets
its own extra and nothing else (no kopf, no kubernetes client). Standard library only: it runs before
anything is installed.

Usage: python scripts/extra_requirements.py EXTRA [PYPROJECT]
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def extra_requirements(pyproject: Path, extra: str) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    if extra not in extras:
        raise SystemExit(f"no extra {extra!r} in {pyproject} (extras: {', '.join(sorted(extras))})")
    return list(extras[extra])


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    pyproject = Path(argv[1]) if len(argv) == 2 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    print("\n".join(extra_requirements(pyproject, argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
