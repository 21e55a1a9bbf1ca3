"""Build the leap0 supervisor (``supervisor/``, Go) into a cache outside the repository, and find it there.

``leap0 dev supervisor build [--arch amd64 --arch arm64]`` (scripts/test.sh runs it for both) builds one
static binary per architecture (``CGO_ENABLED=0 GOOS=linux``) into ``$LEAP0_SUPERVISOR_CACHE`` (default
``$XDG_CACHE_HOME/leap0/supervisor``, ``~/.cache`` without it), in a folder named after a digest of the
module's sources, the Go version and the package version: a change of any of them builds again, an unchanged
checkout reuses what is there. Built binaries never go into the repository.

The local pod runner of ``leap0 dev up`` stands this build for the sidecar image's copy of the binary, and the
tests run it (:func:`build`). Building needs Go (1.26 or newer) and the Go module proxy the first time.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import leap0_contract as contract
from leap0_dev import gocache

# The module's source: supervisor/ of this checkout (devtools/leap0_dev/supervisor.py -> the repository root).
MODULE_DIR = Path(__file__).resolve().parent.parent.parent / "supervisor"
CACHE_ENV = "LEAP0_SUPERVISOR_CACHE"
ARCHITECTURES = ("amd64", "arm64")
_MACHINES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class SupervisorBuildError(RuntimeError):
    """The supervisor cannot be built here (no Go, no sources, or the build failed): the message says why."""


def host_arch() -> str:
    """This machine's GOARCH (``amd64`` or ``arm64``)."""
    machine = platform.machine().lower()
    if machine not in _MACHINES:
        raise SupervisorBuildError(f"no supervisor build for this machine ({machine})")
    return _MACHINES[machine]


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    return gocache.cache_root("supervisor", CACHE_ENV, os.environ if env is None else env)


def source_files(module_dir: Path = MODULE_DIR) -> dict[str, bytes]:
    """The files the binary is built from: go.mod, go.sum and the non-test Go files."""
    files = {
        path.name: path.read_bytes()
        for path in sorted(module_dir.iterdir())
        if path.name in ("go.mod", "go.sum") or (path.suffix == ".go" and not path.name.endswith("_test.go"))
    }
    if "go.mod" not in files:
        raise SupervisorBuildError(f"no Go module at {module_dir} (a checkout of leap0 has supervisor/)")
    return files


def cache_key(files: Mapping[str, bytes], go_version: str, version: str = contract.PACKAGE_VERSION) -> str:
    """The cache folder's name: the package version and a digest of the sources and the Go version."""
    digest = hashlib.sha256(go_version.encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return f"{version}-{digest.hexdigest()[:16]}"


def binary_name(arch: str) -> str:
    return f"{contract.SUPERVISOR_BINARY}-linux-{arch}"


def go_command() -> str:
    found = shutil.which("go")
    if found is None:
        raise SupervisorBuildError("the Go toolchain (go) is not on PATH: install Go 1.26+ to build it")
    return found


def go_version(go: str) -> str:
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def build_env(arch: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of ``go build``: static, for Linux on ``arch``, the local toolchain."""
    env = dict(os.environ if base is None else base)
    env.update(CGO_ENABLED="0", GOOS="linux", GOARCH=arch, GOFLAGS="-buildvcs=false", GOTOOLCHAIN="local")
    return env


def build_command(go: str, output: Path, version: str = contract.PACKAGE_VERSION) -> list[str]:
    return [go, "build", "-trimpath", "-ldflags", f"-s -w -X main.version={version}", "-o", str(output), "."]


def build(
    arch: str | None = None, *, module_dir: Path = MODULE_DIR, env: Mapping[str, str] | None = None
) -> Path:
    """The supervisor for ``arch`` (default: this machine's), built into the cache unless it is there."""
    arch = arch or host_arch()
    if arch not in ARCHITECTURES:
        raise SupervisorBuildError(f"unknown architecture {arch!r}: one of {', '.join(ARCHITECTURES)}")
    go = go_command()
    folder = cache_root(env) / cache_key(source_files(module_dir), go_version(go))
    target = folder / binary_name(arch)
    if target.is_file():
        return target
    with gocache.locked(folder):
        folder.mkdir(parents=True, exist_ok=True)
        if target.is_file():
            return target
        partial = folder / f".{binary_name(arch)}.partial"
        result = subprocess.run(
            build_command(go, partial),
            cwd=module_dir,
            env=build_env(arch, env),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SupervisorBuildError(f"go build ({arch}) failed:\n{result.stdout}{result.stderr}")
        partial.replace(target)
    return target
