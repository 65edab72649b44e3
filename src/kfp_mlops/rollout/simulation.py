"""Rollouts on simulated traffic with a known truth: how often a plan's decisions err, and its power.

A simulated rollout follows a :class:`~kfp_mlops.rollout.plan.StagePlan` stage by stage and
decides after every ``look_every`` labelled challenger requests on the stage's cumulative data,
as a controller on a schedule would, with the package's own pieces: the metric engine
(:class:`~kfp_mlops.rollout.metrics.LabelledRows`), its delta-method standard errors
(:func:`~kfp_mlops.rollout.metrics.difference_standard_errors`) and
:func:`~kfp_mlops.rollout.plan.decide`. Repeated over many seeded rollouts, it measures what the
decisions promise: how often an equal or worse challenger reaches 100 % (or passes a stage it
should not), and how often a better one is promoted within ``max_labelled``.

**Traffic** (:class:`Traffic`): a fraud rate; each predictor ranks requests by ``separation * y
+ noise`` (a binormal model, scores through a logistic link), so its true AUC-PR is known by
numerical integration (:meth:`Traffic.true_auc_pr`) and a challenger with a given true
difference is one separation away (:meth:`Traffic.separation_for`). In the shadow stage both
predictors score the same requests and their noises share a common part (two models of the same
transactions err alike: the paired difference is much tighter); in a canary each request goes to
one predictor, the challenger receiving its stage's share.

**Rules**: ``sequential`` is :func:`~kfp_mlops.rollout.plan.decide` itself. ``fixed`` is the rule
before confidence sequences, for comparison: the same thresholds read off a fixed-confidence
interval at every look (here the normal one, ``estimate +- z se`` with the same standard error,
where the live comparison reports a percentile bootstrap one: asymptotically the same interval).

**Speed**: a stage's requests are drawn once, up to ``max_labelled``; each look is a prefix of
them, given to the engine as 0/1 row weights, so eight looks cost one weighted pass of the engine
(a stage decided early skips the passes after its verdict).
Guardrails and the false-positive rate are left out (no errors, no declines): the simulation is
about the AUC-PR decisions that move traffic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

from kfp_mlops.core.errors import ConfigError
from kfp_mlops.rollout.intervals import Interval
from kfp_mlops.rollout.live import CHALLENGER, LEGACY, LiveComparison
from kfp_mlops.rollout.metrics import LabelledRows, difference_standard_errors
from kfp_mlops.rollout.plan import PROMOTED, ROLLED_BACK, Decision, Stage, StagePlan, decide
from kfp_mlops.rollout.sequential import StandardError

if TYPE_CHECKING:
    import numpy as np

RULES = ("sequential", "fixed")
_LOOKS_PER_PASS = 8  # looks weighted in one pass of the engine (a stage decided early skips the rest)


@dataclass(frozen=True)
class Traffic:
    """Simulated labelled traffic of two predictors (see the module docstring).

    Attributes:
        fraud_rate: The share of positives.
        legacy_separation: How far the legacy predictor's positives sit above its negatives, in
            noise units (1.7 at 10 % fraud: AUC-PR 0.56).
        shared_noise: The standard deviation of the noise part both predictors share (paired).
        own_noise: The standard deviation of each predictor's own noise.
    """

    fraud_rate: float = 0.1
    legacy_separation: float = 1.7
    shared_noise: float = 0.9
    own_noise: float = 0.45

    @property
    def noise(self) -> float:
        """The standard deviation of a predictor's whole noise (shared and own)."""
        return math.hypot(self.shared_noise, self.own_noise)

    def true_auc_pr(self, separation: float) -> float:
        """The population AUC-PR of a predictor: ``E[precision(S) | Y = 1]``, integrated numerically."""
        from scipy import integrate, stats

        f, sd = self.fraud_rate, self.noise

        def precision_density(t: float) -> float:
            caught = f * stats.norm.sf((t - separation) / sd)
            flagged = caught + (1 - f) * stats.norm.sf(t / sd)
            return caught / flagged * stats.norm.pdf((t - separation) / sd) / sd

        return float(integrate.quad(precision_density, separation - 10 * sd, separation + 10 * sd)[0])

    def separation_for(self, difference: float) -> float:
        """The challenger separation whose true AUC-PR is ``difference`` above the legacy one's."""
        from scipy.optimize import brentq

        target = self.true_auc_pr(self.legacy_separation) + difference
        return float(brentq(lambda s: self.true_auc_pr(s) - target, 0.0, 10.0, xtol=1e-9))


