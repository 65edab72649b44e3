"""Running a compiled pipeline the way a cluster's pods would: in ``.venv-image``, from its YAML file.

``make image-env`` builds ``.venv-image`` like ``images/component/Dockerfile`` builds the component
image (Python 3.11; the Dockerfile's build context, copied apart, installed with its command: not
editable, from ``constraints.txt``, no dev extras). A pipeline runs there under kfp.local from its
compiled YAML, in a working directory outside the checkout, with an environment holding only what a
task's pod would have: the image's ``ENV`` (its absolute paths moved under a folder of the test's),
``PATH`` to the environment's programs, and the endpoints of the local stand-ins the test passes
(``STORAGE_EMULATOR_HOST``; the Kubernetes API through ``$HOME/.kube/config``, where a pod would
use its service account). Nothing of the test process's environment leaks in.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube_api_standin import write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
IMAGE_VENV = ROOT / ".venv-image"
STAMP = IMAGE_VENV / ".installed"
DOCKERFILE = ROOT / "images" / "component" / "Dockerfile"
MAKEFILE = ROOT / "Makefile"

# Compiles the pipeline with the installed package (what `kfp-mlops compile` writes; the golden files
# are these, byte for byte, while tests/app/test_compile.py passes), loads the YAML file back as a
# component, and runs it with kfp.local. Given with -c: sys.path[0] is the working directory, never
# the checkout.
_DRIVER = """
import json, sys
from pathlib import Path

import kfp.components
import kfp.local

from kfp_mlops.app.compiling import compile_pipeline

name, folder, arguments = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
compiled = compile_pipeline(name, folder / "compiled")
pipeline = kfp.components.load_component_from_file(str(compiled.kfp_path))
kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(folder / "outputs"))
pipeline(**arguments)
"""


def image_context() -> tuple[str, ...]:
    """What the Dockerfile copies into the image before installing (the ``COPY`` sources, in order)."""
    copied = re.findall(r"^COPY (.+) \S+$", DOCKERFILE.read_text(), re.M)
    return tuple(source for line in copied for source in line.split())


def image_python() -> Path:
    """``.venv-image``'s Python; fails the test when the environment is missing or older than its sources."""
    python = IMAGE_VENV / "bin" / "python"
    if not python.exists() or not STAMP.exists():
        pytest.fail(f"{IMAGE_VENV.name} is missing: run `make image-env` (make test does)")
    installed = STAMP.stat().st_mtime
    newer = [
        str(path.relative_to(ROOT))
        for source in (str(DOCKERFILE.relative_to(ROOT)), *image_context())
        for path in ([ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.stat().st_mtime > installed
    ]
    if newer:
        pytest.fail(f"{IMAGE_VENV.name} is older than {', '.join(newer[:5])}: run `make image-env` (make test does)")
    return python


def image_environment() -> dict[str, str]:
    """The component image's ``ENV`` instructions, in order."""
    found: dict[str, str] = {}
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    for line in re.findall(r"^ENV (.+)$", text, re.M):
        found.update(re.findall(r"(\w+)=(\S+)", line))
    return found


def pod_environment(pod: Path, *, storage_emulator: str, kubernetes_api: str) -> dict[str, str]:
    """A task's environment: the image's ``ENV`` with its absolute paths under ``pod``, and the stand-ins.

    Args:
        pod: stands for the pod's file system root (``/home/kfp`` becomes ``<pod>/home/kfp``).
        storage_emulator: the GCS emulator's address (``STORAGE_EMULATOR_HOST``).
        kubernetes_api: the Kubernetes API stand-in's address, written to ``$HOME/.kube/config``.
    """
    environment = {
        name: str(pod / value.lstrip("/")) if value.startswith("/") else value
        for name, value in image_environment().items()
    }
    for value in environment.values():
        if value.startswith(str(pod)):
            Path(value).mkdir(parents=True, exist_ok=True)
    kube = Path(environment["HOME"]) / ".kube"
    kube.mkdir(exist_ok=True)
    write_kubeconfig(kube / "config", kubernetes_api)
    return {**environment, "PATH": f"{IMAGE_VENV / 'bin'}:/usr/bin:/bin", "STORAGE_EMULATOR_HOST": storage_emulator}


def run_compiled(name: str, arguments: Mapping[str, Any], folder: Path, environment: Mapping[str, str]) -> str:
    """Compiles pipeline ``name`` in ``.venv-image`` and runs its YAML file there with ``arguments``.

    Call :func:`image_python` first, once (a test's fixture does): it checks the environment is current.

    Args:
        name: training, monitoring or rollout.
        arguments: the pipeline's arguments (JSON values of the parameters' declared types).
        folder: a new folder outside the checkout: the compiled files and task outputs go there, and
            its ``workdir``, the run's working directory, must stay empty.
        environment: the whole environment of the run (see :func:`pod_environment`).

    Returns:
        What the run printed (kfp.local's task log).

    Raises:
        AssertionError: the run failed (the message ends with its output), or wrote into its working directory.
    """
    # The image's working directory belongs to root and tasks run as uid 1000: nothing may be written there.
    workdir = folder / "workdir"
    workdir.mkdir(parents=True)
    done = subprocess.run(
        [str(IMAGE_VENV / "bin" / "python"), "-c", _DRIVER, name, str(folder), json.dumps(dict(arguments))],
        cwd=workdir,
        env=dict(environment),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise AssertionError(f"pipeline {name} from YAML failed ({done.returncode}):\n{done.stdout[-6000:]}")
    print(done.stdout[-3000:], file=sys.stderr)  # shown by pytest when a later assertion fails
    written = sorted(str(path.relative_to(workdir)) for path in workdir.rglob("*"))
    assert written == [], f"pipeline {name} wrote into its working directory, read-only in the image: {written}"
    return done.stdout
