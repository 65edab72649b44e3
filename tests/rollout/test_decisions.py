"""Safe rollout: offline and live comparisons, intervals, the stage plan, decisions, specs, state.

The rollout stories run end to end on simulated traffic: fraud.generate transactions are scored
by real fitted models, logged through the prediction log, labelled late, joined, compared and
decided on, tick by tick, with the state moved by compare-and-swap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve
from threadpoolctl import threadpool_limits

from kfp_mlops.components.train.logic import fit_model
from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError
from kfp_mlops.demos import fraud
from kfp_mlops.rollout import decisions as rollout
from kfp_mlops.rollout.decisions import Interval, LiveComparison, Stage, StagePlan
from kfp_mlops.serving import prediction_log as plog
from kfp_mlops.serving.spec import DeploymentSpec, PredictorSpec

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc)
TICK = timedelta(hours=6)
# Small enough to run in seconds; the statistics are the same as with the defaults.
PLAN = StagePlan(
    steps=(20, 50, 100), min_labelled=2000, min_positives=10, max_labelled=20_000, max_p99_latency_ms=200.0
)
LIVE = rollout.LiveConfig(bootstrap=200)


@dataclass(frozen=True)
class Scorer:
    """A fitted model, its features and its decline threshold (1 % of legitimate training rows above)."""

    model: Any
    features: tuple[str, ...]
    threshold: float

    def scores(self, rows: pd.DataFrame) -> np.ndarray:
        with threadpool_limits(1):
            return rollout.positive_scores(self.model, rows[list(self.features)])


@pytest.fixture(scope="module")
def scorers() -> dict[str, Scorer]:
    train = fraud.generate(
        40_000, seed=11, start=T0 - timedelta(days=30), label_delay=timedelta(days=1), span=timedelta(days=20)
    )
    legit = train[fraud.LABEL].to_numpy() == 0
    found = {}
    # One thread: OpenMP threads oversubscribe a shared 2-core machine and slow the fit down.
    with threadpool_limits(1):
        for name, estimator, features in (
            ("legacy", "logistic_regression", fraud.LEGACY_FEATURES),
            ("better", "gradient_boosting", fraud.FEATURES),
            ("worse", "logistic_regression", ("hour",)),
        ):
            model, _ = fit_model(train[[*features, fraud.LABEL]], fraud.LABEL, estimator, {}, seed=0)
            scores = rollout.positive_scores(model, train[list(features)])
            found[name] = Scorer(model, tuple(features), float(np.quantile(scores[legit], 0.99)))
    return found


# --- offline ------------------------------------------------------------------------------------


def test_gradient_boosting_beats_logistic_legacy_offline(scorers: dict[str, Scorer]) -> None:
    holdout = fraud.generate(30_000, seed=12, start=T0, label_delay=timedelta(days=1))
    models = {name: (s.model, s.features) for name, s in scorers.items()}
    result = rollout.compare_offline(models, holdout)

    legacy, better = result["legacy"], result["better"]
    assert better["auc_pr"] > legacy["auc_pr"] + 0.15
    assert better["recall_at_fpr"] > legacy["recall_at_fpr"]
    assert better["roc_auc"] > legacy["roc_auc"]
    assert better["brier"] < legacy["brier"]
    assert legacy["auc_pr"] > 3 * legacy["positive_rate"]  # the legacy model is useful, just weaker
    assert result["worse"]["auc_pr"] < legacy["auc_pr"]
    for metrics in result.values():
        assert metrics["ece"] < 0.01 and metrics["mean_score"] == pytest.approx(metrics["positive_rate"], abs=0.003)
        assert metrics["rows"] == 30_000


def test_offline_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(5_000) < 0.05).astype(int)
    scores = np.round(1 / (1 + np.exp(-(rng.normal(0, 1, 5_000) + 2 * y - 3))), 2)  # rounded: ties

    class Fixed:
        classes_ = np.array(["0", "1"])

        def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
            return np.column_stack([1 - rows["s"], rows["s"]])

    result = rollout.compare_offline({"m": (Fixed(), ["s"])}, pd.DataFrame({"s": scores, "y": y}), label="y")["m"]
    fpr, tpr, _ = roc_curve(y, scores)
    expected = {
        "auc_pr": average_precision_score(y, scores),
        "roc_auc": roc_auc_score(y, scores),
        "recall_at_fpr": tpr[fpr <= 0.01].max(),
        "brier": brier_score_loss(y, scores),
    }
    assert {k: result[k] for k in expected} == pytest.approx(expected)


# --- live comparison and its intervals --------------------------------------------------------


def synthetic_log(
    rng: np.random.Generator,
    n: int,
    *,
    paired: bool,
    fraud_rate: float = 0.05,
    separation: tuple[float, float] = (1.5, 2.5),
) -> pd.DataFrame:
    """A joined log without the storage round trip: two predictors, scores from a known model."""
    frames = []
    ids = [f"r{i}" for i in range(n)]
    y = (rng.random(n) < fraud_rate).astype(float)
    shared = rng.normal(0, 1, n)  # the part of the signal both models see
    for index, (name, strength) in enumerate(zip((rollout.LEGACY, rollout.CHALLENGER), separation)):
        rows = ids if paired else [f"{name}-{i}" for i in range(n)]
        labels = y if paired else (rng.random(n) < fraud_rate).astype(float)
        noise = 0.9 * shared + 0.45 * rng.normal(0, 1, n) if paired else rng.normal(0, 1, n)
        score = 1 / (1 + np.exp(-(strength * labels + noise - 3.5)))
        frames.append(
            pd.DataFrame(
                {
                    "request_id": rows,
                    "predictor": name,
                    "model_version": "v1",
                    "timestamp": T0,
                    "features": [{"amount": 10.0 + i % 7} for i in range(n)],
                    "score": score,
                    "decision": np.where(score > 0.25, "decline", "approve"),
                    "latency_ms": rng.lognormal(np.log(10 + 5 * index), 0.4, n),
                    "status": "ok",
                    "error": None,
                    "label": labels,
                    "labelled_at": T0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_live_comparison_pairs_shadow_traffic_only() -> None:
    rng = np.random.default_rng(1)
    shadow = rollout.compare_live(synthetic_log(rng, 3_000, paired=True), config=LIVE)
    canary = rollout.compare_live(synthetic_log(rng, 3_000, paired=False), config=LIVE)

    assert shadow.paired and not canary.paired
    for comparison in (shadow, canary):
        for name in (rollout.LEGACY, rollout.CHALLENGER):
            assert set(comparison.metrics[name]) == {
                "auc_pr",
                "recall_at_fpr",
                "brier",
                "ece",
                "fpr",
                "approval_rate",
                "error_rate",
                "p99_latency_ms",
                "fraud_amount_caught_share",
            }
            for interval in comparison.metrics[name].values():
                assert interval.low <= interval.value <= interval.high
        assert set(comparison.difference) == set(comparison.metrics[rollout.LEGACY])
        assert comparison.difference["auc_pr"].value > 0  # the challenger separates better
    # Same requests scored by both: the paired interval is much tighter.
    shadow_width, canary_width = (c.difference["auc_pr"].high - c.difference["auc_pr"].low for c in (shadow, canary))
    assert shadow_width < 0.8 * canary_width
    assert shadow.counts[rollout.CHALLENGER]["labelled"] == 3_000
    assert LiveComparison.from_dict(shadow.to_dict()) == shadow

    # Deterministic: the same log gives the same intervals.
    again = rollout.compare_live(synthetic_log(np.random.default_rng(1), 3_000, paired=True), config=LIVE)
    assert again == shadow


def test_live_comparison_without_labels_still_has_guardrail_metrics() -> None:
    log = synthetic_log(np.random.default_rng(2), 500, paired=True)
    log["label"] = np.nan
    log.loc[log["predictor"] == rollout.CHALLENGER, "status"] = np.where(np.arange(500) % 10 == 0, "error", "ok")
    comparison = rollout.compare_live(log, config=LIVE)

    mine = comparison.metrics[rollout.CHALLENGER]
    assert set(mine) == {"error_rate", "p99_latency_ms", "approval_rate"}
    assert mine["error_rate"].value == pytest.approx(0.1)
    assert comparison.counts[rollout.CHALLENGER] == pytest.approx(
        {
            "requests": 500,
            "errors": 50,
            "approved": mine["approval_rate"].value * 450,
            "labelled": 0,
            "positives": 0,
            "false_positives": 0,
            "fraud_amount": 0.0,
            "fraud_amount_caught": 0.0,
        }
    )


def test_an_empty_stage_holds(tmp_path: Path) -> None:
    comparison = rollout.compare_live(plog.join(str(tmp_path / "nothing-yet"), T0), config=LIVE)
    assert comparison.metrics == {rollout.LEGACY: {}, rollout.CHALLENGER: {}} and comparison.difference == {}
    decision = rollout.decide(StagePlan(), Stage("shadow"), comparison)
    assert decision.action == "hold" and "challenger 0/2000 labelled" in decision.reasons[0]


def test_invalid_live_config() -> None:
    with pytest.raises(ConfigError, match="confidence=1.5 must be between 0 and 1; bootstrap=10"):
        rollout.compare_live(pd.DataFrame(), config=rollout.LiveConfig(confidence=1.5, bootstrap=10))


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


def test_bootstrap_intervals_cover_the_true_difference() -> None:
    # The population values, from one very large sample of the same model.
    population = synthetic_log(np.random.default_rng(99), 200_000, paired=True)
    truth = {}
    for name in (rollout.LEGACY, rollout.CHALLENGER):
        rows = population[population["predictor"] == name]
        truth[name] = average_precision_score(rows["label"], rows["score"])
    true_difference = truth[rollout.CHALLENGER] - truth[rollout.LEGACY]

    rng = np.random.default_rng(4)
    hits = {"difference": 0, "challenger": 0}
    runs = 30
    for _ in range(runs):
        comparison = rollout.compare_live(synthetic_log(rng, 1_000, paired=True), config=LIVE)
        d, c = comparison.difference["auc_pr"], comparison.metrics[rollout.CHALLENGER]["auc_pr"]
        hits["difference"] += d.low <= true_difference <= d.high
        hits["challenger"] += c.low <= truth[rollout.CHALLENGER] <= c.high
    # Nominal 95 % (about 94 % measured over 120 runs); loose bounds for 30 runs.
    assert hits["difference"] / runs >= 0.8
    assert hits["challenger"] / runs >= 0.8


# --- plan, stages, specs ------------------------------------------------------------------------


def test_default_plan_stages() -> None:
    plan = StagePlan().validate()
    assert [s.name for s in plan.stages()] == ["shadow", "canary-5", "canary-25", "canary-50", "promoted"]
    assert [s.name for s in replace(plan, shadow=False).stages()] == ["canary-5", "canary-25", "canary-50", "promoted"]
    assert StagePlan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        ({"steps": (5, 25, 20, 100)}, ["must be strictly increasing"]),
        ({"steps": (5, 25, 50)}, ["the last step must be 100 (the promotion), got 50"]),
        ({"steps": (0, 50, 100)}, ["each must be an integer percentage in (0, 100]"]),
        ({"steps": (50, 150)}, ["(0, 100]", "the last step must be 100 (the promotion), got 150"]),
        ({"steps": ()}, ["non-empty list"]),
        ({"steps": (100,), "shadow": False}, ["no stage before 100 %"]),
        (
            {"min_labelled": 0, "max_error_rate": 1.5},
            ["min_labelled=0 must be a positive integer", "max_error_rate=1.5 must be a number in [0, 1)"],
        ),
        ({"max_labelled": 100}, ["max_labelled=100 is below min_labelled=2000"]),
        ({"min_positives": 5000}, ["min_positives=5000 exceeds min_labelled=2000"]),
        ({"max_p99_latency_ms": 0}, ["max_p99_latency_ms=0 must be a positive number"]),
        ({"auc_pr_tolerance": -0.1}, ["auc_pr_tolerance=-0.1"]),
        ({"min_final_auc_pr_gain": -0.5}, ["laxer than the canary stages"]),
    ],
)
def test_invalid_plans_list_every_problem(changes: dict, problems: list[str]) -> None:
    plan = replace(StagePlan(), **changes)
    with pytest.raises(rollout.InvalidPlan, match="stage plan is invalid, traffic left as it is") as caught:
        plan.validate()
    for problem in problems:
        assert problem in str(caught.value)
    assert len(plan.problems()) == len(problems)


def test_plan_from_dict_refuses_unknown_keys() -> None:
    with pytest.raises(rollout.InvalidPlan, match="unknown key\\(s\\) stepz"):
        StagePlan.from_dict({"stepz": [5, 100]})
    with pytest.raises(rollout.InvalidPlan, match="strictly increasing"):
        StagePlan.from_dict({"steps": [50, 25, 100]})


def test_spec_for_every_stage_is_valid() -> None:
    base = DeploymentSpec(
        "fraud", (PredictorSpec("legacy", "gs://m/old", 100, replicas=3),), namespace="risk", labels={"team": "fraud"}
    )
    spec = {
        s.name: rollout.spec_for(s, base, "gs://m/old", "gs://m/new")
        for s in (*StagePlan().stages(), rollout.ROLLED_BACK)
    }

    shares = {name: [(p.name, p.traffic, p.shadow) for p in s.predictors] for name, s in spec.items()}
    assert shares == {
        "shadow": [("legacy", 100, False), ("challenger", 0, True)],
        "canary-5": [("legacy", 95, False), ("challenger", 5, False)],
        "canary-25": [("legacy", 75, False), ("challenger", 25, False)],
        "canary-50": [("legacy", 50, False), ("challenger", 50, False)],
        "promoted": [("challenger", 100, False)],
        "rolled_back": [("legacy", 100, False)],
    }
    for s in spec.values():
        assert s.validate() is s
        assert (s.name, s.namespace, dict(s.labels)) == ("fraud", "risk", {"team": "fraud"})
    assert spec["canary-5"].predictors[0].replicas == 3 and spec["canary-5"].predictors[1].replicas == 1
    assert spec["promoted"].predictors[0].model_uri == "gs://m/new"
    assert spec["rolled_back"].predictors[0].model_uri == "gs://m/old"


# --- decisions on hand-made comparisons --------------------------------------------------------


def live(
    *,
    labelled: int = 5_000,
    positives: int = 50,
    auc: tuple[float, float, float] | None = (0.1, 0.05, 0.15),
    errors: tuple[float, float, float] = (0.0, 0.0, 0.001),
    p99: tuple[float, float, float] = (20, 18, 25),
    fpr: tuple[float, float, float] = (0.0, -0.002, 0.002),
) -> LiveComparison:
    counts = {"requests": labelled + 100, "errors": 0, "labelled": labelled, "positives": positives}
    guardrails = {"error_rate": Interval(*errors), "p99_latency_ms": Interval(*p99)}
    difference = {"fpr": Interval(*fpr)} | ({"auc_pr": Interval(*auc)} if auc else {})
    return LiveComparison(
        rollout.LEGACY,
        rollout.CHALLENGER,
        True,
        0.95,
        {rollout.LEGACY: counts, rollout.CHALLENGER: counts},
        {rollout.LEGACY: guardrails, rollout.CHALLENGER: guardrails},
        difference,
    )


SHADOW, CANARY_5, CANARY_50 = Stage("shadow"), Stage("canary", 5), Stage("canary", 50)


@pytest.mark.parametrize(
    ("stage", "comparison", "action", "next_stage", "reason"),
    [
        (SHADOW, live(), "promote", CANARY_5, "challenger not worse: AUC-PR difference +0.100"),
        (CANARY_50, live(), "promote", rollout.PROMOTED, "better enough to take all traffic"),
        # Guardrails act before any label arrived.
        (
            SHADOW,
            live(labelled=0, positives=0, auc=None, errors=(0.05, 0.03, 0.07)),
            "rollback",
            rollout.ROLLED_BACK,
            "guardrail: challenger error rate 5.00%",
        ),
        (
            CANARY_5,
            live(labelled=10, p99=(900, 400, 1500)),
            "rollback",
            rollout.ROLLED_BACK,
            "p99 latency 900.0 ms (95% CI from 400.0 ms) is above the limit 250 ms",
        ),
        # Above the limit, but not significantly: no rollback on noise.
        (CANARY_5, live(labelled=10, errors=(0.02, 0.005, 0.04)), "hold", CANARY_5, "waiting for labels"),
        (SHADOW, live(labelled=1_999), "hold", SHADOW, "challenger 1999/2000 labelled"),
        (SHADOW, live(positives=19), "hold", SHADOW, "19/20 frauds"),
        (CANARY_5, live(auc=(-0.1, -0.15, -0.05)), "rollback", rollout.ROLLED_BACK, "significantly worse"),
        (CANARY_5, live(fpr=(0.02, 0.01, 0.03)), "rollback", rollout.ROLLED_BACK, "too many legitimate"),
        (CANARY_5, live(auc=(-0.01, -0.04, 0.02)), "hold", CANARY_5, "inconclusive"),
        (CANARY_5, live(auc=(0.0, -0.015, 0.015)), "promote", Stage("canary", 25), "not worse"),
        # Non-inferior is enough for a canary step, not for all traffic.
        (CANARY_50, live(auc=(0.0, -0.015, 0.015)), "hold", CANARY_50, "does not clear +0 yet"),
        (
            CANARY_50,
            live(labelled=50_000, auc=(0.0, -0.015, 0.015)),
            "rollback",
            rollout.ROLLED_BACK,
            "no verdict after 50000 labelled challenger requests",
        ),
    ],
)
def test_decide(stage: Stage, comparison: LiveComparison, action: str, next_stage: Stage, reason: str) -> None:
    decision = rollout.decide(StagePlan(), stage, comparison)
    assert (decision.action, decision.next_stage) == (action, next_stage)
    assert any(reason in r for r in decision.reasons), decision.reasons
    assert decision == rollout.decide(StagePlan(), stage, comparison)  # deterministic


def test_non_inferiority_plan_promotes_an_equal_challenger() -> None:
    plan = replace(StagePlan(), min_final_auc_pr_gain=-0.02)
    assert rollout.decide(plan, CANARY_50, live(auc=(0.0, -0.015, 0.015))).action == "promote"


def test_decide_refuses_finished_or_foreign_stages() -> None:
    with pytest.raises(ConfigError, match="a finished rollout has nothing to decide"):
        rollout.decide(StagePlan(), rollout.PROMOTED, live())
    with pytest.raises(ConfigError, match="stage canary-10: not a running stage"):
        rollout.decide(StagePlan(), Stage("canary", 10), live())
    with pytest.raises(rollout.InvalidPlan):
        rollout.decide(replace(StagePlan(), steps=(5, 50)), CANARY_5, live())


# --- state -----------------------------------------------------------------------------------------


def test_state_moves_by_compare_and_swap(store_root: str) -> None:
    uri = storage.join(store_root, "rollouts", "fraud.json")
    rollout.start_rollout(uri, StagePlan(), "gs://m/old", "gs://m/new", at=T0)
    with pytest.raises(AlreadyExistsError, match="is running at shadow"):
        rollout.start_rollout(uri, StagePlan(), "gs://m/old", "gs://m/other", at=T0)

    # Two controllers read the same state; only the first one's decision is recorded.
    first, first_version = rollout.load_rollout(uri)
    second, second_version = rollout.load_rollout(uri)
    decision = rollout.decide(first.plan, first.stage, live())
    rollout.save_rollout(uri, first.apply(decision, at=T0 + TICK), first_version)
    with pytest.raises(AlreadyExistsError, match="another controller moved the rollout"):
        rollout.save_rollout(uri, second.apply(decision, at=T0 + TICK), second_version)

    stored, _ = rollout.load_rollout(uri)
    assert stored.stage == CANARY_5 and stored.stage_started_at == T0 + TICK
    assert stored.history[0]["action"] == "promote" and stored.history[0]["stage"] == "shadow"
    assert LiveComparison.from_dict(stored.history[0]["comparison"]) == live()


def test_state_apply_rules_and_restart(tmp_path: Path) -> None:
    uri = str(tmp_path / "rollout.json")
    state = rollout.start_rollout(uri, StagePlan(), "old", "new", at=T0)
    with pytest.raises(ConfigError, match="decision made at stage canary-50, but the rollout is at shadow"):
        state.apply(rollout.decide(StagePlan(), CANARY_50, live()), at=T0)

    rolled_back = state.apply(rollout.decide(StagePlan(), SHADOW, live(auc=(-0.2, -0.3, -0.1))), at=T0)
    assert (rolled_back.status, rolled_back.stage, rolled_back.stage_index) == ("rolled_back", rollout.ROLLED_BACK, 0)
    assert rollout.RolloutState.from_dict(rolled_back.to_dict()) == rolled_back
    with pytest.raises(ConfigError, match="rollout is rolled_back"):
        rolled_back.apply(rollout.decide(StagePlan(), SHADOW, live()), at=T0)

    _, version = rollout.load_rollout(uri)
    rollout.save_rollout(uri, rolled_back, version)
    # A finished rollout may be replaced by the next one.
    assert rollout.start_rollout(uri, StagePlan(), "old", "newer", at=T0 + TICK).challenger_uri == "newer"


# --- rollout stories on simulated traffic ---------------------------------------------------------


@dataclass
class Story:
    state: rollout.RolloutState
    largest_share: int  # the largest live traffic share the challenger ever had


def run_rollout(
    tmp_path: Path,
    scorers: dict[str, Scorer],
    challenger: str,
    *,
    per_tick: int = 3_000,
    max_ticks: int = 10,
    failing: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Story:
    """Ticks of live traffic: route, score, log, label late, join, compare, decide, save.

    A tick lasts until the challenger received ``per_tick`` requests (a canary at k % sees
    ``per_tick * 100 / k`` transactions), the way a controller would look every N requests.
    """
    root = str(tmp_path / "log")
    uri = str(tmp_path / "rollout.json")
    state = rollout.start_rollout(uri, PLAN, "gs://m/legacy", "gs://m/challenger", at=T0)
    rng = np.random.default_rng(5)
    clock, pending, largest = T0, [], 0
    for tick in range(max_ticks):
        if state.status != "running":
            break
        stage = state.stage
        largest = max(largest, stage.percent)
        n = per_tick if stage.kind == "shadow" else per_tick * 100 // stage.percent
        batch = fraud.generate(
            n, seed=100 + tick, start=clock, span=TICK, label_delay=(timedelta(0), timedelta(hours=3))
        )
        to_challenger = rng.random(n) < stage.percent / 100
        routes = {"legacy": ~to_challenger, "challenger": to_challenger}
        if stage.kind == "shadow":
            routes = {"legacy": np.ones(n, bool), "challenger": np.ones(n, bool)}
        with plog.PredictionLogWriter(root, max_records=5_000) as writer:
            for predictor, routed in routes.items():
                scorer = scorers["legacy" if predictor == "legacy" else challenger]
                rows = batch[routed]
                scores = scorer.scores(rows)
                failed = np.zeros(len(rows), bool)
                if failing is not None and predictor == "challenger":
                    failed = failing(rng.random(len(rows)))
                latency = np.where(failed, 1_000.0, rng.lognormal(np.log(8), 0.3, len(rows)))
                ids, times = rows[fraud.ID].tolist(), rows[fraud.TIMESTAMP].tolist()
                for i, features in enumerate(rows[list(fraud.FEATURES)].to_dict("records")):
                    writer.log(
                        plog.PredictionRecord(
                            request_id=ids[i],
                            predictor=predictor,
                            model_version=challenger,
                            features=features,
                            score=None if failed[i] else float(scores[i]),
                            decision=None if failed[i] else ("decline" if scores[i] > scorer.threshold else "approve"),
                            latency_ms=float(latency[i]),
                            status="error" if failed[i] else "ok",
                            timestamp=times[i],
                        )
                    )
        clock += TICK
        pending += list(zip(batch[fraud.ID], batch[fraud.LABEL], batch[fraud.LABEL_AVAILABLE_AT]))
        plog.record_labels(root, [(r, int(y), at) for r, y, at in pending if at <= clock])
        pending = [p for p in pending if p[2] > clock]

        current, version = rollout.load_rollout(uri)
        comparison = rollout.compare_live(plog.join(root, clock, since=current.stage_started_at), config=LIVE)
        decision = rollout.decide(current.plan, current.stage, comparison)
        state = current.apply(decision, at=clock)
        rollout.save_rollout(uri, state, version)
    return Story(state, largest)


def test_better_challenger_is_promoted_through_every_stage(tmp_path: Path, scorers: dict[str, Scorer]) -> None:
    story = run_rollout(tmp_path, scorers, "better")

    assert story.state.status == "promoted"
    moves = [(h["stage"], h["next_stage"]) for h in story.state.history if h["action"] == "promote"]
    assert moves == [("shadow", "canary-20"), ("canary-20", "canary-50"), ("canary-50", "promoted")]
    assert {h["action"] for h in story.state.history} <= {"promote", "hold"}
    assert story.state.history[0]["comparison"]["paired"] is True
    assert story.state.history[-1]["comparison"]["paired"] is False
    final = rollout.spec_for(
        story.state.stage, DeploymentSpec.single("fraud", "gs://m/legacy"), "gs://m/legacy", "gs://m/challenger"
    )
    assert [(p.name, p.traffic) for p in final.predictors] == [("challenger", 100)]


def test_worse_challenger_never_serves_beyond_the_first_canary(tmp_path: Path, scorers: dict[str, Scorer]) -> None:
    story = run_rollout(tmp_path, scorers, "worse")

    assert story.state.status == "rolled_back"
    assert story.largest_share <= PLAN.steps[0]
    last = story.state.history[-1]
    assert last["action"] == "rollback" and "significantly worse" in " ".join(last["reasons"])


def test_failing_challenger_is_rolled_back_on_the_error_guardrail(tmp_path: Path, scorers: dict[str, Scorer]) -> None:
    story = run_rollout(tmp_path, scorers, "better", per_tick=1_000, failing=lambda u: u < 0.05)

    assert story.state.status == "rolled_back"
    assert len(story.state.history) == 1  # at the first look, before enough labels
    assert story.largest_share == 0  # it never answered a client
    assert "guardrail: challenger error rate" in story.state.history[0]["reasons"][0]
