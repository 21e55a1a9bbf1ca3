"""`leap0 dev collector build`'s plan (devtools/leap0_dev/collector.py): the pins, the cache key, the manifest
ocb is given and the steps (pure, nothing built; the build itself: tests/e2e/controlplane/
test_collector_identity_e2e.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from leap0_dev import collector
from leap0_dev.controlplane import build


def test_the_versions_come_from_the_manifest_and_the_builders_go_mod() -> None:
    files = collector.module_files()
    versions = collector.read_versions(files["manifest.yaml"].decode(), files["builder/go.mod"].decode())
    modules = dict(versions.modules)
    core = {
        v
        for m, v in modules.items()
        if m.startswith("go.opentelemetry.io/collector/") and "/confmap/" not in m
    }
    contrib = {
        v
        for m, v in modules.items()
        if m.startswith("github.com/open-telemetry/opentelemetry-collector-contrib/")
    }
    # one release: the builder and the core components at v0.165.0, contrib at its v0.165.x
    assert {versions.builder} == core == {"v0.165.0"}
    assert contrib == {"v0.165.1"}
    assert "github.com/open-telemetry/opentelemetry-collector-contrib/extension/oidcauthextension" in modules
    assert versions.key == "otelcol-v0.165.0"


def test_the_manifest_ocb_gets_builds_into_the_cache_and_keeps_every_module(tmp_path: Path) -> None:
    manifest = (collector.MODULE_DIR / "manifest.yaml").read_text()
    written = yaml.safe_load(collector.manifest_for(manifest, tmp_path / "dist"))
    original = yaml.safe_load(manifest)
    assert written["dist"] == {**original["dist"], "output_path": str(tmp_path / "dist")}
    assert {k: v for k, v in written.items() if k != "dist"} == {
        k: v for k, v in original.items() if k != "dist"
    }


def test_the_cache_key_changes_with_any_file_and_lives_outside_the_repository(tmp_path: Path) -> None:
    module = tmp_path / "otelcol"
    shutil.copytree(collector.MODULE_DIR, module)
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    first = collector.cache_dir(module, env)
    assert first.parent == tmp_path / "xdg" / "leap0" / "otelcol"
    assert first.name.startswith("otelcol-v0.165.0_")
    (module / "builder" / "go.sum").write_bytes((module / "builder" / "go.sum").read_bytes() + b"\n")
    assert collector.cache_dir(module, env) != first
    assert collector.cache_dir(module, {collector.CACHE_ENV: str(tmp_path / "c")}).parent == tmp_path / "c"


def test_ocb_is_built_at_its_pin_then_given_the_manifest(tmp_path: Path) -> None:
    first, second = collector.plan_build(Path("/m"), tmp_path)
    assert (first.cwd, first.argv[:4], first.argv[-1]) == (
        Path("/m/builder"),
        ("go", "build", "-trimpath", "-buildvcs=false"),
        collector.BUILDER_MODULE,
    )
    assert second.argv == (str(tmp_path / "ocb"), f"--config={tmp_path / 'manifest.yaml'}")


def test_without_go_it_says_what_to_install(tmp_path: Path) -> None:
    env = {collector.CACHE_ENV: str(tmp_path / "cache"), "PATH": str(tmp_path)}
    with pytest.raises(build.BuildError, match=r"Go is not installed: install Go 1\.26") as raised:
        collector.ensure_collector(env)
    assert raised.value.exit_code == 2


def test_a_built_collector_needs_no_go(tmp_path: Path) -> None:
    env = {collector.CACHE_ENV: str(tmp_path / "cache"), "PATH": str(tmp_path)}
    binary = collector.cache_dir(env=env) / collector.BINARY
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert collector.ensure_collector(env) == binary
