"""``kfp-mlops compile | run | submit | schedule``: the pipelines, with an option per pipeline parameter.

The options come from the parameter specs (:mod:`kfp_mlops.pipelines.parameters`), so ``--help``
of ``run training``, ``submit monitoring``, ... lists every parameter with its default. Only
``compile`` writes ``pipelines/compiled/``: ``run`` compiles into its run folder, ``submit`` and
``schedule`` into a temporary folder, each with the image ``--image`` names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.app.compiling import COMPILED_DIR, check_cluster_arguments, check_pipeline_arguments
from kfp_mlops.cli.parsing import Commands, parse_json_object, plain_quotes
from kfp_mlops.core.config import DEFAULT_IMAGE, Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.pipelines.parameters import SPECS, Parameter, option_name

if TYPE_CHECKING:
    import kfp

PIPELINES = list(SPECS)
# A local rollout step is `kfp-mlops rollout step`; `run` covers the pipelines with a local summary.
LOCAL_PIPELINES = ["training", "monitoring"]
_DEFAULTS_FROM_SETTINGS = {
    "store_root": "KFP_MLOPS_STORE, else $KFP_MLOPS_HOME/store",
    "wandb_project": "WANDB_PROJECT, else kfp-mlops",
}
_METAVARS = {str: "TEXT", int: "INT", float: "NUMBER", dict: "JSON"}
# `submit --wait`'s exit status when the run had not ended in time (the `timeout` command's).
WAIT_TIMED_OUT = 124


def add_commands(commands: Commands) -> None:
    """Adds ``pipelines``, ``compile``, ``run``, ``submit`` and ``schedule``."""
    list_cmd = commands.add_parser(
        "pipelines",
        help="list the pipelines and their parameters (option, type, default)",
        description="List each pipeline's parameters: the option that sets it (or --param NAME=VALUE), its type, "
        "its default and what it does. The same list is in the --help of run, submit and schedule.",
    )
    list_cmd.add_argument(
        "pipeline", nargs="?", choices=PIPELINES, default=None, help="only this pipeline (default: every one)"
    )
    list_cmd.set_defaults(handler=_list_pipelines)

    compile_cmd = commands.add_parser(
        "compile",
        help="compile every pipeline to YAML (KFP and Vertex AI)",
        description="Compile every pipeline to <name>.yaml (KFP) and <name>.vertex.yaml (Vertex AI). The only "
        "command that writes pipelines/compiled/ (the golden files, when run from a checkout's root).",
    )
    compile_cmd.add_argument("--out", type=Path, default=COMPILED_DIR, help="output folder (default %(default)s)")
    _add_image_argument(compile_cmd)
    compile_cmd.set_defaults(handler=_compile)

    run_help = "run a pipeline on this machine with kfp.local"
    run_description = (
        "Run a pipeline on this machine with kfp.local. Outputs go to $KFP_MLOPS_HOME/runs/<run>/, with the "
        "pipeline compiled for a cluster in <run>/compiled/."
    )
    for _, cmd in _pipeline_commands(commands, "run", LOCAL_PIPELINES, run_help, run_description):
        cmd.add_argument("--verbose", action="store_true", help="show every task's log as it runs, not only its end")
        cmd.set_defaults(handler=_run)

    submit_help = "submit a pipeline to a KFP backend"
    submit_description = "Compile a pipeline (into a temporary folder, with --image) and submit one run of it."
    for pipeline, cmd in _pipeline_commands(commands, "submit", PIPELINES, submit_help, submit_description):
        _add_cluster_arguments(cmd)
        cmd.add_argument("--run-name", default=None, help=f"display name of the run (default: {pipeline}-run)")
        waiting = cmd.add_argument_group(
            "waiting",
            "With --wait the command prints the run's states and exits 0 only when it SUCCEEDED: 1 when it ended "
            f"FAILED, CANCELED or SKIPPED, {WAIT_TIMED_OUT} when the timeout passed first (the run goes on).",
        )
        waiting.add_argument("--wait", action="store_true", help="wait for the run to end")
        waiting.add_argument(
            "--timeout", type=float, default=3600.0, metavar="SECONDS", help="longest wait (default %(default)g)"
        )
        waiting.add_argument(
            "--poll-seconds", type=float, default=10.0, metavar="SECONDS", help="between polls (default %(default)g)"
        )
        cmd.set_defaults(handler=_submit)

    schedule_help = "create (or replace) a recurring run on a KFP backend"
    schedule_description = (
        "Compile a pipeline (into a temporary folder, with --image) and create a recurring run of it, replacing "
        "one of the same name."
    )
    for pipeline, cmd in _pipeline_commands(commands, "schedule", PIPELINES, schedule_help, schedule_description):
        cmd.add_argument("--cron", required=True, help='6-field cron, seconds first: "0 0 2 * * *"')
        cmd.add_argument("--name", default=None, help=f"schedule name (default: {pipeline}-schedule)")
        _add_cluster_arguments(cmd)
        cmd.set_defaults(handler=_schedule)


def _pipeline_commands(
    commands: Commands, name: str, pipelines: Sequence[str], summary: str, description: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Command ``name`` with one sub-command per pipeline, each with an option per pipeline parameter."""
    command = commands.add_parser(name, help=summary, description=description)
    choices = command.add_subparsers(dest="pipeline", required=True, metavar="PIPELINE")
    for pipeline in pipelines:
        cmd = choices.add_parser(pipeline, help=f"the {pipeline} pipeline", description=description)
        group = cmd.add_argument_group(
            "pipeline parameters", "Each sets the pipeline parameter of its name; unset ones take their default."
        )
        for parameter in SPECS[pipeline].parameters:
            group.add_argument(
                option_name(parameter.name),
                dest=parameter.name,
                default=None,
                metavar=_METAVARS[parameter.type],
                help=f"{parameter.help} ({_default_text(parameter)})".replace("%", "%%"),
            )
        group.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a parameter by its name, as in the compiled pipeline (repeatable)",
        )
        _add_image_argument(cmd)
        yield pipeline, cmd


