"""The monitoring pipeline end to end with kfp.local: import a window, check drift, retrain on drift.

The champion is an autumn model put in the store directly (fitted by the training code the train
component runs), so the test pays only for the monitoring runs: a quiet autumn window (no retrain)
and the first holiday week (drift; the training sub-pipeline registers and deploys a new champion
that beats the old one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kfp_mlops.app.local_run import run_pipeline
from kfp_mlops.app.summary import render_monitoring_summary, task_outputs
from kfp_mlops.core.config import Settings
from kfp_mlops.demos import ecommerce
from kfp_mlops.modeling.model_bundle import load_bundle, save_bundle
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.training import fit_model
from kfp_mlops.serving.spec import DeploymentSpec
from tests.support.wandb_offline import find_offline_runs, read_offline_run

pytestmark = pytest.mark.slow
TRAINING_TASKS = ["ingest", "validate", "train", "evaluate", "register", "deploy"]


def _crown_autumn_model(root: Path, store_root: str) -> str:
    reference = ecommerce.generate(range(35, 46), 1_000, seed=0).drop(columns="week")
    model, metadata = fit_model(reference, ecommerce.LABEL, "logistic_regression", {}, seed=0)
    model_dir = root / "model"
    save_bundle(model_dir, model, {**metadata, "training_data_uri": "memory"})
    profile = root / "profile.json"
    profile.write_text(json.dumps(build_profile(reference, metadata["feature_kinds"], ecommerce.LABEL)))
    store = ModelStore(store_root)
    registered = store.publish(
        "shop",
        model_dir,
        profile_path=profile,
        evaluation={"passed": True, "metrics": {"accuracy": 0.8, "roc_auc": 0.73}},
    )
    store.promote(registered, expected_champion=None)
    return registered.version


def _accuracy(model_uri: str, frame) -> float:
    bundle = load_bundle(model_uri)
    predicted = bundle.model.predict(frame[bundle.feature_names]).astype(str)
    return float((predicted == frame[ecommerce.LABEL].astype(str)).mean())


def test_quiet_window_keeps_the_champion_and_drift_retrains(tmp_path: Path) -> None:
    settings = Settings.from_env()
    store = ModelStore(settings.store_root)
    old_version = _crown_autumn_model(tmp_path, settings.store_root)
    arguments = {
        "store_root": settings.store_root,
        "label": ecommerce.LABEL,
        "model_name": "shop",
        "threshold": 0.65,
        "deployment_name": "shop",
    }
    quiet, december = tmp_path / "week-40.csv", tmp_path / "week-46.csv"
    ecommerce.generate([40], 2_000, seed=1).drop(columns="week").to_csv(quiet, index=False)
    ecommerce.generate([46], 2_000, seed=1).drop(columns="week").to_csv(december, index=False)

    calm = run_pipeline("monitoring", {**arguments, "source": str(quiet)}, settings=settings)
    assert calm.tasks == ["drift-check"]  # the importer leaves no folder; the retrain was skipped
    assert task_outputs(calm, "drift-check")["parameters"]["Output"] is False
    assert store.champion("shop").version == old_version
    assert "Retrain   skipped: no drift" in render_monitoring_summary(calm, settings)

    run = run_pipeline("monitoring", {**arguments, "source": str(december)}, settings=settings)
    # One run: the training sub-pipeline's tasks write beside the drift check.
    assert run.tasks == ["drift-check", *TRAINING_TASKS]
    assert sorted(p.name.split("-")[0] for p in (settings.home / "runs").iterdir()) == ["monitoring", "monitoring"]
    verdict = json.loads(run.artifact("drift-check", "verdict").read_text())
    assert verdict["drift"] is True and verdict["inputs"]["current"] == str(december)
    assert task_outputs(run, "ingest")["artifacts"]["train"]["metadata"]["source"] == str(december)
    evaluation = json.loads(run.artifact("evaluate", "evaluation").read_text())
    assert evaluation["passed"] is True and evaluation["champion_version"] == old_version
    registered = json.loads(run.artifact("register", "registered").read_text())
    assert registered["previous_champion"] == old_version
    champion = store.champion("shop")
    assert champion.version == registered["version"] != old_version
    # Deployed as the training pipeline deploys: the local stack's spec serves the new champion.
    spec_file = settings.home / "deployments" / "shop.json"
    assert DeploymentSpec.from_dict(json.loads(spec_file.read_text())) == DeploymentSpec.single("shop", champion.uri)
    # Every task of the run, the sub-pipeline's too, logs to one W&B group.
    runs = [read_offline_run(path) for path in find_offline_runs(Path(os.environ["WANDB_DIR"]))]
    last_run = {r.group for r in runs if r.job_type == "deploy"}
    assert {r.job_type for r in runs if r.group in last_run} == {"drift_check", *TRAINING_TASKS}
    # The new model knows December better than the autumn model on fresh December rows.
    fresh = ecommerce.generate([47], 4_000, seed=2).drop(columns="week")
    assert _accuracy(champion.uri, fresh) > _accuracy(store.version_uri("shop", old_version), fresh) + 0.02
    summary = render_monitoring_summary(run, settings)
    assert f"Retrain   registered {registered['version']}" in summary
    assert "Deployed  shop (v2, single, local): written" in summary
