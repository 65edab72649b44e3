"""Train: fit a scikit-learn pipeline on the training split and profile its features."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


def feature_kinds(frame: pd.DataFrame, label: str) -> dict[str, str]:
    """Every column but the label, as "numeric" or "categorical" by dtype."""
    import pandas as pd

    return {
        str(name): "numeric"
        if pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
        else "categorical"
        for name in frame.columns
        if name != label
    }


def fit_model(
    train: pd.DataFrame, label: str, estimator: str, hyperparameters: Mapping[str, Any], seed: int
) -> tuple[Any, dict[str, Any]]:
    """Fits preprocessing + estimator on ``train``.

    Returns:
        The fitted pipeline and its metadata (everything but the training-data URI).

    Raises:
        ConfigError: unknown estimator or hyperparameter.
        DataError: no label column or no feature columns.
    """
    from sklearn.metrics import accuracy_score

    from kfp_mlops.modeling.estimators import build_pipeline, make_estimator
    from kfp_mlops.modeling.model_bundle import environment_versions

    if label not in train.columns:
        raise DataError(f"training data: no label column {label!r}")
    kinds = feature_kinds(train, label)
    if not kinds:
        raise DataError("training data: no feature columns besides the label")
    model = build_pipeline(
        make_estimator(estimator, hyperparameters, seed),
        numeric=[n for n, k in kinds.items() if k == "numeric"],
        categorical=[n for n, k in kinds.items() if k == "categorical"],
    )
    features, target = train[list(kinds)], train[label].astype(str)
    started = time.perf_counter()
    model.fit(features, target)
    fit_seconds = time.perf_counter() - started
    metadata = {
        "estimator": estimator,
        "hyperparameters": dict(hyperparameters),
        "seed": seed,
        "label": label,
        "feature_names": list(kinds),
        "feature_kinds": kinds,
        "classes": [str(c) for c in model.classes_],
        "versions": environment_versions(),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_rows": len(train),
        "metrics": {
            "train_accuracy": float(accuracy_score(target, model.predict(features))),
            "fit_seconds": round(fit_seconds, 4),
        },
    }
    return model, metadata


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

    Returns:
        The model metadata (also written to ``model_dir/metadata.json``).
    """
    from kfp_mlops.core.storage import canonical_uri
    from kfp_mlops.core.tracking import tracked_run
    from kfp_mlops.modeling.datasets import read_parquet
    from kfp_mlops.modeling.model_bundle import save_bundle
    from kfp_mlops.modeling.profile import build_profile

    params = {"estimator": estimator, "hyperparameters": dict(hyperparameters), "seed": seed, "label": label}
    with tracked_run("train", group=pipeline_job_id, config=params, project=wandb_project or None) as run:
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
