"""The rollout component's body: settings read at its entry, one controller step, the decision as its output."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from kfp.dsl import Metrics

from kfp_mlops.components.rollout.component import rollout_step
from kfp_mlops.core.config import Settings
from kfp_mlops.rollout import controller as rc
from tests.rollout.test_controller import PLAN, T0, traffic
from tests.support.models import iris_model, register


def test_the_component_decides_records_and_returns_the_action(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("KFP_MLOPS_HOME", str(home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    store = Settings.from_env().store_root  # the servers load versions of this store only
    legacy = register(store, iris_model(tmp_path / "legacy"), name="fraud").uri
    challenger = register(store, iris_model(tmp_path / "challenger", seed=1), name="fraud").uri
    state, log = str(tmp_path / "rollout.json"), str(tmp_path / "log")
    rc.start(state, PLAN, legacy, challenger, base=rc.base_spec("fraud"), target=None, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.7, seed=12)

    decision = SimpleNamespace(path=str(tmp_path / "out" / "decision.json"), metadata={})
    summary = SimpleNamespace(path=str(tmp_path / "out" / "summary.md"), metadata={})
    metrics = Metrics(name="metrics", uri=str(tmp_path / "out" / "metrics"))
    action = rollout_step.python_func(
        decision=decision,
        summary=summary,
        metrics=metrics,
        state_uri=state,
        log_root=log,
        target="local",
        as_of=(T0 + timedelta(hours=2)).isoformat(),
        live_config={"bootstrap": 200.0},  # KFP passes a STRUCT's whole numbers as floats
        pipeline_job_id="job-1",
    )

    assert action == "promote"
    assert decision.metadata["next_stage"] == "canary-5" and decision.metadata["challenger_share"] == 5
    record = json.loads(Path(decision.path).read_text())
    assert record["action"] == "promote" and record["target"] == "local"
    # The local target writes the spec file under the KFP_MLOPS_HOME the component read at its entry.
    spec = json.loads((home / "deployments" / "fraud.json").read_text())
    assert {p["name"]: p["traffic"] for p in spec["predictors"]} == {"legacy": 95, "challenger": 5}
    assert Path(summary.path).read_text().startswith("# Rollout step: promote")
    assert metrics.metadata["action"] == 1.0 and metrics.metadata["challenger_share"] == 5.0
