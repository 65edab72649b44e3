"""The entry points: the console script's ``main``, ``python -m kfp_mlops`` and ``python -m kfp_mlops.cli``."""

from __future__ import annotations

import argparse
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


# An installation without the pipelines extra (a model-server image: kfp-mlops[serving]), made by
# refusing to import yaml in a fresh interpreter.
_WITHOUT_YAML = """
import sys
from importlib.abc import MetaPathFinder

class Refuse(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "yaml":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
from kfp_mlops.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv", [["--help"], ["pipelines"]])
def test_a_missing_extra_is_named_with_its_install_command(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_YAML, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "error: this command needs 'yaml', which this installation lacks (kfp-mlops[pipelines]): "
        "pip install 'kfp-mlops[pipelines]'"
    )


def test_each_command_loads_only_the_group_that_adds_it() -> None:
    from kfp_mlops.cli import GROUP_OF_COMMAND, build_parser

    def commands(parser: argparse.ArgumentParser) -> set[str]:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return set(action.choices)

    assert commands(build_parser()) == set(GROUP_OF_COMMAND)
    for group in set(GROUP_OF_COMMAND.values()):
        assert commands(build_parser(only=group)) == {c for c, g in GROUP_OF_COMMAND.items() if g == group}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import contextlib, sys; from kfp_mlops.cli import main\n"
            "with contextlib.suppress(SystemExit): main(['drift', '--help'])\n"
            "print('groups loaded:', sorted(m for m in sys.modules if m.startswith('kfp_mlops.cli.')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "--reference" in done.stdout, done.stderr
    assert "groups loaded: ['kfp_mlops.cli.drift', 'kfp_mlops.cli.parsing']" in done.stdout
