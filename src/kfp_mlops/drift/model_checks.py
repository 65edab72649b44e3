"""Prediction and performance drift: how the model behaves on the current window.

With a model, the verdict also checks its predictions: the PSI (:mod:`~kfp_mlops.drift.methods.psi`)
of the mean predicted class probabilities (the model's expected class shares) against the same on
reference rows, or against the reference's label shares when there are no reference rows (equal for
a calibrated model). With labels in the current window it compares accuracy and ROC AUC with the
reference's (a drop by more than ``DriftConfig.max_accuracy_drop`` / ``max_roc_auc_drop`` is a
degradation). With or without labels it estimates accuracy and ROC AUC from the model's calibrated
probabilities (:mod:`~kfp_mlops.drift.performance_estimation`), beside the realized ones when there
are labels; the drift decision does not use the estimate, the retrain policy
(:mod:`~kfp_mlops.drift.policy`) does. Only rows with every feature present are scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kfp_mlops.core.errors import DataError
from kfp_mlops.drift.config import DriftConfig
from kfp_mlops.drift.methods.psi import psi
from kfp_mlops.drift.performance_estimation import estimate_from_probabilities, unavailable, with_realized
from kfp_mlops.modeling.calibration import CalibrationUnavailable

if TYPE_CHECKING:
    import pandas as pd

    from kfp_mlops.modeling.model_bundle import ModelBundle


def model_drift(
    model: ModelBundle,
    current: pd.DataFrame,
    profile: Mapping[str, Any],
    config: DriftConfig,
    reference_shares: Mapping[str, float] | None,
    reference_performance: Mapping[str, float] | None,
    where: str,
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """Prediction drift, performance with labels, and the label-free performance estimate of ``model``.

    Args:
        model: The model the profile belongs to.
        current: The window (the profile's features, maybe its label).
        profile: The reference profile (its ``label`` and ``label_shares``).
        config: Thresholds.
        reference_shares: Mean predicted class probabilities on reference rows (None: the
            profile's label shares stand in).
        reference_performance: ``accuracy`` / ``roc_auc`` on reference data (None: nothing to
            compare with; performance is reported, never degraded).
        where: Names the current data in errors.

    Returns:
        The verdict's ``prediction``, ``performance`` (None without labels in ``current``) and
        ``performance_estimate`` (:func:`estimate_performance`).

    Raises:
        DataError: no row has every feature, or the model cannot score the rows.
    """
    scored, proba = predict(model, current, where)
    return drift_of_predictions(model, scored, proba, profile, config, reference_shares, reference_performance)


def drift_of_predictions(
    model: ModelBundle,
    scored: pd.DataFrame,
    proba: np.ndarray,
    profile: Mapping[str, Any],
    config: DriftConfig,
    reference_shares: Mapping[str, float] | None,
    reference_performance: Mapping[str, float] | None,
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """:func:`model_drift` from the model's probabilities on the window's scored rows.

    Args:
        model: The model the profile belongs to.
        scored: The scored rows (:func:`predict`); only their label column is read, when they have one.
        proba: Their class probabilities.
        profile: The reference profile (its ``label`` and ``label_shares``).
        config: Thresholds.
        reference_shares: As for :func:`model_drift`.
        reference_performance: As for :func:`model_drift`.
    """
    classes = model.classes
    # Mean class probabilities (the expected class shares), not argmax shares: they are on the scale
    # of the reference's label shares (equal for a calibrated model), and a model that rarely predicts
    # a minority class would otherwise look drifted against them.
    shares = dict(zip(classes, proba.mean(axis=0).tolist()))
    if reference_shares is None:
        reference_shares, basis = profile["label_shares"], "label shares of the reference (no reference rows)"
    else:
        basis = "mean predicted probabilities on reference rows"
    prediction_psi = psi([reference_shares.get(c, 0.0) for c in classes], [shares[c] for c in classes])
    predicted = proba.argmax(axis=1)
    prediction = {
        "psi": prediction_psi,
        "drifted": prediction_psi >= config.prediction_psi_threshold,
        "shares": shares,
        "reference_shares": {c: float(reference_shares.get(c, 0.0)) for c in classes},
        "reference": basis,
        "predicted_class_shares": {c: float(np.mean(predicted == i)) for i, c in enumerate(classes)},
        "scored_rows": len(scored),
    }
    realized = _realized(scored, proba, profile["label"], classes)
    estimate = _estimate(model, proba, realized)
    if realized is None:
        return prediction, None, estimate
    scores, labelled_rows = realized
    performance: dict[str, Any] = {
        **scores,
        "labelled_rows": labelled_rows,
        "reference": None,
        "degraded": False,
        "reasons": [],
    }
    if reference_performance:
        performance["reference"] = {k: float(v) for k, v in reference_performance.items() if k in scores}
        for metric, limit in (("accuracy", config.max_accuracy_drop), ("roc_auc", config.max_roc_auc_drop)):
            before, now = reference_performance.get(metric), scores.get(metric)
            if before is not None and now is not None and before - now > limit:
                performance["reasons"].append(f"{metric} {now:.4f} vs {before:.4f} on the reference (drop > {limit})")
        performance["degraded"] = bool(performance["reasons"])
    return prediction, performance, estimate


def estimate_performance(model: ModelBundle, window: pd.DataFrame, *, where: str = "window") -> dict[str, Any]:
    """The model's accuracy and ROC AUC on ``window`` estimated without labels, with intervals.

    Beside the realized metrics of the labelled rows when ``window`` has the model's label column
    (:func:`~kfp_mlops.drift.performance_estimation.with_realized`). A model without
    ``predict_proba`` or without a calibration gets an estimate that says it is unavailable, and why.

    Args:
        model: The model (its calibration is in its metadata).
        window: Rows with the model's features (other columns are ignored).
        where: Names the window in errors.

    Returns:
        :func:`~kfp_mlops.drift.performance_estimation.estimate_from_probabilities`'s estimate, or
        ``{"available": False, "reason": ...}``.

    Raises:
        DataError: ``window`` lacks features of the model (named), no row has every feature, or the
            model cannot score the rows.
    """
    if not hasattr(model.model, "predict_proba"):
        return unavailable(f"the model ({type(model.model).__name__}) has no predict_proba")
    scored, proba = predict(model, window, where)
    return _estimate(model, proba, _realized(scored, proba, model.metadata.get("label"), model.classes))


def _estimate(model: ModelBundle, proba: np.ndarray, realized: tuple[dict[str, float], int] | None) -> dict[str, Any]:
    """The estimate from the window's probabilities, beside the realized metrics when there are any."""
    try:
        calibration = model.calibration
    except CalibrationUnavailable as exc:
        return unavailable(str(exc))
    estimate = estimate_from_probabilities(calibration, proba)
    if realized is not None and estimate["available"]:
        with_realized(estimate, *realized)
    return estimate


def _realized(
    scored: pd.DataFrame, proba: np.ndarray, label: str | None, classes: Sequence[str]
) -> tuple[dict[str, float], int] | None:
    """Accuracy and ROC AUC of the scored rows that have a label, and how many they are (None: none has)."""
    if label is None or label not in scored.columns:
        return None
    labelled = scored[label].notna().to_numpy()
    if not labelled.any():
        return None
    return classification_scores(label_strings(scored[label][labelled]), proba[labelled], classes), int(labelled.sum())


def _check_features(model: ModelBundle, frame: pd.DataFrame, where: str) -> None:
    """Refuses a frame without every feature of the model, naming the missing ones."""
    missing = [f for f in model.feature_names if f not in frame.columns]
    if missing:
        raise DataError(f"{where}: lacks the model's feature(s) {', '.join(missing)}")


def predict(model: ModelBundle, frame: pd.DataFrame, where: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Class probabilities for the rows of ``frame`` with every feature present.

    Returns:
        Those rows and their probabilities (columns in ``model.classes`` order).

    Raises:
        DataError: ``frame`` lacks features of the model (named), no row has every feature, or the
            model cannot score the rows.
    """
    _check_features(model, frame, where)
    features = model.feature_names
    complete = frame[features].notna().all(axis=1)
    if not complete.any():
        raise DataError(f"{where}: no row has every feature the model needs; cannot score predictions")
    rows = frame[complete]
    try:
        return rows, model.model.predict_proba(rows[features])
    except Exception as exc:  # scikit-learn raises many types for data it cannot transform
        raise DataError(f"{where}: the model cannot score these rows: {type(exc).__name__}: {exc}") from None


def label_strings(labels: pd.Series) -> np.ndarray:
    """Labels as the model's class names (strings; a float column of whole numbers reads as ints)."""
    import pandas as pd

    if pd.api.types.is_float_dtype(labels) and (labels % 1 == 0).all():
        labels = labels.astype("int64")
    return labels.astype(str).to_numpy()


def classification_scores(truth: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Accuracy and ROC AUC (binary: of the second class; else one-vs-rest). AUC is left out when a
    class is missing from ``truth``."""
    from sklearn.metrics import roc_auc_score

    predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    scores = {"accuracy": float(np.mean(predicted == truth))}
    if set(classes) <= set(truth):
        if len(classes) == 2:
            scores["roc_auc"] = float(roc_auc_score(truth == classes[1], proba[:, 1]))
        else:
            scores["roc_auc"] = float(roc_auc_score(truth, proba, multi_class="ovr", labels=list(classes)))
    return scores
