"""The evaluate component's logic: the stored champion, and the metrics, charts and reasons it logs to W&B.

The scores and the gate themselves are tested in tests/modeling/test_evaluation.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kfp_mlops.components.evaluate.logic import run_evaluate
from kfp_mlops.modeling.datasets import write_parquet
from kfp_mlops.modeling.evaluation import GATE_METRICS
from kfp_mlops.modeling.model_bundle import METADATA_FILE
from kfp_mlops.modeling.splitting import split_source
from tests.support.models import crown, save_model
from tests.support.wandb_offline import find_offline_runs, read_offline_run

CLASSES = ["setosa", "versicolor", "virginica"]


class Models:
    """A good Iris model folder and the test split as Parquet, as train and ingest leave them."""

    def __init__(self, root: Path) -> None:
        split = split_source("iris", "species", test_size=0.2, seed=42)
        self.test_path = root / "test.parquet"
        write_parquet(split.test, self.test_path)
        self.good = save_model(root / "good", split.train, "logistic_regression")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """The model folder and test Parquet, made once per module."""
    return Models(tmp_path_factory.mktemp("models"))


def test_run_evaluate_logs_metrics_confusion_matrix_and_roc(store_root: str, models: Models) -> None:
    """run_evaluate compares with the stored champion and logs metrics, both charts and the reasons."""
    version = crown(store_root, models.good)

    result = run_evaluate(
        str(models.good),
        str(models.test_path),
        model_sha256=json.loads((models.good / METADATA_FILE).read_text())["model_sha256"],
        store_root=store_root,
        model_name="iris",
        threshold=0.9,
        pipeline_job_id="job-5",
    )

    assert result.passed is True
    assert result.champion_version == version
    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    logged = read_offline_run(run_dir)
    assert (logged.job_type, logged.group, logged.exit_code) == ("evaluate", "job-5", 0)
    assert {k: logged.summary[k] for k in (*GATE_METRICS, "passed")} == pytest.approx({**result.metrics, "passed": 1.0})
    assert logged.summary["gate_reasons"] == "; ".join(result.reasons)
    assert {"confusion_matrix_table", "roc_curve_table"} <= set(logged.summary)
    counts = {(actual, predicted): n for actual, predicted, n in logged.table("confusion_matrix_table")["data"]}
    assert {(a, p): counts.get((a, p), 0) for a in CLASSES for p in CLASSES} == {
        (a, p): result.confusion_matrix[i][j] for i, a in enumerate(CLASSES) for j, p in enumerate(CLASSES)
    }
    assert {row[0] for row in logged.table("roc_curve_table")["data"]} == set(CLASSES)
    assert logged.config == {
        "gate_metric": "accuracy",
        "threshold": 0.9,
        "max_regression": 0.0,
        "model_name": "iris",
        "store_root": store_root,
        "kfp_run_id": "job-5",
        "kfp_run_url": "",  # no KFP UI address given
    }


def test_the_component_publishes_its_wandb_run_to_the_kfp_ui(store_root: str, models: Models, tmp_path: Path) -> None:
    """wandb_page (Markdown) says where the offline run is, wandb_files holds a copy, the run links the KFP run."""
    from types import SimpleNamespace

    from kfp.dsl import ClassificationMetrics, Metrics

    from kfp_mlops.components.evaluate.component import evaluate

    out = tmp_path / "out"
    passed = evaluate.python_func(
        model=SimpleNamespace(
            path=str(models.good),
            metadata={"model_sha256": json.loads((models.good / METADATA_FILE).read_text())["model_sha256"]},
        ),
        test_data=SimpleNamespace(path=str(models.test_path), metadata={}),
        metrics=Metrics(name="metrics", uri=str(out / "metrics")),
        classification=ClassificationMetrics(name="classification", uri=str(out / "classification")),
        evaluation=SimpleNamespace(path=str(out / "evaluation.json"), metadata={}),
        wandb_page=SimpleNamespace(path=str(out / "wandb_page"), metadata={}),
        wandb_files=SimpleNamespace(path=str(out / "wandb_files"), metadata={}),
        store_root=store_root,
        model_name="iris",
        pipeline_job_id="job-6",
        kfp_ui_host="https://kubeflow.example.com/pipeline",
    )

    assert passed is True
    assert "W&B run `evaluate-job-6` was logged offline" in (out / "wandb_page").read_text()
    [copied] = find_offline_runs(out / "wandb_files")
    logged = read_offline_run(copied, timeout=0.1)  # complete: readable without the pod's original
    assert logged.summary["passed"] == 1.0
    assert logged.config["kfp_run_url"] == "https://kubeflow.example.com/pipeline/#/runs/details/job-6"
