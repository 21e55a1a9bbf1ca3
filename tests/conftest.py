"""Shared fixtures. Plain helpers live in ``support.py``."""

from __future__ import annotations

import pytest
from support import subprocess_env


@pytest.fixture
def child_env() -> dict[str, str]:
    return subprocess_env()
