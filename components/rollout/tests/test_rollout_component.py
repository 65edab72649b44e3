"""The rollout component's body: settings read at its entry, one controller step, the decision as its output,
its W&B run published to the KFP UI and its metrics pushed to a real Pushgateway (the pipeline's parameters)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kfp.dsl import Metrics

from kfp_mlops.components.rollout.component import rollout_step
from kfp_mlops.core.config import Settings
from kfp_mlops.rollout import controller as rc
from tests.rollout.test_controller import PLAN, T0, traffic
from tests.support.models import iris_model, register
from tests.support.pushgateway import running_pushgateway, scrape
from tests.support.wandb_offline import find_offline_runs, read_offline_run

UI = "https://kubeflow.example.com/pipeline"


@pytest.fixture()
def gateway(tmp_path: Path) -> Iterator[str]:
    try:
        with running_pushgateway(tmp_path) as url:
            yield url
    except FileNotFoundError as missing:
        pytest.skip(str(missing))


def _outputs(out: Path) -> dict[str, Any]:
    """The component's outputs as KFP hands them to its body."""
    named = ("decision", "summary", "wandb_page", "wandb_files")
    return {
        **{name: SimpleNamespace(path=str(out / name), metadata={}) for name in named},
        "metrics": Metrics(name="metrics", uri=str(out / "metrics")),
    }


def test_the_component_decides_records_and_returns_the_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway: str
) -> None:
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

    outputs = _outputs(tmp_path / "out")
    decision, summary, metrics = outputs["decision"], outputs["summary"], outputs["metrics"]
    action = rollout_step.python_func(
        **outputs,
        state_uri=state,
        log_root=log,
        target="local",
        as_of=(T0 + timedelta(hours=2)).isoformat(),
        live_config={"bootstrap": 200.0},  # KFP passes a STRUCT's whole numbers as floats
        pipeline_job_id="job-1",
        kfp_ui_host=UI,
        pushgateway_url=gateway,
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

    # The KFP UI leads to the decision's W&B run, and the run back to the KFP run.
    assert "W&B run `rollout-shadow-promote` was logged offline" in Path(outputs["wandb_page"].path).read_text()
    [copied] = find_offline_runs(Path(outputs["wandb_files"].path))
    logged = read_offline_run(copied, timeout=0.1)
    assert (logged.group, logged.summary["action"]) == ("job-1", "promote")
    assert logged.config["kfp_run_url"] == f"{UI}/#/runs/details/job-1"
    # Prometheus sees the stage the step moved to, by deployment.
    group = frozenset({"job": "kfp-mlops-rollout", "deployment": "fraud", "pipeline_job_id": "job-1"}.items())
    samples = scrape(gateway)
    assert samples[("kfp_mlops_rollout_challenger_share", group)] == 5.0
    assert samples[("kfp_mlops_rollout_stage", group | {("stage", "canary-5")})] == 1.0


def test_a_step_after_the_end_says_why_it_has_no_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolled-back rollout decides nothing: every declared output is still written (KFP uploads them all)."""
    monkeypatch.setenv("KFP_MLOPS_HOME", str(tmp_path / "home"))
    store = Settings.from_env().store_root
    legacy = register(store, iris_model(tmp_path / "legacy"), name="fraud").uri
    challenger = register(store, iris_model(tmp_path / "challenger", seed=1), name="fraud").uri
    state, log = str(tmp_path / "rollout.json"), str(tmp_path / "log")
    rc.start(state, PLAN, legacy, challenger, base=rc.base_spec("fraud"), target=None, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 300, challenger_quality=0.7, seed=5, errors=0.2)
    steps = {"state_uri": state, "log_root": log, "target": "none", "as_of": (T0 + timedelta(hours=2)).isoformat()}

    assert rollout_step.python_func(**_outputs(tmp_path / "first"), **steps, pipeline_job_id="job-2") == "rollback"
    outputs = _outputs(tmp_path / "after")
    assert rollout_step.python_func(**outputs, **steps, pipeline_job_id="job-3") == "none"

    page = Path(outputs["wandb_page"].path).read_text()
    assert page == "# W&B\n\nNo W&B run: the rollout was already rolled_back, so nothing was decided.\n"
    assert find_offline_runs(Path(outputs["wandb_files"].path)) == []
    assert Path(outputs["wandb_files"].path, "README.md").read_text().startswith("No W&B run: ")
