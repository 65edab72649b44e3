"""Live comparison: metrics and intervals of two predictors from a joined prediction log, paired or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from kfp_mlops import rollout
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.rollout import LiveComparison, LiveConfig, Stage, StagePlan
from kfp_mlops.serving import prediction_log as plog
from tests.rollout.simulated import LIVE, T0, synthetic_log


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
    # The decisions' standard errors: paired over the labelled requests both scored, unpaired
    # scaled by the challenger's labelled requests; the same ordering of widths.
    for comparison in (shadow, canary):
        assert set(comparison.standard_errors) == {"auc_pr", "fpr"}
        assert comparison.standard_errors["auc_pr"].n == 3_000
    assert shadow.standard_errors["auc_pr"].se < 0.8 * canary.standard_errors["auc_pr"].se
    assert shadow.standard_errors["auc_pr"].se == pytest.approx(shadow_width / 3.92, rel=0.25)
    assert shadow.counts[rollout.CHALLENGER]["labelled"] == 3_000
    assert LiveComparison.from_dict(shadow.to_dict()) == shadow

    # Deterministic: the same log gives the same intervals.
    again = rollout.compare_live(synthetic_log(np.random.default_rng(1), 3_000, paired=True), config=LIVE)
    assert again == shadow


def test_latency_exceedances_count_the_requests_certainly_slower_than_a_limit() -> None:
    log = synthetic_log(np.random.default_rng(5), 2_000, paired=True)
    comparison = rollout.compare_live(log, config=LIVE)
    latency = log.loc[log["predictor"] == rollout.CHALLENGER, "latency_ms"].to_numpy()
    for limit in (np.quantile(latency, 0.95), np.quantile(latency, 0.995), 5.0):
        found = comparison.slower_than(rollout.CHALLENGER, limit)
        assert found is not None
        count, threshold = found
        # Never more than the requests slower than the limit: counted at the next grid threshold,
        # at most 2.3 % above it where the grid is kept (from the 90th percentile up).
        assert count == (latency > threshold).sum() <= (latency > limit).sum()
        assert limit <= threshold <= max(limit * 1.024, np.quantile(latency, 0.9))
    assert comparison.slower_than(rollout.CHALLENGER, 1e6) == (0, 1e6)
    assert comparison.slower_than("nobody", 20.0) is None


def test_comparisons_recorded_before_standard_errors_still_read() -> None:
    old = rollout.compare_live(synthetic_log(np.random.default_rng(6), 1_000, paired=True), config=LIVE).to_dict()
    del old["standard_errors"], old["latency_exceedances"]
    comparison = LiveComparison.from_dict(old)
    assert comparison.standard_errors == {} and comparison.latency_exceedances == {}
    decision = rollout.decide(StagePlan(min_labelled=100, min_positives=10), Stage("shadow"), comparison)
    assert decision.action == "hold" and "AUC-PR difference not defined yet" in decision.reasons[0]


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
            "rejected": 0,
        }
    )


def test_refused_requests_are_counted_but_steer_no_guardrail() -> None:
    """Garbage sent to the challenger is refused (4xx, ``rejected``): no error, no latency, no rollback."""
    log = synthetic_log(np.random.default_rng(3), 1_000, paired=False)
    clean = rollout.compare_live(log, config=LIVE)
    challenger = (log["predictor"] == rollout.CHALLENGER).to_numpy()
    garbage = (
        log[challenger]
        .head(600)
        .assign(
            request_id=[f"garbage-{i}" for i in range(600)],
            status=plog.REJECTED,
            score=np.nan,
            decision=None,
            label=np.nan,
            latency_ms=0.2,
        )
    )
    attacked = rollout.compare_live(pd.concat([log, garbage], ignore_index=True), config=LIVE)

    counts = dict(attacked.counts[rollout.CHALLENGER])
    assert counts.pop("rejected") == 600
    assert counts == {k: v for k, v in clean.counts[rollout.CHALLENGER].items() if k != "rejected"}
    assert attacked.metrics[rollout.CHALLENGER]["error_rate"] == clean.metrics[rollout.CHALLENGER]["error_rate"]
    assert attacked.metrics[rollout.CHALLENGER]["p99_latency_ms"] == clean.metrics[rollout.CHALLENGER]["p99_latency_ms"]
    plan = StagePlan(min_labelled=100, min_positives=10)
    assert (
        rollout.decide(plan, Stage("canary", 5), attacked).action
        == rollout.decide(plan, Stage("canary", 5), clean).action
    )

    # A server failure (``error``) is what the guardrail counts.
    failed = garbage.assign(status=plog.ERROR)
    broken = rollout.compare_live(pd.concat([log, failed], ignore_index=True), config=LIVE)
    assert broken.counts[rollout.CHALLENGER]["errors"] == 600 + clean.counts[rollout.CHALLENGER]["errors"]
    assert rollout.decide(plan, Stage("canary", 5), broken).action == "rollback"


def test_an_empty_stage_holds(tmp_path: Path) -> None:
    comparison = rollout.compare_live(plog.join(str(tmp_path / "nothing-yet"), T0), config=LIVE)
    assert comparison.metrics == {rollout.LEGACY: {}, rollout.CHALLENGER: {}} and comparison.difference == {}
    decision = rollout.decide(StagePlan(), Stage("shadow"), comparison)
    assert decision.action == "hold" and "challenger 0/2000 labelled" in decision.reasons[0]


def test_invalid_live_config() -> None:
    with pytest.raises(ConfigError, match=r"confidence=1.5 must be between 0 and 1; bootstrap=10"):
        rollout.compare_live(pd.DataFrame(), config=LiveConfig(confidence=1.5, bootstrap=10))


def test_live_config_from_dict_refuses_unknown_keys_and_round_trips() -> None:
    with pytest.raises(ConfigError, match=r"live_config: unknown key\(s\) boot; known: amount_feature, bootstrap"):
        LiveConfig.from_dict({"boot": 1})
    with pytest.raises(ConfigError, match="live_config is invalid: bootstrap=5 must be at least 100"):
        LiveConfig.from_dict({"bootstrap": 5})
    config = LiveConfig(bootstrap=2000, paired=True)
    assert LiveConfig.from_dict(config.to_dict()) == config


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
