"""The retrain policy: whether a drift verdict warrants a retrain, and which kind.

Drift alone is a poor reason to retrain: a model often keeps its accuracy on data that moved (the
e-commerce model of autumn scores as well on summer weeks, where seven of eleven features drift).
:func:`decide_retrain` reads a verdict (:func:`~kfp_mlops.drift.check.check_drift`) and retrains
only for one of these **rules** (their names are machine-readable; every one that fires is listed,
the first decides):

1. ``realized_performance_drop``: the window's labels show the policy's metric (accuracy or ROC
   AUC) more than ``tolerance`` below the reference performance (the store version's held-out
   evaluation, or labelled reference rows), on at least ``min_labelled_rows`` labelled rows;
2. ``estimated_performance_drop``: without (enough) labels, the label-free estimate
   (:mod:`~kfp_mlops.drift.performance_estimation`) is more than ``tolerance`` below it. Labels,
   when there are enough, overrule the estimate: it cannot see concept drift, they can;
3. ``severe_feature_drift``: the features' (weighted) mean PSI reaches ``severe_psi``, even when
   performance looks unchanged: a shift that large changes what the model should have learnt,
   which an estimate cannot see either. The mean, not the share of drifted features: a season
   change moves most features past the drift thresholds whether it matters or not (the autumn
   model's summer weeks and holiday weeks both drift in 55-64 % of the features, and only the
   holidays cost accuracy). On the e-commerce year the mean PSI of a week against the profile of
   any season is 0.36-0.78 across the start or end of the holidays and at most 0.28 across any
   other season change (within a season: at most 0.04); the default 0.33 lies between.

Otherwise nothing is retrained: ``drift_without_drop`` (the verdict drifted, mildly, and
performance held or is unknown: the decision is logged with the verdict) or ``no_drift``.

The **kind** of a retrain follows these rules, the first that applies:

* ``full`` for ``severe_drift`` (a new regime: the champion's state is of the old one), a
  ``large_drop`` (beyond ``large_drop``), ``incremental_disabled`` (the policy allows no
  incremental updates), ``incremental_unavailable`` (the estimator has no incremental mechanism:
  :func:`kfp_mlops.modeling.retraining.incremental_unavailable`), or ``full_retrain_due``: the
  champion is the ``full_every``-th incremental update in a row (its metadata counts them:
  :func:`kfp_mlops.modeling.retraining.incremental_updates`), so accumulated bias is corrected on
  a schedule that needs no state besides the model;
* ``incremental`` otherwise (``moderate_drop``): a moderate drop without severe drift.

A full retrain reads ``history_windows`` recent windows beside the current one, an incremental
update ``incremental_history_windows`` (:mod:`kfp_mlops.modeling.retraining_data`). History from
before a change of regime teaches the old regime: :func:`same_regime_history` drops the history
windows that drift severely (by the same rule) from the current window.

The decision is pure (a verdict and two facts about the champion in, a :class:`RetrainDecision`
out); :func:`~kfp_mlops.drift.run.run_drift` adds it to the verdict as ``retrain``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.configs import Config
from kfp_mlops.drift.check import check_drift
from kfp_mlops.drift.config import DriftConfig
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.retraining import FULL, INCREMENTAL

if TYPE_CHECKING:
    from kfp_mlops.modeling.retraining_data import RetrainingData

METRICS = ("accuracy", "roc_auc")
REALIZED_DROP = "realized_performance_drop"
ESTIMATED_DROP = "estimated_performance_drop"
SEVERE_DRIFT = "severe_feature_drift"
DRIFT_WITHOUT_DROP = "drift_without_drop"
NO_DRIFT = "no_drift"
RETRAIN, LOG, NONE = "retrain", "log", "none"


@dataclass(frozen=True)
class RetrainPolicy(Config):
    """When a verdict warrants a retrain, and which kind (see the module docstring).

    Attributes:
        metric: ``accuracy`` or ``roc_auc``: the performance compared with the reference.
        tolerance: A drop of the metric below the reference by more than this warrants a retrain.
        large_drop: A drop by more than this asks for a full retrain (>= ``tolerance``).
        use_estimate: Whether the label-free estimate may warrant a retrain when labels are too few.
        min_labelled_rows: Labelled rows from which the realized metric is judged (and overrules the estimate).
        severe_psi: Drift is severe when the features' (weighted) mean PSI reaches this.
        incremental: Whether incremental updates are allowed at all.
        full_every: After this many incremental updates in a row, the next retrain is full.
        history_windows: Recent windows a full retrain reads beside the current one.
        incremental_history_windows: Recent windows an incremental update reads beside the current one.
    """

    config_name = "retrain policy"

    metric: str = "accuracy"
    tolerance: float = 0.03
    large_drop: float = 0.10
    use_estimate: bool = True
    min_labelled_rows: int = 500
    severe_psi: float = 0.33
    incremental: bool = True
    full_every: int = 4
    history_windows: int = 8
    incremental_history_windows: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def problems(self) -> list[str]:
        """Every field out of its range, named with its value."""
        found = []
        if self.metric not in METRICS:
            found.append(f"metric={self.metric!r}: expected one of {', '.join(METRICS)}")
        for name in ("tolerance", "large_drop"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value <= 1:
                found.append(f"{name}={value!r}: expected a number in (0, 1]")
        if _is_number(self.tolerance) and _is_number(self.large_drop) and self.large_drop < self.tolerance:
            found.append(f"large_drop={self.large_drop!r}: expected at least tolerance ({self.tolerance!r})")
        if not _is_number(self.severe_psi) or self.severe_psi <= 0:
            found.append(f"severe_psi={self.severe_psi!r}: expected a number > 0")
        for name in ("use_estimate", "incremental"):
            if not isinstance(getattr(self, name), bool):
                found.append(f"{name}={getattr(self, name)!r}: expected true or false")
        for name, least in (
            ("min_labelled_rows", 1),
            ("full_every", 1),
            ("history_windows", 0),
            ("incremental_history_windows", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                found.append(f"{name}={value!r}: expected a whole number >= {least}")
        return found

    def history_for(self, kind: str) -> int:
        """How many recent windows a retrain of ``kind`` (``full`` or ``incremental``) reads beside the current one."""
        return self.history_windows if kind == FULL else self.incremental_history_windows


@dataclass(frozen=True)
class RetrainDecision:
    """What the policy decided about one verdict, and why.

    Attributes:
        action: ``retrain``, ``log`` (drift without a performance drop) or ``none``.
        rule: The rule that decided (``realized_performance_drop``, ``estimated_performance_drop``,
            ``severe_feature_drift``, ``drift_without_drop``, ``no_drift``).
        reason: The same, for people.
        fired: Every retrain rule that fired (``rule`` and ``reason`` each), the deciding one first.
        kind: ``incremental`` or ``full`` (None without a retrain).
        kind_rule: Why that kind (``severe_drift``, ``large_drop``, ``incremental_disabled``,
            ``incremental_unavailable``, ``full_retrain_due``, ``moderate_drop``).
        kind_reason: The same, for people.
        history_windows: Recent windows the retrain reads beside the current one.
        evidence: The numbers behind it: the metric, the reference, realized and estimated values,
            the drop and what it was judged on, the features' mean PSI and the largest ones.
    """

    action: str
    rule: str
    reason: str
    fired: tuple[dict[str, str], ...] = ()
    kind: str | None = None
    kind_rule: str | None = None
    kind_reason: str | None = None
    history_windows: int = 0
    evidence: Mapping[str, Any] | None = None

    @property
    def retrain(self) -> bool:
        """Whether a retrain is warranted."""
        return self.action == RETRAIN

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able decision (the verdict's ``retrain``)."""
        return {**asdict(self), "fired": [dict(f) for f in self.fired], "retrain": self.retrain}


