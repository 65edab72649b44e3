"""Training: fit preprocessing and a named estimator on labelled rows, and describe the result.

:func:`fit_model` is the one way the package trains a model, whether the train component, a demo or
a test calls it: every column but the label is a feature, numeric or categorical by dtype
(:func:`~kfp_mlops.modeling.schema.feature_kinds`); the estimator and its hyperparameters are
checked by name (:mod:`kfp_mlops.modeling.estimators`). The metadata it returns is what a model
bundle carries (:mod:`kfp_mlops.modeling.model_bundle`), except the training data's URI, which only
the caller knows. It includes the model's calibration maps (:mod:`kfp_mlops.modeling.calibration`),
fitted on out-of-fold predictions of the same rows, or why there are none.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import DataError
from kfp_mlops.modeling.calibration import CalibrationUnavailable, fit_calibration
from kfp_mlops.modeling.estimators import build_pipeline, make_estimator
from kfp_mlops.modeling.model_bundle import environment_versions
from kfp_mlops.modeling.schema import feature_kinds

if TYPE_CHECKING:
    import pandas as pd


def fit_model(
    train: pd.DataFrame, label: str, estimator: str, hyperparameters: Mapping[str, Any], seed: int
) -> tuple[Any, dict[str, Any]]:
    """Fits preprocessing + estimator on ``train``.

    Args:
        train: the training rows, label included.
        label: the label column; every other column is a feature.
        estimator: a name in :data:`~kfp_mlops.modeling.estimators.ESTIMATORS`.
        hyperparameters: constructor arguments of the estimator.
        seed: ``random_state`` for estimators that take one.

    Returns:
        The fitted pipeline and its metadata (everything but the training-data URI). Its
        ``calibration`` holds the calibration maps, or ``{"unavailable": reason}`` when they could
        not be fitted (e.g. a class with a single row); training itself does not fail for that.

    Raises:
        ConfigError: unknown estimator or hyperparameter.
        DataError: no label column or no feature columns.
    """
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
    try:
        calibration = fit_calibration(model, features, target, seed=seed).to_dict()
    except CalibrationUnavailable as exc:
        calibration = {"unavailable": str(exc)}
    metadata = {
        "estimator": estimator,
        "hyperparameters": dict(hyperparameters),
        "label": label,
        "feature_names": list(kinds),
        "feature_kinds": kinds,
        "classes": [str(c) for c in model.classes_],
        **fit_facts(model, features, target, fit_seconds=fit_seconds, seed=seed),
        "calibration": calibration,
    }
    return model, metadata


def fit_facts(
    model: Any, features: pd.DataFrame, target: pd.Series, *, fit_seconds: float, seed: int
) -> dict[str, Any]:
    """What the metadata of every fit records (a retrain's too): seed, versions, time, rows and training metrics."""
    from sklearn.metrics import accuracy_score

    return {
        "seed": seed,
        "versions": environment_versions(),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_rows": len(features),
        "metrics": {
            "train_accuracy": float(accuracy_score(target, model.predict(features))),
            "fit_seconds": round(fit_seconds, 4),
        },
    }
