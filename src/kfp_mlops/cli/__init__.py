"""The ``kfp-mlops`` command: pipelines (compile, run locally, submit, schedule), serving, drift, rollouts, demos.

One module per command group adds its commands to the parser and handles them: :mod:`.pipelines`,
:mod:`.serve`, :mod:`.drift`, :mod:`.rollout`, :mod:`.labels`, :mod:`.demos`. A handler gets the parsed arguments
and the settings, read once here from the environment, and only parses and prints: the work is in
:mod:`kfp_mlops.app` and the domain packages. Every failure the user can fix ends as one line on
stderr (``error: ...``) and exit status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kfp_mlops import __version__
from kfp_mlops.cli import demos, drift, labels, pipelines, rollout, serve
from kfp_mlops.cli.parsing import Parser
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import MlopsError

DESCRIPTION = "Kubeflow Pipelines for scikit-learn: compile, run locally, submit and schedule; serve, check, roll out."


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script (and of ``python -m kfp_mlops`` / ``python -m kfp_mlops.cli``)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args, Settings.from_env())
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def build_parser() -> Parser:
    """The whole command line: every group's commands under one ``kfp-mlops``."""
    parser = Parser(prog="kfp-mlops", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"kfp-mlops {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in (pipelines, serve, drift, rollout, labels, demos):
        group.add_commands(commands)
    return parser
