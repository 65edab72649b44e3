"""Retraining a model that drifted: a full retrain from scratch, or an incremental update of the champion.

Two kinds, chosen by the retrain policy (:mod:`kfp_mlops.drift.policy`):

* **full** (:func:`retrain_full`): :func:`~kfp_mlops.modeling.training.fit_model` on the window
  and its history (:mod:`~kfp_mlops.modeling.retraining_data`): preprocessing, estimator and
  calibration fitted from scratch. It forgets what earlier updates got wrong (their accumulated
  bias) and costs a whole fit.
* **incremental** (:func:`retrain_incremental`): the champion's fitted model is copied and its
  estimator updated on the recent rows with the estimator's own mechanism; the preprocessing in
  front of it stays as fitted (scaler and encoder: the estimator's inputs keep their meaning).
  The mechanisms, by estimator:

  - ``partial_fit`` (SGD, naive Bayes, MLP, ...): one more pass over the rows;
  - forests (random forest, extra trees): the oldest :data:`UPDATE_SHARE` of the trees are replaced
    by as many trees grown on the rows (warm start), so the forest keeps its size and the recent
    rows weigh that share;
  - histogram gradient boosting: :data:`UPDATE_SHARE` more boosting iterations, fitted to what
    the ensemble still gets wrong on the rows (warm start);
  - linear models with ``warm_start`` (logistic regression but its ``liblinear`` solver): refitted
    on the rows from the champion's coefficients. A convex model reaches the same optimum as from
    scratch on the same rows, and on the e-commerce weeks no sooner (lbfgs takes as many
    iterations from the old coefficients); what sets it apart from a full retrain is its data (the
    recent windows, not the history) and its preprocessing, kept as fitted;
  - anything else (k-nearest neighbours, a single decision tree): :class:`IncrementalUnsupported`,
    and the policy picks a full retrain.

  The calibration maps (:mod:`~kfp_mlops.modeling.calibration`) are refitted on out-of-fold
  probabilities of the same update: each fold's model is the champion updated on the other folds'
  rows, so the label-free estimate of the next drift check describes the updated model.

Every retrained model's metadata carries ``retraining``, the record of how it was made: ``kind``,
``mechanism``, ``rows``, ``fit_seconds`` (the model's fit or update alone, like ``fit_model``'s
``fit_seconds``), ``calibration_seconds``, ``incremental_updates`` (incremental updates since the
last full fit: the policy's schedule reads it from the champion), ``base_model_sha256`` (the
champion it started from) and ``sources`` (the windows it read). :func:`retrain` runs the kind a
decision asks for and falls back to a full retrain, recording why, when the champion cannot be
updated incrementally.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import ConfigError, DataError, MlopsError
from kfp_mlops.modeling.calibration import (
    DEFAULT_FOLDS,
    Calibration,
    CalibrationUnavailable,
    calibration_folds,
    calibration_from_out_of_fold,
)
from kfp_mlops.modeling.model_bundle import ModelBundle
from kfp_mlops.modeling.training import fit_facts, fit_model

if TYPE_CHECKING:
    import pandas as pd

FULL = "full"
INCREMENTAL = "incremental"
RETRAIN_KINDS = (INCREMENTAL, FULL)
UPDATE_SHARE = 0.5
"""An incremental update of a forest replaces this share of its trees; of boosting, adds this share of iterations."""


class IncrementalUnsupported(MlopsError):
    """The model cannot be updated incrementally; the message says why."""


@dataclass(frozen=True)
class Retrained:
    """A retrained model: what a model bundle holds, its ``retraining`` record in the metadata.

    Attributes:
        model: The fitted model.
        metadata: Its metadata (everything but the training data's URI, as ``fit_model``'s).
    """

    model: Any
    metadata: dict[str, Any]

    @property
    def record(self) -> dict[str, Any]:
        """How the model was made: ``kind``, ``mechanism``, ``rows``, ``fit_seconds``, ..."""
        return self.metadata["retraining"]


def incremental_unavailable(model: Any) -> str | None:
    """Why ``model`` cannot be updated incrementally, or None when it can (its mechanism is known)."""
    try:
        _mechanism(_split(model)[1])
    except IncrementalUnsupported as exc:
        return str(exc)
    return None


def incremental_updates(metadata: Mapping[str, Any]) -> int:
    """Incremental updates since the model's last full fit (0 for a model that was never updated)."""
    record = metadata.get("retraining")
    return int(record.get("incremental_updates", 0)) if isinstance(record, Mapping) else 0


