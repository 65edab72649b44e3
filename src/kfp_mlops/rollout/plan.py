"""The stage plan and the decision at each stage: promote, hold or roll back, with reasons.

:class:`StagePlan` -- shadow, then canary steps (e.g. 5, 25, 50, 100 %), the labels each stage
waits for, and the guardrails. :func:`decide` turns a stage and a live comparison
(:func:`kfp_mlops.rollout.live.compare_live`) into ``promote``, ``hold`` or ``rollback`` with
reasons; :func:`spec_for` turns a stage into the :class:`~kfp_mlops.serving.spec.DeploymentSpec`
to apply. All three are pure: the same inputs always give the same result.

Decision rules, checked in this order (:func:`decide`). Every rule that moves traffic reads an
**anytime-valid confidence sequence** (:mod:`kfp_mlops.rollout.sequential`) at the plan's
``decision_confidence`` (95 %), not a fixed-confidence interval: the controller re-decides on the
stage's cumulative data at every step, and a sequence stays valid however often it looks. The
sequences depend only on the plan and the stage's data (estimate, standard error, sample size,
counts), so a schedule of any cadence has the same guarantee.

1. **Guardrails** (no labels needed; immediate ``rollback``): the challenger's error rate, or the
   share of its requests slower than ``max_p99_latency_ms``, is *significantly* above its limit
   (the beta-binomial sequence's lower bound is above ``max_error_rate``, resp. above the 1 % a
   p99 within the limit allows).
2. **Labels**: ``hold`` until both predictors have ``min_labelled`` labelled requests with at
   least ``min_positives`` frauds among them in this stage.
3. **Significantly worse** (``rollback``): the AUC-PR difference's sequence lies entirely below
   ``-auc_pr_tolerance``, or the false-positive-rate increase's lies entirely above
   ``max_fpr_increase``.
4. **Promote**: to an intermediate stage when the challenger is non-inferior (AUC-PR difference
   lower bound above ``-auc_pr_tolerance``); to 100 % only when it is *better* (lower bound above
   ``min_final_auc_pr_gain``, 0 by default: significantly better; set it negative to accept
   non-inferiority). A model that is merely "not shown worse" never takes all traffic.
5. Otherwise ``hold`` for more labels, and ``rollback`` once the challenger has
   ``max_labelled`` labelled requests in the stage without a verdict: the burden of proof is on
   the challenger.

So, over any number of looks, a challenger no better than ``min_final_auc_pr_gain`` reaches 100 %
with probability at most about ``(1 - decision_confidence) / 2`` (the last stage's lower bound must
miss), and one worse than the tolerance passes a stage only as rarely. The reasons quote the
sequences; the comparison keeps the fixed-confidence intervals it reports.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kfp_mlops.core.configs import Config
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.rollout.intervals import Interval
from kfp_mlops.rollout.live import CHALLENGER, LEGACY, LiveComparison
from kfp_mlops.rollout.sequential import mean_sequence, planned_sample_size, proportion_sequence
from kfp_mlops.serving.spec import DeploymentSpec, PredictorSpec


class InvalidPlan(ConfigError):
    """A stage plan that cannot be followed; the message lists every problem."""


@dataclass(frozen=True)
class Stage:
    """Where a rollout stands.

    Attributes:
        kind: ``shadow`` (the challenger sees a copy of every request, answers none), ``canary``
            (it answers ``percent`` % of requests), ``promoted`` (it answers all; the legacy
            predictor is gone) or ``rolled_back`` (the legacy predictor answers all again).
        percent: The challenger's share of live traffic.
    """

    kind: str
    percent: int = 0

    @property
    def name(self) -> str:
        """``shadow``, ``canary-<percent>``, ``promoted`` or ``rolled_back``."""
        return f"canary-{self.percent}" if self.kind == "canary" else self.kind


PROMOTED = Stage("promoted", 100)
ROLLED_BACK = Stage("rolled_back", 0)
_LATENCY_QUANTILE = 0.99  # the guardrail's limit is on the p99: at most 1 % of requests slower


@dataclass(frozen=True)
class StagePlan(Config):
    """The stages a challenger goes through and what each must show (a :class:`~kfp_mlops.core.configs.Config`).

    Attributes:
        shadow: Start with a shadow stage.
        steps: The challenger's canary traffic shares in percent, strictly increasing, the last
            100 (reaching it is the promotion).
        min_labelled: Labelled requests each predictor needs in a stage before a verdict.
        min_positives: Frauds among them (AUC-PR from a handful of positives means nothing).
        max_labelled: Labelled challenger requests after which a stage without a verdict fails.
        max_error_rate: Guardrail: rollback when the challenger's error rate is significantly above.
        max_p99_latency_ms: Guardrail: rollback when its p99 latency is significantly above.
        auc_pr_tolerance: How much lower the challenger's AUC-PR may be (non-inferiority margin).
        min_final_auc_pr_gain: The AUC-PR difference's lower bound must exceed this to take all
            traffic (0: significantly better; negative: non-inferior by that margin).
        max_fpr_increase: Rollback when the challenger's false-positive rate (of declines) is
            significantly more than this above the legacy one's.
        decision_confidence: Of the confidence sequences every decision reads: the chance that
            a stage's sequence covers the truth at every look at once.
    """

    shadow: bool = True
    steps: tuple[int, ...] = (5, 25, 50, 100)
    min_labelled: int = 2000
    min_positives: int = 20
    max_labelled: int = 50_000
    max_error_rate: float = 0.01
    max_p99_latency_ms: float = 250.0
    auc_pr_tolerance: float = 0.02
    min_final_auc_pr_gain: float = 0.0
    max_fpr_increase: float = 0.005
    decision_confidence: float = 0.95

    config_name: ClassVar[str] = "stage plan"
    error: ClassVar[type[ConfigError]] = InvalidPlan

    def problems(self) -> list[str]:
        """Every problem with the plan (empty when valid)."""
        found: list[str] = []
        if not isinstance(self.shadow, bool):
            found.append(f"shadow={self.shadow!r} must be true or false")
        steps = self.steps
        if not isinstance(steps, (tuple, list)) or not steps:
            found.append(f"steps {steps!r} must be a non-empty list of percentages ending at 100")
        else:
            if any(isinstance(s, bool) or not isinstance(s, int) or not 0 < s <= 100 for s in steps):
                found.append(f"steps {list(steps)}: each must be an integer percentage in (0, 100]")
            elif any(b <= a for a, b in itertools.pairwise(steps)):
                found.append(f"steps {list(steps)} must be strictly increasing")
            if steps[-1] != 100:
                found.append(f"the last step must be 100 (the promotion), got {steps[-1]!r}")
            if not self.shadow and len(steps) == 1:
                found.append("no stage before 100 %: enable shadow or add a canary step below 100")
        counts = {}
        for name in ("min_labelled", "min_positives", "max_labelled"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                found.append(f"{name}={value!r} must be a positive integer")
            else:
                counts[name] = value
        if len(counts) == 3:
            if counts["max_labelled"] < counts["min_labelled"]:
                found.append(f"max_labelled={self.max_labelled} is below min_labelled={self.min_labelled}")
            if counts["min_positives"] > counts["min_labelled"]:
                found.append(f"min_positives={self.min_positives} exceeds min_labelled={self.min_labelled}")
        for name, low, high in (
            ("max_error_rate", 0.0, 1.0),
            ("auc_pr_tolerance", 0.0, 1.0),
            ("max_fpr_increase", 0.0, 1.0),
            ("min_final_auc_pr_gain", -1.0, 1.0),
            ("decision_confidence", 0.5, 1.0),
        ):
            value = getattr(self, name)
            if not _is_number(value) or not low <= value < high:
                found.append(f"{name}={value!r} must be a number in [{low:g}, {high:g})")
        if not _is_number(self.max_p99_latency_ms) or not self.max_p99_latency_ms > 0:
            found.append(f"max_p99_latency_ms={self.max_p99_latency_ms!r} must be a positive number")
        margins_valid = not any(f.startswith(("auc_pr_tolerance=", "min_final_auc_pr_gain=")) for f in found)
        if margins_valid and self.min_final_auc_pr_gain < -self.auc_pr_tolerance:
            found.append(
                f"min_final_auc_pr_gain={self.min_final_auc_pr_gain} is laxer than the canary stages' "
                f"-auc_pr_tolerance={-self.auc_pr_tolerance}"
            )
        return found

    def stages(self) -> tuple[Stage, ...]:
        """Every stage in order, ending with :data:`PROMOTED`."""
        canaries = tuple(Stage("canary", s) for s in self.steps if s < 100)
        return (Stage("shadow"),) * self.shadow + canaries + (PROMOTED,)


@dataclass(frozen=True)
class Decision:
    """What to do at a stage, and why.

    Attributes:
        action: ``promote`` (go to ``next_stage``), ``hold`` (stay) or ``rollback``.
        stage: The stage the decision was made at.
        next_stage: The stage to be at afterwards (``stage`` for a hold).
        reasons: Human-readable reasons, each naming the numbers it rests on.
        comparison: The live comparison it rests on (JSON form).
        bounds: The confidence sequences it read (metric -> interval at this look;
            ``slower_than_limit`` is the share of requests slower than the latency limit).
    """

    action: str
    stage: Stage
    next_stage: Stage
    reasons: tuple[str, ...]
    comparison: Mapping[str, Any]
    bounds: Mapping[str, Interval] = field(default_factory=dict)


def decide(plan: StagePlan, stage: Stage, live: LiveComparison) -> Decision:
    """Promote, hold or roll back, from one stage's live comparison (see the module docstring's rules).

    Deterministic: the same plan, stage and comparison always give the same decision.

    Raises:
        InvalidPlan: the plan is invalid.
        ConfigError: ``stage`` is not a running stage of the plan.
    """
    plan.validate()
    stages = plan.stages()
    if stage not in stages[:-1]:
        raise ConfigError(
            f"stage {stage.name}: not a running stage of the plan ({', '.join(s.name for s in stages[:-1])}); "
            "a finished rollout has nothing to decide"
        )
    following = stages[stages.index(stage) + 1]
    ch, leg = live.challenger, live.legacy
    alpha = 1 - plan.decision_confidence
    planned_n = planned_sample_size(plan.min_labelled, plan.max_labelled)
    level = f"{plan.decision_confidence:.0%} confidence sequence"
    bounds: dict[str, Interval] = {}

    def verdict(action: str, reasons: list[str]) -> Decision:
        target = {"promote": following, "hold": stage, "rollback": ROLLED_BACK}[action]
        return Decision(action, stage, target, tuple(reasons), live.to_dict(), dict(bounds))

    breaches = _guardrail_breaches(plan, live, alpha, level, bounds)
    if breaches:
        return verdict("rollback", breaches)

    waiting = []
    for role, name in (("challenger", ch), ("legacy", leg)):
        counts = live.counts.get(name, {})
        labelled, positives = counts.get("labelled", 0), counts.get("positives", 0)
        if labelled < plan.min_labelled or positives < plan.min_positives:
            waiting.append(f"{role} {labelled}/{plan.min_labelled} labelled, {positives}/{plan.min_positives} frauds")
    auc, auc_error = live.difference.get("auc_pr"), live.standard_errors.get("auc_pr")
    if waiting or auc is None or auc_error is None:
        return verdict("hold", [f"waiting for labels: {'; '.join(waiting) or 'AUC-PR difference not defined yet'}"])

    auc_bound = mean_sequence(auc.value, auc_error.se, auc_error.n, alpha=alpha, planned_n=planned_n)
    bounds["auc_pr"] = auc_bound
    auc_text = (
        f"AUC-PR difference {auc.value:+.3f} ({level} {auc_bound.low:+.3f} to {auc_bound.high:+.3f} "
        f"at {auc_error.n} labelled)"
    )
    worse = []
    if auc_bound.high < -plan.auc_pr_tolerance:
        worse.append(f"challenger significantly worse: {auc_text} lies below -{plan.auc_pr_tolerance:g}")
    fpr, fpr_error = live.difference.get("fpr"), live.standard_errors.get("fpr")
    if fpr is not None and fpr_error is not None:
        fpr_bound = mean_sequence(fpr.value, fpr_error.se, fpr_error.n, alpha=alpha, planned_n=planned_n)
        bounds["fpr"] = fpr_bound
        if fpr_bound.low > plan.max_fpr_increase:
            worse.append(
                f"challenger declines too many legitimate transactions: false-positive rate "
                f"{fpr.value:+.2%} ({level} {fpr_bound.low:+.2%} to {fpr_bound.high:+.2%}) above the allowed "
                f"increase {plan.max_fpr_increase:.2%}"
            )
    if worse:
        return verdict("rollback", worse)

    bar = plan.min_final_auc_pr_gain if following == PROMOTED else -plan.auc_pr_tolerance
    what = "better enough to take all traffic" if following == PROMOTED else "not worse"
    if auc_bound.low > bar:
        return verdict("promote", [f"challenger {what}: {auc_text} is above {bar:+g}; next: {following.name}"])
    labelled = live.counts[ch]["labelled"]
    if labelled >= plan.max_labelled:
        return verdict(
            "rollback",
            [
                f"no verdict after {labelled} labelled challenger requests (max_labelled "
                f"{plan.max_labelled}): {auc_text} does not clear {bar:+g}"
            ],
        )
    return verdict(
        "hold",
        [
            f"inconclusive: {auc_text} does not clear {bar:+g} yet; collecting labels "
            f"({labelled} of at most {plan.max_labelled})"
        ],
    )


def _guardrail_breaches(
    plan: StagePlan, live: LiveComparison, alpha: float, level: str, bounds: dict[str, Interval]
) -> list[str]:
    """The guardrails the challenger significantly breaks (their sequences are added to ``bounds``)."""
    ch = live.challenger
    counts = live.counts.get(ch, {})
    requests, errors = int(counts.get("requests", 0)), int(counts.get("errors", 0))
    if not requests:
        return []
    breaches = []
    rate = bounds["error_rate"] = proportion_sequence(errors, requests, alpha=alpha)
    if rate.low > plan.max_error_rate:
        breaches.append(
            f"guardrail: challenger error rate {rate.value:.2%} ({errors} of {requests}; {level} from "
            f"{rate.low:.2%}) is above the limit {plan.max_error_rate:.2%}"
        )
    slow = live.slower_than(ch, plan.max_p99_latency_ms)
    if slow is not None:
        count, threshold = slow
        share = bounds["slower_than_limit"] = proportion_sequence(count, requests, alpha=alpha)
        if share.low > 1 - _LATENCY_QUANTILE:
            p99 = live.metrics.get(ch, {}).get("p99_latency_ms")
            measured = "" if p99 is None else f" {p99.value:.1f} ms"
            breaches.append(
                f"guardrail: challenger p99 latency{measured} is above the limit {plan.max_p99_latency_ms:g} ms: "
                f"{count} of {requests} requests ({share.value:.2%}) slower than {threshold:g} ms, {level} "
                f"from {share.low:.2%}, above the {1 - _LATENCY_QUANTILE:.0%} a p99 within the limit allows"
            )
    return breaches


def spec_for(stage: Stage, base: DeploymentSpec, legacy_uri: str, challenger_uri: str) -> DeploymentSpec:
    """The deployment for a stage, keeping ``base``'s name, namespace, protocol and labels.

    Predictors are named :data:`LEGACY` and :data:`CHALLENGER` (replicas from ``base``'s
    predictors of those names, else 1): shadow = legacy 100 % + challenger shadow; canary k =
    legacy 100-k, challenger k; promoted = challenger alone; rolled back = legacy alone.

    Raises:
        InvalidSpec: the result breaks a deployment rule (e.g. names too long for ``base.name``).
    """
    replicas = {p.name: p.replicas for p in base.predictors}

    def predictor(name: str, uri: str, traffic: int, shadow: bool = False) -> PredictorSpec:
        return PredictorSpec(name, uri, traffic, shadow=shadow, replicas=replicas.get(name, 1))

    predictors: tuple[PredictorSpec, ...]
    if stage.kind == "shadow":
        predictors = (predictor(LEGACY, legacy_uri, 100), predictor(CHALLENGER, challenger_uri, 0, shadow=True))
    elif stage.kind == "canary":
        predictors = (
            predictor(LEGACY, legacy_uri, 100 - stage.percent),
            predictor(CHALLENGER, challenger_uri, stage.percent),
        )
    elif stage == PROMOTED:
        predictors = (predictor(CHALLENGER, challenger_uri, 100),)
    elif stage == ROLLED_BACK:
        predictors = (predictor(LEGACY, legacy_uri, 100),)
    else:
        raise ConfigError(f"stage {stage!r}: unknown kind; expected shadow, canary, promoted or rolled_back")
    return dataclasses.replace(base, predictors=predictors).validate()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
