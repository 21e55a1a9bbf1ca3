"""The JavaScript SDK's copy of the contract's names (js/src/constants.ts) says what leap0_contract says."""

from __future__ import annotations

import json
import re

from support import REPO

import leap0_contract as c

CONSTANTS = REPO / "js" / "src" / "constants.ts"
_LITERAL = re.compile(r'^export const (\w+) = "([^"]*)";$', re.MULTILINE)
_NUMBER = re.compile(r"^export const (\w+) = (\d+);$", re.MULTILINE)


def js_names() -> dict[str, str]:
    return dict(_LITERAL.findall(CONSTANTS.read_text()))


def test_every_js_number_has_the_contracts_value() -> None:
    numbers = {name: int(value) for name, value in _NUMBER.findall(CONSTANTS.read_text())}
    assert "SDK_OTEL_EXPORT_TIMEOUT_MS" in numbers
    for name, value in numbers.items():
        assert getattr(c, name, None) == value, f"{name}: js {value}, contract {getattr(c, name, None)!r}"


def test_every_js_name_has_the_contracts_value() -> None:
    names = js_names()
    assert len(names) > 25
    for name, value in names.items():
        if name == "SDK_INSTRUMENTATION_NAME":
            assert value == "leap0-sdk-js"  # the Python SDK's is leap0-sdk-python; the rest is shared
            continue
        assert hasattr(c, name), f"{name} is not a name of leap0_contract"
        assert getattr(c, name) == value, f"{name}: js {value!r}, contract {getattr(c, name)!r}"


def test_every_sdk_operation_of_the_contract_exists_in_js() -> None:
    names = js_names()
    operations = {name: value for name, value in vars(c).items() if name.startswith("SDK_OP_")}
    assert operations
    assert {name: names.get(name) for name in operations} == operations


def test_the_js_package_has_the_distributions_version() -> None:
    package = json.loads((REPO / "js" / "package.json").read_text())
    assert package["name"] == "leap0"
    assert package["version"] == c.PACKAGE_VERSION
