"""Calibration: how often a model is right when it says *p*, learnt when it is trained.

The label-free performance estimate (:mod:`kfp_mlops.drift.performance_estimation`, the method of
NannyML's CBPE) needs calibrated probabilities: among the rows given 0.8 for a class, 80 % belong
to it. A model's own probabilities often are not (forests hedge, boosted trees can be too sure,
every model is too sure on its own training rows). So :func:`~kfp_mlops.modeling.training.fit_model`
also fits a calibration map and stores it, as data, in the model's metadata (``calibration``).
The served model and its probabilities stay exactly as they are; the map is applied only where
performance is estimated.

How it is fitted: the *out-of-fold* probabilities of the training rows (stratified k folds, k =
:data:`DEFAULT_FOLDS` or fewer when a class has fewer rows: each row is scored by a copy of the
model fitted without it), against the true classes, one isotonic regression per class
(one-vs-rest; binary models: the second class only, the first is its complement). Out-of-fold
rather than a held-out slice, so that every training row serves both the model and the map while
the served model is still trained on all of them; the fold models see (k-1)/k of the rows, so the
map is a little pessimistic for the served model. The price is k more fits on (k-1)/k of the
rows: 2-3 times the model's own fit for k = 3, which measured as well as 5 or 10 folds on the
e-commerce and fraud data (``docs/performance_estimation.md``).

The map is JSON: per class, the isotonic steps (``lower``, ``upper``, ``value``, ``count``): step
*j* takes the out-of-fold probabilities in ``[lower[j], upper[j]]`` to ``value[j]``, the share of
the class among the ``count[j]`` training rows there; between steps it is linear (what
scikit-learn's ``IsotonicRegression`` predicts), outside them constant. The counts give each
step's sampling error, which the estimate's interval carries.

A model trained before calibration existed has no ``calibration``; one whose calibration could not
be fitted (one class, a class with a single row, no ``predict_proba``) has ``{"unavailable":
reason}``. Reading either raises :class:`CalibrationUnavailable` saying why, so an estimate can
report itself unavailable instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import MlopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CALIBRATION_VERSION = 1
DEFAULT_FOLDS = 3
METHOD = "isotonic regression per class (one-vs-rest) on out-of-fold predicted probabilities of the training rows"
# Step values (class shares) keep six significant digits: a shorter JSON, the same map to 1e-6.
# The probabilities bounding the steps stay exact: the gaps between steps can be a millionth wide.
_DIGITS = 6
_STEP_FIELDS = ("lower", "upper", "value", "count")


class CalibrationUnavailable(MlopsError):
    """A model has no usable calibration; the message says why."""


@dataclass(frozen=True, eq=False)
class IsotonicSteps:
    """One class's calibration map: isotonic steps over the model's probability of that class.

    Attributes:
        lower: Each step's lowest out-of-fold probability (increasing).
        upper: Each step's highest out-of-fold probability (``lower <= upper <= next lower``).
        value: The class's share among the step's rows (non-decreasing).
        count: The step's number of rows.
    """

    lower: np.ndarray
    upper: np.ndarray
    value: np.ndarray
    count: np.ndarray

    @classmethod
    def fit(cls, probability: np.ndarray, is_class: np.ndarray) -> IsotonicSteps:
        """Fits the steps on out-of-fold probabilities of one class and whether each row is of it."""
        import numpy as np
        from sklearn.isotonic import IsotonicRegression

        order = np.argsort(probability, kind="stable")
        x, y = probability[order], is_class[order].astype(float)
        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y).predict(x)
        # A step is a run of rows with one fitted value (pooled adjacent violators).
        starts = np.flatnonzero(np.r_[True, fitted[1:] != fitted[:-1]])
        ends = np.r_[starts[1:], len(x)] - 1
        return cls(
            lower=x[starts],
            upper=x[ends],
            value=_round(fitted[starts]),
            count=(ends - starts + 1).astype(np.int64),
        )

    def locate(self, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each probability falls: the step at or below it, the next step, and the share of the way to it."""
        import numpy as np

        left = np.clip(np.searchsorted(self.lower, probability, side="right") - 1, 0, len(self.lower) - 1)
        right = np.minimum(left + 1, len(self.lower) - 1)
        gap = self.lower[right] - self.upper[left]
        between = (probability > self.upper[left]) & (gap > 0)
        share = np.where(between, (probability - self.upper[left]) / np.where(gap > 0, gap, 1.0), 0.0)
        return left, right, np.clip(share, 0.0, 1.0)

    def apply(self, probability: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """The calibrated probabilities of ``probability`` (shape ``(n,)``).

        Args:
            probability: The model's probabilities of this class.
            values: Step values to use instead of :attr:`value`, shape ``(steps,)`` or ``(draws,
                steps)`` (the estimate's sampling-error draws).

        Returns:
            Shape ``(n,)``, or ``(draws, n)`` for 2-d ``values``.
        """
        values = self.value if values is None else values
        left, right, share = self.locate(probability)
        return values[..., left] * (1.0 - share) + values[..., right] * share

    def value_sd(self) -> np.ndarray:
        """Each step value's binomial sampling error (the share kept off 0 and 1 by one row each way)."""
        import numpy as np

        share = (self.value * self.count + 1.0) / (self.count + 2.0)
        return np.sqrt(share * (1.0 - share) / self.count)

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "value": self.value.tolist(),
            "count": self.count.tolist(),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str) -> IsotonicSteps:
        """Reads and checks a map.

        Raises:
            CalibrationUnavailable: a field is missing, the lengths differ, or the steps are not ordered.
        """
        import numpy as np

        missing = [k for k in _STEP_FIELDS if k not in doc]
        if missing:
            raise CalibrationUnavailable(f"{where}: no {', '.join(missing)}")
        try:
            lower, upper, value = (np.asarray(doc[k], dtype=float) for k in _STEP_FIELDS[:3])
            count = np.asarray(doc["count"], dtype=np.int64)
        except (TypeError, ValueError):
            raise CalibrationUnavailable(f"{where}: lower, upper, value and count must be lists of numbers") from None
        if not len(lower) or any(a.shape != lower.shape for a in (upper, value, count)):
            raise CalibrationUnavailable(f"{where}: lower, upper, value and count need one entry per step")
        if (
            (upper < lower).any()
            or (lower[1:] < upper[:-1]).any()
            or (np.diff(value) < 0).any()
            or not ((value >= 0) & (value <= 1)).all()
            or (count < 1).any()
        ):
            raise CalibrationUnavailable(
                f"{where}: steps must be ordered (lower <= upper <= next lower), values non-decreasing in [0, 1], "
                "counts positive"
            )
        return cls(lower=lower, upper=upper, value=value, count=count)


