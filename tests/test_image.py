"""The images, read from their Dockerfiles (no Docker engine here to build them).

The component image installs exactly what the package pins; every image runs as an unprivileged
user, by number (Kubernetes can check ``runAsNonRoot`` only then), who owns whatever the image's
process writes to.
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kfp_mlops.core.config import DEFAULT_IMAGE

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "images" / "component" / "Dockerfile"
IMAGES = ("component", "mlserver", "seldon")
RUNTIME_USER = "1000"


def _instructions(image: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions in order: (INSTRUCTION, arguments), continuation lines joined."""
    text = (ROOT / "images" / image / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (keyword.upper(), arguments.strip())
        for keyword, _, arguments in (line.strip().partition(" ") for line in joined.splitlines() if line.strip())
    ]


def _environment(instructions: list[tuple[str, str]]) -> dict[str, str]:
    found = {}
    for keyword, arguments in instructions:
        if keyword == "ENV":
            found.update(re.findall(r"(\w+)=(\S+)", arguments))
    return found


def _runs(instructions: list[tuple[str, str]]) -> str:
    return " && ".join(arguments for keyword, arguments in instructions if keyword == "RUN")


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


@pytest.mark.parametrize("image", IMAGES)
def test_every_image_runs_as_an_unprivileged_user_by_number(image: str) -> None:
    """A USER by name (or none: root) cannot pass Kubernetes' runAsNonRoot check."""
    instructions = _instructions(image)
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1] == f"{RUNTIME_USER}:{RUNTIME_USER}", users
    last_user = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in instructions[last_user:]), "nothing runs as root after USER"
    # The user exists (a process without a passwd entry breaks getpass and friends).
    assert re.search(rf"useradd --uid {RUNTIME_USER} --user-group .*--home-dir (\S+)", _runs(instructions))


@pytest.mark.parametrize("image", IMAGES)
def test_home_is_somewhere_the_user_may_write(image: str) -> None:
    instructions = _instructions(image)
    home = _environment(instructions)["HOME"]
    runs = _runs(instructions)
    owned = re.findall(rf"install -d -o {RUNTIME_USER} -g {RUNTIME_USER}(?: -m \d+)? ((?:/\S+ ?)+)", runs)
    created = re.search(rf"--create-home --home-dir {re.escape(home)} ", runs)
    assert home == "/tmp" or created or home in " ".join(owned).split(), (home, owned)


def test_the_mlserver_work_folder_belongs_to_the_runtime_user() -> None:
    """Once created root-owned by WORKDIR before USER, while the server writes its settings there."""
    instructions = _instructions("mlserver")
    [command] = [json.loads(arguments) for keyword, arguments in instructions if keyword == "CMD"]
    assert command[:3] == ["python", "-m", "kfp_mlops.serving.runtimes.mlserver"]
    folder = command[3]
    assert folder.startswith("/tmp/")  # on the pod's tmp volume, the only writable place there
    assert f"install -d -o {RUNTIME_USER} -g {RUNTIME_USER} -m 0700 {folder}" in _runs(instructions)
    assert all(arguments != folder for keyword, arguments in instructions if keyword == "WORKDIR")
    assert _environment(instructions)["PYTHONSAFEPATH"] == "1"


def test_the_component_image_lets_kfp_stage_artifacts() -> None:
    """KFP's launcher writes /gcs, /minio and /s3: root-owned, a non-root task could not stage its inputs."""
    assert re.search(
        rf"install -d -o {RUNTIME_USER} -g {RUNTIME_USER} /gcs /minio /s3", _runs(_instructions("component"))
    )
