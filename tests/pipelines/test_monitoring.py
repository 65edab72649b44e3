"""The monitoring pipeline end to end with kfp.local: import a window, check drift, retrain when the policy says so.

The champion is an autumn model put in the store directly (fitted by the training code the train
component runs), so the test pays only for the monitoring runs: a quiet autumn window (no retrain),
the first holiday week under a policy that tolerates its drop (drift logged, not retrained), and
the same week under the default policy (its accuracy drop warrants a retrain: the training
sub-pipeline retrains the champion on the week and the history before it, registers a *candidate*
that beats the old model, and starts a safe rollout in shadow beside the champion, which stays
champion). A
second drifted run while that rollout runs is refused at deploy, changing nothing; a window without
the model's features fails the first task. The rollout is then driven to promotion on simulated
traffic, as the scheduled rollout pipeline's step would: only then does the champion pointer move,
with the decision's reasons.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from kfp_mlops.app.compiling import check_compiled, compile_pipeline
from kfp_mlops.app.local_run import run_pipeline
from kfp_mlops.app.summary import render_monitoring_summary, retrain_outcome, task_outputs
from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.demos import ecommerce
from kfp_mlops.modeling.model_bundle import ModelBundle, save_bundle
from kfp_mlops.modeling.model_store import CANDIDATE, CHAMPION, RETIRED, ModelStore
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.training import fit_model
from kfp_mlops.pipelines.monitoring import check_arguments
from kfp_mlops.rollout import load_rollout
from kfp_mlops.rollout.state import default_log_root, default_state_uri
from kfp_mlops.rollout.task import run_rollout_step
from kfp_mlops.serving.spec import DeploymentSpec
from tests.rollout.test_controller import traffic
from tests.support.wandb_offline import find_offline_runs, read_offline_run

TRAINING_TASKS = ["ingest", "validate", "train", "evaluate", "register", "deploy"]
# Small enough for a few hundred simulated requests per stage; the rules are the defaults'.
PLAN = {"steps": [5, 100], "min_labelled": 150, "min_positives": 10, "max_p99_latency_ms": 1000.0}


def _crown_autumn_model(root: Path, store_root: str) -> str:
    reference = ecommerce.generate(range(35, 46), 1_000, seed=0).drop(columns="week")
    model, metadata = fit_model(reference, ecommerce.LABEL, "logistic_regression", {}, seed=0)
    model_dir = root / "model"
    saved = save_bundle(model_dir, model, {**metadata, "training_data_uri": "memory"})
    profile = root / "profile.json"
    profile.write_text(json.dumps(build_profile(reference, metadata["feature_kinds"], ecommerce.LABEL)))
    store = ModelStore(store_root)
    registered = store.publish(
        "shop",
        model_dir,
        profile_path=profile,
        evaluation={"passed": True, "metrics": {"accuracy": 0.8, "roc_auc": 0.73}},
        sha256=saved["model_sha256"],
    )
    store.promote(registered, expected_champion=None, by="deploy single", reasons=["first model of shop"])
    return registered.version


def _accuracy(bundle: ModelBundle, frame) -> float:
    predicted = bundle.model.predict(frame[bundle.feature_names]).astype(str)
    return float((predicted == frame[ecommerce.LABEL].astype(str)).mean())


@pytest.mark.slow
def test_drift_registers_a_candidate_whose_rollout_alone_can_make_it_champion(tmp_path: Path) -> None:
    settings = Settings.from_env()
    store = ModelStore(settings.store_root)
    old_version = _crown_autumn_model(tmp_path, settings.store_root)
    arguments = {
        "store_root": settings.store_root,
        "label": ecommerce.LABEL,
        "model_name": "shop",
        "threshold": 0.65,
        "deployment_name": "shop",
        "rollout_plan": PLAN,
    }
    windows = tmp_path / "windows"  # where weekly windows land; the history of a retrain
    windows.mkdir()
    for week in (44, 45, 46):
        ecommerce.generate([week], 2_000, seed=week).drop(columns="week").to_csv(
            windows / f"week-{week}.csv", index=False
        )
    ecommerce.generate([51], 2_000, seed=51).drop(columns="week").to_csv(windows / "week-51.csv", index=False)
    quiet, december = tmp_path / "week-40.csv", windows / "week-46.csv"
    ecommerce.generate([40], 2_000, seed=1).drop(columns="week").to_csv(quiet, index=False)
    arguments["history_root"] = str(windows)

    calm = run_pipeline("monitoring", {**arguments, "source": str(quiet)}, settings=settings)
    assert calm.tasks == ["drift-check"]  # the importer leaves no folder; the retrain was skipped
    assert task_outputs(calm, "drift-check")["parameters"]["Output"] == "none"
    assert store.champion("shop").version == old_version
    assert "Retrain   skipped: the retrain policy decided none" in render_monitoring_summary(calm, settings)

    # Drift the policy tolerates (a drop within tolerance, no severe drift) is logged, not retrained.
    lenient = {"tolerance": 0.5, "large_drop": 0.5, "severe_psi": 50.0}
    logged = run_pipeline(
        "monitoring", {**arguments, "source": str(december), "retrain_policy": lenient}, settings=settings
    )
    assert logged.tasks == ["drift-check"]
    logged_verdict = json.loads(logged.artifact("drift-check", "verdict").read_text())
    assert logged_verdict["drift"] is True
    assert (logged_verdict["retrain"]["action"], logged_verdict["retrain"]["rule"]) == ("log", "drift_without_drop")
    assert task_outputs(logged, "drift-check")["parameters"]["Output"] == "none"

    run = run_pipeline("monitoring", {**arguments, "source": str(december)}, settings=settings)
    # One run: the training sub-pipeline's tasks write beside the drift check.
    assert run.tasks == ["drift-check", *TRAINING_TASKS]
    assert sorted(p.name.split("-")[0] for p in (settings.home / "runs").iterdir()) == ["monitoring"] * 3
    verdict = json.loads(run.artifact("drift-check", "verdict").read_text())
    assert verdict["drift"] is True and verdict["inputs"]["current"] == str(december)
    decision = verdict["retrain"]
    assert decision["action"] == "retrain" and decision["rule"] == "realized_performance_drop"
    kind = task_outputs(run, "drift-check")["parameters"]["Output"]
    assert kind == decision["kind"] and kind in ("incremental", "full")
    # The retrain read the window and the history before it (never week 51, which comes later).
    ingested = task_outputs(run, "ingest")["artifacts"]["train"]["metadata"]
    assert ingested["source"] == str(december) and ingested["retrain_kind"] == kind
    history = [s["uri"] for s in ingested["sources"] if s["role"] == "history"]
    left_out = [d["uri"] for d in ingested["left_out"]]
    # Weeks 44-45 were read and left out: autumn is another regime than the first holiday week.
    assert (history, left_out) == (
        [],
        [str(windows / f"week-{w}.csv") for w in (44, 45)][-decision["history_windows"] :],
    )
    assert [s["uri"] for s in ingested["sources"] if s["role"] == "window"] == [str(december)]
    evaluation = json.loads(run.artifact("evaluate", "evaluation").read_text())
    assert evaluation["passed"] is True and evaluation["champion_version"] == old_version
    registered = json.loads(run.artifact("register", "registered").read_text())
    new_version = registered["version"]
    record = store.load("shop", new_version, sha256=registered["sha256"]).metadata["retraining"]
    assert (record["requested_kind"], record["fit_seconds"] > 0) == (kind, True)
    assert record["kind"] == kind or record["fallback"]
    assert (registered["status"], registered["champion"]) == (CANDIDATE, old_version)
    # Registered as a candidate; the champion stays until the rollout promotes the candidate.
    assert store.champion("shop").version == old_version
    assert store.status("shop", new_version).status == CANDIDATE
    state_uri = default_state_uri(settings.store_root, "shop")
    state, _ = load_rollout(state_uri)
    assert (state.status, state.stage.name, state.log_root) == (
        "running",
        "shadow",
        default_log_root(settings.store_root, "shop"),
    )
    assert (state.stored.legacy_version, state.stored.challenger_version) == (old_version, new_version)
    # The local stack's spec: the champion answers everything, the candidate sees a copy (shadow).
    spec_file = settings.home / "deployments" / "shop.json"
    spec = DeploymentSpec.from_dict(json.loads(spec_file.read_text()))
    assert [(p.name, p.model_uri, p.traffic, p.shadow) for p in spec.predictors] == [
        ("legacy", store.version_uri("shop", old_version), 100, False),
        ("challenger", registered["uri"], 0, True),
    ]
    outcome = retrain_outcome(run)
    assert (outcome["deploy_mode"], outcome["stage"], outcome["champion"]) == ("rollout", "shadow", old_version)
    # Every task of the run, the sub-pipeline's too, logs to one W&B group.
    runs = [read_offline_run(path) for path in find_offline_runs(Path(os.environ["WANDB_DIR"]))]
    last_run = {r.group for r in runs if r.job_type == "deploy"}
    assert {r.job_type for r in runs if r.group in last_run} == {"drift_check", *TRAINING_TASKS}
    # The new model knows December better than the autumn model on fresh December rows.
    fresh = ecommerce.generate([47], 4_000, seed=2).drop(columns="week")
    assert (
        _accuracy(store.load("shop", registered["version"]), fresh)
        > _accuracy(store.load("shop", old_version), fresh) + 0.02
    )
    summary = render_monitoring_summary(run, settings)
    assert f"Retrain   {kind}: registered {new_version} as a candidate" in summary
    assert "Policy    retrain (realized_performance_drop)" in summary
    assert "Deployed  shop (v2, rollout, local): written" in summary
    assert f"Rollout   {new_version} in shadow beside champion {old_version}" in summary
    assert f"kfp-mlops rollout step --deployment shop --state {state_uri}" in summary

    # A failed run changes neither the champion nor the running rollout.
    state_before, spec_before = storage.read_bytes(state_uri), spec_file.read_text()
    with pytest.raises(MlopsError, match=r"failed at task deploy: .*a rollout of .* is running at shadow"):
        run_pipeline("monitoring", {**arguments, "source": str(december)}, settings=settings)
    no_basket = tmp_path / "week-46-without-basket.csv"
    ecommerce.generate([46], 500, seed=3).drop(columns=["week", "avg_basket_value"]).to_csv(no_basket, index=False)
    with pytest.raises(MlopsError, match=r"failed at task drift-check: .*avg_basket_value"):
        run_pipeline("monitoring", {**arguments, "source": str(no_basket)}, settings=settings)
    assert (storage.read_bytes(state_uri), spec_file.read_text()) == (state_before, spec_before)
    assert store.champion("shop").version == old_version

    # The scheduled rollout step (here by hand, on simulated traffic) owns the promotion.
    started = state.stage_started_at
    log = state.log_root
    traffic(log, started + timedelta(seconds=1), 600, challenger_quality=0.7, seed=31)
    step = {"settings": settings, "state_uri": state_uri, "log_root": "", "deployment_name": "shop"}
    canary = run_rollout_step(str(tmp_path / "d1.json"), as_of=_iso(started, hours=2), **step)
    assert (canary["action"], canary["next_stage"]) == ("promote", "canary-5")
    assert store.champion("shop").version == old_version
    canary_start = started + timedelta(hours=2, seconds=1)
    traffic(log, canary_start, 700, challenger_quality=0.7, seed=32, predictors=("legacy",))
    traffic(log, canary_start, 700, challenger_quality=0.7, seed=33, predictors=("challenger",))
    final = run_rollout_step(str(tmp_path / "d2.json"), as_of=_iso(started, hours=4), **step)

    assert (final["action"], final["status"]) == ("promote", "promoted")
    pointer = store.champion_pointer("shop")
    assert (pointer["version"], pointer["previous"], pointer["by"]) == (
        new_version,
        old_version,
        f"rollout {state_uri}",
    )
    assert pointer["reasons"] == final["reasons"]
    assert store.status("shop", new_version).status == CHAMPION
    assert store.status("shop", old_version).status == RETIRED
    promoted = DeploymentSpec.from_dict(json.loads(spec_file.read_text()))
    assert [(p.name, p.model_uri, p.traffic) for p in promoted.predictors] == [("challenger", registered["uri"], 100)]


def _iso(start: datetime, *, hours: int) -> str:
    return (start + timedelta(hours=hours)).astimezone(timezone.utc).isoformat()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"drift_config": {"psi": 1}}, "drift config: unknown key(s) psi"),
        ({"rollout_plan": {"stepz": [5]}}, "stage plan: unknown key(s) stepz"),
        ({"deploy_mode": "canary"}, "deploy_mode 'canary': unknown"),
        ({"source": "window.txt"}, "give the data window as a .csv or .parquet file"),
        ({"retrain_policy": {"tolerence": 0.1}}, "retrain policy: unknown key(s) tolerence"),
        ({"retrain_policy": {"tolerance": 2}}, "tolerance=2: expected a number in (0, 1]"),
        ({"history_root": "/nonexistent/windows"}, "history_root '/nonexistent/windows': no .csv or .parquet window"),
        ({"retrain_kind": "full"}, "pipeline monitoring: unknown key(s) retrain_kind"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(arguments: dict, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_arguments({"store_root": "/tmp/store", "source": "window.csv", **arguments})
    assert message in str(refused.value)


def test_one_dag_holds_the_retrain_and_the_start_of_its_rollout(tmp_path: Path) -> None:
    """Compiled, strictly valid for KFP and Vertex: the training sub-DAG's deploy starts the rollout by default."""
    compiled = compile_pipeline("monitoring", tmp_path)
    check_compiled(compiled.vertex_path)
    doc = next(yaml.safe_load_all(compiled.kfp_path.read_text()))
    assert doc["root"]["inputDefinitions"]["parameters"]["deploy_mode"]["defaultValue"] == "rollout"
    gated = next(c["dag"]["tasks"] for c in doc["components"].values() if "deploy" in c.get("dag", {}).get("tasks", {}))
    assert set(gated) == {"register", "deploy"} and gated["deploy"]["dependentTasks"] == ["register"]
    parameters = gated["deploy"]["inputs"]["parameters"]
    for name, pipeline_input in [
        ("mode", "deploy_mode"),
        ("rollout_plan", "rollout_plan"),
        ("rollout_state_uri", "rollout_state_uri"),
        ("prediction_log_root", "prediction_log_root"),
    ]:
        assert parameters[name]["componentInputParameter"] == f"pipelinechannel--{pipeline_input}", name