def _default_text(parameter: Parameter) -> str:
    if parameter.name in _DEFAULTS_FROM_SETTINGS:
        return f"default: {_DEFAULTS_FROM_SETTINGS[parameter.name]}"
    if parameter.required:
        return "required"
    shown = json.dumps(parameter.default) if parameter.type is dict else repr(parameter.default)
    return f"default: {shown}"


def _add_image_argument(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        help="container image the compiled components run in (default %(default)s)",
    )


def _add_cluster_arguments(cmd: argparse.ArgumentParser) -> None:
    cluster = cmd.add_argument_group("KFP backend")
    cluster.add_argument("--host", default=None, help="KFP API endpoint (default KFP_HOST)")
    cluster.add_argument("--namespace", default=None, help="KFP namespace (default KFP_NAMESPACE, else kubeflow)")
    cluster.add_argument("--experiment", default="kfp-mlops", help="KFP experiment (default %(default)s)")
    cluster.add_argument(
        "--service-account", default=None, help="Kubernetes service account of the run (default: the backend's)"
    )
    cluster.add_argument(
        "--token",
        default=None,
        help="bearer token (default KFP_TOKEN; prefer the variable: a flag shows in the process list)",
    )
    cluster.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding the token, re-read on every call, e.g. a service account token "
        "(default KF_PIPELINES_SA_TOKEN_PATH)",
    )
    cluster.add_argument(
        "--cookie", default=None, help="session cookie NAME=VALUE, e.g. authservice_session=... (default KFP_COOKIE)"
    )


def _connect(args: argparse.Namespace, settings: Settings) -> kfp.Client:
    """A client for the backend the flags, else the settings, name, with their credentials."""
    from kfp_mlops.core import kfp_client

    token, token_file = args.token, args.token_file
    if not (token or token_file):  # a flag replaces both settings, so they never clash with it
        token, token_file = settings.kfp_token, settings.kfp_token_file
    return kfp_client.connect(
        args.host or settings.kfp_host,
        args.namespace or settings.kfp_namespace,
        token=token,
        token_file=token_file,
        cookie=args.cookie or settings.kfp_cookie,
    )


