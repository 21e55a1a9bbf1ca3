"""``import leap0`` stays light; the client loads on first use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import subprocess_env

PROBE = """
import json, sys
import leap0, leap0.exceptions
light = sorted({m.split(".")[0] for m in sys.modules} & {"kubernetes", "pydantic", "opentelemetry", "yaml"})
from leap0 import Leap0Client, Sandbox, SandboxFailedError
print(json.dumps({"light": light, "client": Leap0Client.__module__, "sandbox": Sandbox.__module__,
                  "error": SandboxFailedError.__module__}))
"""


def test_import_is_light_and_names_resolve_lazily() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == {
        "light": [],
        "client": "leap0.client",
        "sandbox": "leap0.sandbox",
        "error": "leap0.exceptions",
    }


def test_unknown_attribute_is_an_attribute_error() -> None:
    import leap0

    with pytest.raises(AttributeError, match="NoSuchThing"):
        leap0.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
