"""``kfp-mlops rollout start | step | status``: a safe rollout of a challenger, driven from this machine.

With ``--target cluster`` the stages are rendered for the serving platform (``--platform seldon |
kserve``) with the serving options the deploy step takes as pipeline parameters: the model-server
images, their service account, KServe's request logger, and the prediction log as every server's
``PREDICTION_LOG_URI`` (the log the rollout records at start and its steps read).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from kfp_mlops.cli.parsing import Commands, parse_json_object
from kfp_mlops.core.config import DEFAULT_SERVING_IMAGE_SELDON, DEFAULT_SERVING_IMAGE_V2, Settings
from kfp_mlops.core.errors import ConfigError

if TYPE_CHECKING:
    from kfp_mlops.serving.cluster.resources import ServingOptions


def add_commands(commands: Commands) -> None:
    """Adds ``rollout`` and its actions."""
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
            help="local: the spec file `kfp-mlops serve` watches; cluster: the platform's resources",
        )
        _add_serving_arguments(cmd)
        if action == "start":
            cmd.add_argument("--legacy", required=True, help="the legacy model folder")
            cmd.add_argument("--challenger", required=True, help="the challenger model folder")
            cmd.add_argument("--plan", default="{}", help="StagePlan as JSON, e.g. '{\"steps\": [5, 25, 100]}'")
            cmd.add_argument(
                "--log",
                default=None,
                help="prediction log root the servers write and the steps read, recorded in the state (default "
                "$KFP_MLOPS_HOME/prediction-log; required for --target cluster: a gs:// URI the pods can write)",
            )
            cmd.set_defaults(handler=_rollout_start)
        else:
            cmd.add_argument(
                "--log",
                default=None,
                help="prediction log root (default: the one the rollout recorded, else $KFP_MLOPS_HOME/prediction-log)",
            )
            cmd.add_argument("--as-of", default=None, help="ISO time the step looks from (default now)")
            cmd.add_argument("--live-config", default="{}", help="LiveConfig as JSON, e.g. '{\"bootstrap\": 2000}'")
            cmd.set_defaults(handler=_rollout_step)


def _add_serving_arguments(cmd: argparse.ArgumentParser) -> None:
    """The cluster's serving platform and options (the pipelines' serving parameters), for ``--target cluster``."""
    serving = cmd.add_argument_group("serving (--target cluster)")
    serving.add_argument(
        "--platform",
        choices=["seldon", "kserve"],
        default="seldon",
        help="serving platform: seldon (SeldonDeployment) or kserve (InferenceService; no shadow stage)",
    )
    serving.add_argument(
        "--serving-image-v2",
        default=None,
        help=f"model-server image for protocol v2 (default KFP_MLOPS_SERVING_IMAGE, else {DEFAULT_SERVING_IMAGE_V2})",
    )
    serving.add_argument(
        "--serving-image-seldon",
        default=None,
        help=f"model-server image for protocol seldon (default KFP_MLOPS_SELDON_IMAGE, else "
        f"{DEFAULT_SERVING_IMAGE_SELDON})",
    )
    serving.add_argument(
        "--serving-service-account",
        default="",
        help="the model-server pods' service account (default: the namespace's default account)",
    )
    serving.add_argument(
        "--request-logger-url", default="", help="kserve only: the sink of KServe's request logger (default: none)"
    )


def _serving_options(args: argparse.Namespace, settings: Settings, log_root: str) -> ServingOptions:
    from kfp_mlops.serving.cluster.resources import ServingOptions

    return ServingOptions.from_settings(
        settings,
        image_v2=args.serving_image_v2 or "",
        image_seldon=args.serving_image_seldon or "",
        service_account=args.serving_service_account,
        prediction_log_uri=log_root,
        request_logger_url=args.request_logger_url,
        store_root=settings.store_root,
    )


def _state_path(args: argparse.Namespace, settings: Settings) -> str:
    return args.state or str(settings.home / "rollouts" / f"{args.deployment}.json")


def _rollout_start(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.rollout import controller as rc
    from kfp_mlops.rollout.targets import make_target

    state = _state_path(args, settings)
    if args.target == "cluster" and not args.log:
        raise ConfigError(
            "--log: name the prediction log the model servers write and the steps read (a gs:// URI the pods "
            "can write) for --target cluster"
        )
    log = args.log or str(settings.home / "prediction-log")
    base = rc.base_spec(args.deployment, namespace=args.namespace, protocol=args.protocol).validate()
    target = make_target(
        args.target,
        settings=settings,
        deployment=args.deployment,
        platform=args.platform,
        serving=_serving_options(args, settings, log),
    )
    result = rc.start(
        state,
        parse_json_object(args.plan, "--plan"),
        args.legacy,
        args.challenger,
        base=base,
        target=target,
        log_root=log,
    )
    print(f"Rollout of {args.challenger} started at {result.stage}; state {state}; prediction log {log}")
    return 0


def _rollout_step(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from kfp_mlops.rollout.task import rollout_log_root, run_rollout_step

    state = _state_path(args, settings)
    log = rollout_log_root(state, args.log or "") or str(settings.home / "prediction-log")
    decision = settings.home / "rollouts" / "last-decision.json"
    if args.as_of:
        try:
            datetime.fromisoformat(args.as_of)
        except ValueError:
            raise ConfigError(f"--as-of {args.as_of!r}: not an ISO date-time") from None
    record = run_rollout_step(
        str(decision),
        settings=settings,
        state_uri=state,
        log_root=log,
        deployment_name=args.deployment,
        namespace=args.namespace,
        protocol=args.protocol,
        target=args.target,
        as_of=args.as_of or "",
        live_config=parse_json_object(args.live_config, "--live-config"),
        platform=args.platform,
        serving_image_v2=args.serving_image_v2 or "",
        serving_image_seldon=args.serving_image_seldon or "",
        service_account=args.serving_service_account,
        request_logger_url=args.request_logger_url,
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


def _rollout_status(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.rollout import controller as rc

    print(json.dumps(rc.status(_state_path(args, settings)), indent=2))
    return 0
