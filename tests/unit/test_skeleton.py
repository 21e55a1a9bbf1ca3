"""The skeleton: console scripts exist and the CRDs are well-formed and follow the contract."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from support import subprocess_env

from leap0 import constants
from leap0.crds import load_crds


def _crd(kind: str) -> dict[str, Any]:
    for crd in load_crds():
        if crd["spec"]["names"]["kind"] == kind:
            return crd
    raise AssertionError(f"no CRD for {kind}")


def test_crds_name_the_contracts_group_version_and_names() -> None:
    sandbox = _crd(constants.SANDBOX_KIND)
    assert sandbox["spec"]["group"] == constants.GROUP
    assert sandbox["spec"]["names"]["plural"] == constants.SANDBOX_PLURAL
    assert constants.SANDBOX_SHORT_NAME in sandbox["spec"]["names"]["shortNames"]
    assert sandbox["spec"]["scope"] == "Namespaced"
    (version,) = sandbox["spec"]["versions"]
    assert version["name"] == constants.VERSION
    assert version["subresources"] == {"status": {}}
    columns = {c["name"].lower() for c in version["additionalPrinterColumns"]}
    assert {"phase", "vcpu", "memory", "expires", "age"} <= columns
    template = _crd(constants.TEMPLATE_KIND)
    assert template["spec"]["names"]["plural"] == constants.TEMPLATE_PLURAL


def test_crd_schemas_carry_no_defaults() -> None:
    """Template values come before the operator's defaults, so the schema must not default anything."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert "default" not in node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for crd in load_crds():
        walk(crd["spec"]["versions"][0]["schema"])


@pytest.mark.parametrize("module", ["leap0.cli"])
def test_placeholder_commands_fail_loudly(module: str) -> None:
    args = [sys.executable, "-m", module] + (["dev", "up"] if module == "leap0.cli" else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert result.returncode != 0
    assert "not built yet" in result.stderr
