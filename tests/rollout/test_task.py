"""The rollout step from plain parameters (:func:`run_rollout_step`, what the CLI and the component run)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.rollout import controller as rc
from kfp_mlops.rollout import task
from tests.rollout.test_controller import PLAN, T0, traffic
from tests.support.models import iris_model


def test_run_rollout_step_with_no_target_records_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    home = tmp_path / "home"
    state = str(tmp_path / "rollout.json")
    legacy, challenger = iris_model(tmp_path / "legacy"), iris_model(tmp_path / "challenger", seed=1)
    rc.start(state, PLAN, str(legacy), str(challenger), base=rc.base_spec("fraud"), target=None, at=T0)
    record = task.run_rollout_step(
        str(tmp_path / "out" / "decision.json"),
        settings=Settings.from_env({"KFP_MLOPS_HOME": str(home)}),
        state_uri=state,
        log_root=str(tmp_path / "log"),
        deployment_name="fraud",
        target="none",
        as_of=(T0 + timedelta(hours=1)).isoformat(),
        live_config={"bootstrap": 200},
    )
    assert record["action"] == "hold" and record["spec"] is None
    assert json.loads((tmp_path / "out" / "decision.json").read_text())["action"] == "hold"
    assert not (home / "deployments").exists()


def test_run_rollout_step_refuses_bad_parameters() -> None:
    settings = Settings.from_env({})
    with pytest.raises(ConfigError, match="live_config: unknown key"):
        task.run_rollout_step(
            "x", settings=settings, state_uri="s", log_root="l", deployment_name="fraud", live_config={"boot": 1}
        )
    with pytest.raises(ConfigError, match="not an ISO date-time"):
        task.run_rollout_step(
            "x", settings=settings, state_uri="s", log_root="l", deployment_name="fraud", as_of="yesterday"
        )
    assert task.parse_as_of("") is None
    assert task.parse_as_of("2026-11-02T12:00:00+00:00") == T0 + timedelta(hours=12)


def test_the_log_root_defaults_to_the_one_the_rollout_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    legacy, challenger = iris_model(tmp_path / "legacy"), iris_model(tmp_path / "challenger", seed=1)
    log, settings = str(tmp_path / "log"), Settings.from_env({"KFP_MLOPS_HOME": str(tmp_path / "home")})
    recorded, unrecorded = str(tmp_path / "recorded.json"), str(tmp_path / "unrecorded.json")
    base = rc.base_spec("fraud")
    rc.start(recorded, PLAN, str(legacy), str(challenger), base=base, target=None, at=T0, log_root=log)
    rc.start(unrecorded, PLAN, str(legacy), str(challenger), base=base, target=None, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.7, seed=13)
    options = {"settings": settings, "deployment_name": "fraud", "target": "none", "log_root": ""}
    as_of = (T0 + timedelta(hours=2)).isoformat()

    record = task.run_rollout_step(
        str(tmp_path / "d1.json"), state_uri=recorded, as_of=as_of, live_config={"bootstrap": 200}, **options
    )
    assert (record["action"], record["next_stage"]) == ("promote", "canary-5")
    with pytest.raises(ConfigError, match=r"unrecorded\.json: the rollout recorded no prediction log; name its root"):
        task.run_rollout_step(str(tmp_path / "d2.json"), state_uri=unrecorded, as_of=as_of, **options)
