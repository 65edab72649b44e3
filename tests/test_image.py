"""The images and the dependency sets they install, read from the Dockerfiles and pyproject.toml.

There is no Docker engine here to build the images, so the tests check what each one installs: the
package with the extras of its role, constrained to exact versions (``constraints.txt``, or
``constraints-seldon.txt`` for the Seldon runtime), while ``pyproject.toml`` declares compatible ranges
only. What a role's code imports is checked against what its extras install, in this environment (the
constrained one): the model server's modules, with a model loaded and scored, import nothing outside
``kfp-mlops[serving]``. Every image runs as an unprivileged user, by number (Kubernetes can check
``runAsNonRoot`` only then), who owns whatever the image's process writes to.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from kfp_mlops.core.config import DEFAULT_IMAGE
from tests.support.models import crown, iris_model

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "images" / "component" / "Dockerfile"
IMAGES = ("component", "mlserver", "seldon")
RUNTIME_USER = "1000"
# Each image: the constraints file it installs with and the extras of its role.
IMAGE_ROLES = {
    "component": ("constraints.txt", ("pipelines", "drift")),
    "mlserver": ("constraints.txt", ("serving",)),
    "seldon": ("constraints-seldon.txt", ("seldon",)),
}
# Libraries of other roles, which the model server image must not carry.
NOT_FOR_SERVING = {"kfp", "kfp-kubernetes", "wandb", "evidently", "matplotlib", "kubernetes", "jsonschema"}


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


def _constraints(name: str = "constraints.txt") -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            package, _, version = line.partition("==")
            pins[canonicalize_name(package)] = version.strip()
    return pins


def _requirements(extra: str | None) -> list[Requirement]:
    """The core dependencies (``extra=None``) or one extra's, without the package's references to itself."""
    specs = _project()["dependencies"] if extra is None else _project()["optional-dependencies"][extra]
    return [req for req in map(Requirement, specs) if canonicalize_name(req.name) != "kfp-mlops"]


def _own_requirements(extras: frozenset[str]) -> list[Requirement]:
    """``kfp-mlops[extras]``'s requirements, read from pyproject.toml (its extras' references to it followed)."""
    found, seen, pending = [], set(), [None, *extras]
    while pending:
        group = pending.pop()
        if group in seen:
            continue
        seen.add(group)
        specs = _project()["dependencies"] if group is None else _project()["optional-dependencies"][group]
        for requirement in map(Requirement, specs):
            if canonicalize_name(requirement.name) == "kfp-mlops":
                pending.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


@cache
def _closure(*extras: str) -> frozenset[str]:
    """Every distribution ``kfp-mlops[extras]`` installs, from pyproject.toml and the installed metadata."""
    expanded: set[tuple[str, str]] = set()  # (distribution, extra or "") whose requirements are queued
    pending = [(requirement, "") for requirement in _own_requirements(frozenset(extras))]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        for wanted in ("", *requirement.extras):
            if (name, wanted) not in expanded:
                expanded.add((name, wanted))
                pending.extend((Requirement(spec), wanted) for spec in metadata.requires(name) or [])
    return frozenset(name for name, _ in expanded)


@cache
def _file_owners() -> dict[str, str]:
    """Installed file (absolute path) -> the distribution that installed it."""
    owners = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])  # parsed once: it is not cached per file
        for file in dist.files or []:
            owners[os.path.normpath(dist.locate_file(file))] = name
    return owners


# Runs a probe's code after wrapping __import__ to record what the package's own modules import (by
# absolute name; a `from package import module` records the module too), then prints the files of those
# modules and of every module loaded at all.
_PROBE = """
import builtins, json, sys
own = set()
_import = builtins.__import__
def _recording(name, globals=None, locals=None, fromlist=(), level=0):
    module = _import(name, globals, locals, fromlist, level)
    if level == 0 and str((globals or {}).get("__name__", "")).startswith("kfp_mlops"):
        own.update([name, *(f"{name}.{item}" for item in fromlist or ())])
    return module
builtins.__import__ = _recording
exec(compile(sys.argv[1], "<probe>", "exec"))
builtins.__import__ = _import
files = lambda names: [getattr(sys.modules.get(name), "__file__", None) for name in names]
print(json.dumps({"own": files(own), "loaded": files(list(sys.modules))}))
"""


def _imported_distributions(code: str, *args: str) -> tuple[set[str], set[str]]:
    """The distributions a fresh interpreter imports running ``code`` with ``args`` as ``sys.argv[2:]``.

    Returns:
        Those the package's own modules import, and those of every module loaded (the first's
        dependencies too), the standard library, the package itself and what the interpreter loads
        at startup (``.pth`` hooks) left out.
    """

    def run(source: str, *argv: str) -> dict[str, list[str | None]]:
        command = [sys.executable, "-c", _PROBE, source, *argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    own = [ROOT / folder for folder in ("src", "components", "pipelines")]  # the editable install's sources
    startup = set(run("pass")["loaded"])
    owners = _file_owners()

    def distributions(files: list[str | None]) -> set[str]:
        found = set()
        for file in set(files) - startup - {None}:
            path = os.path.normpath(str(file))  # as sys.path gives it, like the distributions' files
            if "site-packages" not in path and any(Path(path).resolve().is_relative_to(f) for f in (stdlib, *own)):
                continue
            assert path in owners, f"{path}: no installed distribution holds it"
            found.add(owners[path])
        return found - {"kfp-mlops"}

    probed = run(code, *args)
    return distributions(probed["own"]), distributions(probed["loaded"])


def test_dependencies_are_compatible_ranges_and_the_constraints_pin_inside_them() -> None:
    """pyproject.toml declares ranges with a lower bound; the exact versions are the constraints files' alone."""
    groups: list[str | None] = [None, *_project()["optional-dependencies"]]
    for group in groups:
        pins = _constraints("constraints-seldon.txt" if group == "seldon" else "constraints.txt")
        for requirement in _requirements(group):
            operators = {specifier.operator for specifier in requirement.specifier}
            assert ">=" in operators and not operators & {"==", "==="}, f"{group}: {requirement}: a range, please"
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{group}: {requirement.name} has no pin in the constraints"
            assert Version(pins[name]) in requirement.specifier, f"{group}: {name}=={pins[name]} outside {requirement}"


