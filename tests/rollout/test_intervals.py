"""Confidence intervals: Wilson and order-statistic intervals cover the truth at their nominal rate."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from kfp_mlops import rollout
from kfp_mlops.rollout.intervals import Interval, binomial_quantile, bootstrap_replicates, percentile_interval
from kfp_mlops.rollout.metrics import LabelledRows, RequestRows


def test_wilson_and_quantile_intervals_cover_the_truth() -> None:
    rng = np.random.default_rng(3)
    rate_hits = 0
    for _ in range(400):
        interval = rollout.wilson_interval(int(rng.binomial(400, 0.02)), 400)
        rate_hits += interval.low <= 0.02 <= interval.high
    true_p99 = math.exp(math.log(10) + 0.5 * NormalDist().inv_cdf(0.99))
    p99_hits = 0
    for _ in range(300):
        interval = rollout.quantile_interval(rng.lognormal(math.log(10), 0.5, 1_000), 0.99)
        p99_hits += interval.low <= true_p99 <= interval.high
    assert rate_hits / 400 >= 0.90
    assert p99_hits / 300 >= 0.90
    assert rollout.wilson_interval(0, 50).low == 0 and rollout.wilson_interval(0, 50).high > 0.05


def test_percentile_interval_refuses_mostly_undefined_replicates() -> None:
    replicates = np.r_[np.linspace(0.1, 0.3, 40), np.full(60, np.nan)]
    assert percentile_interval(0.2, replicates, 0.95) is None
    assert percentile_interval(math.nan, np.linspace(0.1, 0.3, 100), 0.95) is None
    interval = percentile_interval(0.2, np.linspace(0.1, 0.3, 101), 0.95)
    assert interval is not None
    assert (interval.value, interval.low, interval.high) == pytest.approx((0.2, 0.105, 0.295))
    assert Interval.from_dict(Interval(0.1, -math.inf, math.inf).to_dict()) == Interval(0.1, -math.inf, math.inf)


@pytest.mark.parametrize("paired", [False, True])
def test_subsampled_bootstrap_keeps_the_full_bootstraps_centre_and_width(paired: bool) -> None:
    rng = np.random.default_rng(11)
    n = 40_000
    y = (rng.random(n) < 0.08).astype(float)
    sides = [
        LabelledRows(y, 1 / (1 + np.exp(2.5 - shift * y - rng.normal(size=n))), target_fpr=0.01, ece_bins=10)
        for shift in (1.5, 1.8)
    ]
    requests = RequestRows(rng.random(n) < 0.01, rng.random(n) < 0.9, rng.lognormal(2.3, 0.5, n), 0.99)
    engines: list = sides if paired else [sides[0]]
    for group in (engines, [requests]):
        full = bootstrap_replicates(group, 400, (0, 1))
        subsampled = bootstrap_replicates(group, 400, (0, 1), max_rows=4_000)
        for exact, rescaled in zip(full, subsampled):
            for metric, values in exact.items():
                width = np.subtract(*np.percentile(values, [97.5, 2.5]))
                low, high = np.percentile(rescaled[metric], [2.5, 97.5])
                assert low < np.median(values) < high, metric
                assert 0.7 < (high - low) / width < 1.4, metric
    # the subsample is only how the spread is estimated: an engine over every row is left unchanged
    assert sides[0].subset(np.arange(n)).metrics(np.ones((1, n)))["auc_pr"] == pytest.approx(
        sides[0].metrics(np.ones((1, n)))["auc_pr"]
    )


def test_binomial_quantile_is_scipys() -> None:
    from scipy.stats import binom

    for n in (1, 2, 5, 37, 100, 999, 12_345, 1_000_000):
        for p in (0.01, 0.5, 0.9, 0.99, 0.999):
            for level in (0.0005, 0.005, 0.025, 0.05, 0.95, 0.975, 0.995, 0.9995):
                assert binomial_quantile(level, n, p) == int(binom.ppf(level, n, p)), (level, n, p)
