"""Confidence intervals: Wilson and order-statistic intervals cover the truth at their nominal rate."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from kfp_mlops import rollout
from kfp_mlops.rollout.intervals import Interval, percentile_interval


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
