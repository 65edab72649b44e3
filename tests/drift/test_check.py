"""The verdict over features, model and dataset, and the check's refusals."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.demos import ecommerce
from kfp_mlops.drift.check import check_drift
from kfp_mlops.drift.config import DriftConfig, FeatureThresholds
from kfp_mlops.modeling.model_bundle import ModelBundle
from kfp_mlops.modeling.profile import build_profile


def test_verdict_shape_on_data_without_drift(autumn: pd.DataFrame) -> None:
    """A fresh autumn window: quiet, every feature scored, plain JSON."""
    profile = build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)
    window = ecommerce.generate([40], rows_per_week=3_000, seed=9)

    verdict = check_drift(profile, window, config=DriftConfig(ignore_columns=("week",)))

    assert json.loads(json.dumps(verdict)) == verdict
    assert {
        k: verdict[k]
        for k in (
            "drift",
            "dataset_drift",
            "drift_share",
            "drifted_features",
            "rows",
            "reasons",
            "prediction",
            "performance",
        )
    } == {
        "drift": False,
        "dataset_drift": False,
        "drift_share": 0.0,
        "drifted_features": [],
        "rows": 3_000,
        "reasons": [],
        "prediction": None,
        "performance": None,
    }
    assert list(verdict["features"]) == list(ecommerce.FEATURES)
    assert set(verdict["features"]["item_price"]) == {
        "kind",
        "psi",
        "ks",
        "missing_share",
        "out_of_range_share",
        "drifted",
        "reasons",
    }
    assert set(verdict["features"]["device"]) == {
        "kind",
        "psi",
        "js",
        "missing_share",
        "out_of_range_share",
        "drifted",
        "reasons",
    }
    assert max(f["psi"] for f in verdict["features"].values()) < 0.02
    assert verdict["method"].startswith("reference-quantile PSI")
    assert verdict["config"]["psi_threshold"] == 0.2
    assert verdict["reference"] == {
        "rows": 11_000,
        "label": "purchased",
        "profile_version": 1,
        "where": "reference profile",
    }


def test_drift_share_thresholds_and_weights(autumn: pd.DataFrame) -> None:
    """The share of drifted features decides; per-feature thresholds and weights move it."""
    profile = build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)
    window = autumn.copy()
    window["item_price"] = window["item_price"] * 1.5
    window["device"] = "mobile"

    default = check_drift(profile, window)
    assert default["drifted_features"] == ["item_price", "device"]
    assert default["drift_share"] == pytest.approx(2 / 11)
    assert (default["dataset_drift"], default["drift"]) == (False, False)

    weighted = check_drift(
        profile,
        window,
        config=DriftConfig.from_dict({"per_feature": {"item_price": {"weight": 5}, "device": {"weight": 5}}}),
    )
    assert weighted["drift_share"] == pytest.approx(10 / 19)
    assert weighted["drift"] is True
    assert weighted["reasons"] == ["2 of 11 features drifted (share 0.526 >= 0.3): item_price, device"]

    lenient = check_drift(
        profile, window, config=DriftConfig(per_feature={"item_price": FeatureThresholds(psi=5.0, ks=0.9)})
    )
    assert lenient["drifted_features"] == ["device"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["item_price", "device"]), "lacks the reference's feature(s) item_price, device"),
        (lambda f: f.assign(week=1, session_id="s"), "has column(s) the reference does not know: week, session_id"),
        (lambda f: f.assign(item_price="cheap"), "has non-numeric values in numeric feature(s) item_price (object)"),
        (lambda f: f.assign(is_weekend=True), "has non-numeric values in numeric feature(s) is_weekend (bool)"),
        (lambda f: f.assign(item_rating=np.nan, device=None), "has every value missing in item_rating, device"),
        (lambda f: f.iloc[:0], "has no rows"),
    ],
    ids=["missing", "extra", "strings", "bool", "all-nan", "empty"],
)
def test_bad_current_data_is_refused_by_column(autumn: pd.DataFrame, change: Any, message: str) -> None:
    """Missing, unknown, mistyped and empty columns are named; nothing is checked."""
    profile = build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)
    with pytest.raises(DataError) as exc:
        check_drift(profile, change(autumn.iloc[:100]), where="current data w.parquet")
    assert str(exc.value).startswith("current data w.parquet: ")
    assert message in str(exc.value)
    assert str(exc.value).endswith("; no verdict written")


def test_ignored_columns_and_the_label_are_allowed(autumn: pd.DataFrame) -> None:
    profile = build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)
    window = autumn.iloc[:500].assign(week=40, session_id="s")
    assert check_drift(profile, window, config=DriftConfig(ignore_columns=("week", "session_id")))["rows"] == 500


def test_profile_of_another_model_is_refused(autumn: pd.DataFrame, autumn_model: ModelBundle) -> None:
    """Other features, another label, an unknown version, or a profile without drift fields."""
    kinds = ecommerce.feature_kinds()
    fewer = build_profile(autumn, {k: v for k, v in kinds.items() if k != "device"}, ecommerce.LABEL)
    with pytest.raises(
        ConfigError,
        match=r"^p\.json: belongs to another model: its features differ from the "
        r"model's \(model only: device\)$",
    ):
        check_drift(fewer, autumn.drop(columns="device"), model=autumn_model, profile_where="p.json")

    other_label = build_profile(autumn.rename(columns={"purchased": "clicked"}), kinds, "clicked")
    with pytest.raises(ConfigError, match="label 'clicked', the model's is 'purchased'"):
        check_drift(other_label, autumn, model=autumn_model)

    profile = build_profile(autumn, kinds, ecommerce.LABEL)
    with pytest.raises(ConfigError, match="profile version 2; this check reads versions 1"):
        check_drift({**profile, "version": 2}, autumn)

    old = json.loads(json.dumps(profile))
    for name in ("item_price", "user_age"):
        for key in ("cdf_grid", "cdf", "bin_edges", "bin_shares"):
            del old["features"][name][key]
    with pytest.raises(
        ConfigError,
        match=r"rebuild it with this version's build_profile\): user_age: no cdf_grid, "
        r"cdf, bin_edges, bin_shares; item_price: no cdf_grid",
    ):
        check_drift(old, autumn)


def test_per_feature_override_of_an_unknown_feature(autumn: pd.DataFrame) -> None:
    profile = build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)
    with pytest.raises(ConfigError, match="per_feature names features reference profile does not have: price"):
        check_drift(profile, autumn, config=DriftConfig(per_feature={"price": FeatureThresholds(psi=1)}))
