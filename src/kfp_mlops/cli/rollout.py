"""``kfp-mlops rollout start | step | status``: a safe rollout of a challenger, driven from this machine."""

from __future__ import annotations

import argparse
import json

from kfp_mlops.cli.parsing import Commands, parse_json_object
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError


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


def _rollout_paths(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    state = args.state or str(settings.home / "rollouts" / f"{args.deployment}.json")
    log = getattr(args, "log", None) or str(settings.home / "prediction-log")
    return state, log


def _rollout_start(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.rollout import controller as rc
    from kfp_mlops.rollout.targets import make_target

    state, _ = _rollout_paths(args, settings)
    base = rc.base_spec(args.deployment, namespace=args.namespace, protocol=args.protocol).validate()
    result = rc.start(
        state,
        parse_json_object(args.plan, "--plan"),
        args.legacy,
        args.challenger,
        base=base,
        target=make_target(args.target, settings=settings, deployment=args.deployment),
    )
    print(f"Rollout of {args.challenger} started at {result.stage}; state {state}")
    return 0


def _rollout_step(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from kfp_mlops.rollout.task import run_rollout_step

    state, log = _rollout_paths(args, settings)
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

    state, _ = _rollout_paths(args, settings)
    print(json.dumps(rc.status(state), indent=2))
    return 0
