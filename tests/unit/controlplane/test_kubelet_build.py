"""leap0-kubelet's build: pinned in its own module, cached in a folder of its own (pure, nothing built)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from leap0_dev.controlplane import build


def test_leap0_kubelet_uses_the_control_planes_kubernetes_release() -> None:
    go_mod = (build.MODULES_DIR / "kubelet" / "go.mod").read_text()
    kube = (build.MODULES_DIR / "kube" / "go.mod").read_text()
    release = re.search(r"k8s\.io/kubernetes (v1\.(\d+)\.(\d+))", kube)
    assert release is not None
    staging = f"v0.{release.group(2)}.{release.group(3)}"
    for module in ("k8s.io/client-go", "k8s.io/cri-streaming"):
        assert re.search(rf"^\s*{re.escape(module)} {re.escape(staging)}$", go_mod, re.MULTILINE), module


def test_its_cache_folder_has_a_key_of_its_own(tmp_path: Path) -> None:
    """Changing leap0-kubelet never rebuilds the control plane, nor the control plane's pins it."""
    modules = tmp_path / "k8s"
    shutil.copytree(build.MODULES_DIR, modules)
    env = {build.CACHE_ENV: str(tmp_path / "cache")}
    plane, kubelet = build.cache_dir(modules, env), build.kubelet_cache_dir(modules, env)
    assert kubelet.parent == plane.parent
    assert kubelet.name.startswith("leap0-kubelet_")
    (modules / "kubelet" / "main.go").write_text((modules / "kubelet" / "main.go").read_text() + "\n")
    assert build.cache_dir(modules, env) == plane
    assert build.kubelet_cache_dir(modules, env) != kubelet
    changed = build.kubelet_cache_dir(modules, env)
    (modules / "kube" / "main.go").write_text((modules / "kube" / "main.go").read_text() + "\n")
    assert build.kubelet_cache_dir(modules, env) == changed


def test_the_build_step() -> None:
    step = build.plan_kubelet_build(Path("/m"))
    assert (step.name, step.cwd, step.output) == ("leap0-kubelet", Path("/m/kubelet"), "leap0-kubelet")
    assert step.argv[:4] == ("go", "build", "-trimpath", "-buildvcs=false")


def test_without_go_it_says_what_to_install(tmp_path: Path) -> None:
    env = {build.CACHE_ENV: str(tmp_path / "cache"), "PATH": str(tmp_path)}
    with pytest.raises(build.BuildError, match=r"Go is not installed: install Go 1\.26") as raised:
        build.ensure_kubelet(env)
    assert raised.value.exit_code == 2