def decide_retrain(
    verdict: Mapping[str, Any],
    policy: RetrainPolicy | None = None,
    *,
    incremental_unavailable: str | None = None,
    incremental_updates: int = 0,
) -> RetrainDecision:
    """Decides whether a verdict warrants a retrain, by which rule, and of which kind.

    Args:
        verdict: A drift verdict (its ``features``, ``config``, ``drift``, ``reasons``,
            ``performance``, ``performance_estimate`` and ``reference_performance``).
        policy: The policy (default :class:`RetrainPolicy`).
        incremental_unavailable: Why the champion cannot be updated incrementally (None: it can).
        incremental_updates: Incremental updates in a row that made the champion.

    Returns:
        The decision; see :class:`RetrainDecision`.
    """
    policy = policy or RetrainPolicy()
    severity = drift_severity(verdict, policy)
    performance = _judge_performance(verdict, policy)
    evidence = {**performance, "mean_psi": severity["mean_psi"], "largest_psi": severity["largest"]}
    fired = []
    drop = performance["drop"]
    if drop is not None and drop > policy.tolerance:
        rule = REALIZED_DROP if performance["judged_on"] == "realized" else ESTIMATED_DROP
        fired.append(
            {"rule": rule, "reason": f"{_describe(performance)} is {drop:.3f} below {_reference(performance)}"}
        )
    if severity["severe"]:
        fired.append({"rule": SEVERE_DRIFT, "reason": severity["reason"]})
    if fired:
        kind, kind_rule, kind_reason = _kind(policy, severity, drop, incremental_unavailable, incremental_updates)
        return RetrainDecision(
            action=RETRAIN,
            rule=fired[0]["rule"],
            reason=fired[0]["reason"],
            fired=tuple(fired),
            kind=kind,
            kind_rule=kind_rule,
            kind_reason=kind_reason,
            history_windows=policy.history_for(kind),
            evidence=evidence,
        )
    held = _held(performance, policy)
    if verdict.get("drift"):
        reason = f"drift ({'; '.join(verdict.get('reasons', []))}) is not severe and {held}: logged, not retrained"
        return RetrainDecision(action=LOG, rule=DRIFT_WITHOUT_DROP, reason=reason, evidence=evidence)
    return RetrainDecision(action=NONE, rule=NO_DRIFT, reason=f"no drift, and {held}", evidence=evidence)


