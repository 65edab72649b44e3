"""The ``kfp-mlops`` command: compile, run locally, submit and schedule pipelines.

Every failure the user can fix ends as one line on stderr (``error: ...``) and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kfp_mlops import __version__
from kfp_mlops.app.compiling import COMPILED_DIR, check_pipeline_arguments
from kfp_mlops.core.config import DEFAULT_IMAGE, Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.pipelines.parameters import SPECS, Parameter

PIPELINES = list(SPECS)
# A local rollout step is `kfp-mlops rollout step`; `run` covers the pipelines with a local summary.
LOCAL_PIPELINES = ["training", "monitoring"]
# Options not spelled --<parameter-name>: --store and --schema, as the command has always had them, and
# the deployment's namespace (--namespace is the KFP namespace of submit and schedule).
_OPTION_NAMES = {"store_root": "--store", "schema_uri": "--schema", "namespace": "--deployment-namespace"}
_DEFAULTS_FROM_SETTINGS = {
    "store_root": "KFP_MLOPS_STORE, else $KFP_MLOPS_HOME/store",
    "wandb_project": "WANDB_PROJECT, else kfp-mlops",
}
_METAVARS = {str: "TEXT", int: "INT", float: "NUMBER", dict: "JSON"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kfp-mlops", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"kfp-mlops {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    compile_cmd = commands.add_parser(
        "compile",
        help="compile every pipeline to YAML (KFP and Vertex AI)",
        description="Compile every pipeline to <name>.yaml (KFP) and <name>.vertex.yaml (Vertex AI). The only "
        "command that writes pipelines/compiled/ (the golden files, when run from a checkout's root).",
    )
    compile_cmd.add_argument("--out", type=Path, default=COMPILED_DIR, help="output folder (default %(default)s)")
    _add_image_argument(compile_cmd)
    compile_cmd.set_defaults(handler=_compile)

    run_cmd = commands.add_parser(
        "run",
        help="run a pipeline on this machine with kfp.local",
        description="Run a pipeline on this machine with kfp.local. Outputs go to $KFP_MLOPS_HOME/runs/<run>/, "
        "with the pipeline compiled for a cluster in <run>/compiled/.",
    )
    for _, cmd in _pipeline_commands(run_cmd, LOCAL_PIPELINES):
        cmd.add_argument("--verbose", action="store_true", help="show every task's log as it runs")
        cmd.set_defaults(handler=_run)

    submit_cmd = commands.add_parser(
        "submit",
        help="submit a pipeline to a KFP backend",
        description="Compile a pipeline (into a temporary folder, with --image) and submit one run of it.",
    )
    for pipeline, cmd in _pipeline_commands(submit_cmd, PIPELINES):
        _add_cluster_arguments(cmd)
        cmd.add_argument("--run-name", default=None, help=f"display name of the run (default: {pipeline}-run)")
        cmd.set_defaults(handler=_submit)

    schedule_cmd = commands.add_parser(
        "schedule",
        help="create (or replace) a recurring run on a KFP backend",
        description="Compile a pipeline (into a temporary folder, with --image) and create a recurring run of it, "
        "replacing one of the same name.",
    )
    for pipeline, cmd in _pipeline_commands(schedule_cmd, PIPELINES):
        cmd.add_argument("--cron", required=True, help='6-field cron, seconds first: "0 0 2 * * *"')
        cmd.add_argument("--name", default=None, help=f"schedule name (default: {pipeline}-schedule)")
        _add_cluster_arguments(cmd)
        cmd.set_defaults(handler=_schedule)

    serve_cmd = commands.add_parser("serve", help="serve a model locally (router + one server per predictor)")
    serve_cmd.add_argument("--spec", type=Path, default=None, help="deployment spec JSON (default: see README)")
    serve_cmd.add_argument("--deployment", default="iris", help="deployment name")
    serve_cmd.add_argument("--model-name", default="iris-classifier", help="registered model to serve")
    serve_cmd.add_argument("--protocol", choices=["v2", "seldon"], default="v2")
    serve_cmd.add_argument("--port", type=int, default=8000, help="router port on 127.0.0.1 (0: any free port)")
    serve_cmd.set_defaults(handler=_serve)

    drift_cmd = commands.add_parser("drift", help="check a data window for drift against a reference; prints JSON")
    drift_cmd.add_argument(
        "--reference", required=True, help="reference profile .json, model/store-version folder, or .csv/.parquet data"
    )
    drift_cmd.add_argument("--current", required=True, help="current window: .csv or .parquet (local or gs://)")
    drift_cmd.add_argument("--out", type=Path, default=None, help="write verdict.json and report.html (Evidently) here")
    drift_cmd.add_argument("--model", default=None, help="model folder, for prediction and performance drift")
    drift_cmd.add_argument("--label", default=None, help="label column (when the reference is data)")
    drift_cmd.add_argument("--config", default=None, help="DriftConfig as JSON, e.g. '{\"psi_threshold\": 0.25}'")
    drift_cmd.add_argument("--ignore-columns", default="", help="comma-separated columns that are not features")
    drift_cmd.add_argument("--fail-on-drift", action="store_true", help="exit 3 when drift is found")
    drift_cmd.set_defaults(handler=_drift)
    _add_rollout_commands(commands)
    return parser


def _pipeline_commands(
    command: argparse.ArgumentParser, pipelines: Sequence[str]
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """One sub-command per pipeline, with an option per pipeline parameter (from its spec)."""
    choices = command.add_subparsers(dest="pipeline", required=True, metavar="PIPELINE")
    for pipeline in pipelines:
        spec = SPECS[pipeline]
        cmd = choices.add_parser(pipeline, help=f"the {pipeline} pipeline", description=command.description)
        group = cmd.add_argument_group(
            "pipeline parameters", "Each sets the pipeline parameter of its name; unset ones take their default."
        )
        for parameter in spec.parameters:
            group.add_argument(
                _option(parameter.name),
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


def _option(parameter: str) -> str:
    return _OPTION_NAMES.get(parameter, "--" + parameter.replace("_", "-"))


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
        help="container image the compiled components run in (default %(default)s; KFP_MLOPS_IMAGE is not read)",
    )


def _add_cluster_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--host", default=None, help="KFP API endpoint (default KFP_HOST)")
    cmd.add_argument("--namespace", default=None, help="KFP namespace (default KFP_NAMESPACE)")
    cmd.add_argument("--experiment", default="kfp-mlops", help="KFP experiment")
    cmd.add_argument("--service-account", default=None, help="Kubernetes service account of the run")


def pipeline_arguments(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The pipeline parameters the command line sets, checked.

    Values are converted to the parameter's type (KFP refuses a float given as text); the store
    root and the W&B project come from the settings unless set.

    Raises:
        ConfigError: a value of the wrong type, an unknown parameter, or one the pipeline's check refuses.
    """
    spec = SPECS[args.pipeline]
    given = {name: (getattr(args, name), _option(name)) for name in spec.names() if getattr(args, name) is not None}
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
        return _parse_json_object(text, option)
    try:
        return parameter.type(text)
    except ValueError:
        kind = "an integer" if parameter.type is int else "a number"
        raise ConfigError(f"{option}: {text!r} is not {kind}") from None


