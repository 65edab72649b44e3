"""The ``kfp-mlops`` command: pipelines (compile, run locally, submit, schedule), serving, drift, rollouts, demos.

One module per command group adds its commands to the parser and handles them: :mod:`.pipelines`,
:mod:`.serve`, :mod:`.drift`, :mod:`.rollout`, :mod:`.labels`, :mod:`.demos`. A handler gets the parsed arguments
and the settings, read once here from the environment, and only parses and prints: the work is in
:mod:`kfp_mlops.app` and the domain packages. Every failure the user can fix ends as one line on
stderr (``error: ...``) and exit status 1 -- a missing optional dependency too, with the extra that
brings it (a model-server image installs only ``kfp-mlops[serving]``).

A command line naming a command loads only the group that adds it (:data:`GROUP_OF_COMMAND`):
``kfp-mlops drift`` does not import what compiling and submitting pipelines needs, which took a
tenth of its run on a million rows. ``--help`` and anything unexpected load every group.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kfp_mlops import __version__
from kfp_mlops.cli.parsing import Parser
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import MlopsError

DESCRIPTION = "Kubeflow Pipelines for scikit-learn: compile, run locally, submit and schedule; serve, check, roll out."
# The extra of pyproject.toml that installs each optional top-level module the commands import.
EXTRA_OF_MODULE = {
    **dict.fromkeys(("kfp", "kubernetes", "jsonschema", "yaml", "urllib3", "wandb", "scipy"), "pipelines"),
    **dict.fromkeys(("mlserver", "fastapi", "starlette"), "serving"),
    "evidently": "drift",
    "matplotlib": "demo",
}
# The group module of kfp_mlops.cli that adds each command (tests/cli/test_main.py checks it).
GROUP_OF_COMMAND = {
    **dict.fromkeys(("pipelines", "compile", "run", "submit", "schedule"), "pipelines"),
    "serve": "serve",
    "drift": "drift",
    "rollout": "rollout",
    "labels": "labels",
    "demo": "demos",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script (and of ``python -m kfp_mlops`` / ``python -m kfp_mlops.cli``)."""
    try:
        arguments = sys.argv[1:] if argv is None else list(argv)
        command = GROUP_OF_COMMAND.get(arguments[0]) if arguments else None
        args = build_parser(only=command).parse_args(arguments)
        return args.handler(args, Settings.from_env())
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF_MODULE:
            raise  # not an optional dependency: a bug, with its traceback
        extra = EXTRA_OF_MODULE[top]
        print(
            f"error: this command needs {top!r}, which this installation lacks (kfp-mlops[{extra}]): "
            f"pip install 'kfp-mlops[{extra}]'",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def build_parser(only: str | None = None) -> Parser:
    """The whole command line: every group's commands under one ``kfp-mlops``.

    Args:
        only: The one group (a module of :mod:`kfp_mlops.cli`) to load; None loads every one.
    """
    import importlib

    parser = Parser(prog="kfp-mlops", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"kfp-mlops {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    # Imported here: each group's optional dependencies are only needed when it is loaded (see main).
    for group in dict.fromkeys(GROUP_OF_COMMAND.values()) if only is None else [only]:
        importlib.import_module(f"kfp_mlops.cli.{group}").add_commands(commands)
    return parser
