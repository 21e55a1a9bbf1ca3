#!/usr/bin/env bash
# The project's test command (the README's second line; CI runs exactly this).
# Creates .venv if missing, installs the project with its dev extra, then lint, type check and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# pytest exits 5 when it collected no test: with `set -e` that fails the run, as it must.
.venv/bin/python -m pytest "$@"
