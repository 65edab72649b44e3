"""Retrain: run the training pipeline on a new data window, on the cluster or on this machine.

On a cluster (a ``kfp_host`` argument, else ``KFP_HOST``) the compiled training pipeline shipped
with the package is submitted through :func:`kfp_mlops.core.kfp_client.submit`, with the window as its
``source``; the task returns at once with the run id (KFP has no "pipeline triggers pipeline").

Locally the training pipeline runs with ``kfp.local`` inside this task's own process: a kfp.local
task is a subprocess, so the nested run has its own ``kfp.local`` configuration. Its runs and logs go
under ``workdir`` (inside the outer task's folder), never into the outer run's ``runs/`` folder,
whose newest entry the outer runner takes as its own run. The model store, the deployment files and
W&B are the outer run's (the environment is inherited).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfp_mlops.core.errors import ConfigError

# The training pipeline's parameters a retrain passes through (besides source and store_root).
PASSED_THROUGH = (
    "label",
    "model_name",
    "estimator",
    "hyperparameters",
    "test_size",
    "seed",
    "schema_uri",
    "gate_metric",
    "threshold",
    "max_regression",
    "wandb_project",
    "deployment_name",
    "deploy_target",
    "namespace",
    "protocol",
)


def training_arguments(source: str, store_root: str, **parameters: Any) -> dict[str, Any]:
    """The training pipeline's arguments for a retrain on ``source``; empty W&B project left out.

    Raises:
        ConfigError: no source or store root, or a parameter the training pipeline does not take.
    """
    if not source:
        raise ConfigError("retrain: no source (the data window to train on)")
    if not store_root:
        raise ConfigError("retrain: no store_root")
    unknown = sorted(set(parameters) - set(PASSED_THROUGH))
    if unknown:
        raise ConfigError(f"retrain: unknown training parameter(s) {', '.join(unknown)}")
    arguments = {"source": source, "store_root": store_root, **parameters}
    if not arguments.get("wandb_project"):
        arguments.pop("wandb_project", None)
    if arguments.get("hyperparameters") is None:
        arguments.pop("hyperparameters", None)
    return arguments


def cluster_host(kfp_host: str = "") -> str | None:
    """The KFP API to submit to: ``kfp_host``, else ``KFP_HOST``; None: run locally."""
    from kfp_mlops.core.config import Settings

    return kfp_host or Settings.from_env().kfp_host


def training_package() -> Path:
    """The compiled training pipeline shipped with the package (``pipelines/compiled/training.yaml``)."""
    import kfp_mlops.pipelines

    return Path(kfp_mlops.pipelines.__file__).resolve().parent / "compiled" / "training.yaml"


def retrain_on_cluster(
    arguments: Mapping[str, Any],
    *,
    host: str,
    namespace: str = "",
    experiment: str = "kfp-mlops",
    run_name: str = "retrain",
) -> dict[str, Any]:
    """Submits the training pipeline; returns the outcome record (mode ``cluster``)."""
    from kfp_mlops.core import kfp_client

    client = kfp_client.connect(host, namespace or None)
    submitted = kfp_client.submit(
        training_package(), client=client, experiment=experiment, run_name=run_name, arguments=dict(arguments)
    )
    return {
        "mode": "cluster",
        "host": host,
        "run_id": submitted.run_id,
        "experiment": submitted.experiment,
        "url": submitted.url,
        "source": arguments["source"],
        "passed": None,
        "version": None,
    }


def retrain_locally(arguments: Mapping[str, Any], workdir: str | Path) -> dict[str, Any]:
    """Runs the training pipeline with kfp.local in a fresh Python; returns the outcome (mode ``local``).

    A fresh process, because a kfp.local task runs with ``_KFP_RUNTIME=true``, under which
    ``kfp.dsl`` offers only what an executor needs (no ``dsl.component``, no ``dsl.pipeline``).

    Raises:
        MlopsError: the training run failed (the message names the task and why).
    """
    import os
    import subprocess
    import sys

    from kfp_mlops.core.errors import MlopsError

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    request, result = workdir / "arguments.json", workdir / "outcome.json"
    request.write_text(json.dumps(dict(arguments), indent=2, sort_keys=True))
    env = {k: v for k, v in os.environ.items() if k not in ("_KFP_RUNTIME", "WANDB_SERVICE")}
    with open(workdir / "training.out", "w") as out:
        code = subprocess.run(
            [sys.executable, "-m", "kfp_mlops.components.retrain.logic", str(request), str(workdir), str(result)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    outcome = json.loads(result.read_text()) if result.is_file() else {}
    if code != 0 or "error" in outcome:
        tail = (workdir / "training.out").read_text(errors="replace").strip().splitlines()[-1:]
        raise MlopsError(f"retrain: {outcome.get('error') or (tail[0] if tail else f'exit status {code}')}")
    return outcome


def _train_here(arguments: Mapping[str, Any], workdir: Path) -> dict[str, Any]:
    """The nested training run itself (in the fresh process)."""
    from kfp_mlops.app.local_run import run_pipeline
    from kfp_mlops.core.config import Settings
    from kfp_mlops.modeling.model_store import ModelStore

    store = ModelStore(arguments["store_root"])
    before = store.champion(arguments.get("model_name", "iris-classifier"))
    settings = dataclasses.replace(Settings.from_env(), home=workdir)
    run = run_pipeline("training", arguments, settings=settings)
    evaluation = json.loads(run.artifact("evaluate", "evaluation").read_text())
    registered = json.loads(run.artifact("register", "registered").read_text()) if run.ran("register") else None
    return {
        "mode": "local",
        "source": arguments["source"],
        "passed": bool(evaluation["passed"]),
        "version": registered["version"] if registered else None,
        "uri": registered["uri"] if registered else None,
        "previous_champion": before.version if before else None,
        "metrics": evaluation["metrics"],
        "champion_metrics": evaluation.get("champion_metrics"),
        "reasons": evaluation["reasons"],
        "tasks": run.tasks,
        "run_dir": str(run.run_dir),
        "log": str(run.log_path),
        "seconds": round(run.seconds, 2),
    }


def _main(argv: list[str]) -> int:
    """``python -m kfp_mlops.components.retrain.logic ARGUMENTS.json WORKDIR OUTCOME.json``."""
    from kfp_mlops.core.errors import MlopsError

    request, workdir, result = argv
    try:
        outcome = _train_here(json.loads(Path(request).read_text()), Path(workdir))
    except MlopsError as exc:
        Path(result).write_text(json.dumps({"error": str(exc)}))
        return 1
    Path(result).write_text(json.dumps(outcome, indent=2, sort_keys=True))
    return 0


def run_retrain(
    source: str,
    store_root: str,
    outcome_path: str,
    *,
    kfp_host: str = "",
    kfp_namespace: str = "",
    experiment: str = "kfp-mlops",
    drift_verdict_path: str = "",
    pipeline_job_id: str = "local",
    **parameters: Any,
) -> dict[str, Any]:
    """Retrains on ``source``: submits on a cluster, runs locally otherwise; writes the outcome JSON.

    Args:
        source: the data window (``.csv``/``.parquet``, local or ``gs://``).
        store_root: the model store.
        outcome_path: where the outcome JSON goes; a local run keeps its files beside it.
        kfp_host, kfp_namespace, experiment: where to submit (empty host: ``KFP_HOST``, else local).
        drift_verdict_path: the drift check's verdict, whose reasons are kept in the outcome.
        pipeline_job_id: the outer run's id (names the submitted run).
        parameters: the training pipeline's other parameters (:data:`PASSED_THROUGH`).

    Returns:
        ``mode`` (``local``/``cluster``), ``source``, ``passed``, ``version`` (None when nothing
        was registered, or not known yet on a cluster), and run details.
    """
    from kfp_mlops.core.tracking import tracked_run

    arguments = training_arguments(source, store_root, **parameters)
    host = cluster_host(kfp_host)
    drift_reasons = []
    if drift_verdict_path and Path(drift_verdict_path).is_file():
        drift_reasons = json.loads(Path(drift_verdict_path).read_text()).get("reasons", [])
    params = {
        "source": source,
        "mode": "cluster" if host else "local",
        "host": host or "",
        "drift_reasons": drift_reasons,
    }
    with tracked_run(
        "retrain", group=pipeline_job_id, config=params, project=parameters.get("wandb_project") or None
    ) as run:
        started = time.perf_counter()
        if host:
            outcome = retrain_on_cluster(
                arguments,
                host=host,
                namespace=kfp_namespace,
                experiment=experiment,
                run_name=f"retrain-{pipeline_job_id}"[:100],
            )
        else:
            outcome = retrain_locally(arguments, Path(outcome_path).parent / "nested")
        outcome["drift_reasons"] = drift_reasons
        outcome["wall_seconds"] = round(time.perf_counter() - started, 2)
        if outcome["passed"] is not None:
            run.log_metrics(
                {
                    "passed": float(outcome["passed"]),
                    **{f"candidate_{k}": float(v) for k, v in (outcome.get("metrics") or {}).items()},
                }
            )
        run.run.summary["version"] = outcome.get("version") or ""
        run.run.summary["run_id"] = outcome.get("run_id") or ""
    Path(outcome_path).parent.mkdir(parents=True, exist_ok=True)
    Path(outcome_path).write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n")
    return outcome


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