def drift_severity(verdict: Mapping[str, Any], policy: RetrainPolicy) -> dict[str, Any]:
    """How far the features moved: their (weighted) mean PSI, and whether it reaches ``severe_psi``.

    Returns:
        ``severe``, ``mean_psi``, ``largest`` (the three largest PSIs by feature) and ``reason``.
    """
    config = DriftConfig.from_dict(verdict["config"])  # the feature weights the verdict used
    psis = {name: float(scores["psi"]) for name, scores in verdict["features"].items()}
    weights = {name: config.for_feature(name)["weight"] for name in psis}
    mean_psi = sum(weights[name] * psi for name, psi in psis.items()) / sum(weights.values())
    largest = dict(sorted(psis.items(), key=lambda item: -item[1])[:3])
    severe = mean_psi >= policy.severe_psi
    return {
        "severe": severe,
        "mean_psi": mean_psi,
        "largest": largest,
        "reason": f"the features' mean PSI {mean_psi:.3f} {'>=' if severe else '<'} {policy.severe_psi} "
        f"(largest: {', '.join(f'{name} {psi:.2f}' for name, psi in largest.items())})",
    }


def same_regime_history(
    data: RetrainingData, policy: RetrainPolicy | None = None, *, config: DriftConfig | None = None
) -> tuple[RetrainingData, list[dict[str, str]]]:
    """Leaves out the history windows that drift severely from the current window (another regime).

    Each history window is checked against the current window's profile (:func:`check_drift` with
    ``config``); a window whose drift is severe by the policy's rule (:func:`drift_severity`) was
    drawn before a change of regime and would teach the old one.

    Returns:
        The data with the kept history, and every dropped window's ``uri`` and ``reason``.

    Raises:
        DataError: a history window cannot be compared (a feature with every value missing).
    """
    policy = policy or RetrainPolicy()
    profile = build_profile(data.window.rows, data.feature_kinds, data.label)
    kept, dropped = [], []
    for window in data.history:
        verdict = check_drift(profile, window.rows, config=config, where=window.uri, profile_where=data.window.uri)
        severity = drift_severity(verdict, policy)
        if severity["severe"]:
            dropped.append(
                {"uri": window.uri, "reason": f"another regime than {data.window.uri}: {severity['reason']}"}
            )
        else:
            kept.append(window.uri)
    return data.keeping(kept), dropped


