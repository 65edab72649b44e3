"""Train, the component's side: read the training split, fit, write the model folder and profile, log to W&B.

The fitting itself is :func:`kfp_mlops.modeling.training.fit_model`, shared with demos and tests.
A retrain (``retrain_kind`` from the drift check's retrain policy) is
:func:`kfp_mlops.modeling.retraining.retrain` of the champion instead: an incremental update of a
copy of it, or a full retrain, its record (kind, mechanism, fit seconds, sources) in the metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kfp_mlops.components.common import tracked_task
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.core.storage import canonical_uri
from kfp_mlops.modeling.datasets import read_parquet
from kfp_mlops.modeling.evaluation import load_champion
from kfp_mlops.modeling.model_bundle import save_bundle
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.retraining import retrain
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
    retrain_kind: str = "",
    store_root: str = "",
    model_name: str = "",
    sources: Sequence[Mapping[str, Any]] = (),
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
        retrain_kind: empty for a training run; ``incremental`` or ``full`` to retrain the champion
            of ``model_name`` in ``store_root`` instead (an incremental update the champion cannot
            take, or with another estimator, falls back to full; the record says why).
        store_root: the model store (a retrain's champion).
        model_name: the registered model (a retrain's champion).
        sources: the windows the training rows came from (a retrain's record).
        pipeline_job_id: the W&B group.
        wandb_project: the W&B project (empty: the ``WANDB_PROJECT`` setting).

    Returns:
        The model metadata (also written to ``model_dir/metadata.json``).
    """
    params = {
        "estimator": estimator,
        "hyperparameters": dict(hyperparameters),
        "seed": seed,
        "label": label,
        "retrain_kind": retrain_kind,
    }
    with tracked_task("train", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project) as run:
        train = read_parquet(train_path)
        if retrain_kind:
            champion, _, unloadable = load_champion(store_root, model_name)
            if champion is None:
                why = unloadable or "there is none"
                raise ConfigError(f"retrain of {model_name!r} in {store_root!r}: the champion cannot be loaded: {why}")
            retrained = retrain(
                retrain_kind,
                train,
                champion,
                estimator=estimator,
                hyperparameters=hyperparameters,
                seed=seed,
                sources=sources,
            )
            model, metadata = retrained.model, retrained.metadata
            run.log_metrics({f"retrain_{k}": v for k, v in retrained.record.items() if k.endswith("_seconds")})
        else:
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
