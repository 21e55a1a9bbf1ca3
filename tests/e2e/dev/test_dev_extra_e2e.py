"""`leap0 dev` where the dev extra is not installed: one line naming the extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO as ROOT

pytestmark = pytest.mark.e2e


def test_leap0_dev_without_the_dev_extra_says_which_extra_to_install(tmp_path: Path) -> None:
    """Without the dev extra, `leap0 dev ...` is one line naming the extra, not a traceback."""
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
