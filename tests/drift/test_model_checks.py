"""Prediction drift and performance of a model on the window."""

from __future__ import annotations

import pandas as pd
import pytest

from kfp_mlops.demos import ecommerce
from kfp_mlops.drift.check import check_drift
from kfp_mlops.modeling.model_bundle import ModelBundle
from kfp_mlops.modeling.profile import build_profile


def test_prediction_drift_and_performance(autumn: pd.DataFrame, autumn_model: ModelBundle) -> None:
    """With a model: mean class probabilities vs the reference's label shares; with labels, accuracy and AUC."""
    profile = build_profile(autumn, autumn_model.metadata["feature_kinds"], ecommerce.LABEL)
    quiet = check_drift(
        profile,
        ecommerce.generate([41], 3_000, seed=4).drop(columns="week"),
        model=autumn_model,
        reference_performance={"accuracy": 0.80, "roc_auc": 0.73},
    )
    december = check_drift(
        profile,
        ecommerce.generate([47], 3_000, seed=4).drop(columns="week"),
        model=autumn_model,
        reference_performance={"accuracy": 0.80, "roc_auc": 0.73},
    )

    assert quiet["prediction"]["reference"] == "label shares of the reference (no reference rows)"
    assert quiet["prediction"]["reference_shares"] == pytest.approx(profile["label_shares"])
    assert quiet["prediction"]["psi"] < 0.01 and quiet["prediction"]["scored_rows"] == 3_000
    assert sum(quiet["prediction"]["shares"].values()) == pytest.approx(1.0)
    assert quiet["performance"]["degraded"] is False
    assert quiet["performance"]["accuracy"] == pytest.approx(0.80, abs=0.03)
    assert quiet["drift"] is False
    # December buyers purchase twice as often, for other reasons: the autumn model misses many.
    assert december["prediction"]["shares"]["1"] > quiet["prediction"]["shares"]["1"] + 0.1
    assert december["performance"]["degraded"] is True
    assert december["performance"]["reasons"][0].startswith("accuracy 0.")
    assert december["drift"] is True
