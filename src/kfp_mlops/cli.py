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
from kfp_mlops.compiling import check_pipeline_arguments
from kfp_mlops.config import Settings
from kfp_mlops.errors import ConfigError, MlopsError


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
    run_cmd.add_argument("pipeline", choices=["training"])
    _add_pipeline_arguments(run_cmd)
    run_cmd.add_argument("--verbose", action="store_true", help="show every task's log as it runs")
    run_cmd.set_defaults(handler=_run)

    submit_cmd = commands.add_parser("submit", help="submit a compiled pipeline to a KFP backend")
    submit_cmd.add_argument("pipeline", choices=["training"])
    _add_pipeline_arguments(submit_cmd)
    _add_cluster_arguments(submit_cmd)
    submit_cmd.add_argument("--run-name", default=None, help="display name of the run")
    submit_cmd.set_defaults(handler=_submit)

    schedule_cmd = commands.add_parser("schedule", help="create (or replace) a recurring run on a KFP backend")
    schedule_cmd.add_argument("pipeline", choices=["training"])
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
    drift_cmd.add_argument("--reference", required=True,
                           help="reference profile .json, model/store-version folder, or .csv/.parquet data")
    drift_cmd.add_argument("--current", required=True, help="current window: .csv or .parquet (local or gs://)")
    drift_cmd.add_argument("--out", type=Path, default=None, help="write verdict.json and report.html (Evidently) here")
    drift_cmd.add_argument("--model", default=None, help="model folder, for prediction and performance drift")
    drift_cmd.add_argument("--label", default=None, help="label column (when the reference is data)")
    drift_cmd.add_argument("--config", default=None, help='DriftConfig as JSON, e.g. \'{"psi_threshold": 0.25}\'')
    drift_cmd.add_argument("--ignore-columns", default="", help="comma-separated columns that are not features")
    drift_cmd.add_argument("--fail-on-drift", action="store_true", help="exit 3 when drift is found")
    drift_cmd.set_defaults(handler=_drift)
    return parser


def _add_pipeline_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--source", default=None, help="iris, or a .csv/.parquet path or gs:// URI")
    cmd.add_argument("--label", default=None, help="label column")
    cmd.add_argument("--model-name", default=None)
    cmd.add_argument("--estimator", default=None, help="logistic_regression, random_forest, gradient_boosting, ...")
    cmd.add_argument("--hyperparameters", default=None, help='JSON object, e.g. \'{"C": 0.5}\'')
    cmd.add_argument("--threshold", type=float, default=None, help="gate: required value of the gate metric")
    cmd.add_argument("--gate-metric", default=None, help="accuracy, f1_macro, roc_auc or log_loss")
    cmd.add_argument("--schema", dest="schema_uri", default=None, help="schema JSON document (path or gs://)")
    cmd.add_argument("--store", dest="store_root", default=None, help="model store root (default KFP_MLOPS_STORE)")
    cmd.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="any other pipeline parameter (value parsed as JSON when it can be)")


def _add_cluster_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--host", default=None, help="KFP API endpoint (default KFP_HOST)")
    cmd.add_argument("--namespace", default=None, help="KFP namespace (default KFP_NAMESPACE)")
    cmd.add_argument("--experiment", default="kfp-mlops", help="KFP experiment")
    cmd.add_argument("--service-account", default=None, help="Kubernetes service account of the run")


def pipeline_arguments(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The pipeline parameters the command line sets; the store root is always set."""
    arguments: dict[str, Any] = {"store_root": args.store_root or settings.store_root}
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
    from kfp_mlops.compiling import COMPILED_DIR, compile_all

    for compiled in compile_all(args.out or COMPILED_DIR):
        print(f"{compiled.name}: {compiled.kfp_path} (KFP)  {compiled.vertex_path} (Vertex AI)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from kfp_mlops.compiling import compile_pipeline
    from kfp_mlops.local_run import run_pipeline
    from kfp_mlops.summary import render_summary

    settings = Settings.from_env()
    arguments = pipeline_arguments(args, settings)
    compiled = compile_pipeline(args.pipeline)
    print(f"Running pipeline {args.pipeline} locally (kfp.local, W&B {_wandb_mode()}) ...", flush=True)
    run = run_pipeline(args.pipeline, arguments, settings=settings, echo=args.verbose)
    print(render_summary(run, settings, compiled=[compiled.kfp_path, compiled.vertex_path]))
    return 0


def _wandb_mode() -> str:
    from kfp_mlops.tracking import resolve_mode

    return resolve_mode()


def _compiled_package(pipeline: str) -> Path:
    from kfp_mlops.compiling import compile_pipeline

    return compile_pipeline(pipeline).kfp_path


def _submit(args: argparse.Namespace) -> int:
    from kfp_mlops import kfp_client

    settings = Settings.from_env()
    arguments = pipeline_arguments(args, settings)
    client = kfp_client.connect(args.host, args.namespace)
    submitted = kfp_client.submit(
        _compiled_package(args.pipeline), client=client, experiment=args.experiment,
        run_name=args.run_name or f"{args.pipeline}-run", arguments=arguments,
        service_account=args.service_account,
    )
    print(f"submitted run {submitted.run_id} in experiment {submitted.experiment}: {submitted.url}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from kfp_mlops import kfp_client

    settings = Settings.from_env()
    arguments = pipeline_arguments(args, settings)
    cron = kfp_client.validate_cron(args.cron)  # before connecting: a bad cron never reaches the backend
    client = kfp_client.connect(args.host, args.namespace)
    created = kfp_client.schedule(
        _compiled_package(args.pipeline), client=client, name=args.name or f"{args.pipeline}-schedule",
        cron=cron, experiment=args.experiment, arguments=arguments, service_account=args.service_account,
    )
    replaced = f", replacing {', '.join(created.replaced)}" if created.replaced else ""
    print(f"scheduled {created.name} ({created.cron}) as recurring run {created.recurring_run_id}{replaced}")
    return 0


def _drift(args: argparse.Namespace) -> int:
    from kfp_mlops.drift import DriftConfig, run_drift_cli

    config_doc = _parse_json_object(args.config, "--config") if args.config else {}
    ignored = [c for c in args.ignore_columns.split(",") if c]
    if ignored:
        config_doc["ignore_columns"] = sorted({*config_doc.get("ignore_columns", []), *ignored})
    config = DriftConfig.from_dict(config_doc) if config_doc else None
    verdict = run_drift_cli(args.reference, args.current, args.out, model=args.model, label=args.label, config=config)
    return 3 if args.fail_on_drift and verdict["drift"] else 0


def _serve(args: argparse.Namespace) -> int:
    from kfp_mlops.local_run import run_pipeline
    from kfp_mlops.serving.serve import resolve_spec, serve_until_stopped

    settings = Settings.from_env()

    def train() -> None:
        print(f"No champion of {args.model_name} yet: running the training pipeline first ...", flush=True)
        run_pipeline("training", {"store_root": settings.store_root, "model_name": args.model_name}, settings=settings)

    spec, watch = resolve_spec(settings, spec_path=args.spec, deployment=args.deployment,
                               model_name=args.model_name, protocol=args.protocol, train=train)
    serve_until_stopped(spec, workdir=settings.home / "serving" / spec.name, port=args.port, watch=watch,
                        announce=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
