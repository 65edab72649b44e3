"""The stage plan, decisions on hand-made live comparisons, and the deployment spec of every stage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from kfp_mlops import rollout
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.rollout import LiveComparison, Stage, StagePlan
from kfp_mlops.serving.spec import DeploymentSpec, PredictorSpec
from tests.rollout.simulated import CANARY_5, CANARY_50, SHADOW, live


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
    with pytest.raises(rollout.InvalidPlan, match="stage plan is invalid: ") as caught:
        plan.validate()
    for problem in problems:
        assert problem in str(caught.value)
    assert len(plan.problems()) == len(problems)


def test_plan_from_dict_refuses_unknown_keys() -> None:
    with pytest.raises(
        rollout.InvalidPlan,
        match=r"unknown key\(s\) stepz; known: auc_pr_tolerance, decision_confidence, max_error_rate",
    ):
        StagePlan.from_dict({"stepz": [5, 100]})
    with pytest.raises(rollout.InvalidPlan, match="stage plan: expected a JSON object, got list"):
        StagePlan.from_dict([5, 100])  # type: ignore[arg-type]
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


@pytest.mark.parametrize(
    ("stage", "comparison", "action", "next_stage", "reason"),
    [
        (SHADOW, live(), "promote", CANARY_5, "challenger not worse: AUC-PR difference +0.100"),
        (CANARY_50, live(), "promote", rollout.PROMOTED, "better enough to take all traffic"),
        # Guardrails act before any label arrived.
        (
            SHADOW,
            live(labelled=0, positives=0, requests=1_000, auc=None, errors=(0.05, 0.03, 0.07)),
            "rollback",
            rollout.ROLLED_BACK,
            "guardrail: challenger error rate 5.00%",
        ),
        (
            CANARY_5,
            live(labelled=10, requests=1_000, p99=(900, 400, 1500), slow=0.07),
            "rollback",
            rollout.ROLLED_BACK,
            "p99 latency 900.0 ms is above the limit 250 ms: 70 of 1000 requests (7.00%) slower than 900 ms",
        ),
        # Above the limit, but not significantly: no rollback on noise.
        (CANARY_5, live(labelled=10, errors=(0.02, 0.005, 0.04)), "hold", CANARY_5, "waiting for labels"),
        (SHADOW, live(labelled=1_999), "hold", SHADOW, "challenger 1999/2000 labelled"),
        (SHADOW, live(positives=19), "hold", SHADOW, "19/20 frauds"),
        (CANARY_5, live(auc=(-0.1, -0.12, -0.08)), "rollback", rollout.ROLLED_BACK, "significantly worse"),
        (CANARY_5, live(fpr=(0.02, 0.015, 0.025)), "rollback", rollout.ROLLED_BACK, "too many legitimate"),
        (CANARY_5, live(auc=(-0.01, -0.04, 0.02)), "hold", CANARY_5, "inconclusive"),
        (CANARY_5, live(auc=(0.0, -0.01, 0.01)), "promote", Stage("canary", 25), "not worse"),
        # Non-inferior is enough for a canary step, not for all traffic.
        (CANARY_50, live(auc=(0.0, -0.01, 0.01)), "hold", CANARY_50, "does not clear +0 yet"),
        (
            CANARY_50,
            live(labelled=50_000, auc=(0.0, -0.01, 0.01)),
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
    assert rollout.decide(plan, CANARY_50, live(auc=(0.0, -0.01, 0.01))).action == "promote"


def test_decide_refuses_finished_or_foreign_stages() -> None:
    with pytest.raises(ConfigError, match="a finished rollout has nothing to decide"):
        rollout.decide(StagePlan(), rollout.PROMOTED, live())
    with pytest.raises(ConfigError, match="stage canary-10: not a running stage"):
        rollout.decide(StagePlan(), Stage("canary", 10), live())
    with pytest.raises(rollout.InvalidPlan):
        rollout.decide(replace(StagePlan(), steps=(5, 50)), CANARY_5, live())


def test_guardrails_hold_at_their_limits_however_often_the_controller_looks() -> None:
    # A challenger exactly at both limits (1 % errors, 1 % of requests slower than the p99 limit),
    # looked at after every 200 requests, 50 times: the guardrails must rarely trip; a Wilson
    # interval at every look trips far more often. Above the limits, they trip.
    rng = np.random.default_rng(4)
    plan, paths, looks = StagePlan(), 100, np.arange(200, 10_001, 200)
    errors = np.cumsum(rng.random((paths, looks[-1])) < plan.max_error_rate, axis=1)[:, looks - 1]
    slow = np.cumsum(rng.random((paths, looks[-1])) < 0.01, axis=1)[:, looks - 1]

    def trips(path: int, error_share: float = 1.0, slow_share: float = 1.0) -> str | None:
        for i, n in enumerate(looks):
            comparison = live(
                labelled=0,
                requests=int(n),
                auc=None,
                errors=(errors[path, i] * error_share / n, 0.0, 1.0),
                p99=(plan.max_p99_latency_ms, 0.0, 1e4),
                slow=slow[path, i] * slow_share / n,
            )
            decision = rollout.decide(plan, SHADOW, comparison)
            if decision.action == "rollback":
                return decision.reasons[0]
        return None

    false_trips = sum(trips(p) is not None for p in range(paths))
    wilson_trips = sum(
        any(rollout.wilson_interval(int(e), int(n)).low > plan.max_error_rate for e, n in zip(errors[p], looks))
        for p in range(paths)
    )
    assert false_trips / paths <= 0.05
    assert wilson_trips / paths > 0.1
    assert "error rate" in str(trips(0, error_share=3.0, slow_share=0.0))  # 3 % errors
    assert "p99 latency" in str(trips(0, error_share=0.0, slow_share=3.0))  # 3 % slower than the limit
