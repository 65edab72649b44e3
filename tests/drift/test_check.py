"""The drift check's scores against scipy and hand computations, its verdict, and its refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from kfp_mlops.components.train.logic import fit_model
from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.demos import ecommerce
from kfp_mlops.drift.check import (
    PSI_EPSILON,
    DriftConfig,
    FeatureThresholds,
    bucket_counts,
    check_drift,
    js_distance,
    load_reference,
    psi,
    run_drift,
    run_drift_cli,
)
from kfp_mlops.modeling.model_bundle import ModelBundle, save_bundle
from kfp_mlops.modeling.profile import build_profile


def _profile(frame: pd.DataFrame, label: str = "y") -> dict[str, Any]:
    kinds = {c: "categorical" if frame[c].dtype == object else "numeric" for c in frame.columns if c != label}
    return build_profile(frame, kinds, label)


def _frame(**columns: Any) -> pd.DataFrame:
    """A frame with a constant label ``y`` next to ``columns``."""
    frame = pd.DataFrame(columns)
    frame["y"] = 1
    return frame


@pytest.fixture(scope="module")
def autumn() -> pd.DataFrame:
    """Autumn reference rows (the week column dropped)."""
    return ecommerce.generate(range(35, 46), rows_per_week=1_000, seed=0).drop(columns=ecommerce.WEEK)


@pytest.fixture(scope="module")
def autumn_model(autumn: pd.DataFrame) -> ModelBundle:
    model, metadata = fit_model(autumn, ecommerce.LABEL, "logistic_regression", {}, seed=0)
    return ModelBundle(model, metadata)


# --- scores -----------------------------------------------------------------------------------


def test_psi_by_hand() -> None:
    """sum((c - r) ln(c / r)); an empty bin counts as PSI_EPSILON."""
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert PSI_EPSILON == 1e-4
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(
        -0.1 * math.log(0.8) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    )
    assert psi([0.2, 0.8], [0.6, 0.4]) == pytest.approx(psi([0.6, 0.4], [0.2, 0.8]))  # symmetric


def test_js_distance_matches_scipy() -> None:
    """Base-2 Jensen-Shannon distance: scipy's value, 0 for identical and 1 for disjoint shares."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        p, q = rng.random(6), rng.random(6)
        q[2] = 0.0
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert js_distance([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0, abs=1e-12)
    assert js_distance([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)


def _grids_and_values() -> list[tuple[np.ndarray, np.ndarray]]:
    """Percentile grids, integer grids hit exactly and one ulp off, infinities, a far outlier, one point."""
    rng = np.random.default_rng(5)
    reference = rng.normal(size=10_000)
    cases = [
        (np.unique(np.quantile(reference, np.linspace(0, 1, 101), method="inverted_cdf")), rng.normal(0.3, 1.5, 50_000))
    ]
    ints = np.arange(17.0)
    cases.append(
        (
            ints,
            np.concatenate(
                [ints, np.nextafter(ints, np.inf), np.nextafter(ints, -np.inf), [np.inf, -np.inf, -5.0, 100.0]]
            ),
        )
    )
    outlier = np.unique(np.quantile(np.append(reference, 1e9), np.linspace(0, 1, 101), method="inverted_cdf"))
    cases.append((outlier, np.append(rng.normal(size=1_000), [1e9, 2e9])))  # too crowded: binary search
    cases.append((np.array([3.0]), np.array([1.0, 3.0, 4.0])))
    for _ in range(100):  # grid points on rounded values, i.e. often on lookup-cell boundaries
        grid = np.unique(np.round(rng.uniform(0, 1, rng.integers(2, 120)), rng.integers(1, 6)))
        cases.append(
            (
                grid,
                np.concatenate(
                    [grid, np.nextafter(grid, np.inf), np.nextafter(grid, -np.inf), rng.uniform(-0.1, 1.1, 500)]
                ),
            )
        )
    return cases


def test_bucket_counts_equal_binary_search() -> None:
    """The lookup table counts exactly what np.searchsorted + np.bincount count."""
    for grid, values in _grids_and_values():
        expected = np.bincount(np.searchsorted(grid, values), minlength=len(grid) + 1)
        np.testing.assert_array_equal(bucket_counts(values, grid), expected)


def test_profile_bins_of_a_continuous_feature() -> None:
    """Ten decile bins of 10 % each; the one-value bin at the minimum is merged away."""
    entry = _profile(_frame(x=np.arange(1000) / 1000))["features"]["x"]
    assert entry["bin_edges"] == pytest.approx(
        [0.0999, 0.1999, 0.2999, 0.3999, 0.4999, 0.5999, 0.6999, 0.7999, 0.8999], abs=1e-3
    )
    assert entry["bin_shares"] == pytest.approx([0.1] * 10)
    assert set(entry["bin_edges"]) <= set(entry["cdf_grid"])
    assert len(entry["cdf_grid"]) == 101 and entry["cdf"][-1] == 1.0
    assert entry["cdf"] == sorted(entry["cdf"])


@pytest.mark.parametrize(
    ("ones", "edges", "shares"), [(0.3, [0.0], [0.7, 0.3]), (0.95, [0.0], [0.05, 0.95]), (0.005, [], [1.0])]
)
def test_profile_bins_of_a_binary_feature(ones: float, edges: list[float], shares: list[float]) -> None:
    """A 0/1 feature keeps its two values as bins (unless one holds under MIN_BIN_SHARE)."""
    values = (np.arange(1000) < ones * 1000).astype(int)
    entry = _profile(_frame(x=values))["features"]["x"]
    assert (entry["bin_edges"], entry["bin_shares"]) == (edges, pytest.approx(shares))
    assert (entry["cdf_grid"], entry["cdf"]) == ([0.0, 1.0], pytest.approx([1 - ones, 1.0]))


def test_numeric_psi_and_ks_by_hand() -> None:
    """PSI over the profile's bins and KS on its grid, recomputed from the rows; KS within 0.01 of scipy's."""
    rng = np.random.default_rng(0)
    reference = rng.normal(0.0, 1.0, 20_000)
    current = np.concatenate([rng.normal(0.4, 1.3, 9_900), [np.nan] * 100])
    profile = _profile(_frame(x=reference))
    entry = profile["features"]["x"]

    result = check_drift(profile, _frame(x=current))["features"]["x"]

    present = current[~np.isnan(current)]
    bounds = [-np.inf, *entry["bin_edges"], np.inf]
    shares = [np.mean((present > lo) & (present <= hi)) for lo, hi in zip(bounds, bounds[1:])]
    expected_psi = sum((c - r) * math.log(c / r) for c, r in zip(shares, entry["bin_shares"]))
    exact_ks = ks_2samp(reference, present).statistic
    assert result["psi"] == pytest.approx(expected_psi)
    assert exact_ks - 0.01 <= result["ks"] <= exact_ks + 1e-12  # a lower bound, within a grid step
    assert result["missing_share"] == pytest.approx(0.01)
    outside = np.mean((present < reference.min()) | (present > reference.max()))
    assert result["out_of_range_share"] == pytest.approx(outside)
    assert result["drifted"] is True


def test_ks_is_exact_for_a_discrete_feature() -> None:
    """With every distinct value on the grid, the grid KS is scipy's statistic."""
    rng = np.random.default_rng(1)
    reference, current = rng.poisson(4.0, 5_000), rng.poisson(4.6, 3_000)
    result = check_drift(_profile(_frame(x=reference)), _frame(x=current))["features"]["x"]
    assert result["ks"] == pytest.approx(ks_2samp(reference, current).statistic)


def test_categorical_scores_with_an_unseen_category() -> None:
    """PSI and JS over the reference categories plus 'other'; unseen values are out of range."""
    reference = np.array(["a"] * 500 + ["b"] * 300 + ["c"] * 200, dtype=object)
    current = np.array(["a"] * 400 + ["b"] * 300 + ["c"] * 100 + ["d"] * 150 + [None] * 50, dtype=object)
    profile = _profile(_frame(x=reference))

    result = check_drift(profile, _frame(x=current))["features"]["x"]

    ref_shares, cur_shares = [0.5, 0.3, 0.2, 0.0], [400 / 950, 300 / 950, 100 / 950, 150 / 950]
    assert result == {
        "kind": "categorical",
        "psi": pytest.approx(psi(ref_shares, cur_shares)),
        "js": pytest.approx(jensenshannon(ref_shares, cur_shares, base=2)),
        "missing_share": pytest.approx(0.05),
        "out_of_range_share": pytest.approx(150 / 950),
        "drifted": True,
        "reasons": [
            f"psi {psi(ref_shares, cur_shares):.3f} >= 0.2",
            f"js {jensenshannon(ref_shares, cur_shares, base=2):.3f} >= 0.1",
            "0.158 of values outside the reference categories (reference 0.000)",
        ],
    }


def test_categories_compare_as_strings() -> None:
    """Integer codes match the profile's string keys."""
    profile = _profile(_frame(x=np.array(["1", "2"] * 50, dtype=object)))
    result = check_drift(profile, _frame(x=[1, 2] * 50))["features"]["x"]
    assert (result["psi"], result["js"], result["out_of_range_share"]) == (0.0, 0.0, 0.0)


def test_missing_values_and_out_of_range_make_a_feature_drift() -> None:
    """More missing values or values beyond the reference's range than allowed are reasons of their own."""
    rng = np.random.default_rng(2)
    profile = _profile(_frame(x=rng.uniform(0, 1, 10_000)))
    current = rng.uniform(0, 1, 10_000)
    current[:800] = np.nan
    current[800:1500] = 2.0  # above the max
    reasons = check_drift(profile, _frame(x=current))["features"]["x"]["reasons"]
    assert reasons[-2:] == [
        "missing share 0.080 vs 0.000 in the reference",
        "0.076 of values outside [min, max] (reference 0.000)",
    ]


# --- the verdict --------------------------------------------------------------------------------


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


def test_config_is_checked() -> None:
    """Unknown keys and out-of-range values are named."""
    assert DriftConfig.from_dict({}) == DriftConfig()
    config = DriftConfig.from_dict(
        {"psi_threshold": 0.25, "per_feature": {"x": {"ks": 0.2}}, "ignore_columns": ["week"]}
    )
    assert config.for_feature("x") == {"psi": 0.25, "ks": 0.2, "js": 0.1, "weight": 1.0}
    assert DriftConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"unknown key\(s\) psi; known: drift_share"):
        DriftConfig.from_dict({"psi": 0.1})
    with pytest.raises(ConfigError, match=r"per_feature\['x'\] has unknown key\(s\) threshold"):
        DriftConfig.from_dict({"per_feature": {"x": {"threshold": 0.1}}})
    with pytest.raises(ConfigError, match=r"^DriftConfig.drift_share=0: expected a share in \(0, 1\]$"):
        DriftConfig(drift_share=0)
    with pytest.raises(ConfigError, match=r"^DriftConfig.per_feature\['x'\].psi=-1: expected a number > 0$"):
        DriftConfig(per_feature={"x": FeatureThresholds(psi=-1)})


def test_per_feature_override_of_an_unknown_feature(autumn: pd.DataFrame) -> None:
    profile = build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)
    with pytest.raises(ConfigError, match="per_feature names features reference profile does not have: price"):
        check_drift(profile, autumn, config=DriftConfig(per_feature={"price": FeatureThresholds(psi=1)}))


