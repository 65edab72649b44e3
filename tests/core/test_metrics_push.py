"""Drift and rollout metrics pushed to a real Pushgateway and read back over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfp_mlops.core.metrics_push import push_drift, push_rollout
from tests.support.pushgateway import running_pushgateway, scrape

VERDICT: dict[str, Any] = {
    "drift": True,
    "drift_share": 0.5,
    "features": {
        "petal_length": {"psi": 0.41, "drifted": True},
        "sepal_width": {"psi": 0.02, "drifted": False},
    },
    "prediction": {"psi": 0.3},
    "retrain": {"retrain": True, "kind": "full", "reason": "accuracy dropped"},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with running_pushgateway(tmp_path_factory.mktemp("pushgateway")) as url:
            yield url
    except FileNotFoundError as missing:
        pytest.skip(str(missing))


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def test_a_drift_verdict_is_pushed_and_read_back(gateway: str) -> None:
    assert push_drift(gateway + "/", VERDICT, job="job-1", model="iris")  # as a parameter may give it

    samples = scrape(gateway)
    group = {"job": "kfp-mlops-drift", "model": "iris", "pipeline_job_id": "job-1"}
    assert samples[("kfp_mlops_drift_detected", _labels(**group))] == 1.0
    assert samples[("kfp_mlops_drift_share", _labels(**group))] == 0.5
    assert samples[("kfp_mlops_drift_feature_psi", _labels(**group, feature="petal_length"))] == pytest.approx(0.41)
    assert samples[("kfp_mlops_drift_feature_drifted", _labels(**group, feature="sepal_width"))] == 0.0
    assert samples[("kfp_mlops_drift_prediction_psi", _labels(**group))] == pytest.approx(0.3)
    assert samples[("kfp_mlops_retrain_decision", _labels(**group, kind="full"))] == 1.0

    # The next check replaces the group: no stale "full" decision stays behind.
    calm = {**VERDICT, "drift": False, "retrain": {"retrain": False, "kind": None, "reason": "no drift"}}
    assert push_drift(gateway, calm, job="job-2", model="iris")
    samples = scrape(gateway)
    assert ("kfp_mlops_retrain_decision", _labels(**group, kind="full")) not in samples
    latest = {**group, "pipeline_job_id": "job-2"}
    assert samples[("kfp_mlops_retrain_decision", _labels(**latest, kind="none"))] == 0.0
    assert samples[("kfp_mlops_drift_detected", _labels(**latest))] == 0.0


def test_a_rollout_decision_is_pushed_and_read_back(gateway: str) -> None:
    record = {"action": "rollback", "next_stage": "rolled-back", "status": "rolled_back", "challenger_share": 0}
    assert push_rollout(gateway, record, job="job-7", deployment="fraud", stage_started_at=1_800_000_000.0)

    samples = scrape(gateway)
    group = {"job": "kfp-mlops-rollout", "deployment": "fraud", "pipeline_job_id": "job-7"}
    assert samples[("kfp_mlops_rollout_status", _labels(**group))] == -1.0
    assert samples[("kfp_mlops_rollout_last_action", _labels(**group))] == -1.0
    assert samples[("kfp_mlops_rollout_challenger_share", _labels(**group))] == 0.0
    assert samples[("kfp_mlops_rollout_stage", _labels(**group, stage="rolled-back"))] == 1.0
    assert samples[("kfp_mlops_rollout_stage_started_timestamp_seconds", _labels(**group))] == 1_800_000_000.0
    assert samples[("kfp_mlops_rollout_last_step_timestamp_seconds", _labels(**group))] > 0


def test_nothing_is_pushed_without_a_gateway_and_an_unreachable_one_is_not_an_error(tmp_path: Path) -> None:
    assert not push_drift("", VERDICT, job="j", model="iris")
    assert not push_rollout(
        "http://127.0.0.1:9",  # the discard port: refused
        {"action": "hold", "next_stage": "canary-5", "status": "running", "challenger_share": 5},
        job="j",
        deployment="fraud",
    )
