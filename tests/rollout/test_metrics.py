"""Influence values and delta-method standard errors of the metric engine."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_mlops.rollout.metrics import LabelledRows, difference_standard_errors, point_estimate


def rows(rng: np.random.Generator, n: int, separation: float, *, decimals: int = 2) -> LabelledRows:
    """Labelled rows at 10 % fraud; scores rounded to ``decimals`` so that many are tied."""
    y = (rng.random(n) < 0.1).astype(float)
    score = np.round(1 / (1 + np.exp(3.5 - separation * y - rng.normal(0, 1, n))), decimals)
    return LabelledRows(y, score, target_fpr=0.01, ece_bins=10, declined=(score > 0.3).astype(float))


def test_influence_is_the_derivative_of_the_metric_in_a_row_weight() -> None:
    # Giving row i a little more weight d moves the metric by about d / total * influence_i.
    rng = np.random.default_rng(1)
    engine = rows(rng, 400, 1.7)
    w = rng.integers(1, 3, (1, 400)).astype(float)
    influence = engine.influence(w)
    base = engine.metrics(w)
    d = 1e-6
    for i in rng.choice(400, 25, replace=False):
        bumped = w.copy()
        bumped[0, i] += d
        moved = engine.metrics(bumped)
        for metric in ("auc_pr", "fpr"):
            derivative = (moved[metric][0] - base[metric][0]) / d * w.sum()
            assert derivative == pytest.approx(influence[metric][0, i], rel=1e-3, abs=1e-6)
    for values in influence.values():  # influence values average to zero
        assert (w * values).sum() == pytest.approx(0, abs=1e-9)
    assert np.all(engine.influence(np.zeros((1, 400)))["fpr"] == 0)  # rows without weight: 0


@pytest.mark.parametrize("paired", [True, False])
def test_delta_method_standard_error_matches_the_spread_over_samples(paired: bool) -> None:
    rng = np.random.default_rng(2)
    differences, errors = [], []
    for _ in range(150):
        legacy = rows(rng, 2_000, 1.7, decimals=3)
        if paired:  # the same requests and labels, the challenger's scores another draw
            y = legacy.label_ranked[np.argsort(legacy.order)]
            score = np.round(1 / (1 + np.exp(3.5 - 1.9 * y - rng.normal(0, 1, 2_000))), 3)
            challenger = LabelledRows(y, score, target_fpr=0.01, ece_bins=10)
        else:
            challenger = rows(rng, 2_000, 1.9, decimals=3)
        differences.append(point_estimate(challenger)["auc_pr"] - point_estimate(legacy)["auc_pr"])
        errors.append(difference_standard_errors(legacy, challenger, paired=paired)["auc_pr"][0])
    assert np.mean(errors) == pytest.approx(np.std(differences), rel=0.15)
