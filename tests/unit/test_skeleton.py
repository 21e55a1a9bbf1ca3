"""The skeleton: console scripts exist and the CRDs are well-formed and follow the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import leap0_contract as contract
from leap0_dev.crds import load_crds


def _crd(kind: str) -> dict[str, Any]:
    for crd in load_crds():
        if crd["spec"]["names"]["kind"] == kind:
            return crd
    raise AssertionError(f"no CRD for {kind}")


def test_crds_name_the_contracts_group_version_and_names() -> None:
    sandbox = _crd(contract.SANDBOX_KIND)
    assert sandbox["spec"]["group"] == contract.GROUP
    assert sandbox["spec"]["names"]["plural"] == contract.SANDBOX_PLURAL
    assert contract.SANDBOX_SHORT_NAME in sandbox["spec"]["names"]["shortNames"]
    assert sandbox["spec"]["scope"] == "Namespaced"
    (version,) = sandbox["spec"]["versions"]
    assert version["name"] == contract.VERSION
    assert version["subresources"] == {"status": {}}
    columns = {c["name"].lower() for c in version["additionalPrinterColumns"]}
    assert {"phase", "vcpu", "memory", "expires", "age"} <= columns
    template = _crd(contract.TEMPLATE_KIND)
    assert template["spec"]["names"]["plural"] == contract.TEMPLATE_PLURAL


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


def test_the_packaged_crd_folder_is_the_repositorys_crds() -> None:
    """A non-editable install finds the CRDs through leap0_dev/_crds, a link to crds/ built into the wheel."""
    import leap0_dev

    packaged = Path(leap0_dev.__file__).parent / "_crds"
    repo = Path(leap0_dev.__file__).parent.parent.parent / "crds"
    assert packaged.is_symlink()
    assert packaged.resolve() == repo.resolve()
    assert sorted(p.name for p in packaged.glob("*.yaml")) == sorted(p.name for p in repo.glob("*.yaml"))
