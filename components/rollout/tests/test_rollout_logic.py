"""The rollout component's logic and the `kfp-mlops rollout` commands, on a fabricated prediction log."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kfp_mlops.cli import main
from kfp_mlops.components.rollout.logic import make_target, run_rollout_step
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.serving.spec import DeploymentSpec
from tests.support.models import iris_model
from tests.rollout.test_controller import T0, traffic

PLAN = {"steps": [5, 100], "min_labelled": 150, "min_positives": 10, "max_p99_latency_ms": 1000.0}


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KFP_MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    return tmp_path / "home"


def test_cli_start_step_status_write_the_spec_kfp_mlops_serve_watches(home: Path, tmp_path: Path, capsys) -> None:
    legacy, challenger = iris_model(tmp_path / "legacy"), iris_model(tmp_path / "challenger", seed=1)
    state = str(tmp_path / "rollout.json")
    assert (
        main(
            [
                "rollout",
                "start",
                "--state",
                state,
                "--legacy",
                str(legacy),
                "--challenger",
                str(challenger),
                "--plan",
                json.dumps(PLAN),
            ]
        )
        == 0
    )
    spec_file = home / "deployments" / "fraud.json"
    shadow = DeploymentSpec.from_dict(json.loads(spec_file.read_text()))
    assert shadow.shadow is not None and shadow.shadow.name == "challenger"

    log = str(tmp_path / "log")
    now = datetime.now(timezone.utc)  # `rollout start` starts the shadow stage now
    traffic(log, now + timedelta(seconds=1), 600, challenger_quality=0.7, seed=11)
    as_of = (now + timedelta(hours=2)).isoformat()
    assert (
        main(
            ["rollout", "step", "--state", state, "--log", log, "--as-of", as_of, "--live-config", '{"bootstrap": 200}']
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "promote: shadow -> canary-5 (challenger share 5 %)" in out and "Decision recorded at" in out
    canary = DeploymentSpec.from_dict(json.loads(spec_file.read_text()))
    assert {p.name: p.traffic for p in canary.predictors} == {"legacy": 95, "challenger": 5}

    assert main(["rollout", "status", "--state", state]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["stage"] == "canary-5" and status["decisions"][0]["action"] == "promote"

    assert main(["rollout", "start", "--state", state, "--legacy", str(legacy), "--challenger", str(challenger)]) == 1
    assert "is running at canary-5" in capsys.readouterr().err


def test_step_with_no_target_records_only(home: Path, tmp_path: Path) -> None:
    from kfp_mlops.rollout import controller as rc

    legacy, challenger = iris_model(tmp_path / "legacy"), iris_model(tmp_path / "challenger", seed=1)
    state = str(tmp_path / "rollout.json")
    rc.start(state, PLAN, str(legacy), str(challenger), base=rc.base_spec("fraud"), target=None, at=T0)
    record = run_rollout_step(
        str(tmp_path / "out" / "decision.json"),
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


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown; choose one of local, cluster, none"):
        make_target("k8s")
    with pytest.raises(ConfigError, match="live_config: unknown key"):
        run_rollout_step("x", state_uri="s", log_root="l", deployment_name="fraud", live_config={"boot": 1})
    with pytest.raises(ConfigError, match="not an ISO date-time"):
        run_rollout_step("x", state_uri="s", log_root="l", deployment_name="fraud", as_of="yesterday")