@dataclass(frozen=True, eq=False)
class Calibration:
    """A model's calibration maps, one per calibrated class.

    Attributes:
        classes: The model's classes, in its ``predict_proba`` column order.
        steps: Class -> its map; a binary model has the second class's only.
        rows: Rows the maps were fitted on.
        folds: Folds of the out-of-fold predictions.
        fit_seconds: What fitting the fold models and the maps took.
    """

    classes: tuple[str, ...]
    steps: dict[str, IsotonicSteps]
    rows: int
    folds: int
    fit_seconds: float = 0.0

    def calibrate(self, proba: np.ndarray, values: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Calibrated class probabilities of the model's ``proba`` (columns in :attr:`classes` order).

        Binary: the second class's map, the first class its complement. More classes: each class's
        map, rows renormalised to sum to 1 (a row every map sends to 0 keeps the model's own).

        Args:
            proba: ``predict_proba`` output, shape ``(n, classes)``.
            values: Class -> step values to use instead of the maps' own, each ``(draws, steps)``.

        Returns:
            Shape ``(n, classes)``, or ``(draws, n, classes)`` with ``values``.
        """
        import numpy as np

        chosen = values or {}
        if len(self.classes) == 2:
            positive = self.classes[1]
            second = self.steps[positive].apply(proba[:, 1], chosen.get(positive))
            return np.stack([1.0 - second, second], axis=-1)
        columns = [self.steps[c].apply(proba[:, k], chosen.get(c)) for k, c in enumerate(self.classes)]
        stacked = np.stack(columns, axis=-1)
        total = stacked.sum(axis=-1, keepdims=True)
        return np.where(total > 0, stacked / np.where(total > 0, total, 1.0), proba)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document stored as the model metadata's ``calibration``."""
        return {
            "version": CALIBRATION_VERSION,
            "method": METHOD,
            "classes": list(self.classes),
            "rows": self.rows,
            "folds": self.folds,
            "fit_seconds": round(self.fit_seconds, 4),
            "steps": {c: s.to_dict() for c, s in self.steps.items()},
        }


def read_calibration(metadata: Mapping[str, Any]) -> Calibration:
    """The calibration stored in a model's metadata.

    Raises:
        CalibrationUnavailable: the model has none (trained before calibration was stored, or it
            could not be fitted) or it is malformed; the message says which.
    """
    doc = metadata.get("calibration")
    if doc is None:
        raise CalibrationUnavailable(
            "the model has no calibration (trained before calibration was stored with models); "
            "retrain it to estimate its performance without labels"
        )
    if not isinstance(doc, Mapping):
        raise CalibrationUnavailable(f"the model's calibration is malformed: expected an object, got {doc!r}")
    if "unavailable" in doc:
        raise CalibrationUnavailable(f"no calibration was fitted when the model was trained: {doc['unavailable']}")
    if doc.get("version") != CALIBRATION_VERSION:
        raise CalibrationUnavailable(
            f"the model's calibration has version {doc.get('version')!r}; this version reads {CALIBRATION_VERSION}"
        )
    classes = tuple(str(c) for c in metadata.get("classes", ()))
    if tuple(doc.get("classes", ())) != classes:
        raise CalibrationUnavailable(
            f"the model's calibration is for classes {doc.get('classes')!r}, the model has {list(classes)!r}"
        )
    calibrated = classes[1:] if len(classes) == 2 else classes
    steps = doc.get("steps")
    if not isinstance(steps, Mapping) or set(steps) != set(calibrated):
        raise CalibrationUnavailable(
            f"the model's calibration is malformed: expected steps for {', '.join(calibrated)}"
        )
    return Calibration(
        classes=classes,
        steps={c: IsotonicSteps.from_dict(steps[c], f"the model's calibration of class {c!r}") for c in calibrated},
        rows=int(doc.get("rows", 0)),
        folds=int(doc.get("folds", 0)),
        fit_seconds=float(doc.get("fit_seconds", 0.0)),
    )


def fit_calibration(
    model: Any, features: pd.DataFrame, target: pd.Series, *, folds: int = DEFAULT_FOLDS, seed: int = 0
) -> Calibration:
    """Fits the calibration maps of ``model`` on out-of-fold probabilities of its training rows.

    Args:
        model: The fitted model (its classes and parameters; copies are fitted on the folds, the
            model itself is not changed).
        features: The training rows' features.
        target: Their classes, as strings (what :func:`~kfp_mlops.modeling.training.fit_model` trains on).
        folds: At most this many stratified folds (fewer when the smallest class has fewer rows; >= 2).
        seed: Shuffles the folds.

    Raises:
        CalibrationUnavailable: the model has no ``predict_proba``, the rows hold one class only, a
            class has a single row, or the fold models fail to fit (the reason names it).
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if not hasattr(model, "predict_proba"):
        raise CalibrationUnavailable(f"the model ({type(model).__name__}) has no predict_proba")
    classes = [str(c) for c in model.classes_]
    k = calibration_folds(classes, target, folds)
    started = time.perf_counter()
    try:
        out_of_fold = cross_val_predict(
            clone(model),
            features,
            target,
            cv=StratifiedKFold(n_splits=k, shuffle=True, random_state=seed),
            method="predict_proba",
        )
    except Exception as exc:  # a fold fit can fail in any way the estimator chooses
        raise CalibrationUnavailable(f"the out-of-fold fits failed: {type(exc).__name__}: {exc}") from None
    return calibration_from_out_of_fold(classes, out_of_fold, target, folds=k, seconds=time.perf_counter() - started)


def calibration_folds(classes: Sequence[str], target: pd.Series, folds: int = DEFAULT_FOLDS) -> int:
    """How many stratified folds out-of-fold calibration can use: at most ``folds``, at most the rarest class's rows.

    Raises:
        CalibrationUnavailable: the rows hold one class only, or a class has a single row.
    """
    counts = target.value_counts()
    if len(classes) < 2 or counts.size < 2:
        raise CalibrationUnavailable(
            f"the calibration rows hold one class only ({', '.join(map(str, counts.index))}); "
            "calibration needs at least two"
        )
    rarest = str(counts.idxmin())
    if counts.min() < 2:
        raise CalibrationUnavailable(
            f"class {rarest!r} has {counts.min()} training row; out-of-fold calibration needs at least 2 per class"
        )
    return int(min(folds, counts.min()))


def calibration_from_out_of_fold(
    classes: Sequence[str], out_of_fold: np.ndarray, target: pd.Series, *, folds: int, seconds: float
) -> Calibration:
    """The calibration maps from out-of-fold probabilities (columns in ``classes`` order) and the true classes.

    Args:
        classes: The model's classes, in its ``predict_proba`` column order.
        out_of_fold: Each row's probabilities from a model fitted without it.
        target: The rows' true classes.
        folds: The folds the probabilities came from.
        seconds: What the fold fits took.
    """
    truth = target.astype(str).to_numpy()
    classes = [str(c) for c in classes]
    calibrated = classes[1:] if len(classes) == 2 else classes
    steps = {c: IsotonicSteps.fit(out_of_fold[:, classes.index(c)], truth == c) for c in calibrated}
    return Calibration(classes=tuple(classes), steps=steps, rows=len(truth), folds=folds, fit_seconds=seconds)


def _round(values: np.ndarray) -> np.ndarray:
    """``values`` to :data:`_DIGITS` significant digits (rounding keeps them non-decreasing)."""
    import numpy as np

    return np.array([float(f"{v:.{_DIGITS}g}") for v in values], dtype=float)
