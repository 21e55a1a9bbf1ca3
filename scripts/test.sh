#!/usr/bin/env bash
# The project's test command (the README's second line; CI runs exactly this).
# Creates .venv if missing, installs the project with its dev extra, then lint, type check and tests;
# the supervisor (Go): its tests and binaries; then the JavaScript SDK (js/): npm ci (which builds it), the
# TypeScript check of sources and tests, its tests.
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
# The supervisor of sandbox logs (supervisor/, Go): gofmt, vet, its tests (the chroot test needs Debian's
# busybox-static, installed here when missing: CI machines start fresh), then the static binaries for amd64 and
# arm64 into the cache outside the repository (`leap0 dev supervisor build`), where dev up and the tests find them.
if ! dpkg -s busybox-static >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -qq busybox-static >/dev/null 2>&1 \
    || (apt-get update -qq && apt-get install -y -qq busybox-static)) >/dev/null
fi
unformatted=$(cd supervisor && gofmt -l .)
if [ -n "$unformatted" ]; then echo "gofmt: $unformatted" >&2; exit 1; fi
(cd supervisor && go vet ./... && go test -count=1 ./...)
.venv/bin/leap0 dev supervisor build --arch amd64 --arch arm64 >/dev/null
# The JavaScript/TypeScript SDK: `npm ci` installs the lockfile and builds dist/ (prepare); `npm run check` is
# Prettier's format check and tsc over the sources and the tests (emitting the tests to build-test/); `npm test` is node --test, whose
# non-zero exit on a failure stops this script. Its tests start the embedded API server from .venv.
(cd js && npm ci --no-audit --no-fund && npm run check && npm test)
# The real Kubernetes control plane of the `realk8s` tests (docs/control-plane.md): built with Go from
# devtools/k8s into a cache outside the repository (a cold build takes about 7 minutes here, a warm cache a
# second); without Go this fails, as a missing tool must.
.venv/bin/leap0 dev control-plane build
# The OpenTelemetry Collector verifying sidecars' tokens in the realk8s tests, built by the Collector's
# builder from devtools/otelcol into a cache outside the repository (cold: about 2 minutes here; warm: a second).
.venv/bin/leap0 dev collector build
# pytest exits 5 when it collected no test: with `set -e` that fails the run, as it must. Two workers
# (pytest-xdist; LEAP0_TEST_WORKERS changes it, 0 runs in this process): most tests wait on processes and
# servers, so two halve the time even on two cores; the realk8s tests stay on one worker (one control plane).
.venv/bin/python -m pytest -n "${LEAP0_TEST_WORKERS:-2}" "$@"
