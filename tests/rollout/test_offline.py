"""Offline comparison: fitted fraud models side by side on a holdout, and its metrics against scikit-learn."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from kfp_mlops import rollout
from kfp_mlops.core.errors import DataError
from kfp_mlops.demos import fraud
from tests.rollout.simulated import T0, Scorer


def test_gradient_boosting_beats_logistic_legacy_offline(scorers: dict[str, Scorer]) -> None:
    holdout = fraud.generate(30_000, seed=12, start=T0, label_delay=timedelta(days=1))
    models = {name: (s.model, s.features) for name, s in scorers.items()}
    result = rollout.compare_offline(models, holdout, label=fraud.LABEL)

    legacy, better = result["legacy"], result["better"]
    assert better["auc_pr"] > legacy["auc_pr"] + 0.15
    assert better["recall_at_fpr"] > legacy["recall_at_fpr"]
    assert better["roc_auc"] > legacy["roc_auc"]
    assert better["brier"] < legacy["brier"]
    assert legacy["auc_pr"] > 3 * legacy["positive_rate"]  # the legacy model is useful, just weaker
    assert result["worse"]["auc_pr"] < legacy["auc_pr"]
    for metrics in result.values():
        assert metrics["ece"] < 0.01 and metrics["mean_score"] == pytest.approx(metrics["positive_rate"], abs=0.003)
        assert metrics["rows"] == 30_000


class Fixed:
    """A "model" whose positive-class probability is the column ``s``."""

    classes_ = np.array(["0", "1"])

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        return np.column_stack([1 - rows["s"], rows["s"]])


def test_offline_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(5_000) < 0.05).astype(int)
    scores = np.round(1 / (1 + np.exp(-(rng.normal(0, 1, 5_000) + 2 * y - 3))), 2)  # rounded: ties

    result = rollout.compare_offline({"m": (Fixed(), ["s"])}, pd.DataFrame({"s": scores, "y": y}), label="y")["m"]
    fpr, tpr, _ = roc_curve(y, scores)
    expected = {
        "auc_pr": average_precision_score(y, scores),
        "roc_auc": roc_auc_score(y, scores),
        "recall_at_fpr": tpr[fpr <= 0.01].max(),
        "brier": brier_score_loss(y, scores),
    }
    assert {k: result[k] for k in expected} == pytest.approx(expected)


def test_the_label_column_is_named_by_the_caller() -> None:
    holdout = pd.DataFrame({"s": [0.1, 0.9], "y": [0, 1]})
    with pytest.raises(TypeError, match="label"):
        rollout.compare_offline({"m": (Fixed(), ["s"])}, holdout)  # type: ignore[call-arg]
    with pytest.raises(DataError, match="holdout: no label column 'is_fraud'"):
        rollout.compare_offline({"m": (Fixed(), ["s"])}, holdout, label="is_fraud")