# --- files, CLI and the Evidently report ----------------------------------------------------------


@pytest.fixture()
def files(tmp_path: Path, autumn: pd.DataFrame, autumn_model: ModelBundle) -> dict[str, Path]:
    """Reference data, its profile, a model folder (trained on that data) and two windows."""
    paths = {name: tmp_path / f"{name}.parquet" for name in ("reference", "quiet", "december")}
    autumn.to_parquet(paths["reference"])
    ecommerce.generate([42], 2_000, seed=5).drop(columns="week").to_parquet(paths["quiet"])
    ecommerce.generate([48], 2_000, seed=5).drop(columns="week").to_parquet(paths["december"])
    paths["profile"] = tmp_path / "profile.json"
    paths["profile"].write_text(json.dumps(build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)))
    paths["model"] = tmp_path / "model"
    save_bundle(paths["model"], autumn_model.model, {**autumn_model.metadata, "training_data_uri": "memory"})
    return paths


def test_cli_with_a_profile_prints_the_verdict_and_skips_the_report(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A profile has no rows: verdict.json, and a report.html saying why Evidently's report is missing."""
    out = tmp_path / "out"
    verdict = run_drift_cli(str(files["profile"]), str(files["december"]), out)

    assert json.loads(capsys.readouterr().out) == verdict
    assert json.loads((out / "verdict.json").read_text()) == verdict
    assert verdict["drift"] is True
    assert verdict["inputs"] == {"reference": str(files["profile"]), "current": str(files["december"]), "model": None}
    assert verdict["report"]["skipped"].startswith(f"the reference {files['profile']} is a profile without rows")
    assert "No Evidently report" in (out / "report.html").read_text()


def test_reference_data_is_profiled_like_train_does(files: dict[str, Path], autumn: pd.DataFrame) -> None:
    """Reference data + label gives the profile train would have written."""
    reference = load_reference(str(files["reference"]), label="purchased")
    assert reference.profile == build_profile(autumn, ecommerce.feature_kinds(), "purchased")
    assert reference.rows is not None and reference.explicit_rows
    with pytest.raises(ConfigError, match="name its label column"):
        load_reference(str(files["reference"]))
    with pytest.raises(ConfigError, match="no label column 'target'"):
        load_reference(str(files["reference"]), label="target")


def test_model_with_reference_data_uses_reference_predictions_and_performance(files: dict[str, Path]) -> None:
    verdict = run_drift(str(files["reference"]), str(files["quiet"]), model=str(files["model"]))
    assert verdict["prediction"]["reference"] == "mean predicted probabilities on reference rows"
    assert verdict["performance"]["reference"]["accuracy"] == pytest.approx(0.80, abs=0.02)
    assert verdict["drift"] is False


def test_bad_input_writes_nothing(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.read_parquet(files["quiet"]).drop(columns="category").to_csv(bad, index=False)
    with pytest.raises(DataError, match=f"^current data {bad}: lacks the reference's feature\\(s\\) category;"):
        run_drift_cli(str(files["profile"]), str(bad), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # evidently's own (numpy.core, litestar)
def test_evidently_report_from_reference_data(files: dict[str, Path], tmp_path: Path) -> None:
    """Reference rows give Evidently's HTML report; the verdict stays ours and records the report."""
    out = tmp_path / "out"
    verdict = run_drift_cli(str(files["reference"]), str(files["december"]), out, label="purchased")

    html = (out / "report.html").read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>") and "item_discount" in html and len(html) > 100_000
    assert verdict["report"] == {
        "path": str(out / "report.html"),
        "reference": str(files["reference"]),
        "reference_rows": 11_000,
        "current_rows": 2_000,
        "evidently": "0.7.23",
        "evidently_drift_share": pytest.approx(0.5, abs=0.3),
    }
    assert verdict["drift"] is True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # evidently's own (numpy.core, litestar)
def test_report_from_the_model_training_data(files: dict[str, Path], tmp_path: Path, autumn_model: ModelBundle) -> None:
    """A profile has no rows; the model's readable training data stands in for Evidently's report."""
    model_dir = tmp_path / "model-with-data"
    save_bundle(model_dir, autumn_model.model, {**autumn_model.metadata, "training_data_uri": str(files["reference"])})

    verdict = run_drift(
        str(files["profile"]), str(files["december"]), model=str(model_dir), report_path=tmp_path / "report.html"
    )

    assert verdict["report"]["reference"] == str(files["reference"])
    assert verdict["report"]["reference_rows"] == 11_000
    assert verdict["prediction"]["reference"] == "mean predicted probabilities on reference rows"
    assert verdict["performance"]["reference"] is None  # training rows are no fair baseline
