"""Confidence sequences: they cover the truth at every look at once, where fixed intervals do not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kfp_mlops.rollout.sequential import mean_sequence, normal_radius, planned_sample_size, proportion_sequence

LOOKS = np.arange(50, 20_001, 50)  # 400 looks


def test_the_normal_mixture_covers_a_random_walk_at_every_look() -> None:
    # 2,000 paths of a mean of i.i.d. N(0, 2^2) terms, each looked at 400 times (50 terms apart).
    rng = np.random.default_rng(7)
    sigma, paths = 2.0, 2_000
    means = np.cumsum(rng.normal(0, sigma * math.sqrt(50), (paths, len(LOOKS))), axis=1) / LOOKS
    se = sigma / np.sqrt(LOOKS)
    radius = np.array([normal_radius(s, n, alpha=0.05, planned_n=2_000) for s, n in zip(se, LOOKS)])

    anytime_misses = np.mean(np.any(np.abs(means) > radius, axis=1))
    above = np.mean(np.any(means - radius > 0, axis=1))  # a lower bound ever above the truth
    fixed_misses = np.mean(np.any(np.abs(means) > 1.96 * se, axis=1))
    assert anytime_misses <= 0.05 and above <= 0.03
    assert fixed_misses > 0.3  # a 95 % interval at each of 400 looks misses somewhere, often
    # The price: about 3 standard errors where a single look needs 1.96.
    assert normal_radius(1.0, 2_000, alpha=0.05, planned_n=2_000) == pytest.approx(3.03, abs=0.01)
    assert normal_radius(1.0, 200, alpha=0.05, planned_n=2_000) < 3.9
    assert normal_radius(1.0, 20_000, alpha=0.05, planned_n=2_000) < 3.3


def test_mean_sequence_is_unbounded_without_a_standard_error() -> None:
    assert mean_sequence(0.1, 0.02, 1_000, alpha=0.05, planned_n=1_000).low == pytest.approx(0.1 - 0.0606, abs=1e-3)
    unbounded = mean_sequence(0.1, math.nan, 1_000, alpha=0.05, planned_n=1_000)
    assert (unbounded.low, unbounded.high) == (-math.inf, math.inf)
    assert planned_sample_size(2_000, 50_000) == pytest.approx(10_000)


def test_the_beta_binomial_sequence_covers_a_rare_rate_at_every_look() -> None:
    rng = np.random.default_rng(8)
    rate, paths = 0.01, 200
    counts = np.cumsum(rng.random((paths, LOOKS[-1])) < rate, axis=1)[:, LOOKS - 1]
    trips = 0
    for path in counts:
        for n, successes in zip(LOOKS[::8], path[::8]):  # 50 looks each
            if proportion_sequence(int(successes), int(n), alpha=0.05).low > rate:
                trips += 1
                break
    assert trips / paths <= 0.05


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (0, 100, 0.0, 0.057),  # no event yet: the lower bound is 0
        (50, 1_000, 0.028, 0.080),
        (5, 100, 0.007, 0.156),
        (100, 100, 0.943, 1.0),
    ],
)
def test_proportion_sequence_bounds(successes: int, n: int, low: float, high: float) -> None:
    interval = proportion_sequence(successes, n, alpha=0.05)
    assert interval.value == successes / n
    assert interval.low == pytest.approx(low, abs=0.002)
    assert interval.high == pytest.approx(high, abs=0.002)
    assert proportion_sequence(0, 0, alpha=0.05).high == 1.0
