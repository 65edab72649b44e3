"""The v2 runtime's server: MLServer's settings from the environment, and the process entry point.

``python -m kfp_mlops.serving.runtimes.mlserver [FOLDER]`` runs :func:`main` with ``MODEL_URI``,
``DEPLOYMENT_NAME`` and ``PREDICTOR_NAME`` in the environment (MLServer's own ``MLSERVER_*``
variables set its ports and host). The model is served under the deployment's name; the settings
it runs with are written to FOLDER (default: the current folder) as ``settings.json`` and
``model-settings.json``, which is created if missing and is the only place the server writes to
(MLServer's metrics files and environments folder go there too, not into the working folder): the
image passes ``/tmp/mlserver``, on the pod's tmp volume beside a read-only root filesystem. If
the model cannot be loaded, the error is logged and the process exits with code 1 (plain
``mlserver start`` logs it and exits 0).

Settings decided here whatever the environment says: ``debug: false`` (MLServer's default is
true) and ``parallel_workers: 0``, so the model runs in the server process. With parallel workers
MLServer 1.7 ignores SIGTERM, crashes with uvloop >= 0.22, and the metrics of
:mod:`kfp_mlops.serving.metrics` would live in worker processes its metrics endpoint cannot see;
in-process, MLServer's metrics endpoint exports them with its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from mlserver import MLServer
from mlserver.logging import configure_logger
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.utils import install_uvloop_event_loop

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.runtimes.environment import DEPLOYMENT_ENV, MODEL_URI_ENV, PREDICTOR_ENV
from kfp_mlops.serving.runtimes.mlserver.middleware import instrument
from kfp_mlops.serving.runtimes.mlserver.runtime import RUNTIME, load_failures, stop_prediction_loggers


def server_settings(folder: Path) -> tuple[Settings, ModelSettings]:
    """MLServer's settings from the environment, with this runtime's fixed choices.

    Raises:
        MlopsError: the model URI, deployment or predictor is not set.
    """
    missing = [name for name in (MODEL_URI_ENV, DEPLOYMENT_ENV, PREDICTOR_ENV) if not os.environ.get(name)]
    if missing:
        raise MlopsError(f"v2 model server: set {', '.join(missing)} in the environment")
    settings = Settings(
        debug=False,
        parallel_workers=0,
        model_repository_root=str(folder),
        metrics_dir=str(folder / ".metrics"),
        environments_dir=str(folder / ".envs"),
    )
    model = ModelSettings(
        name=os.environ[DEPLOYMENT_ENV],
        implementation=RUNTIME,
        parameters=ModelParameters(uri=os.environ[MODEL_URI_ENV], extra={"predictor": os.environ[PREDICTOR_ENV]}),
    )
    return settings, model


async def _serve(settings: Settings, model: ModelSettings) -> None:
    server = MLServer(settings)
    # MLServer offers no hook on its REST app; 1.7.1 is pinned exactly and the tests exercise this.
    instrument(server._rest_server._app, settings)
    await server.start([model])


def main(argv: list[str] | None = None) -> int:
    """Serves the model until SIGTERM/SIGINT; returns 1 if it could not be loaded, 2 if misconfigured."""
    parser = argparse.ArgumentParser(
        prog="python -m kfp_mlops.serving.runtimes.mlserver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folder",
        nargs="?",
        default=".",
        type=Path,
        help="where the effective settings.json and model-settings.json are written",
    )
    args = parser.parse_args(argv)
    try:
        settings, model = server_settings(args.folder)
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.folder.mkdir(parents=True, exist_ok=True)
    (args.folder / "settings.json").write_text(settings.model_dump_json(indent=2) + "\n")
    (args.folder / "model-settings.json").write_text(
        model.model_dump_json(indent=2, by_alias=True, exclude_none=True, exclude={"parallel_workers", "warm_workers"})
        + "\n"
    )
    configure_logger(settings)
    install_uvloop_event_loop()
    try:
        asyncio.run(_serve(settings, model))
    finally:
        stop_prediction_loggers()  # the last records, at shutdown
    failures = load_failures()
    if failures:
        print(f"error: {'; '.join(failures)}", file=sys.stderr)
        return 1
    return 0