def _judge_performance(verdict: Mapping[str, Any], policy: RetrainPolicy) -> dict[str, Any]:
    """The metric's reference, realized and estimated values, and the drop judged on labels or the estimate."""
    metric = policy.metric
    reference = (verdict.get("reference_performance") or {}).get(metric)
    performance = verdict.get("performance") or {}
    labelled = int(performance.get("labelled_rows", 0))
    realized = performance.get(metric)
    estimate = verdict.get("performance_estimate") or {}
    estimated = estimate.get(metric) if estimate.get("available") else None
    found: dict[str, Any] = {
        "metric": metric,
        "reference": reference,
        "realized": realized,
        "labelled_rows": labelled,
        "estimate": estimated["estimate"] if estimated else None,
        "estimate_interval": [estimated["low"], estimated["high"]] if estimated else None,
        "judged_on": None,
        "drop": None,
        "unjudged": None,
    }
    if reference is None:
        found["unjudged"] = (
            f"no reference {metric} to compare with (a store version's evaluation.json, or labelled reference rows)"
        )
    elif realized is not None and labelled >= policy.min_labelled_rows:
        found.update(judged_on="realized", drop=reference - realized)
    elif estimated and policy.use_estimate:
        found.update(judged_on="estimate", drop=reference - estimated["estimate"])
    else:
        labels = f"{labelled} labelled rows (< {policy.min_labelled_rows})" if realized is not None else "no labels"
        why = (
            "the policy does not use the estimate"
            if not policy.use_estimate
            else f"no label-free estimate of {metric} ({estimate.get('reason', 'the window has no model')})"
        )
        found["unjudged"] = f"{labels} and {why}"
    return found


def _describe(performance: Mapping[str, Any]) -> str:
    """``realized accuracy 0.667 on 2000 labelled rows`` or ``estimated accuracy 0.715 (95 % interval ...)``."""
    metric = performance["metric"]
    if performance["judged_on"] == "realized":
        return f"realized {metric} {performance['realized']:.3f} on {performance['labelled_rows']} labelled rows"
    low, high = performance["estimate_interval"]
    return f"estimated {metric} {performance['estimate']:.3f} (label-free, interval {low:.3f}-{high:.3f})"


def _reference(performance: Mapping[str, Any]) -> str:
    return f"the reference {performance['reference']:.3f}"


def _held(performance: Mapping[str, Any], policy: RetrainPolicy) -> str:
    """How performance fared without firing a rule, for the reason of a decision not to retrain."""
    if performance["drop"] is None:
        return f"performance is unknown ({performance['unjudged']})"
    return f"{_describe(performance)} is within {policy.tolerance} of {_reference(performance)}"


def _kind(
    policy: RetrainPolicy,
    severity: Mapping[str, Any],
    drop: float | None,
    incremental_unavailable: str | None,
    incremental_updates: int,
) -> tuple[str, str, str]:
    """The retrain's kind, the rule that chose it, and why."""
    if severity["severe"]:
        return FULL, "severe_drift", "severe drift: a new regime, which the champion's state does not describe"
    if drop is not None and drop > policy.large_drop:
        return FULL, "large_drop", f"the drop {drop:.3f} exceeds large_drop {policy.large_drop}"
    if not policy.incremental:
        return FULL, "incremental_disabled", "the policy allows no incremental updates"
    if incremental_unavailable:
        return FULL, "incremental_unavailable", incremental_unavailable
    if incremental_updates >= policy.full_every:
        return (
            FULL,
            "full_retrain_due",
            f"the champion is the {incremental_updates}th incremental update in a row (full_every {policy.full_every})",
        )
    return INCREMENTAL, "moderate_drop", "a moderate drop without severe drift: the champion is updated on recent rows"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
