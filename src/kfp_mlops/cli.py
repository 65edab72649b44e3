"""The ``kfp-mlops`` command: compile, run locally, submit and schedule pipelines.

Every failure the user can fix ends as one line on stderr (``error: ...``) and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kfp_mlops import __version__
from kfp_mlops.app.compiling import check_pipeline_arguments
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError

PIPELINES = ["training", "monitoring", "rollout"]
# A local rollout step is `kfp-mlops rollout step`; `run` covers the pipelines with a local summary.
LOCAL_PIPELINES = ["training", "monitoring"]


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

    compile_cmd = commands.add_parser("compile", help="compile every pipeline to YAML (KFP and Vertex AI)")
    compile_cmd.add_argument("--out", type=Path, default=None, help="output folder (default pipelines/compiled)")
    compile_cmd.set_defaults(handler=_compile)

    run_cmd = commands.add_parser("run", help="run a pipeline on this machine with kfp.local")
    run_cmd.add_argument("pipeline", choices=LOCAL_PIPELINES)
    _add_pipeline_arguments(run_cmd)
    run_cmd.add_argument("--verbose", action="store_true", help="show every task's log as it runs")
    run_cmd.set_defaults(handler=_run)

    submit_cmd = commands.add_parser("submit", help="submit a compiled pipeline to a KFP backend")
    submit_cmd.add_argument("pipeline", choices=PIPELINES)
    _add_pipeline_arguments(submit_cmd)
    _add_cluster_arguments(submit_cmd)
    submit_cmd.add_argument("--run-name", default=None, help="display name of the run")
    submit_cmd.set_defaults(handler=_submit)

    schedule_cmd = commands.add_parser("schedule", help="create (or replace) a recurring run on a KFP backend")
    schedule_cmd.add_argument("pipeline", choices=PIPELINES)
    schedule_cmd.add_argument("--cron", required=True, help='6-field cron, seconds first: "0 0 2 * * *"')
    schedule_cmd.add_argument("--name", default=None, help="schedule name (default: <pipeline>-schedule)")
    _add_pipeline_arguments(schedule_cmd)
    _add_cluster_arguments(schedule_cmd)
    schedule_cmd.set_defaults(handler=_schedule)

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


def _add_pipeline_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--source", default=None, help="iris, or a .csv/.parquet path or gs:// URI")
    cmd.add_argument("--label", default=None, help="label column")
    cmd.add_argument("--model-name", default=None)
    cmd.add_argument("--estimator", default=None, help="logistic_regression, random_forest, gradient_boosting, ...")
    cmd.add_argument("--hyperparameters", default=None, help="JSON object, e.g. '{\"C\": 0.5}'")
    cmd.add_argument("--threshold", type=float, default=None, help="gate: required value of the gate metric")
    cmd.add_argument("--gate-metric", default=None, help="accuracy, f1_macro, roc_auc or log_loss")
    cmd.add_argument("--schema", dest="schema_uri", default=None, help="schema JSON document (path or gs://)")
    cmd.add_argument("--store", dest="store_root", default=None, help="model store root (default KFP_MLOPS_STORE)")
    cmd.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other pipeline parameter (value parsed as JSON when it can be)",
    )


def _add_cluster_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--host", default=None, help="KFP API endpoint (default KFP_HOST)")
    cmd.add_argument("--namespace", default=None, help="KFP namespace (default KFP_NAMESPACE)")
    cmd.add_argument("--experiment", default="kfp-mlops", help="KFP experiment")
    cmd.add_argument("--service-account", default=None, help="Kubernetes service account of the run")


def pipeline_arguments(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The pipeline parameters the command line sets; the store root is set for pipelines that take one."""
    from kfp_mlops.app.compiling import pipeline_builders

    inputs = pipeline_builders()[args.pipeline](kubernetes=False).component_spec.inputs
    arguments: dict[str, Any] = {}
    if "store_root" in inputs:
        arguments["store_root"] = args.store_root or settings.store_root
    for name in ("source", "label", "model_name", "estimator", "threshold", "gate_metric", "schema_uri"):
        value = getattr(args, name)
        if value is not None:
            arguments[name] = value
    if args.hyperparameters is not None:
        arguments["hyperparameters"] = _parse_json_object(args.hyperparameters, "--hyperparameters")
    for item in args.param:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE")
        try:
            arguments[name] = json.loads(raw)
        except ValueError:
            arguments[name] = raw
    if settings.wandb_project != "kfp-mlops":
        arguments.setdefault("wandb_project", settings.wandb_project)
    check_pipeline_arguments(args.pipeline, arguments)
    return arguments


