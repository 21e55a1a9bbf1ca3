"""The sidecar keeps its own copy of the shared names (its image has no ``leap0``): they must stay equal."""

from __future__ import annotations

import subprocess
import sys

from support import subprocess_env

from leap0 import constants
from leap0_sidecar import names


def test_names_equal_the_shared_constants() -> None:
    shared = {n: getattr(constants, n) for n in dir(constants) if n.isupper()}
    own = {n: getattr(names, n) for n in dir(names) if n.isupper()}
    common = sorted(set(shared) & set(own))
    assert len(common) >= 20, common  # metric names, attributes and env vars are all in both
    for name in common:
        assert own[name] == shared[name], name


def test_metric_table_follows_the_contract() -> None:
    assert names.SANDBOX_METRICS == {
        "leap0.sandbox.cpu.utilization": "%",
        "leap0.sandbox.cpu.limit": "{cpu}",
        "leap0.sandbox.memory.utilization": "%",
        "leap0.sandbox.memory.usage": "By",
        "leap0.sandbox.memory.limit": "By",
        "leap0.sandbox.filesystem.utilization": "%",
        "leap0.sandbox.filesystem.usage": "By",
    }


def test_sampler_imports_nothing_of_the_sdk_or_operator() -> None:
    code = (
        "import sys, leap0_sidecar.metrics\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('leap0', 'leap0_operator', 'kopf', 'kubernetes', 'kubernetes_asyncio', 'opentelemetry.sdk'))\n"
        "bad += [m for m in sys.modules if m.startswith('opentelemetry.sdk')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
