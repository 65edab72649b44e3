"""Label-free performance estimation: the accuracy and ROC AUC a model is expected to have on a window.

The method is NannyML's CBPE (confidence-based performance estimation), implemented here because
``nannyml`` does not install beside this package's pins. Given the model's probabilities on an
unlabelled window and the calibration maps fitted when it was trained
(:mod:`kfp_mlops.modeling.calibration`), a calibrated probability *q* of a class is the chance that
the row belongs to it, so every confusion count has an expectation:

* **accuracy**: the mean over rows of *q* of the predicted class (the model's argmax, i.e. what it
  serves);
* **ROC AUC** of the model's own scores: expected true and false positives over every threshold,
  i.e. the expected number of (positive, negative) pairs the scores order correctly, ties
  counting half, divided by the expected number of such pairs (binary: the second class;
  more classes: the macro mean of one-vs-rest AUCs, as the realized ``roc_auc`` is computed).

The interval (at :data:`CONFIDENCE`) is normal, with a variance of two parts:

* ``realized_sd``: the chance spread of the realized metric around its expectation on a window of
  this size even when the calibration is exact (accuracy: the Poisson-binomial sum of *q(1-q)*;
  AUC: Hanley and McNeil's standard error for the expected positive and negative counts, a little
  conservative for fixed scores; more classes: the mean of the per-class errors, an upper bound);
* ``calibration_sd``: the estimate's own sampling error, the spread of the estimate when every
  calibration step's value is redrawn from its binomial error (:data:`DRAWS` draws, on at most
  :data:`DRAW_ROWS` rows of the window).

What it does not cover: concept drift. CBPE assumes the relation between features and label is
unchanged (only their distribution moves); when it changes, the calibration no longer holds and
the estimate is off by however much the model's calibration shifted, which no label-free method
can see. Measured on the seasonal e-commerce data and the fraud data: ``docs/performance_estimation.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np

from kfp_mlops.modeling.calibration import Calibration

CONFIDENCE = 0.95
DRAWS = 100
DRAW_ROWS = 5_000
METHOD = (
    "CBPE (NannyML's confidence-based performance estimation): expected confusion counts from the model's "
    "probabilities calibrated by the isotonic maps fitted on out-of-fold predictions at training time"
)
INTERVAL = (
    "normal interval over the realized metric's chance spread on this many rows (Poisson-binomial for "
    "accuracy, Hanley-McNeil for ROC AUC) and the calibration maps' sampling error; it assumes no concept "
    "drift (the feature-label relation of the training data)"
)


def unavailable(reason: str) -> dict[str, Any]:
    """The estimate of a model that cannot have one, and why."""
    return {"available": False, "reason": reason, "method": METHOD, "realized": None}


def estimate_from_probabilities(
    calibration: Calibration, proba: np.ndarray, *, confidence: float = CONFIDENCE, seed: int = 0
) -> dict[str, Any]:
    """Estimates accuracy and ROC AUC from the model's probabilities on a window.

    Args:
        calibration: The model's calibration (its classes are ``proba``'s columns).
        proba: The model's ``predict_proba`` on the window's rows, shape ``(rows, classes)``.
        confidence: The intervals' coverage under the method's assumptions.
        seed: Seeds the calibration draws (the same inputs give the same estimate).

    Returns:
        ``available`` (true), ``method``, ``interval`` (what it covers), ``confidence``, ``rows``,
        ``calibration`` (its ``rows`` and ``folds``), ``accuracy`` and, when the window expects
        positives and negatives of every class, ``roc_auc``: each with ``estimate``, ``low``,
        ``high``, ``realized_sd`` and ``calibration_sd``; ``realized`` is None (see :func:`with_realized`).
    """
    rows = len(proba)
    if rows == 0:
        return unavailable("the window has no rows the model could score")
    calibrated = calibration.calibrate(proba)
    predicted = proba.argmax(axis=1)
    draws = _calibration_draws(calibration, proba, predicted, np.random.default_rng(seed))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)

    correct = calibrated[np.arange(rows), predicted]
    accuracy = _interval(
        float(correct.mean()),
        float(np.sqrt(np.sum(correct * (1.0 - correct))) / rows),
        float(np.std(draws["accuracy"])),
        z,
    )
    estimate: dict[str, Any] = {
        "available": True,
        "method": METHOD,
        "interval": INTERVAL,
        "confidence": confidence,
        "rows": rows,
        "calibration": {"rows": calibration.rows, "folds": calibration.folds},
        "accuracy": accuracy,
        "realized": None,
    }
    auc = _roc_auc(proba, calibrated)
    if auc is not None:
        estimate["roc_auc"] = _interval(auc[0], auc[1], float(np.std(draws["roc_auc"])), z)
    return estimate


def with_realized(estimate: dict[str, Any], realized: Mapping[str, float], labelled_rows: int) -> dict[str, Any]:
    """Adds the realized metrics of the window's labelled rows beside an available estimate.

    Returns:
        ``estimate`` with ``realized``: the metrics, ``labelled_rows``, ``error`` (estimate minus
        realized) and ``within_interval`` per metric both have. The interval is for the window's
        scored rows; when only some have labels, their realized metric spreads more widely.
    """
    shared = [m for m in ("accuracy", "roc_auc") if m in realized and m in estimate]
    estimate["realized"] = {
        **{m: float(realized[m]) for m in ("accuracy", "roc_auc") if m in realized},
        "labelled_rows": labelled_rows,
        "error": {m: estimate[m]["estimate"] - float(realized[m]) for m in shared},
        "within_interval": {m: bool(estimate[m]["low"] <= realized[m] <= estimate[m]["high"]) for m in shared},
    }
    return estimate


def expected_roc_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """The ratio of expected correctly ordered (positive, negative) pairs to expected pairs.

    Args:
        scores: The model's scores of the class, shape ``(n,)``; ties count half.
        positive: Each row's chance to be of the class, shape ``(n,)`` or ``(draws, n)``.

    Returns:
        The expected AUC, shape ``()`` or ``(draws,)``; NaN when no pair is expected.
    """
    order = np.argsort(scores, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(scores[order]) != 0])  # groups of tied scores
    q = positive[..., order]
    pos = np.add.reduceat(q, starts, axis=-1)
    neg = np.add.reduceat(1.0 - q, starts, axis=-1)
    # A row is never paired with itself: its own q(1-q) leaves the tie term and the pair count.
    own = np.add.reduceat(q * (1.0 - q), starts, axis=-1)
    below = np.cumsum(neg, axis=-1) - neg
    ordered = np.sum(pos * below, axis=-1) + 0.5 * np.sum(pos * neg - own, axis=-1)
    pairs = pos.sum(axis=-1) * neg.sum(axis=-1) - own.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, ordered / np.where(pairs > 0, pairs, 1.0), np.nan)


def hanley_mcneil_sd(auc: float, positives: float, negatives: float) -> float:
    """The standard error of an AUC measured on ``positives`` and ``negatives`` rows (Hanley & McNeil, 1982)."""
    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    variance = (auc * (1.0 - auc) + (positives - 1.0) * (q1 - auc**2) + (negatives - 1.0) * (q2 - auc**2)) / (
        positives * negatives
    )
    return float(np.sqrt(max(variance, 0.0)))


def _roc_auc(proba: np.ndarray, calibrated: np.ndarray) -> tuple[float, float] | None:
    """The expected AUC and its chance spread, or None when a class expects too few positives or negatives."""
    classes = range(1, 2) if proba.shape[1] == 2 else range(proba.shape[1])
    aucs, spreads = [], []
    for k in classes:
        positives = float(calibrated[:, k].sum())
        negatives = len(calibrated) - positives
        if min(positives, negatives) < 1.0:
            return None
        auc = float(expected_roc_auc(proba[:, k], calibrated[:, k]))
        aucs.append(auc)
        spreads.append(hanley_mcneil_sd(auc, positives, negatives))
    return float(np.mean(aucs)), float(np.mean(spreads))


def _calibration_draws(
    calibration: Calibration, proba: np.ndarray, predicted: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Accuracy and AUC estimates with every step value redrawn from its sampling error.

    The error is shared by every row in a step, so it does not shrink with the window; a random
    subset of at most :data:`DRAW_ROWS` rows measures it as well as the whole window would.
    """
    if len(proba) > DRAW_ROWS:
        subset = np.sort(rng.choice(len(proba), DRAW_ROWS, replace=False))
        proba, predicted = proba[subset], predicted[subset]
    values = {
        c: np.clip(steps.value + rng.standard_normal((DRAWS, len(steps.value))) * steps.value_sd(), 0.0, 1.0)
        for c, steps in calibration.steps.items()
    }
    calibrated = calibration.calibrate(proba, values)  # (draws, rows, classes)
    accuracy = calibrated[:, np.arange(len(proba)), predicted].mean(axis=1)
    classes = range(1, 2) if proba.shape[1] == 2 else range(proba.shape[1])
    with np.errstate(invalid="ignore"):
        auc = np.mean([expected_roc_auc(proba[:, k], calibrated[:, :, k]) for k in classes], axis=0)
    return {"accuracy": accuracy, "roc_auc": auc[np.isfinite(auc)]}


def _interval(estimate: float, realized_sd: float, calibration_sd: float, z: float) -> dict[str, float]:
    """The estimate, its interval (clipped to [0, 1]) and the interval's two parts."""
    half = z * float(np.hypot(realized_sd, calibration_sd))
    return {
        "estimate": estimate,
        "low": max(0.0, estimate - half),
        "high": min(1.0, estimate + half),
        "realized_sd": realized_sd,
        "calibration_sd": calibration_sd,
    }