def _parse_json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: must be a JSON object, got {type(value).__name__}")
    return value


def _compile(args: argparse.Namespace) -> int:
    from kfp_mlops.app.compiling import COMPILED_DIR, compile_all

    for compiled in compile_all(args.out or COMPILED_DIR):
        print(f"{compiled.name}: {compiled.kfp_path} (KFP)  {compiled.vertex_path} (Vertex AI)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from kfp_mlops.app.compiling import compile_pipeline
    from kfp_mlops.app.local_run import run_pipeline
    from kfp_mlops.app.summary import render_summary

    settings = Settings.from_env()
    arguments = pipeline_arguments(args, settings)
    compiled = compile_pipeline(args.pipeline)
    print(f"Running pipeline {args.pipeline} locally (kfp.local, W&B {_wandb_mode()}) ...", flush=True)
    run = run_pipeline(args.pipeline, arguments, settings=settings, echo=args.verbose)
    if args.pipeline == "monitoring":
        from kfp_mlops.pipelines.monitoring import summarize

        print(summarize(run))
    else:
        print(render_summary(run, settings, compiled=[compiled.kfp_path, compiled.vertex_path]))
    return 0


def _wandb_mode() -> str:
    from kfp_mlops.core.tracking import resolve_mode

    return resolve_mode()


def _compiled_package(pipeline: str) -> Path:
    from kfp_mlops.app.compiling import compile_pipeline

    return compile_pipeline(pipeline).kfp_path


def _submit(args: argparse.Namespace) -> int:
    from kfp_mlops.core import kfp_client

    settings = Settings.from_env()
    arguments = pipeline_arguments(args, settings)
    client = kfp_client.connect(args.host, args.namespace)
    submitted = kfp_client.submit(
        _compiled_package(args.pipeline),
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
    client = kfp_client.connect(args.host, args.namespace)
    created = kfp_client.schedule(
        _compiled_package(args.pipeline),
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
    from kfp_mlops.drift.check import DriftConfig, run_drift_cli

    config_doc = _parse_json_object(args.config, "--config") if args.config else {}
    ignored = [c for c in args.ignore_columns.split(",") if c]
    if ignored:
        config_doc["ignore_columns"] = sorted({*config_doc.get("ignore_columns", []), *ignored})
    config = DriftConfig.from_dict(config_doc) if config_doc else None
    verdict = run_drift_cli(args.reference, args.current, args.out, model=args.model, label=args.label, config=config)
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
    result = run_demo(config, workdir=args.out, announce=lambda line: print(line, flush=True))
    print()
    print(render_table(result))
    return 0


def _rollout_paths(args: argparse.Namespace) -> tuple[str, str]:
    home = Settings.from_env().home
    state = args.state or str(home / "rollouts" / f"{args.deployment}.json")
    log = getattr(args, "log", None) or str(home / "prediction-log")
    return state, log


def _rollout_start(args: argparse.Namespace) -> int:
    from kfp_mlops.components.rollout.logic import make_target
    from kfp_mlops.rollout import controller as rc

    state, _ = _rollout_paths(args)
    base = rc.base_spec(args.deployment, namespace=args.namespace, protocol=args.protocol).validate()
    result = rc.start(
        state,
        _parse_json_object(args.plan, "--plan"),
        args.legacy,
        args.challenger,
        base=base,
        target=make_target(args.target),
    )
    print(f"Rollout of {args.challenger} started at {result.stage}; state {state}")
    return 0


def _rollout_step(args: argparse.Namespace) -> int:
    from datetime import datetime

    from kfp_mlops.components.rollout.logic import run_rollout_step

    state, log = _rollout_paths(args)
    decision = Settings.from_env().home / "rollouts" / "last-decision.json"
    if args.as_of:
        try:
            datetime.fromisoformat(args.as_of)
        except ValueError:
            raise ConfigError(f"--as-of {args.as_of!r}: not an ISO date-time") from None
    record = run_rollout_step(
        str(decision),
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
