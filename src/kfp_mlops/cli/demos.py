"""``kfp-mlops demo rollout | drift | lifecycle``: end-to-end demonstrations on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from kfp_mlops.cli.parsing import Commands
from kfp_mlops.core.config import Settings


def add_commands(commands: Commands) -> None:
    """Adds ``demo`` and its demos."""
    demo_cmd = commands.add_parser("demo", help="end-to-end demonstrations on this machine")
    demos = demo_cmd.add_subparsers(required=True, metavar="DEMO")
    demo_rollout = demos.add_parser("rollout", help="train legacy and challenger on fraud data, roll out live")
    demo_rollout.add_argument(
        "--out", type=Path, default=None, help="work folder, kept (default $KFP_MLOPS_HOME/demo-rollout)"
    )
    demo_rollout.add_argument("--quick", action="store_true", help="fewer transactions (a faster, noisier run)")
    demo_rollout.set_defaults(handler=_demo_rollout)

    demo_drift = demos.add_parser("drift", help="a year of weekly windows: drift checks, live accuracy, retraining")
    demo_drift.add_argument("--weeks", type=int, default=52, help="weeks to simulate (default 52)")
    demo_drift.add_argument("--start-week", type=int, default=0, help="first week, 0..51 (default 0)")
    demo_drift.add_argument("--rows-per-week", type=int, default=2000, help="rows in each weekly window")
    demo_drift.add_argument("--seed", type=int, default=0)
    demo_drift.add_argument("--out", type=Path, default=None, help="work folder (default $KFP_MLOPS_HOME/demo-drift)")
    demo_drift.set_defaults(handler=_demo_drift)

    lifecycle = demos.add_parser(
        "lifecycle",
        help="a year of shoppers on the local stack: every retrain goes candidate -> shadow -> canary -> champion",
    )
    lifecycle.add_argument("--weeks", type=int, default=52, help="weeks to simulate (default 52)")
    lifecycle.add_argument("--start-week", type=int, default=0, help="first week, 0..51 (default 0)")
    lifecycle.add_argument("--rows-per-week", type=int, default=1500, help="requests per week (default 1500)")
    lifecycle.add_argument(
        "--corrupted-week", type=int, default=28, help="the week whose export is corrupted (default 28; -1: none)"
    )
    lifecycle.add_argument("--seed", type=int, default=0, help="seed of the generated shoppers")
    lifecycle.add_argument(
        "--out", type=Path, default=None, help="work folder, kept (default $KFP_MLOPS_HOME/demo-lifecycle)"
    )
    lifecycle.set_defaults(handler=_demo_lifecycle)


def _demo_rollout(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.demos.rollout import run_demo

    # A kept folder: the demo prints where its plot and models are, so they must outlive it.
    run_demo(out=args.out or settings.home / "demo-rollout", quick=args.quick, announce=print)
    return 0


def _demo_drift(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.demos.drift import DemoConfig, render_table, run_demo

    config = DemoConfig(weeks=args.weeks, start_week=args.start_week, rows_per_week=args.rows_per_week, seed=args.seed)
    config.check()
    result = run_demo(config, settings=settings, workdir=args.out, announce=lambda line: print(line, flush=True))
    print()
    print(render_table(result))
    return 0


def _demo_lifecycle(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.demos.lifecycle import LifecycleConfig, render_summary, run_demo

    config = LifecycleConfig(
        weeks=args.weeks,
        start_week=args.start_week,
        rows_per_week=args.rows_per_week,
        corrupted_week=None if args.corrupted_week < 0 else args.corrupted_week,
        seed=args.seed,
    )
    config.check()
    result = run_demo(config, settings=settings, workdir=args.out, announce=lambda line: print(line, flush=True))
    print()
    print(render_summary(result))
    return 0 if result.failed_requests == 0 else 1
