"""``kfp-mlops serve``: serve a model on this machine (router + one server per predictor)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kfp_mlops.cli.parsing import Commands
from kfp_mlops.core.config import Settings


def add_commands(commands: Commands) -> None:
    """Adds ``serve``."""
    serve_cmd = commands.add_parser("serve", help="serve a model locally (router + one server per predictor)")
    serve_cmd.add_argument("--spec", type=Path, default=None, help="deployment spec JSON (default: see README)")
    serve_cmd.add_argument("--deployment", default="iris", help="deployment name")
    serve_cmd.add_argument("--model-name", default="iris-classifier", help="registered model to serve")
    serve_cmd.add_argument("--protocol", choices=["v2", "seldon"], default="v2")
    serve_cmd.add_argument("--port", type=int, default=8000, help="router port on 127.0.0.1 (0: any free port)")
    serve_cmd.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from kfp_mlops.app.local_run import run_pipeline
    from kfp_mlops.serving.local.serve import resolve_spec, serve_until_stopped

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
        store_root=settings.store_root,
    )
    return 0
