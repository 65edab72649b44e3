"""One feature's scores against scipy and hand computations, and the grid counting under them."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from kfp_mlops.drift.check import check_drift
from kfp_mlops.drift.methods.psi import psi
from kfp_mlops.drift.scores import bucket_counts
from kfp_mlops.modeling.profile import build_profile


def _profile(frame: pd.DataFrame, label: str = "y") -> dict[str, Any]:
    kinds = {c: "categorical" if frame[c].dtype == object else "numeric" for c in frame.columns if c != label}
    return build_profile(frame, kinds, label)


def _frame(**columns: Any) -> pd.DataFrame:
    """A frame with a constant label ``y`` next to ``columns``."""
    frame = pd.DataFrame(columns)
    frame["y"] = 1
    return frame


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
    shares = [np.mean((present > lo) & (present <= hi)) for lo, hi in itertools.pairwise(bounds)]
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
