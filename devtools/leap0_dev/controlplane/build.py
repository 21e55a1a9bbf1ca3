"""The control plane's binaries: where they are, and building the missing ones from ``devtools/k8s``.

Three small Go modules pin what is built (their ``go.mod`` and ``go.sum`` are the single source of the
versions): ``kube`` (one multi-call binary for kube-apiserver, kube-controller-manager and kube-scheduler,
from k8s.io/kubernetes), ``etcd`` (go.etcd.io/etcd/server/v3) and ``helm`` (helm.sh/helm/v4). The binaries
go to a cache outside the repository, ``$XDG_CACHE_HOME/leap0/control-plane/<key>/`` (``~/.cache`` without
it), whose key names the versions and a digest of the modules' files, so a change of pin builds a new folder
and an unchanged one is built once per machine. ``KUBEBUILDER_ASSETS`` (controller-runtime's envtest
convention) names a folder of prebuilt binaries to use instead.

The plan (:func:`plan_build`) is pure; :func:`ensure_binaries` carries it out.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from leap0_dev import gocache
from leap0_dev.gocache import BuildError as BuildError  # re-exported: the control plane's callers catch it

# The names `leap0 dev control-plane build` promises in its folder.
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "helm")
KUBE_LINKS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
MODULES = ("kube", "etcd", "helm")
MODULES_DIR = Path(__file__).resolve().parents[2] / "k8s"  # devtools/k8s in a checkout
ASSETS_ENV = "KUBEBUILDER_ASSETS"
CACHE_ENV = "LEAP0_CONTROL_PLANE_CACHE"  # the cache root, instead of $XDG_CACHE_HOME/leap0/control-plane


@dataclass(frozen=True)
class Versions:
    kubernetes: str  # v1.36.3
    etcd: str  # v3.6.16
    helm: str  # v4.3.2

    @property
    def key(self) -> str:
        return f"k8s-{self.kubernetes}_etcd-{self.etcd}_helm-{self.helm}"


@dataclass(frozen=True)
class BuildStep:
    """One ``go build``: run ``argv`` in ``cwd``; it writes ``output``; then ``links`` point at it."""

    name: str
    cwd: Path
    argv: tuple[str, ...]
    output: str
    links: tuple[str, ...] = ()


def _required(go_mod: str, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod, re.MULTILINE)
    if match is None:
        raise BuildError(f"go.mod does not require {module}")
    return match.group(1)


def read_versions(go_mods: Mapping[str, str]) -> Versions:
    """The pinned versions, from the three modules' go.mod texts (keyed ``kube``, ``etcd``, ``helm``)."""
    return Versions(
        kubernetes=_required(go_mods["kube"], "k8s.io/kubernetes"),
        etcd=_required(go_mods["etcd"], "go.etcd.io/etcd/server/v3"),
        helm=_required(go_mods["helm"], "helm.sh/helm/v4"),
    )


def cache_key(versions: Versions, files: Mapping[str, bytes]) -> str:
    """The cache folder's name: the versions, readable, and a digest of every file of the modules (a change
    of go.sum, a flag in main.go, anything, builds anew)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return f"{versions.key}_{digest.hexdigest()[:12]}"


def kube_ldflags(version: str) -> str:
    """What Kubernetes' own build (hack/lib/version.sh) stamps, so the API server reports its real version
    (``/version``, which Helm's ``kubeVersion`` check and kubectl read)."""
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+.*", version)
    if match is None:
        raise BuildError(f"not a Kubernetes version: {version}")
    flags = ["-s", "-w"]
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={match.group(1)}",
            f"-X {package}.gitMinor={match.group(2)}",
            f"-X {package}.gitTreeState=clean",
        ]
    return " ".join(flags)


def plan_build(versions: Versions, modules_dir: Path, missing: set[str]) -> list[BuildStep]:
    """The ``go build`` steps that give the ``missing`` binaries (names of :data:`BINARIES`)."""
    common = ("go", "build", "-trimpath", "-buildvcs=false")
    steps: list[BuildStep] = []
    if missing & set(KUBE_LINKS):
        steps.append(
            BuildStep(
                "kube",
                modules_dir / "kube",
                (*common, "-ldflags", kube_ldflags(versions.kubernetes), "-o", "{out}", "."),
                "kube",
                KUBE_LINKS,
            )
        )
    if "etcd" in missing:
        steps.append(
            BuildStep(
                "etcd", modules_dir / "etcd", (*common, "-ldflags", "-s -w", "-o", "{out}", "."), "etcd"
            )
        )
    if "helm" in missing:
        helm_flags = (
            f"-s -w -X helm.sh/helm/v4/internal/version.version={versions.helm}"
            " -X helm.sh/helm/v4/internal/version.metadata="
            " -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
        )
        steps.append(
            BuildStep(
                "helm",
                modules_dir / "helm",
                (*common, "-ldflags", helm_flags, "-o", "{out}", "helm.sh/helm/v4/cmd/helm"),
                "helm",
            )
        )
    return steps


def missing_in(folder: Path) -> set[str]:
    """The names of :data:`BINARIES` that are not executable files in ``folder``."""
    return {
        name for name in BINARIES if not os.access(folder / name, os.X_OK) or not (folder / name).is_file()
    }


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    return gocache.cache_root("control-plane", CACHE_ENV, os.environ if env is None else env)


