"""The package's layers, checked by import-linter on the package as it is installed.

``pyproject.toml`` holds the contracts (``[tool.importlinter]``): cli > demos > app > pipelines >
components > rollout | drift > serving > modeling > core, components independent of each other, and
the demos never reaching into a component. The checkout maps ``components/`` and ``pipelines/`` into
the package (``kfp_mlops.components``, ``kfp_mlops.pipelines``), which import-linter cannot follow
through an editable install, so the test lays the package out as a wheel installs it (one tree) and
lints that. import-linter reads every import, function-local ones included, so a cycle cannot hide
inside a function.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def installed_layout(into: Path) -> Path:
    """Copies the package's Python sources into ``into/kfp_mlops`` as a wheel lays them out."""
    ignore = shutil.ignore_patterns("tests", "__pycache__", "compiled", "*.yaml", "*.json", "*.md")
    package = into / "kfp_mlops"
    shutil.copytree(ROOT / "src" / "kfp_mlops", package, ignore=ignore)
    for folder in ("components", "pipelines"):
        shutil.copytree(ROOT / folder, package / folder, ignore=ignore)
    return package


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_import_contracts_hold(tmp_path: Path) -> None:
    installed_layout(tmp_path)
    result = lint_imports(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_forbidden_import_breaks_the_layers(tmp_path: Path) -> None:
    """The check is live: core importing the CLI is reported, naming both modules."""
    package = installed_layout(tmp_path)
    storage = package / "core" / "storage.py"
    storage.write_text(storage.read_text() + "\n\ndef _upward():\n    from kfp_mlops import cli\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "kfp_mlops.core.storage -> kfp_mlops.cli" in result.stdout
