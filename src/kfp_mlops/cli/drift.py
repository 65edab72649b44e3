"""``kfp-mlops drift``: check a data window for drift against a reference; prints the verdict as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from kfp_mlops.cli.parsing import Commands, parse_json_object
from kfp_mlops.core.config import Settings


def add_commands(commands: Commands) -> None:
    """Adds ``drift``."""
    drift_cmd = commands.add_parser("drift", help="check a data window for drift against a reference; prints JSON")
    drift_cmd.add_argument(
        "--reference", required=True, help="reference profile .json, model/store-version folder, or .csv/.parquet data"
    )
    drift_cmd.add_argument(
        "--current",
        required=True,
        help="current window: .parquet (streamed in constant memory) or .csv (local or gs://)",
    )
    drift_cmd.add_argument("--out", type=Path, default=None, help="write verdict.json and report.html (Evidently) here")
    drift_cmd.add_argument(
        "--model", default=None, help="model store version (KFP_MLOPS_STORE), for prediction and performance drift"
    )
    drift_cmd.add_argument(
        "--model-sha256",
        default=None,
        help="the model file's sha256, for a folder outside the store (with KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE=1)",
    )
    drift_cmd.add_argument(
        "--label",
        default=None,
        help="label column of reference data (a model names its own; leave it out for unlabelled data)",
    )
    drift_cmd.add_argument("--config", default=None, help="DriftConfig as JSON, e.g. '{\"psi_threshold\": 0.25}'")
    drift_cmd.add_argument("--ignore-columns", default="", help="comma-separated columns that are not features")
    drift_cmd.add_argument("--fail-on-drift", action="store_true", help="exit 3 when drift is found")
    drift_cmd.set_defaults(handler=_drift)


def _drift(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.app.drift_command import run_drift_command
    from kfp_mlops.drift import DriftConfig

    config_doc = parse_json_object(args.config, "--config") if args.config else {}
    ignored = [c for c in args.ignore_columns.split(",") if c]
    if ignored:
        config_doc["ignore_columns"] = sorted({*config_doc.get("ignore_columns", []), *ignored})
    config = DriftConfig.from_dict(config_doc) if config_doc else None
    verdict = run_drift_command(
        args.reference,
        args.current,
        args.out,
        model=args.model,
        model_sha256=args.model_sha256,
        label=args.label,
        config=config,
    )
    return 3 if args.fail_on_drift and verdict["drift"] else 0
