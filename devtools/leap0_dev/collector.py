"""The OpenTelemetry Collector of the tests (``leap0 dev collector build``), built by the Collector's builder.

``devtools/otelcol/`` holds the builder manifest (``manifest.yaml``: the receiver, extension, processor and
exporter modules at pinned versions) and a small Go module pinning the builder itself (``builder/``: ocb,
``go.opentelemetry.io/collector/cmd/builder``). The build compiles ocb, writes the manifest with
``dist.output_path`` set to a cache folder outside the repository, and lets ocb generate the Collector's
sources, resolve its modules (from the Go module proxy) and compile it, into
``$XDG_CACHE_HOME/leap0/otelcol/<key>/leap0-otelcol`` (``~/.cache`` without it; ``$LEAP0_OTELCOL_CACHE``
instead of ``.../leap0/otelcol``), whose key names the builder's version and a digest of every file of
``devtools/otelcol``. One build per folder at a time.

The plan (:func:`plan_build`, :func:`manifest_for`, :func:`cache_key`) is pure; :func:`ensure_collector`
carries it out. See docs/control-plane.md, "The OpenTelemetry Collector".
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leap0_dev import gocache
from leap0_dev.gocache import BuildError

MODULE_DIR = Path(__file__).resolve().parents[1] / "otelcol"  # devtools/otelcol in a checkout
BINARY = "leap0-otelcol"
BUILDER_MODULE = "go.opentelemetry.io/collector/cmd/builder"
CACHE_ENV = "LEAP0_OTELCOL_CACHE"  # the cache root, instead of $XDG_CACHE_HOME/leap0/otelcol


@dataclass(frozen=True)
class Versions:
    builder: str  # ocb, v0.165.0
    modules: tuple[tuple[str, str], ...]  # every component module of the manifest and its version

    @property
    def key(self) -> str:
        return f"otelcol-{self.builder}"


@dataclass(frozen=True)
class Step:
    """One command: ``argv`` run in ``cwd`` (``go`` is the Go found on PATH)."""

    name: str
    cwd: Path
    argv: tuple[str, ...]


def read_versions(manifest: str, builder_go_mod: str) -> Versions:
    """The builder's version (its go.mod) and each component module's (the manifest's ``gomod`` entries)."""
    match = re.search(
        rf"^\s*(?:require\s+)?{re.escape(BUILDER_MODULE)}\s+(v\S+)", builder_go_mod, re.MULTILINE
    )
    if match is None:
        raise BuildError(f"devtools/otelcol/builder/go.mod does not require {BUILDER_MODULE}")
    parsed: dict[str, Any] = yaml.safe_load(manifest) or {}
    modules: list[tuple[str, str]] = []
    for kind in ("receivers", "extensions", "processors", "exporters", "connectors", "providers"):
        for entry in parsed.get(kind) or []:
            module, _, version = str(entry["gomod"]).partition(" ")
            modules.append((module, version))
    return Versions(match.group(1), tuple(modules))


def manifest_for(manifest: str, output_path: Path) -> str:
    """The manifest ocb is given: the repository's, its ``dist.output_path`` the cache folder's ``dist``."""
    parsed: dict[str, Any] = yaml.safe_load(manifest)
    parsed.setdefault("dist", {})["output_path"] = str(output_path)
    return yaml.safe_dump(parsed, sort_keys=False)


def module_files(module_dir: Path = MODULE_DIR) -> dict[str, bytes]:
    """Every file of devtools/otelcol (``manifest.yaml``, ``builder/go.mod``: bytes)."""
    if not (module_dir / "manifest.yaml").is_file():
        raise BuildError(
            f"{module_dir / 'manifest.yaml'} not found: the Collector is built from a checkout of the leap0 "
            "repository (devtools/otelcol)"
        )
    return {
        str(path.relative_to(module_dir)): path.read_bytes()
        for path in sorted(module_dir.rglob("*"))
        if path.is_file()
    }


def cache_key(versions: Versions, files: Mapping[str, bytes]) -> str:
    """The cache folder's name: the builder's version, readable, and a digest of every file of the module."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return f"{versions.key}_{digest.hexdigest()[:12]}"


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    return gocache.cache_root("otelcol", CACHE_ENV, os.environ if env is None else env)


def cache_dir(module_dir: Path = MODULE_DIR, env: Mapping[str, str] | None = None) -> Path:
    """The folder this checkout's pins build to (which may not exist yet)."""
    files = module_files(module_dir)
    versions = read_versions(files["manifest.yaml"].decode(), files["builder/go.mod"].decode())
    return cache_root(env) / cache_key(versions, files)


def plan_build(module_dir: Path, folder: Path) -> list[Step]:
    """Compile ocb at its pinned version into ``folder``, then let it build the manifest ``folder`` holds."""
    return [
        Step(
            "ocb",
            module_dir / "builder",
            (
                "go",
                "build",
                "-trimpath",
                "-buildvcs=false",
                "-ldflags",
                "-s -w",
                "-o",
                str(folder / "ocb"),
                BUILDER_MODULE,
            ),
        ),
        Step(BINARY, folder, (str(folder / "ocb"), f"--config={folder / 'manifest.yaml'}")),
    ]


def ensure_collector(
    env: Mapping[str, str] | None = None,
    module_dir: Path = MODULE_DIR,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The path of this checkout's Collector, built with Go when missing (a cold build takes minutes: see
    docs/control-plane.md). Raises :class:`BuildError` (``exit_code`` 2 when Go is missing)."""
    env = os.environ if env is None else env
    say = progress or gocache.stderr_progress
    folder = cache_dir(module_dir, env)
    binary = folder / BINARY
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = gocache.find_go(
        env,
        f"the OpenTelemetry Collector ({BINARY})",
        f"(it builds devtools/otelcol with the Collector's builder into {cache_root(env)})",
    )
    with gocache.locked(folder):
        if binary.is_file():
            return binary
        folder.mkdir(parents=True, exist_ok=True)
        dist = folder / "dist"
        shutil.rmtree(dist, ignore_errors=True)
        (folder / "manifest.yaml").write_text(manifest_for((module_dir / "manifest.yaml").read_text(), dist))
        for step in plan_build(module_dir, folder):
            argv = [go if arg == "go" else arg for arg in step.argv]
            say(f"collector: building {step.name} (a cold build takes minutes)")
            started = time.monotonic()
            result = subprocess.run(
                argv, cwd=step.cwd, env=dict(env), capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                command = " ".join(argv)
                raise BuildError(
                    f"building {step.name} failed ({command} in {step.cwd}, exit {result.returncode}):\n"
                    f"{result.stdout}{result.stderr}"
                )
            say(f"collector: built {step.name} in {time.monotonic() - started:.0f} s")
        os.replace(dist / BINARY, binary)
    return binary


def build() -> int:
    """``leap0 dev collector build``: build what is missing; print one line, the Collector's path."""
    return gocache.build_command("leap0 dev collector build", lambda say: ensure_collector(progress=say))
