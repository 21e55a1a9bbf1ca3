"""What each image installs is enough, and no more: every module of the package imports with only the
distributions its Dockerfile installs (each part: its extra alone; the sidecar without kopf or the kubernetes
client, the operator without the kubernetes client, pydantic or the OTel SDK).

Each check runs in a child interpreter whose imports are limited to the standard library, this project's
packages and the files of the distributions the image would hold (the extra's requirements and what they
require), the way the image's ``site-packages`` would be.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from support import REPO, subprocess_env

# The child: nothing outside the allowed modules is found, then every module of the package is imported.
CHILD = r"""
import importlib, importlib.machinery, json, pkgutil, sys
allowed = set(json.loads(sys.stdin.read()))
package = sys.argv[1]
own = ("leap0", "leap0_operator", "leap0_sidecar", package.split(".")[0])

def present(fullname):
    top = fullname.split(".")[0]
    if top in sys.stdlib_module_names or top in own or fullname in allowed:
        return True
    return any(name.startswith(fullname + ".") for name in allowed)  # a namespace package of allowed ones

class Gate(importlib.machinery.PathFinder):
    # Stands for the path finder: what the image lacks is simply not found (ModuleNotFoundError).
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if not present(fullname):
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, path, target)

sys.meta_path[:] = [Gate if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
root = importlib.import_module(package)
failures = []
for info in pkgutil.walk_packages(root.__path__, package + "."):
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        failures.append(f"{info.name}: {exc}")
print(json.dumps(failures))
"""


def requirement_closure(requirements: list[str]) -> set[str]:
    """The distributions pip would install for these requirements (as installed here)."""
    seen: set[str] = set()
    stack = list(requirements)
    while stack:
        requirement = Requirement(stack.pop())
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = requirement.name.lower().replace("_", "-")
        if name in seen or name == "leap0":
            continue
        seen.add(name)
        try:
            stack.extend(metadata.distribution(name).requires or [])
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is required but not installed here")
    return seen


def modules_of(distribution: str) -> set[str]:
    modules: set[str] = set()
    for file in metadata.distribution(distribution).files or []:
        parts = file.parts
        if parts[0] == ".." or parts[0].endswith((".dist-info", ".data")) or "__pycache__" in parts:
            continue
        if file.suffix == ".py":
            names = [*parts[:-1], file.stem] if file.stem != "__init__" else list(parts[:-1])
        elif file.suffix == ".so":
            names = [*parts[:-1], file.name.split(".")[0]]
        else:
            continue
        if names:
            modules.add(".".join(names))
    return modules


def image_requirements(extra: str, with_base: bool) -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base: list[str] = project["dependencies"] if with_base else []
    return [*base, *project["optional-dependencies"][extra]]


def failures_importing(package: str, requirements: list[str]) -> list[str]:
    allowed = sorted({m for dist in requirement_closure(requirements) for m in modules_of(dist)})
    result = subprocess.run(
        [sys.executable, "-c", CHILD, package],
        input=json.dumps(allowed),
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    failures: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return failures


def test_sidecar_imports_with_its_extra_alone() -> None:
    """sidecar/Dockerfile installs the wheel --no-deps plus the sidecar extra: that must be enough."""
    assert failures_importing("leap0_sidecar", image_requirements("sidecar", with_base=False)) == []


def test_operator_imports_with_its_extra_alone() -> None:
    """operator/Dockerfile installs the wheel --no-deps plus the operator extra (kopf and what kopf needs):
    that must be enough, without the kubernetes client, pydantic or the OTel SDK."""
    assert failures_importing("leap0_operator", image_requirements("operator", with_base=False)) == []


def test_the_gate_refuses_what_the_image_lacks(tmp_path: Path) -> None:
    package = tmp_path / "needs_kopf"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "handlers.py").write_text("import kopf\n")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, "needs_kopf"],
        input=json.dumps(sorted(modules_of("psutil"))),  # any installed distribution but kopf
        capture_output=True,
        text=True,
        env=subprocess_env(PYTHONPATH=str(tmp_path)),
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == ["needs_kopf.handlers: No module named 'kopf'"]