def retrain(
    kind: str,
    rows: pd.DataFrame,
    champion: ModelBundle,
    *,
    estimator: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    seed: int = 0,
    sources: Sequence[Mapping[str, Any]] = (),
) -> Retrained:
    """Retrains the kind a decision asks for; an incremental update the champion cannot take becomes full.

    Args:
        kind: ``incremental`` or ``full`` (:data:`RETRAIN_KINDS`).
        rows: The training rows: the window and its history
            (:meth:`~kfp_mlops.modeling.retraining_data.RetrainingData.rows`), or the training split of them.
        champion: The model that drifted (its label is the rows' label).
        estimator: The estimator (default: the champion's).
        hyperparameters: Its arguments (default: the champion's when the estimator is). Another
            estimator or other hyperparameters than the champion's cannot be reached incrementally:
            the retrain is full.
        seed: Seeds the estimator and the calibration folds.
        sources: The windows the rows came from (recorded;
            :meth:`~kfp_mlops.modeling.retraining_data.RetrainingData.sources`).

    Returns:
        The model; its record says ``requested_kind`` and, when it fell back, ``fallback`` (why).

    Raises:
        ConfigError: an unknown kind, estimator or hyperparameter.
        DataError: ``rows`` lack the champion's features or label.
    """
    if kind not in RETRAIN_KINDS:
        raise ConfigError(f"retrain kind {kind!r}: unknown; choose one of {', '.join(RETRAIN_KINDS)}")
    base_estimator, base_hyperparameters = champion.metadata.get("estimator"), champion.metadata.get("hyperparameters")
    estimator = estimator or base_estimator
    if hyperparameters is None:
        hyperparameters = (base_hyperparameters or {}) if estimator == base_estimator else {}
    fallback = None
    if kind == INCREMENTAL:
        if (estimator, dict(hyperparameters)) != (base_estimator, dict(base_hyperparameters or {})):
            fallback = (
                f"the estimator changes ({base_estimator} {base_hyperparameters or {}} -> {estimator} "
                f"{dict(hyperparameters)}): only a full retrain can make it"
            )
        else:
            try:
                retrained = retrain_incremental(champion, rows, seed=seed, sources=sources)
            except IncrementalUnsupported as exc:
                fallback = str(exc)
            else:
                retrained.record.update(requested_kind=kind, fallback=None)
                return retrained
    retrained = retrain_full(
        rows,
        label=champion.metadata["label"],
        estimator=str(estimator),
        hyperparameters=hyperparameters,
        seed=seed,
        base=champion,
        sources=sources,
    )
    retrained.record.update(requested_kind=kind, fallback=fallback)
    return retrained


def retrain_full(
    rows: pd.DataFrame,
    *,
    label: str,
    estimator: str,
    hyperparameters: Mapping[str, Any],
    seed: int = 0,
    base: ModelBundle | None = None,
    sources: Sequence[Mapping[str, Any]] = (),
) -> Retrained:
    """Fits a model from scratch on ``rows``, calibration included (:func:`~kfp_mlops.modeling.training.fit_model`).

    Args:
        rows: The training rows: the model's features and the label.
        label: The label column.
        estimator: The estimator's name.
        hyperparameters: Its arguments.
        seed: Seeds the estimator and the calibration folds.
        base: The champion it replaces (recorded).
        sources: The windows ``rows`` came from (recorded).

    Raises:
        ConfigError: unknown estimator or hyperparameter.
        DataError: no label column or no feature columns.
    """
    model, metadata = fit_model(rows, label, estimator, hyperparameters, seed)
    calibration = metadata["calibration"]
    metadata["retraining"] = _record(
        FULL,
        "fit from scratch",
        rows=len(rows),
        fit_seconds=metadata["metrics"]["fit_seconds"],
        calibration_seconds=calibration.get("fit_seconds", 0.0),
        incremental_updates=0,
        base=base,
        sources=sources,
    )
    return Retrained(model, metadata)


