"""The training pipeline end to end with kfp.local: real tasks, real data, W&B offline, real storage.

Also its argument check (fast): every bad parameter is refused before anything runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from kfp_mlops.app.local_run import read_json_output, run_pipeline
from kfp_mlops.app.summary import task_outputs
from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.modeling.datasets import load_iris_frame
from kfp_mlops.modeling.model_store import CANDIDATE, CHAMPION, ModelStore
from kfp_mlops.pipelines.training import check_arguments
from kfp_mlops.rollout import load_rollout
from kfp_mlops.rollout.state import default_state_uri
from kfp_mlops.serving.cluster import seldon_deployment
from kfp_mlops.serving.spec import DeploymentSpec
from tests.support.wandb_offline import find_offline_runs, read_offline_run

TASKS = ["ingest", "validate", "train", "evaluate", "register", "deploy"]


@pytest.mark.slow
def test_iris_run_registers_champion_and_logs_to_wandb(tmp_path: Path) -> None:
    settings = Settings.from_env()
    run = run_pipeline("training", {"store_root": settings.store_root}, settings=settings)

    assert run.tasks == TASKS
    metrics = task_outputs(run, "evaluate")["artifacts"]["metrics"]["metadata"]
    assert metrics["accuracy"] >= 0.9
    assert task_outputs(run, "evaluate")["parameters"]["Output"] is True

    registered = read_json_output(run, "register", "registered")
    assert (registered["status"], registered["champion"]) == (CANDIDATE, None)
    store = ModelStore(settings.store_root)
    assert store.versions("iris-classifier") == [registered["version"]]
    # The first model of a name is deployed single, which makes it champion (saying why).
    pointer = store.champion_pointer("iris-classifier")
    assert (pointer["version"], pointer["by"]) == (registered["version"], "deploy single")
    assert pointer["reasons"][0].startswith("first model of iris-classifier: no champion to compare it with")
    assert store.status("iris-classifier", registered["version"]).status == CHAMPION
    bundle = store.load("iris-classifier", registered["version"], sha256=registered["sha256"])
    iris = load_iris_frame()
    assert (bundle.model.predict(iris[bundle.feature_names]) == iris["species"]).mean() > 0.9
    evaluation = storage.read_json(storage.join(registered["uri"], "evaluation.json"))
    assert evaluation["passed"] is True
    assert evaluation["metrics"]["accuracy"] == pytest.approx(metrics["accuracy"])

    runs = [read_offline_run(path) for path in find_offline_runs(Path(os.environ["WANDB_DIR"]))]
    by_type = {r.job_type: r for r in runs}
    assert sorted(by_type) == sorted(TASKS)
    assert len({r.group for r in runs}) == 1 and runs[0].group not in ("", "local")
    assert all(r.exit_code == 0 for r in runs)
    assert by_type["ingest"].summary["train_rows"] == 120
    assert by_type["evaluate"].summary["accuracy"] == pytest.approx(metrics["accuracy"])
    assert by_type["evaluate"].summary["roc_auc"] == pytest.approx(metrics["roc_auc"])
    assert "confusion_matrix_table" in by_type["evaluate"].summary
    assert by_type["train"].config["estimator"] == "logistic_regression"
    assert by_type["train"].artifact("iris-classifier-model")["metadata"]["classes"] == [
        "setosa",
        "versicolor",
        "virginica",
    ]
    assert by_type["ingest"].artifact("iris-classifier-train-data")["type"] == "dataset"
    assert by_type["register"].summary["version"] == registered["version"]

    # deploy_target=local: the spec the local stack serves, and the manifest a cluster would run.
    spec_file = settings.home / "deployments" / "iris.json"
    assert DeploymentSpec.from_dict(json.loads(spec_file.read_text())) == DeploymentSpec.single(
        "iris", registered["uri"]
    )
    deployment = read_json_output(run, "deploy", "deployment")
    assert (deployment["state"], deployment["target"], deployment["spec_path"]) == ("written", "local", str(spec_file))
    assert (deployment["mode"], deployment["requested_mode"]) == ("single", "rollout")
    manifest = yaml.safe_load(run.artifact("deploy", "manifest").read_text())
    assert seldon_deployment.problems(manifest) == []
    assert by_type["deploy"].summary["state"] == "written"


@pytest.mark.slow
def test_failed_gate_skips_register_and_keeps_the_champion(tmp_path: Path) -> None:
    settings = Settings.from_env()
    first = run_pipeline("training", {"store_root": settings.store_root}, settings=settings)
    champion = read_json_output(first, "register", "registered")["version"]

    # A forest that scores below the champion on the same test rows must not replace it.
    second = run_pipeline(
        "training",
        {"store_root": settings.store_root, "estimator": "random_forest", "threshold": 0.999},
        settings=settings,
    )
    assert second.tasks == TASKS[:-2]
    assert not second.artifact("register", "registered").exists()
    assert not second.artifact("deploy", "deployment").exists()
    assert task_outputs(second, "evaluate")["parameters"]["Output"] is False
    reasons = task_outputs(second, "evaluate")["artifacts"]["evaluation"]["metadata"]["reasons"]
    assert any("misses the threshold 0.999" in r for r in reasons)
    assert any(f"champion {champion}" in r for r in reasons)
    store = ModelStore(settings.store_root)
    assert store.versions("iris-classifier") == [champion]
    assert store.champion("iris-classifier").version == champion


@pytest.mark.slow
def test_bad_data_stops_at_validate_and_stores_nothing(tmp_path: Path) -> None:
    settings = Settings.from_env()
    frame = load_iris_frame()
    frame.loc[::7, "sepal_width"] = None
    frame.loc[::11, "petal_length"] = 99.0
    source = tmp_path / "bad.csv"
    frame.to_csv(source, index=False)

    with pytest.raises(MlopsError) as failure:
        run_pipeline(
            "training",
            {"store_root": settings.store_root, "source": str(source), "schema_uri": str(_iris_schema(tmp_path))},
            settings=settings,
        )
    message = str(failure.value)
    # validate uploads its report; refuse-unfit-data then fails the run with its problems
    assert "failed at task refuse-unfit-data: the data is unfit for training" in message
    assert "sepal_width" in message and "petal_length" in message
    assert "\n" not in message
    assert storage.list_uris(settings.store_root) == []


@pytest.mark.slow
def test_gcs_emulator_source_and_store(gcs_bucket: str) -> None:
    """Data read from and the model stored on a real GCS emulator, reached by every task."""
    settings = Settings.from_env()
    source = f"{gcs_bucket}/data/iris.parquet"
    buffer = load_iris_frame().to_parquet(index=False)
    storage.write_bytes(source, buffer)
    store_root = f"{gcs_bucket}/models-store"

    run = run_pipeline("training", {"store_root": store_root, "source": source}, settings=settings)

    registered = read_json_output(run, "register", "registered")
    assert registered["uri"].startswith(f"{store_root}/models/iris-classifier/versions/")
    assert ModelStore(store_root).champion("iris-classifier").version == registered["version"]
    assert ModelStore(store_root).load("iris-classifier", registered["version"]).metadata["training_rows"] == 120
    assert task_outputs(run, "ingest")["artifacts"]["train"]["metadata"]["source"] == source


@pytest.mark.slow
def test_a_second_model_starts_a_rollout_and_single_must_be_asked_for(tmp_path: Path) -> None:
    """No run serves a new model at 100 % without the rollout, unless it asks for single."""
    settings = Settings.from_env()
    store = ModelStore(settings.store_root)
    first = read_json_output(
        run_pipeline("training", {"store_root": settings.store_root}, settings=settings), "register", "registered"
    )

    second = run_pipeline("training", {"store_root": settings.store_root}, settings=settings)  # as good: passes

    registered = read_json_output(second, "register", "registered")
    deployment = read_json_output(second, "deploy", "deployment")
    assert (deployment["mode"], deployment["stage"], deployment["champion"]) == ("rollout", "shadow", first["version"])
    assert store.champion("iris-classifier").version == first["version"]
    assert store.status("iris-classifier", registered["version"]).status == CANDIDATE
    state, _ = load_rollout(default_state_uri(settings.store_root, "iris"))
    assert (state.status, state.stage.name, state.stored.challenger_version) == (
        "running",
        "shadow",
        registered["version"],
    )
    spec = DeploymentSpec.from_dict(json.loads((settings.home / "deployments" / "iris.json").read_text()))
    assert [(p.name, p.traffic, p.shadow) for p in spec.predictors] == [("legacy", 100, False), ("challenger", 0, True)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"deploy_mode": "canary"}, "deploy_mode 'canary': unknown; choose one of single, ab, shadow, rollout"),
        ({"rollout_plan": {"stepz": [5]}}, "stage plan: unknown key(s) stepz"),
        ({"rollout_plan": {"steps": [50, 5]}}, "steps [50, 5] must be strictly increasing"),
        ({"rollout_plan": [5, 100]}, "rollout_plan: must be a JSON object"),
        ({"deploy_mode": "ab", "ab_traffic": 150}, "traffic 150 must be an integer from 0 to 100"),
        (
            {"store_root": "gs://b/s", "deploy_target": "cluster", "rollout_state_uri": "/tmp/r.json"},
            "deploy_target cluster: rollout_state_uri '/tmp/r.json' would stay in a pod; use gs://",
        ),
    ],
)
def test_deploy_arguments_are_refused_before_anything_runs(arguments: dict, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_arguments({"store_root": "/tmp/store", **arguments})
    assert message in str(refused.value)


def _iris_schema(tmp_path: Path) -> Path:
    from kfp_mlops.modeling.schema import IRIS_SCHEMA

    path = tmp_path / "schema.json"
    path.write_text(IRIS_SCHEMA.to_json())
    json.loads(path.read_text())
    return path
