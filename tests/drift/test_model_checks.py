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


def test_the_verdict_carries_the_label_free_estimate(autumn: pd.DataFrame, autumn_model: ModelBundle) -> None:
    """Beside the realized performance with labels; alone without them; the drift decision is untouched."""
    profile = build_profile(autumn, autumn_model.metadata["feature_kinds"], ecommerce.LABEL)
    window = ecommerce.generate([41], 3_000, seed=4).drop(columns="week")  # autumn, the model's season
    labelled = check_drift(profile, window, model=autumn_model)
    unlabelled = check_drift(profile, window.drop(columns=ecommerce.LABEL), model=autumn_model)
    without_model = check_drift(profile, window)

    estimate = labelled["performance_estimate"]
    assert estimate["available"] is True and estimate["rows"] == 3_000
    assert estimate["realized"]["accuracy"] == labelled["performance"]["accuracy"]
    assert estimate["realized"]["labelled_rows"] == 3_000
    assert abs(estimate["realized"]["error"]["accuracy"]) < 0.03
    assert {k: v for k, v in unlabelled["performance_estimate"].items() if k != "realized"} == {
        k: v for k, v in estimate.items() if k != "realized"
    }
    assert unlabelled["performance_estimate"]["realized"] is None and unlabelled["performance"] is None
    assert without_model["performance_estimate"] is None
    assert labelled["drift"] is False and unlabelled["reasons"] == []


def test_a_model_without_calibration_gets_a_reason_not_an_error(
    autumn: pd.DataFrame, autumn_model: ModelBundle
) -> None:
    """A model registered before calibration was stored: the check runs, the estimate says why it is missing."""
    metadata = {k: v for k, v in autumn_model.metadata.items() if k != "calibration"}
    profile = build_profile(autumn, autumn_model.metadata["feature_kinds"], ecommerce.LABEL)

    verdict = check_drift(
        profile,
        ecommerce.generate([41], 1_000, seed=4).drop(columns="week"),
        model=ModelBundle(autumn_model.model, metadata),
    )

    assert verdict["performance"]["accuracy"] > 0.7
    assert verdict["performance_estimate"]["available"] is False
    assert verdict["performance_estimate"]["reason"].startswith("the model has no calibration (trained before")
