"""The entry points: the console script's ``main``, ``python -m kfp_mlops`` and ``python -m kfp_mlops.cli``."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["kfp_mlops", "kfp_mlops.cli"])
def test_python_dash_m_runs_the_command(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("kfp-mlops ")
