"""Decisions over repeated looks, on simulated rollouts with a known truth: error rates and power.

The controller decides after every ``LOOK_EVERY`` labelled challenger requests (fine looks are
the hard case). An equal or worse challenger must reach 100 % in at most 5 % of rollouts, and a
clearly worse one must not pass its first gate more often; a clearly better one must be promoted
within ``max_labelled`` in most rollouts. The rule before confidence sequences (a 95 % interval
at every look) fails the first promise on the same traffic: the simulation can tell.
``bench/sim_rollout_decisions.py`` runs more rollouts and prints the table.
"""

from __future__ import annotations

import numpy as np
import pytest

from kfp_mlops.rollout import StagePlan
from kfp_mlops.rollout.metrics import LabelledRows, point_estimate
from kfp_mlops.rollout.simulation import Traffic, simulate_rollouts, summarize

TRAFFIC = Traffic()
LOOK_EVERY = 250
LIMITS = {"min_labelled": 250, "min_positives": 20, "max_labelled": 8_000, "max_p99_latency_ms": 1000.0}
# The last gate (the promotion to 100 %) paired: shadow, then 100 %; unpaired: a 50 % canary.
GATES = {
    "paired": StagePlan(shadow=True, steps=(100,), **LIMITS),  # type: ignore[arg-type]
    "unpaired": StagePlan(shadow=False, steps=(50, 100), **LIMITS),  # type: ignore[arg-type]
}


def rates(gate: str, difference: float, *, rollouts: int, rule: str = "sequential") -> dict[str, float]:
    plan = GATES[gate]
    outcomes = simulate_rollouts(
        plan, TRAFFIC, TRAFFIC.separation_for(difference), rollouts=rollouts, look_every=LOOK_EVERY, seed=3, rule=rule
    )
    return summarize(outcomes, plan.stages()[0].name)


def test_the_known_truth_is_what_a_large_sample_measures() -> None:
    rng = np.random.default_rng(0)
    separation = TRAFFIC.separation_for(0.1)
    for s in (TRAFFIC.legacy_separation, separation):
        y = (rng.random(400_000) < TRAFFIC.fraud_rate).astype(float)
        score = s * y + TRAFFIC.noise * rng.standard_normal(len(y))
        measured = point_estimate(LabelledRows(y, score, target_fpr=0.01, ece_bins=10))["auc_pr"]
        assert measured == pytest.approx(TRAFFIC.true_auc_pr(s), abs=0.005)
    assert TRAFFIC.true_auc_pr(separation) - TRAFFIC.true_auc_pr(TRAFFIC.legacy_separation) == pytest.approx(0.1)


def test_an_equal_challenger_rarely_reaches_all_traffic_however_often_the_controller_looks() -> None:
    sequential = rates("unpaired", 0.0, rollouts=60)
    fixed = rates("unpaired", 0.0, rollouts=60, rule="fixed")
    assert sequential["promoted"] <= 0.05
    assert fixed["promoted"] > 0.05  # a 95 % interval at every look: the simulation can fail a rule


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["paired", "unpaired"])
@pytest.mark.parametrize("difference", [0.0, -0.01])
def test_an_equal_or_slightly_worse_challenger_reaches_all_traffic_in_at_most_5_percent(
    gate: str, difference: float
) -> None:
    assert rates(gate, difference, rollouts=80)["promoted"] <= 0.05


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["paired", "unpaired"])
def test_a_clearly_worse_challenger_is_rolled_back_at_its_first_gate(gate: str) -> None:
    found = rates(gate, -0.10, rollouts=80)
    assert found["rolled_back"] == 1.0 and found["passed_first_gate"] <= 0.05


@pytest.mark.slow
@pytest.mark.parametrize(("gate", "power"), [("paired", 0.95), ("unpaired", 0.8)])
def test_a_clearly_better_challenger_is_promoted_within_max_labelled(gate: str, power: float) -> None:
    assert rates(gate, 0.10, rollouts=80)["promoted"] >= power
