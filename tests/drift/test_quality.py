"""Decision quality of the drift check against known truth: the e-commerce generator's seasons.

Within a season every week has the same distribution, so a fresh window must stay quiet (false
alarms); at a season's first week the distribution changes, so that window must be flagged.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from kfp_mlops.demos import ecommerce
from kfp_mlops.drift import DriftConfig, check_drift, classification_scores, label_strings, predict
from kfp_mlops.modeling.model_bundle import ModelBundle
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.training import fit_model

WINDOW_ROWS = 2_000  # one window: a day or two of traffic
REFERENCE_ROWS = 20_000
CONFIG = DriftConfig(ignore_columns=(ecommerce.WEEK,))
CONTROLS = ("user_age", "item_rating", "is_weekend")  # never change with the season


def _season_weeks(name: str) -> list[int]:
    first, last = ecommerce.SEASONS[name].weeks
    return list(range(first, last + 1))


def _reference(season: str, seed: int = 0) -> pd.DataFrame:
    weeks = _season_weeks(season)
    return ecommerce.generate(weeks, REFERENCE_ROWS // len(weeks), seed).drop(columns=ecommerce.WEEK)


class Monitor:
    """An autumn model with its reference profile, reference predictions and performance."""

    def __init__(self) -> None:
        reference = _reference("autumn")
        model, metadata = fit_model(reference, ecommerce.LABEL, "logistic_regression", {}, seed=0)
        self.model = ModelBundle(model, metadata)
        self.profile = build_profile(reference, metadata["feature_kinds"], ecommerce.LABEL)
        _, proba = predict(self.model, reference, "reference")
        self.shares = dict(zip(self.model.classes, proba.mean(axis=0).tolist()))
        self.performance = classification_scores(label_strings(reference[ecommerce.LABEL]), proba, self.model.classes)

    def check(self, window: pd.DataFrame) -> dict[str, Any]:
        return check_drift(
            self.profile,
            window,
            config=CONFIG,
            model=self.model,
            reference_prediction_shares=self.shares,
            reference_performance=self.performance,
        )


@pytest.fixture(scope="module")
def monitor() -> Monitor:
    return Monitor()


def test_windows_without_drift_stay_quiet(monitor: Monitor) -> None:
    """40 fresh autumn windows (other seeds, every autumn week): at least 95 % raise no alarm."""
    weeks = _season_weeks("autumn")
    verdicts = [
        monitor.check(ecommerce.generate([weeks[i % len(weeks)]], WINDOW_ROWS, seed=100 + i)) for i in range(40)
    ]

    alarms = [v for v in verdicts if v["drift"]]
    assert len(alarms) <= 2, [v["reasons"] for v in alarms]
    # Quiet by a margin, not by luck: the noisiest feature stays well under its thresholds.
    assert max(f["psi"] for v in verdicts for f in v["features"].values()) < 0.05
    assert max(f.get("ks", f.get("js")) for v in verdicts for f in v["features"].values()) < 0.07
    assert max(v["prediction"]["psi"] for v in verdicts) < 0.02
    assert all(not v["performance"]["degraded"] for v in verdicts)


@pytest.mark.parametrize("season", list(ecommerce.SEASONS))
def test_a_season_change_is_flagged_in_its_first_week(season: str) -> None:
    """Reference: the previous season. Its last week is quiet; the new season's first week drifts."""
    first = ecommerce.SEASONS[season].weeks[0]
    previous = ecommerce.season_of((first - 1) % ecommerce.WEEKS_PER_YEAR)
    profile = build_profile(_reference(previous), ecommerce.feature_kinds(), ecommerce.LABEL)

    before = check_drift(profile, ecommerce.generate([(first - 1) % 52], WINDOW_ROWS, seed=7), config=CONFIG)
    after = check_drift(profile, ecommerce.generate([first], WINDOW_ROWS, seed=7), config=CONFIG)

    assert before["drift"] is False, before["reasons"]
    assert after["drift"] is True and after["dataset_drift"] is True
    assert after["drift_share"] >= 4 / 11
    assert not set(CONTROLS) & set(after["drifted_features"])


def test_holiday_concept_drift_is_seen_in_predictions_and_performance(monitor: Monitor) -> None:
    """The autumn model in the first December week: more purchases predicted, lower accuracy."""
    verdict = monitor.check(ecommerce.generate([46], WINDOW_ROWS, seed=11))

    assert verdict["drift"] is True
    assert verdict["prediction"]["shares"]["1"] > monitor.shares["1"] + 0.1
    assert verdict["performance"]["degraded"] is True
    assert verdict["performance"]["accuracy"] < monitor.performance["accuracy"] - 0.05
    assert {"item_discount", "avg_basket_value", "category"} <= set(verdict["drifted_features"])