def retrain_incremental(
    champion: ModelBundle,
    rows: pd.DataFrame,
    *,
    seed: int = 0,
    share: float = UPDATE_SHARE,
    sources: Sequence[Mapping[str, Any]] = (),
) -> Retrained:
    """Updates a copy of the champion's fitted model on ``rows`` with its estimator's own mechanism.

    The champion itself is not changed. Its calibration maps are refitted for the updated model.

    Args:
        champion: The model to update.
        rows: The recent rows: the champion's features and label.
        seed: Seeds the calibration folds.
        share: The share of trees a forest replaces, of iterations boosting adds.
        sources: The windows ``rows`` came from (recorded).

    Raises:
        IncrementalUnsupported: the estimator has no incremental mechanism, or ``rows`` lack a
            class of the model (an update cannot keep a class it sees no row of).
        DataError: ``rows`` lack features of the model or its label.
    """
    features, target = _features_and_target(champion, rows)
    absent = [c for c in champion.classes if c not in set(target)]
    if absent:
        raise IncrementalUnsupported(
            f"the update rows hold no row of class(es) {', '.join(absent)}; an incremental update keeps every "
            "class of the model: retrain fully"
        )
    mechanism = _mechanism(_split(champion.model)[1])
    model = copy.deepcopy(champion.model)
    started = time.perf_counter()
    detail = _update(model, features, target, share)
    fit_seconds = time.perf_counter() - started
    try:
        calibration = _calibrate_update(champion, features, target, share, seed).to_dict()
    except CalibrationUnavailable as exc:
        calibration = {"unavailable": str(exc)}
    kept = {k: v for k, v in champion.metadata.items() if k not in ("model_sha256", "training_data_uri")}
    metadata = {
        **kept,
        **fit_facts(model, features, target, fit_seconds=fit_seconds, seed=seed),
        "calibration": calibration,
        "retraining": _record(
            INCREMENTAL,
            f"{mechanism} ({detail})",
            rows=len(rows),
            fit_seconds=fit_seconds,
            calibration_seconds=calibration.get("fit_seconds", 0.0),
            incremental_updates=incremental_updates(champion.metadata) + 1,
            base=champion,
            sources=sources,
        ),
    }
    return Retrained(model, metadata)