@dataclass(frozen=True)
class Outcome:
    """How one simulated rollout ended.

    Attributes:
        status: ``promoted`` or ``rolled_back``.
        passed: The stages the challenger was promoted out of, in order.
        largest_share: The largest live traffic share it had (100 once promoted).
        labelled: Labelled challenger requests it used over all stages.
        reasons: The last decision's reasons.
    """

    status: str
    passed: tuple[str, ...]
    largest_share: int
    labelled: int
    reasons: tuple[str, ...]


def simulate_rollouts(
    plan: StagePlan,
    traffic: Traffic,
    challenger_separation: float,
    *,
    rollouts: int,
    look_every: int,
    seed: int = 0,
    rule: str = "sequential",
) -> list[Outcome]:
    """Simulated rollouts of a challenger, each deciding after every ``look_every`` labelled requests.

    Args:
        plan: The stages and thresholds (kept small: every stage draws up to ``max_labelled``).
        traffic: The simulated traffic.
        challenger_separation: The challenger's separation (:meth:`Traffic.separation_for`).
        rollouts: How many rollouts.
        look_every: Labelled challenger requests between two looks (the last look is at
            ``max_labelled``, where every stage reaches a verdict).
        seed: Rollout ``i`` draws from ``(seed, i)``: the same arguments give the same outcomes.
        rule: ``sequential`` (:func:`~kfp_mlops.rollout.plan.decide`) or ``fixed`` (see the module
            docstring).

    Raises:
        InvalidPlan: the plan is invalid.
        ConfigError: an unknown ``rule``.
    """
    import numpy as np

    plan.validate()
    if rule not in RULES:
        raise ConfigError(f"rule {rule!r}: expected one of {', '.join(RULES)}")
    decide_with = decide if rule == "sequential" else _fixed_interval_rule
    looks = sorted({*range(look_every, plan.max_labelled, look_every), plan.max_labelled})
    outcomes = []
    for index in range(rollouts):
        rng = np.random.default_rng([seed, index])
        passed: list[str] = []
        largest, used = 0, 0
        for stage in plan.stages()[:-1]:
            largest = max(largest, stage.percent)
            decision = _stage_verdict(plan, stage, traffic, challenger_separation, looks, rng, decide_with)
            used += int(decision.comparison["counts"][CHALLENGER]["labelled"])
            if decision.action == "rollback":
                break
            passed.append(stage.name)
        status = "promoted" if decision.next_stage == PROMOTED else "rolled_back"
        outcomes.append(
            Outcome(status, tuple(passed), 100 if status == "promoted" else largest, used, decision.reasons)
        )
    return outcomes