def module_files(modules_dir: Path = MODULES_DIR) -> dict[str, bytes]:
    """Every file of the three modules (``kube/go.mod``: bytes)."""
    files: dict[str, bytes] = {}
    for module in MODULES:
        folder = modules_dir / module
        if not (folder / "go.mod").is_file():
            raise BuildError(
                f"{folder / 'go.mod'} not found: building the control plane needs a checkout of the leap0 "
                f"repository (devtools/k8s), or {ASSETS_ENV} naming a folder with {', '.join(BINARIES)}"
            )
        for path in sorted(folder.iterdir()):
            if path.is_file():
                files[f"{module}/{path.name}"] = path.read_bytes()
    return files


def cache_dir(modules_dir: Path = MODULES_DIR, env: Mapping[str, str] | None = None) -> Path:
    """The folder this checkout's pins build to (which may not exist yet)."""
    files = module_files(modules_dir)
    go_mods = {module: files[f"{module}/go.mod"].decode() for module in MODULES}
    return cache_root(env) / cache_key(read_versions(go_mods), files)


def versions(modules_dir: Path = MODULES_DIR) -> Versions:
    return read_versions({module: (modules_dir / module / "go.mod").read_text() for module in MODULES})


def ensure_binaries(
    env: Mapping[str, str] | None = None,
    modules_dir: Path = MODULES_DIR,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The folder holding :data:`BINARIES`: ``KUBEBUILDER_ASSETS`` when set, else the cache folder of this
    checkout's pins, after building what it lacks with ``go`` (a cold build takes a while: see
    docs/control-plane.md). Raises :class:`BuildError` (``exit_code`` 2 when Go is missing)."""
    env = os.environ if env is None else env
    say = progress or gocache.stderr_progress
    if env.get(ASSETS_ENV):
        assets = Path(env[ASSETS_ENV])
        absent = missing_in(assets)
        if absent:
            raise BuildError(
                f"{ASSETS_ENV}={assets} lacks {', '.join(sorted(absent))} (setup-envtest gives "
                f"kube-apiserver and etcd only): put them there, or unset {ASSETS_ENV} to build them all "
                "with Go",
                exit_code=2,
            )
        return assets
    folder = cache_dir(modules_dir, env)
    if not missing_in(folder):
        return folder
    go = gocache.find_go(
        env,
        "the control plane's binaries",
        f"(it builds them from devtools/k8s into {cache_root(env)}), or set {ASSETS_ENV} to a folder holding "
        f"{', '.join(BINARIES)}",
    )
    with gocache.locked(folder):
        missing = missing_in(folder)  # another build may have finished meanwhile
        folder.mkdir(parents=True, exist_ok=True)
        for step in plan_build(versions(modules_dir), modules_dir, missing):
            _run_step(step, go, folder, env, say)
    absent = missing_in(folder)
    if absent:
        raise BuildError(f"the build left {', '.join(sorted(absent))} missing in {folder}")
    return folder


def _run_step(
    step: BuildStep, go: str, folder: Path, env: Mapping[str, str], say: Callable[[str], None]
) -> None:
    partial = folder / f".{step.output}.partial"
    argv = [go if arg == "go" else arg.replace("{out}", str(partial)) for arg in step.argv]
    say(f"control-plane: building {step.name} in {step.cwd} (a cold build takes minutes)")
    started = time.monotonic()
    result = subprocess.run(argv, cwd=step.cwd, env=dict(env), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BuildError(
            f"building {step.name} failed ({' '.join(argv)} in {step.cwd}, exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    os.replace(partial, folder / step.output)
    for link in step.links:
        target = folder / link
        target.unlink(missing_ok=True)
        target.symlink_to(step.output)
    say(f"control-plane: built {step.name} in {time.monotonic() - started:.0f} s")


# --- leap0-kubelet: the kubelet endpoint of `leap0 dev control-plane up --kubelet` ------------------------
KUBELET = "leap0-kubelet"
KUBELET_MODULE = "kubelet"  # devtools/k8s/kubelet


def kubelet_cache_dir(modules_dir: Path = MODULES_DIR, env: Mapping[str, str] | None = None) -> Path:
    """The folder of this checkout's leap0-kubelet: a key of its own (the digest of its module's files), so
    changing it never rebuilds the control plane, nor the control plane's pins it."""
    folder = modules_dir / KUBELET_MODULE
    if not (folder / "go.mod").is_file():
        raise BuildError(f"{folder / 'go.mod'} not found: leap0-kubelet is built from a leap0 checkout")
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return cache_root(env) / f"{KUBELET}_{digest.hexdigest()[:12]}"


def plan_kubelet_build(modules_dir: Path) -> BuildStep:
    return BuildStep(
        KUBELET,
        modules_dir / KUBELET_MODULE,
        ("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", "{out}", "."),
        KUBELET,
    )


def ensure_kubelet(
    env: Mapping[str, str] | None = None,
    modules_dir: Path = MODULES_DIR,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The path of leap0-kubelet, built with Go into its cache folder when missing (seconds once the
    control plane's build has filled Go's cache: it shares client-go). ``KUBEBUILDER_ASSETS`` has no
    leap0-kubelet: it is built all the same. Raises :class:`BuildError` (``exit_code`` 2 without Go)."""
    env = os.environ if env is None else env
    say = progress or gocache.stderr_progress
    folder = kubelet_cache_dir(modules_dir, env)
    binary = folder / KUBELET
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = gocache.find_go(
        env,
        f"{KUBELET} (the kubelet endpoint of --kubelet)",
        f"(it builds devtools/k8s/{KUBELET_MODULE} into {cache_root(env)})",
    )
    with gocache.locked(folder):
        if not binary.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            _run_step(plan_kubelet_build(modules_dir), go, folder, env, say)
    return binary
