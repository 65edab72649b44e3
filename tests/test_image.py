"""The component image installs exactly what the package pins (no Docker engine here to build it)."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kfp_mlops.core.config import DEFAULT_IMAGE

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "images" / "component" / "Dockerfile"


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_runtime_dependency_is_pinned_exactly_and_matches_constraints() -> None:
    pins = _constraints()
    for spec in _project()["dependencies"]:
        requirement = Requirement(spec)
        [specifier] = requirement.specifier
        assert specifier.operator == "==", f"{spec}: the image needs an exact pin"
        assert pins[canonicalize_name(requirement.name)] == specifier.version, spec


def test_dockerfile_installs_the_package_with_the_constraints() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^RUN pip install -c constraints\.txt \. && pip check$", text, re.M)
    for folder in ("src", "components", "pipelines", "manifests"):
        assert re.search(rf"^COPY {folder} \./{folder}$", text, re.M), folder
    assert "packages_to_install" not in text and "WANDB_API_KEY" not in text


def test_image_python_matches_the_tested_python() -> None:
    base = re.search(r"^FROM python:(\d+\.\d+)", DOCKERFILE.read_text(), re.M)
    assert base and base.group(1) == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_tested_environment_is_the_constrained_one() -> None:
    """The tests run against the versions the image installs, so a green run speaks for the image."""
    mismatched = {
        name: (version, metadata.version(name))
        for name, version in _constraints().items()
        if metadata.version(name) != version
    }
    assert mismatched == {}


def test_default_component_image_is_versioned() -> None:
    assert DEFAULT_IMAGE.endswith(":" + _project()["version"])