def pipeline_arguments(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The pipeline parameters the command line sets, checked.

    Values are converted to the parameter's type (KFP refuses a float given as text); the store
    root and the W&B project come from the settings unless set.

    Raises:
        ConfigError: a value of the wrong type, an unknown parameter, or one the pipeline's check refuses.
    """
    spec = SPECS[args.pipeline]
    given = {n: (getattr(args, n), option_name(n)) for n in spec.names() if getattr(args, n) is not None}
    for item in args.param:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE")
        given[name] = (text, f"--param {name}")
    parameters = {p.name: p for p in spec.parameters}
    arguments = {name: _value(parameters.get(name), text, option) for name, (text, option) in given.items()}
    if "store_root" in parameters:
        arguments.setdefault("store_root", settings.store_root)
    if settings.wandb_project != "kfp-mlops":
        arguments.setdefault("wandb_project", settings.wandb_project)
    check_pipeline_arguments(args.pipeline, arguments)
    return arguments


def _value(parameter: Parameter | None, text: str, option: str) -> Any:
    """``text`` as a value of ``parameter``'s type (unknown parameters stay text: the check names them)."""
    if parameter is None or parameter.type is str:
        return text
    if parameter.type is dict:
        return parse_json_object(text, option)
    try:
        return parameter.type(text)
    except ValueError:
        kind = "an integer" if parameter.type is int else "a number"
        raise ConfigError(f"{option}: {text!r} is not {kind}") from None


def _list_pipelines(args: argparse.Namespace, settings: Settings) -> int:
    for pipeline in [args.pipeline] if args.pipeline else PIPELINES:
        verbs = ["run", "submit", "schedule"] if pipeline in LOCAL_PIPELINES else ["submit", "schedule"]
        print(f"{pipeline}  (kfp-mlops {'|'.join(verbs)} {pipeline})")
        for parameter in SPECS[pipeline].parameters:
            option = f"{option_name(parameter.name)} {_METAVARS[parameter.type]}"
            print(f"  {parameter.name}  {option}  {_default_text(parameter)}")
            print(
                textwrap.fill(
                    plain_quotes(parameter.help), width=100, initial_indent=" " * 6, subsequent_indent=" " * 6
                )
            )
        print()
    return 0


def _compile(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.app.compiling import compile_all

    for compiled in compile_all(args.out, image=args.image):
        print(f"{compiled.name}: {compiled.kfp_path} (KFP)  {compiled.vertex_path} (Vertex AI)")
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.app.compiling import compile_pipeline
    from kfp_mlops.app.local_run import TaskProgress, run_pipeline
    from kfp_mlops.app.summary import summarize
    from kfp_mlops.core.tracking import resolve_mode

    arguments = pipeline_arguments(args, settings)
    print(f"Running pipeline {args.pipeline} locally (kfp.local, W&B {resolve_mode()}) ...", flush=True)
    terminal = sys.stdout  # run_pipeline sends stdout to the task log meanwhile

    def show(task: TaskProgress) -> None:
        print(f"  {task.task:<24} {task.state:<8} {task.seconds:6.1f} s", file=terminal, flush=True)

    run = run_pipeline(args.pipeline, arguments, settings=settings, echo=args.verbose, progress=show)
    compiled = compile_pipeline(args.pipeline, run.run_dir / "compiled", image=args.image)
    print(summarize(run, settings, compiled=[compiled.kfp_path, compiled.vertex_path]))
    return 0


@contextlib.contextmanager
def _compiled_package(pipeline: str, image: str) -> Iterator[Path]:
    """The pipeline's KFP YAML, compiled into a temporary folder (removed afterwards)."""
    from kfp_mlops.app.compiling import compile_pipeline

    with tempfile.TemporaryDirectory(prefix="kfp-mlops-") as folder:
        yield compile_pipeline(pipeline, Path(folder), image=image).kfp_path


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.core import kfp_client

    arguments = pipeline_arguments(args, settings)
    check_cluster_arguments(args.pipeline, arguments)
    if args.wait and not (args.timeout > 0 and args.poll_seconds > 0):
        raise ConfigError("--timeout and --poll-seconds must be positive")
    client = _connect(args, settings)
    with _compiled_package(args.pipeline, args.image) as package:
        submitted = kfp_client.submit(
            package,
            client=client,
            experiment=args.experiment,
            run_name=args.run_name or f"{args.pipeline}-run",
            arguments=arguments,
            service_account=args.service_account,
        )
    print(f"submitted run {submitted.run_id} in experiment {submitted.experiment}: {submitted.url}", flush=True)
    if not args.wait:
        return 0
    try:
        finished = kfp_client.wait_for_run(
            client,
            submitted.run_id,
            timeout=args.timeout,
            poll_seconds=args.poll_seconds,
            on_state=lambda state: print(f"run {submitted.run_id}: {state}", flush=True),
        )
    except kfp_client.WaitTimeout as timed_out:
        print(f"error: {timed_out} (--timeout {args.timeout:g}): {submitted.url}", file=sys.stderr)
        return WAIT_TIMED_OUT
    error = f": {finished.error}" if finished.error else ""
    print(f"run {submitted.run_id} {finished.state} after {finished.seconds:.0f} s{error}")
    return 0 if finished.succeeded else 1


def _schedule(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.core import kfp_client

    arguments = pipeline_arguments(args, settings)
    check_cluster_arguments(args.pipeline, arguments)
    cron = kfp_client.validate_cron(args.cron)  # before connecting: a bad cron never reaches the backend
    client = _connect(args, settings)
    with _compiled_package(args.pipeline, args.image) as package:
        created = kfp_client.schedule(
            package,
            client=client,
            name=args.name or f"{args.pipeline}-schedule",
            cron=cron,
            experiment=args.experiment,
            arguments=arguments,
            service_account=args.service_account,
        )
    replaced = f", replacing {', '.join(created.replaced)}" if created.replaced else ""
    print(f"scheduled {created.name} ({created.cron}) as recurring run {created.recurring_run_id}{replaced}")
    return 0
