"""Offline comparison: fitted models side by side on the same holdout rows.

:func:`compare_offline` reports, per model, AUC-PR, ROC AUC, recall at a fixed false-positive
rate, Brier score and expected calibration error (ECE), the metrics the live comparison
(:mod:`kfp_mlops.rollout.live`) later reads from traffic, computed by the same code
(:class:`~kfp_mlops.rollout.metrics.LabelledRows`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import DataError
from kfp_mlops.rollout.metrics import LabelledRows, point_estimate

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def compare_offline(
    models: Mapping[str, tuple[Any, Sequence[str]]],
    holdout: pd.DataFrame,
    *,
    label: str,
    positive: str = "1",
    target_fpr: float = 0.01,
    ece_bins: int = 10,
) -> dict[str, dict[str, float]]:
    """Scores fitted models on the same holdout rows.

    Args:
        models: Name -> (fitted classifier with ``predict_proba`` and ``classes_``, the feature
            columns it takes), e.g. a pipeline from ``fit_model`` and ``fraud.LEGACY_FEATURES``.
        holdout: Rows with every model's features and ``label``.
        label: The label column.
        positive: The positive class, compared as a string (``fit_model`` trains on strings).
        target_fpr: The false-positive rate at which ``recall_at_fpr`` is read off the ROC curve.
        ece_bins: Equal-mass score bins of the expected calibration error.

    Returns:
        Name -> ``auc_pr`` (average precision), ``roc_auc``, ``recall_at_fpr``, ``brier``,
        ``ece``, ``mean_score`` and ``positive_rate`` (calibration in the large), ``rows``,
        ``positives``.

    Raises:
        DataError: a model's features or the label are missing, the holdout has only one class,
            or a model has no ``positive`` class.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    if label not in holdout.columns:
        raise DataError(f"holdout: no label column {label!r}")
    y = (holdout[label].astype(str) == positive).to_numpy().astype(float)
    if y.min() == y.max():
        raise DataError(f"holdout: all {len(y)} rows are of one class; AUC-PR and ROC AUC need both")
    results: dict[str, dict[str, float]] = {}
    for name, (model, features) in models.items():
        missing = [f for f in features if f not in holdout.columns]
        if missing:
            raise DataError(f"model {name!r}: holdout lacks feature(s) {', '.join(missing)}")
        score = positive_scores(model, holdout[list(features)], positive=positive, name=name)
        point = point_estimate(LabelledRows(y, score, target_fpr=target_fpr, ece_bins=ece_bins))
        results[name] = {
            **point,
            "roc_auc": float(roc_auc_score(y, score)),
            "mean_score": float(score.mean()),
            "positive_rate": float(y.mean()),
            "rows": len(y),
            "positives": int(np.sum(y)),
        }
    return results


def positive_scores(model: Any, rows: pd.DataFrame, *, positive: str = "1", name: str = "model") -> np.ndarray:
    """The probability of the ``positive`` class (compared as a string) for each row.

    Raises:
        DataError: the model has no such class.
    """
    classes = [str(c) for c in model.classes_]
    if positive not in classes:
        raise DataError(f"model {name!r}: no class {positive!r} among its classes {', '.join(classes)}")
    return model.predict_proba(rows)[:, classes.index(positive)]
