"""The contract's names exist once, in ``leap0_contract``: the docs' tables and every part follow it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, subprocess_env

import leap0_contract as contract

# Every markdown table row naming a sandbox metric: | `name` | `unit` | meaning |
_ROW = re.compile(r"^\|\s*`(leap0\.sandbox\.[a-z_.]+)`\s*\|\s*`([^`]*)`\s*\|\s*(.*?)\s*\|\s*$")
# Docs with a table of the seven sandbox metrics.
_METRIC_TABLE_DOCS = ["README.md", "docs/sidecar-metrics.md"]


def _metric_rows(path: Path) -> list[tuple[str, str, str]]:
    return [m.groups() for line in path.read_text().splitlines() if (m := _ROW.match(line))]  # type: ignore[misc]


def test_metric_table_is_the_contracts() -> None:
    """The seven gauges, their units, letter for letter (a change here changes what users query)."""
    assert contract.SANDBOX_METRICS == {
        "leap0.sandbox.cpu.utilization": "%",
        "leap0.sandbox.cpu.limit": "{cpu}",
        "leap0.sandbox.memory.utilization": "%",
        "leap0.sandbox.memory.usage": "By",
        "leap0.sandbox.memory.limit": "By",
        "leap0.sandbox.filesystem.utilization": "%",
        "leap0.sandbox.filesystem.usage": "By",
    }


@pytest.mark.parametrize("doc", _METRIC_TABLE_DOCS)
def test_docs_metric_tables_match_the_contract(doc: str) -> None:
    rows = _metric_rows(REPO / doc)
    assert [(name, unit) for name, unit, _ in rows] == [
        (m.name, m.unit) for m in contract.SANDBOX_METRIC_TABLE
    ]


def test_readme_describes_each_metric_as_the_contract_does() -> None:
    rows = _metric_rows(REPO / "README.md")
    assert [(name, meaning) for name, _, meaning in rows] == [
        (m.name, m.description) for m in contract.SANDBOX_METRIC_TABLE
    ]


def test_no_other_doc_has_a_diverging_metric_table() -> None:
    """A metric table anywhere in the docs names only contract metrics with the contract's units."""
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for name, unit, _ in _metric_rows(path):
            assert contract.SANDBOX_METRICS.get(name) == unit, (path.name, name, unit)


def _imported_by(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(','.join(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, check=True
    )
    return set(out.stdout.strip().split(","))


def test_the_contract_imports_only_the_standard_library() -> None:
    baseline = _imported_by("pass")
    added = {m.split(".")[0] for m in _imported_by("import leap0_contract") - baseline}
    stdlib = set(sys.stdlib_module_names) | {"leap0_contract"}
    assert added <= stdlib, sorted(added - stdlib)


# What each part's image lacks: importing the part must work without these (they are blocked in the child),
# and must not import the SDK either.
_NOT_IN_IMAGE = {
    "leap0_sidecar.__main__": ("leap0", "leap0_operator", "kopf", "kubernetes", "pydantic"),
    "leap0_operator.handlers": ("leap0", "kubernetes", "kubernetes_asyncio", "pydantic", "opentelemetry"),
}


@pytest.mark.parametrize("part", sorted(_NOT_IN_IMAGE))
def test_parts_import_the_contract_not_the_sdk(part: str) -> None:
    blocked = _NOT_IN_IMAGE[part]
    modules = _imported_by(f"for name in {blocked!r}:\n    sys.modules[name] = None\nimport {part}")
    assert "leap0_contract" in modules
    loaded = sorted(m for m in modules if m.split(".")[0] in blocked and m not in blocked)
    assert loaded == [], loaded