def _stage_verdict(
    plan: StagePlan,
    stage: Stage,
    traffic: Traffic,
    separation: float,
    looks: Sequence[int],
    rng: np.random.Generator,
    decide_with: Callable[[StagePlan, Stage, LiveComparison], Decision],
) -> Decision:
    """One stage's first decision that is not a hold, a look after another (the last look has one)."""
    import numpy as np

    n, f = looks[-1], traffic.fraud_rate
    paired = stage.kind == "shadow"
    if paired:
        y = (rng.random(n) < f).astype(float)
        shared = traffic.shared_noise * rng.standard_normal(n)
        sides = [
            (y, s * y + shared + traffic.own_noise * rng.standard_normal(n))
            for s in (traffic.legacy_separation, separation)
        ]
        legacy_looks = list(looks)
    else:
        ratio = (100 - stage.percent) / stage.percent  # legacy requests per challenger request
        legacy_looks = [max(1, round(k * ratio)) for k in looks]
        sides = []
        for rows, s in ((legacy_looks[-1], traffic.legacy_separation), (n, separation)):
            labels = (rng.random(rows) < f).astype(float)
            sides.append((labels, s * labels + traffic.noise * rng.standard_normal(rows)))
    engines = [
        LabelledRows(labels, 1 / (1 + np.exp(3.5 - score)), target_fpr=0.01, ece_bins=10) for labels, score in sides
    ]
    z = NormalDist().inv_cdf(0.975)
    for first in range(0, len(looks), _LOOKS_PER_PASS):
        chunk = slice(first, first + _LOOKS_PER_PASS)
        # Row weights: a look sees each side's first rows (its cumulative data), once each.
        weights = [
            (np.arange(len(labels))[None, :] < np.asarray(prefixes[chunk])[:, None]).astype(float)
            for (labels, _), prefixes in zip(sides, (legacy_looks, looks))
        ]
        auc_pr = [engine.metrics(w)["auc_pr"] for engine, w in zip(engines, weights)]
        errors = difference_standard_errors(
            engines[0], engines[1], paired=paired, legacy_weights=weights[0], challenger_weights=weights[1]
        )["auc_pr"]
        positives = [w @ labels for w, (labels, _) in zip(weights, sides)]
        for i, (m, k) in enumerate(zip(legacy_looks[chunk], looks[chunk])):
            value, se = float(auc_pr[1][i] - auc_pr[0][i]), float(errors[i])
            defined = math.isfinite(value) and math.isfinite(se)
            live = LiveComparison(
                LEGACY,
                CHALLENGER,
                paired,
                0.95,
                {
                    LEGACY: {"requests": m, "errors": 0, "labelled": m, "positives": int(positives[0][i])},
                    CHALLENGER: {"requests": k, "errors": 0, "labelled": k, "positives": int(positives[1][i])},
                },
                {LEGACY: {}, CHALLENGER: {}},
                {"auc_pr": Interval(value, value - z * se, value + z * se)} if defined else {},
                {"auc_pr": StandardError(se, k)} if defined else {},
            )
            decision = decide_with(plan, stage, live)
            if decision.action != "hold":
                return decision
    raise AssertionError(f"stage {stage.name}: no verdict at max_labelled")  # decide always has one there


def _fixed_interval_rule(plan: StagePlan, stage: Stage, live: LiveComparison) -> Decision:
    """The rule before confidence sequences: :func:`decide`'s thresholds on the fixed-confidence interval."""
    stages = plan.stages()
    following = stages[stages.index(stage) + 1]
    bar = plan.min_final_auc_pr_gain if following == PROMOTED else -plan.auc_pr_tolerance
    auc = live.difference.get("auc_pr")
    counts = [live.counts[name] for name in (live.legacy, live.challenger)]
    if auc is None or any(c["labelled"] < plan.min_labelled or c["positives"] < plan.min_positives for c in counts):
        action, target = "hold", stage
    elif auc.high < -plan.auc_pr_tolerance:
        action, target = "rollback", ROLLED_BACK
    elif auc.low > bar:
        action, target = "promote", following
    elif counts[1]["labelled"] >= plan.max_labelled:
        action, target = "rollback", ROLLED_BACK
    else:
        action, target = "hold", stage
    reason = "no AUC-PR difference yet" if auc is None else f"fixed 95% interval {auc.low:+.3f} to {auc.high:+.3f}"
    return Decision(action, stage, target, (reason,), live.to_dict())


def summarize(outcomes: Sequence[Outcome], first_gate: str) -> dict[str, float]:
    """Shares of rollouts: ``promoted`` (reached 100 %), ``passed_first_gate`` (promoted out of
    ``first_gate``), ``rolled_back``; and the median labelled challenger requests of the promoted.
    """
    import numpy as np

    count = len(outcomes)
    promoted = [o.labelled for o in outcomes if o.status == "promoted"]
    return {
        "rollouts": count,
        "promoted": len(promoted) / count,
        "passed_first_gate": sum(first_gate in o.passed for o in outcomes) / count,
        "rolled_back": sum(o.status == "rolled_back" for o in outcomes) / count,
        "median_labelled_to_promote": float(np.median(promoted)) if promoted else math.nan,
    }
