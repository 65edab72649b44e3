"""Rollout stories, end to end on simulated traffic, with the pure pieces and the state wired by hand.

fraud.generate transactions are scored by real fitted models, logged through the prediction log,
labelled late, joined, compared and decided on, tick by tick, with the state moved by
compare-and-swap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

from kfp_mlops import rollout
from kfp_mlops.demos import fraud
from kfp_mlops.rollout import StagePlan
from kfp_mlops.serving import prediction_log as plog
from kfp_mlops.serving.spec import DeploymentSpec
from tests.rollout.simulated import LIVE, T0, TICK, Scorer

# Small enough to run in seconds; the statistics are the same as with the defaults.
PLAN = StagePlan(
    steps=(20, 50, 100), min_labelled=2000, min_positives=10, max_labelled=20_000, max_p99_latency_ms=200.0
)


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
