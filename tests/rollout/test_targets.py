"""Rollout targets by name, and the spec file ``kfp-mlops serve`` watches, through ``kfp-mlops rollout``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kfp_mlops.cli import main
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.rollout.targets import ClusterTarget, SpecFileTarget, make_target
from kfp_mlops.serving.cluster.resources import ServingOptions
from kfp_mlops.serving.spec import DeploymentSpec
from tests.rollout.test_controller import traffic
from tests.support.models import iris_model, register

PLAN = {"steps": [5, 100], "min_labelled": 150, "min_positives": 10, "max_p99_latency_ms": 1000.0}


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KFP_MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    return tmp_path / "home"


def test_targets_by_name(tmp_path: Path) -> None:
    settings = Settings.from_env({"KFP_MLOPS_HOME": str(tmp_path)})
    local = make_target("local", settings=settings, deployment="fraud")
    assert isinstance(local, SpecFileTarget) and local.path == tmp_path / "deployments" / "fraud.json"
    cluster = make_target("cluster", settings=settings, deployment="fraud", timeout_seconds=60)
    assert isinstance(cluster, ClusterTarget) and cluster.timeout_s == 60 and cluster.platform == "seldon"
    assert cluster.serving == ServingOptions(
        settings.serving_image_v2, settings.serving_image_seldon, store_root=settings.store_root
    )
    serving = ServingOptions(prediction_log_uri="gs://b/log", service_account="reader")
    kserve = make_target("cluster", settings=settings, deployment="fraud", platform="kserve", serving=serving)
    assert isinstance(kserve, ClusterTarget) and (kserve.platform, kserve.serving) == ("kserve", serving)
    assert make_target("none", settings=settings, deployment="fraud") is None
    with pytest.raises(ConfigError, match="unknown; choose one of local, cluster, none"):
        make_target("k8s", settings=settings, deployment="fraud")
    with pytest.raises(ConfigError, match="serving platform 'knative': unknown; choose one of seldon, kserve"):
        make_target("cluster", settings=settings, deployment="fraud", platform="knative")


def test_cli_start_step_status_write_the_spec_kfp_mlops_serve_watches(home: Path, tmp_path: Path, capsys) -> None:
    store = Settings.from_env().store_root  # the servers load versions of this store only
    legacy = register(store, iris_model(tmp_path / "legacy"), name="fraud").uri
    challenger = register(store, iris_model(tmp_path / "challenger", seed=1), name="fraud").uri
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