def _parse_json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: must be a JSON object, got {type(value).__name__}")
    return value


def _compile(args: argparse.Namespace) -> int:
    from kfp_mlops.app.compiling import compile_all

    for compiled in compile_all(args.out, image=args.image):
        print(f"{compiled.name}: {compiled.kfp_path} (KFP)  {compiled.vertex_path} (Vertex AI)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from kfp_mlops.app.compiling import compile_pipeline
    from kfp_mlops.app.local_run import run_pipeline
    from kfp_mlops.app.summary import summarize

    settings = Settings.from_env()
    arguments = pipeline_arguments(args, settings)
    print(f"Running pipeline {args.pipeline} locally (kfp.local, W&B {_wandb_mode()}) ...", flush=True)
    run = run_pipeline(args.pipeline, arguments, settings=settings, echo=args.verbose)
    compiled = compile_pipeline(args.pipeline, run.run_dir / "compiled", image=args.image)
    print(summarize(run, settings, compiled=[compiled.kfp_path, compiled.vertex_path]))
    return 0


def _wandb_mode() -> str:
    from kfp_mlops.core.tracking import resolve_mode

    return resolve_mode()


@contextlib.contextmanager
def _compiled_package(pipeline: str, image: str) -> Iterator[Path]:
    """The pipeline's KFP YAML, compiled into a temporary folder (removed afterwards)."""
    from kfp_mlops.app.compiling import compile_pipeline

    with tempfile.TemporaryDirectory(prefix="kfp-mlops-") as folder:
        yield compile_pipeline(pipeline, Path(folder), image=image).kfp_path


def _submit(args: argparse.Namespace) -> int:
    from kfp_mlops.core import kfp_client

    settings = Settings.from_env()
    arguments = pipeline_arguments(args, settings)
    client = kfp_client.connect(args.host or settings.kfp_host, args.namespace or settings.kfp_namespace)
    with _compiled_package(args.pipeline, args.image) as package:
        submitted = kfp_client.submit(
            package,
            client=client,
            experiment=args.experiment,
            run_name=args.run_name or f"{args.pipeline}-run",
            arguments=arguments,
            service_account=args.service_account,
        )
    print(f"submitted run {submitted.run_id} in experiment {submitted.experiment}: {submitted.url}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from kfp_mlops.core import kfp_client

    settings = Settings.from_env()
    arguments = pipeline_arguments(args, settings)
    cron = kfp_client.validate_cron(args.cron)  # before connecting: a bad cron never reaches the backend
    client = kfp_client.connect(args.host or settings.kfp_host, args.namespace or settings.kfp_namespace)
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


def _drift(args: argparse.Namespace) -> int:
    from kfp_mlops.app.drift_command import run_drift_command
    from kfp_mlops.drift import DriftConfig

    config_doc = _parse_json_object(args.config, "--config") if args.config else {}
    ignored = [c for c in args.ignore_columns.split(",") if c]
    if ignored:
        config_doc["ignore_columns"] = sorted({*config_doc.get("ignore_columns", []), *ignored})
    config = DriftConfig.from_dict(config_doc) if config_doc else None
    verdict = run_drift_command(
        args.reference, args.current, args.out, model=args.model, label=args.label, config=config
    )
    return 3 if args.fail_on_drift and verdict["drift"] else 0


def _serve(args: argparse.Namespace) -> int:
    from kfp_mlops.app.local_run import run_pipeline
    from kfp_mlops.serving.serve import resolve_spec, serve_until_stopped

    settings = Settings.from_env()

    def train() -> None:
        print(f"No champion of {args.model_name} yet: running the training pipeline first ...", flush=True)
        run_pipeline("training", {"store_root": settings.store_root, "model_name": args.model_name}, settings=settings)

    spec, watch = resolve_spec(
        settings,
        spec_path=args.spec,
        deployment=args.deployment,
        model_name=args.model_name,
        protocol=args.protocol,
        train=train,
    )
    serve_until_stopped(
        spec,
        workdir=settings.home / "serving" / spec.name,
        port=args.port,
        watch=watch,
        announce=lambda line: print(line, flush=True),
    )
    return 0


def _add_rollout_commands(commands: Any) -> None:
    rollout_cmd = commands.add_parser("rollout", help="safe rollout of a challenger: start, step, status")
    actions = rollout_cmd.add_subparsers(required=True, metavar="ACTION")
    for action, text in (
        ("start", "record a new rollout and apply its first stage"),
        ("step", "one controller step: compare live, decide, record, apply"),
        ("status", "print the rollout's stage and decisions as JSON"),
    ):
        cmd = actions.add_parser(action, help=text)
        cmd.add_argument("--deployment", default="fraud", help="deployment name")
        cmd.add_argument(
            "--state", default=None, help="rollout state document (default $KFP_MLOPS_HOME/rollouts/<deployment>.json)"
        )
        if action == "status":
            cmd.set_defaults(handler=_rollout_status)
            continue
        cmd.add_argument("--namespace", default="models")
        cmd.add_argument("--protocol", choices=["v2", "seldon"], default="v2")
        cmd.add_argument(
            "--target",
            choices=["local", "cluster", "none"],
            default="local",
            help="local: the spec file `kfp-mlops serve` watches; cluster: SeldonDeployment",
        )
        if action == "start":
            cmd.add_argument("--legacy", required=True, help="the legacy model folder")
            cmd.add_argument("--challenger", required=True, help="the challenger model folder")
            cmd.add_argument("--plan", default="{}", help="StagePlan as JSON, e.g. '{\"steps\": [5, 25, 100]}'")
            cmd.set_defaults(handler=_rollout_start)
        else:
            cmd.add_argument("--log", default=None, help="prediction log root (default $KFP_MLOPS_HOME/prediction-log)")
            cmd.add_argument("--as-of", default=None, help="ISO time the step looks from (default now)")
            cmd.add_argument("--live-config", default="{}", help="LiveConfig as JSON, e.g. '{\"bootstrap\": 2000}'")
            cmd.set_defaults(handler=_rollout_step)
    demo_cmd = commands.add_parser("demo", help="end-to-end demonstrations on this machine")
    demos = demo_cmd.add_subparsers(required=True, metavar="DEMO")
    demo_rollout = demos.add_parser("rollout", help="train legacy and challenger on fraud data, roll out live")
    demo_rollout.add_argument("--out", type=Path, default=None, help="working folder (default a temporary one)")
    demo_rollout.add_argument("--quick", action="store_true", help="fewer transactions (a faster, noisier run)")
    demo_rollout.set_defaults(handler=_demo_rollout)
    _add_demo_drift(demos)


def _add_demo_drift(demos: Any) -> None:
    demo_drift = demos.add_parser("drift", help="a year of weekly windows: drift checks, live accuracy, retraining")
    demo_drift.add_argument("--weeks", type=int, default=52, help="weeks to simulate (default 52)")
    demo_drift.add_argument("--start-week", type=int, default=0, help="first week, 0..51 (default 0)")
    demo_drift.add_argument("--rows-per-week", type=int, default=2000, help="rows in each weekly window")
    demo_drift.add_argument("--seed", type=int, default=0)
    demo_drift.add_argument("--out", type=Path, default=None, help="work folder (default $KFP_MLOPS_HOME/demo-drift)")
    demo_drift.set_defaults(handler=_demo_drift)


def _demo_drift(args: argparse.Namespace) -> int:
    from kfp_mlops.demos.drift import DemoConfig, render_table, run_demo

    config = DemoConfig(weeks=args.weeks, start_week=args.start_week, rows_per_week=args.rows_per_week, seed=args.seed)
    config.check()
    result = run_demo(
        config, settings=Settings.from_env(), workdir=args.out, announce=lambda line: print(line, flush=True)
    )
    print()
    print(render_table(result))
    return 0


def _rollout_paths(args: argparse.Namespace) -> tuple[str, str]:
    home = Settings.from_env().home
    state = args.state or str(home / "rollouts" / f"{args.deployment}.json")
    log = getattr(args, "log", None) or str(home / "prediction-log")
    return state, log


def _rollout_start(args: argparse.Namespace) -> int:
    from kfp_mlops.rollout import controller as rc
    from kfp_mlops.rollout.targets import make_target

    state, _ = _rollout_paths(args)
    base = rc.base_spec(args.deployment, namespace=args.namespace, protocol=args.protocol).validate()
    result = rc.start(
        state,
        _parse_json_object(args.plan, "--plan"),
        args.legacy,
        args.challenger,
        base=base,
        target=make_target(args.target, settings=Settings.from_env(), deployment=args.deployment),
    )
    print(f"Rollout of {args.challenger} started at {result.stage}; state {state}")
    return 0


def _rollout_step(args: argparse.Namespace) -> int:
    from datetime import datetime

    from kfp_mlops.rollout.controller import run_rollout_step

    state, log = _rollout_paths(args)
    decision = Settings.from_env().home / "rollouts" / "last-decision.json"
    if args.as_of:
        try:
            datetime.fromisoformat(args.as_of)
        except ValueError:
            raise ConfigError(f"--as-of {args.as_of!r}: not an ISO date-time") from None
    record = run_rollout_step(
        str(decision),
        settings=Settings.from_env(),
        state_uri=state,
        log_root=log,
        deployment_name=args.deployment,
        namespace=args.namespace,
        protocol=args.protocol,
        target=args.target,
        as_of=args.as_of or "",
        live_config=_parse_json_object(args.live_config, "--live-config"),
    )
    print(
        f"{record['action']}: {record['stage']} -> {record['next_stage']} (challenger share "
        f"{record.get('challenger_share', 0)} %)"
    )
    for reason in record.get("reasons", []):
        print(f"  {reason}")
    if record.get("artifact"):
        print(f"Decision recorded at {record['artifact']}")
    return 0


def _rollout_status(args: argparse.Namespace) -> int:
    from kfp_mlops.rollout import controller as rc

    state, _ = _rollout_paths(args)
    print(json.dumps(rc.status(state), indent=2))
    return 0


def _demo_rollout(args: argparse.Namespace) -> int:
    from kfp_mlops.demos.rollout import run_demo

    run_demo(out=args.out, quick=args.quick, announce=print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
