"""Train, the component's side: read the training split, fit, write the model folder and profile, log to W&B.

The fitting itself is :func:`kfp_mlops.modeling.training.fit_model`, shared with demos and tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfp_mlops.components.common import tracked_task
from kfp_mlops.core.storage import canonical_uri
from kfp_mlops.modeling.datasets import read_parquet
from kfp_mlops.modeling.model_bundle import save_bundle
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.training import fit_model


def run_train(
    train_path: str,
    model_dir: str,
    profile_path: str,
    *,
    label: str,
    estimator: str,
    hyperparameters: Mapping[str, Any],
    seed: int = 42,
    training_data_uri: str = "",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
) -> dict[str, Any]:
    """Trains, writes the model folder and the reference profile, logs both to W&B.

    Args:
        train_path: the training rows (Parquet).
        model_dir: where the model folder goes.
        profile_path: where the reference profile (JSON) goes.
        label: the label column.
        estimator: the estimator's name.
        hyperparameters: its constructor arguments.
        seed: ``random_state`` for estimators that take one.
        training_data_uri: the training data's URI to record (default: ``train_path``).
        pipeline_job_id: the W&B group.
        wandb_project: the W&B project (empty: the ``WANDB_PROJECT`` setting).

    Returns:
        The model metadata (also written to ``model_dir/metadata.json``).
    """
    params = {"estimator": estimator, "hyperparameters": dict(hyperparameters), "seed": seed, "label": label}
    with tracked_task("train", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project) as run:
        train = read_parquet(train_path)
        model, metadata = fit_model(train, label, estimator, hyperparameters, seed)
        metadata["training_data_uri"] = canonical_uri(training_data_uri or train_path)
        metadata = save_bundle(model_dir, model, metadata)
        profile = build_profile(train, metadata["feature_kinds"], label)
        Path(profile_path).parent.mkdir(parents=True, exist_ok=True)
        Path(profile_path).write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n")
        run.log_metrics(metadata["metrics"])
        run.log_artifact("model", "model", uri=canonical_uri(model_dir), metadata=metadata, uses=["train-data:latest"])
        run.log_artifact(
            "reference-profile", "profile", uri=canonical_uri(profile_path), metadata={"rows": profile["rows"]}
        )
    return metadata