def test_constraints_files_hold_exact_pins_only() -> None:
    for name in ("constraints.txt", "constraints-seldon.txt"):
        for line in (ROOT / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", line), f"{name}: {line}"


def test_dev_holds_every_role_but_the_seldon_runtime() -> None:
    """seldon-core pins numpy<2 and protobuf 5: its runtime gets its own environment, never .venv."""
    extras = _project()["optional-dependencies"]
    [itself] = [Requirement(spec) for spec in extras["dev"] if spec.startswith("kfp-mlops")]
    assert itself.extras == set(extras) - {"dev", "seldon"}
    assert "kfp-mlops[serving,pipelines,drift]" in extras["demo"]


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_installs_its_role_with_its_constraints(image: str) -> None:
    constraints, extras = IMAGE_ROLES[image]
    text = (ROOT / "images" / image / "Dockerfile").read_text()
    install = f'RUN pip install -c {constraints} ".[{",".join(extras)}]" && pip check'
    assert re.search(rf"^{re.escape(install)}$", text, re.M), f"{image}: expected {install!r}"
    assert re.search(rf"^COPY {re.escape(constraints)} pyproject.toml README.md LICENSE \./$", text, re.M)
    for folder in ("src", "components", "pipelines", "manifests"):
        assert re.search(rf"^COPY {folder} \./{folder}$", text, re.M), folder
    assert "packages_to_install" not in text and "WANDB_API_KEY" not in text


def test_every_install_command_uses_a_constraints_file() -> None:
    """The Makefile's environments and the images install with -c; only `make constraints` resolves afresh."""
    commands = [
        (f"images/{image}/Dockerfile", line)
        for image in IMAGES
        for line in (ROOT / "images" / image / "Dockerfile").read_text().splitlines()
        if "pip install" in line
    ]
    recipe = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        recipe = line.split(":")[0] if re.match(r"^[\w$().-]+:", line) else recipe
        if line.startswith("\t") and "pip install" in line and recipe != "constraints":
            commands.append((f"Makefile ({recipe})", line))
    assert len(commands) >= 6, commands
    for where, command in commands:
        if "--upgrade pip" in command:
            continue
        assert re.search(r"pip install (--quiet )?-c constraints(-seldon)?\.txt ", command), f"{where}: {command}"


def test_the_model_server_image_carries_no_pipeline_library() -> None:
    """kfp-mlops[serving] installs neither kfp, W&B, Evidently, the Kubernetes client nor matplotlib."""
    serving = _closure("serving")
    assert {"mlserver", "scikit-learn", "pandas", "pyarrow", "google-cloud-storage"} <= serving
    assert serving.isdisjoint(NOT_FOR_SERVING), sorted(serving & NOT_FOR_SERVING)
    assert NOT_FOR_SERVING.issubset(_closure("pipelines", "drift", "demo"))


def test_the_model_server_imports_only_what_its_image_installs(tmp_path: Path) -> None:
    """The image's command module, a store version loaded and scored: all of it from kfp-mlops[serving]."""
    store = tmp_path / "store"
    version = crown(str(store), iris_model(tmp_path / "model"), name="iris")
    code = (
        "import os, sys\n"
        "os.environ['KFP_MLOPS_STORE'] = sys.argv[2]\n"
        "import kfp_mlops.serving.runtimes.mlserver.server\n"
        "from kfp_mlops.serving.model import ServedModel\n"
        "model = ServedModel.load(sys.argv[3])\n"
        "assert model.predict([[5.8, 3.0, 4.4, 1.3]]).labels[0] in model.classes\n"
    )
    own, loaded = _imported_distributions(code, str(store), f"{store}/models/iris/versions/{version}")
    assert {"mlserver", "scikit-learn", "pandas"} <= own
    assert own <= _closure("serving"), sorted(own - _closure("serving"))
    assert loaded.isdisjoint(NOT_FOR_SERVING), sorted(loaded & NOT_FOR_SERVING)


def test_the_components_import_only_what_their_image_installs() -> None:
    """Every component and pipeline module imports from kfp-mlops[pipelines,drift] alone."""
    code = (
        "import importlib, pkgutil, tempfile\n"
        "from pathlib import Path\n"
        "import kfp_mlops.components as components\n"
        "from kfp_mlops.app.compiling import compile_all\n"
        "compile_all(Path(tempfile.mkdtemp()))\n"
        "for found in pkgutil.walk_packages(components.__path__, 'kfp_mlops.components.'):\n"
        "    if found.name.endswith(('.component', '.logic')): importlib.import_module(found.name)\n"
    )
    own, _ = _imported_distributions(code)
    assert {"kfp", "pandas", "pyyaml"} <= own
    assert own <= _closure("pipelines", "drift"), sorted(own - _closure("pipelines", "drift"))


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