def _record(
    kind: str,
    mechanism: str,
    *,
    rows: int,
    fit_seconds: float,
    calibration_seconds: float,
    incremental_updates: int,
    base: ModelBundle | None,
    sources: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The ``retraining`` record of a retrained model's metadata."""
    return {
        "kind": kind,
        "mechanism": mechanism,
        "rows": rows,
        "fit_seconds": round(fit_seconds, 4),
        "calibration_seconds": round(calibration_seconds, 4),
        "incremental_updates": incremental_updates,
        "base_model_sha256": base.metadata.get("model_sha256") if base is not None else None,
        "sources": [dict(s) for s in sources],
    }


def _features_and_target(champion: ModelBundle, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The champion's features and the label as strings (what ``fit_model`` trains on)."""
    label = champion.metadata["label"]
    missing = [c for c in (*champion.feature_names, label) if c not in rows.columns]
    if missing:
        raise DataError(f"update rows: lack the model's column(s) {', '.join(missing)}; nothing was trained")
    return rows[champion.feature_names], rows[label].astype(str)


def _split(model: Any) -> tuple[Any | None, Any]:
    """A fitted model's preprocessing (a pipeline's leading steps, or None) and its final estimator."""
    steps = getattr(model, "steps", None)
    if steps:
        return (model[:-1] if len(steps) > 1 else None), steps[-1][1]
    return None, model


def _mechanism(estimator: Any) -> str:
    """The name of the estimator's incremental mechanism.

    Raises:
        IncrementalUnsupported: it has none (named).
    """
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier

    name = type(estimator).__name__
    if hasattr(estimator, "partial_fit"):
        return "partial_fit"
    if isinstance(estimator, (RandomForestClassifier, ExtraTreesClassifier)):
        return "replaced trees"
    if isinstance(estimator, HistGradientBoostingClassifier):
        return "added boosting iterations"
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    if "warm_start" in params and hasattr(estimator, "coef_"):
        if params.get("solver") == "liblinear":
            raise IncrementalUnsupported(f"{name} with the liblinear solver ignores warm_start: retrain it fully")
        return "warm start"
    raise IncrementalUnsupported(
        f"{name} has no incremental mechanism (no partial_fit, warm start or trees to add): retrain it fully"
    )


def _update(model: Any, features: pd.DataFrame, target: pd.Series, share: float) -> str:
    """Updates ``model`` in place on the rows with its estimator's mechanism; returns what changed."""
    import numpy as np

    preprocess, estimator = _split(model)
    inputs = preprocess.transform(features) if preprocess is not None else features
    mechanism = _mechanism(estimator)
    if mechanism == "partial_fit":
        estimator.partial_fit(inputs, target, classes=estimator.classes_)
        return f"one pass over {len(target)} rows"
    if mechanism == "replaced trees":
        trees = len(estimator.estimators_)
        added = max(1, round(share * trees))
        estimator.set_params(warm_start=True, n_estimators=trees + added)
        estimator.fit(inputs, target)
        estimator.estimators_ = estimator.estimators_[added:]  # the oldest trees go; the forest keeps its size
        estimator.set_params(warm_start=False, n_estimators=trees)
        return f"{added} of {trees} trees replaced"
    if mechanism == "added boosting iterations":
        before = estimator.n_iter_
        estimator.set_params(warm_start=True, max_iter=before + max(1, round(share * before)))
        estimator.fit(inputs, target)
        estimator.set_params(warm_start=False)
        return f"{estimator.n_iter_ - before} iterations added to {before}"
    estimator.set_params(warm_start=True)
    estimator.fit(inputs, target)
    estimator.set_params(warm_start=False)
    iterations = int(np.max(getattr(estimator, "n_iter_", 0)))  # an array for some linear models
    return f"refitted from the champion's coefficients in {iterations} iterations"


def _calibrate_update(
    champion: ModelBundle, features: pd.DataFrame, target: pd.Series, share: float, seed: int
) -> Calibration:
    """Calibration maps of the updated model: out-of-fold probabilities of the champion updated on the other folds.

    Raises:
        CalibrationUnavailable: the rows cannot be split into folds (one class, a class with one row),
            or a fold's update fails.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    classes = champion.classes
    folds = calibration_folds(classes, target, DEFAULT_FOLDS)
    started = time.perf_counter()
    out_of_fold = np.zeros((len(target), len(classes)))
    try:
        for train, held_out in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(features, target):
            fold_model = copy.deepcopy(champion.model)
            _update(fold_model, features.iloc[train], target.iloc[train], share)
            out_of_fold[held_out] = fold_model.predict_proba(features.iloc[held_out])
    except (ValueError, MlopsError) as exc:
        raise CalibrationUnavailable(f"the out-of-fold updates failed: {type(exc).__name__}: {exc}") from None
    return calibration_from_out_of_fold(
        classes, out_of_fold, target, folds=folds, seconds=time.perf_counter() - started
    )
