"""The W&B helper, against real offline runs read back from their ``.wandb`` files.

Never online: conftest's ``isolated_env`` sets ``WANDB_MODE=offline``, drops ``WANDB_API_KEY``
and points every W&B folder at the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.core.tracking import resolve_mode, run_location, tracked_run
from tests.support.wandb_offline import find_offline_runs, read_offline_run

CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "offline"),
        ({"WANDB_API_KEY": ""}, "offline"),
        ({"WANDB_API_KEY": "k" * 40}, "online"),
        ({"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "offline"}, "offline"),
        ({"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "disabled"}, "disabled"),
        ({"WANDB_MODE": "online"}, "online"),
        ({"WANDB_MODE": " Offline "}, "offline"),
    ],
)
def test_resolve_mode(environ: dict[str, str], expected: str) -> None:
    assert resolve_mode(environ) == expected


def test_resolve_mode_reads_the_process_environment_and_rejects_unknown_modes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_mode() == "offline"  # conftest sets WANDB_MODE=offline
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    with pytest.raises(ConfigError, match="WANDB_MODE='dryrun'"):
        resolve_mode()


def test_tracked_run_records_metrics_charts_table_and_artifacts(tmp_path: Path) -> None:
    data_dir = tmp_path / "iris-train"
    (data_dir / "parts").mkdir(parents=True)
    (data_dir / "train.csv").write_text("sepal_length,species\n5.1,setosa\n")
    (data_dir / "parts" / "schema.json").write_text("{}")
    y_true = ["setosa", "virginica", "virginica", "setosa"]  # versicolor absent on purpose
    y_pred = ["setosa", "virginica", "versicolor", "setosa"]
    # Column 2 separates virginica from setosa; column 1 does not.
    y_proba = np.array([[0.6, 0.35, 0.05], [0.1, 0.1, 0.8], [0.1, 0.45, 0.45], [0.7, 0.25, 0.05]])
    config = {"C": 0.5, "features": ["sepal_length"], "split": {"test": 0.25}}

    with tracked_run(
        "train", group="pipeline-job-42", config=config, settings=Settings.from_env(), name="train-42"
    ) as run:
        run.log_metrics({"accuracy": 0.75, "f1_macro": np.float64(2 / 3)})
        run.log_confusion_matrix(y_true, y_pred, CLASSES)
        run.log_roc_curve(y_true, y_proba, CLASSES)
        run.log_table("predictions", pd.DataFrame({"y_true": y_true, "y_pred": y_pred}))
        run.log_artifact("iris-train", "dataset", uri=str(data_dir), metadata={"rows": 1, "source": "csv"})
        run.log_artifact(
            "iris-model",
            "model",
            uri="gs://models-bucket/iris/v1/",
            metadata={"framework": "sklearn"},
            uses=["iris-train:latest"],
        )
        run_dir = run.dir
        assert run.url is None
        assert run_location(run) == str(run_dir)

    assert find_offline_runs(Path(os.environ["WANDB_DIR"])) == [run_dir]
    logged = read_offline_run(run_dir)
    assert logged.exit_code == 0
    assert (logged.job_type, logged.group, logged.name) == ("train", "pipeline-job-42", "train-42")
    assert logged.project == "kfp-mlops"  # Settings default
    assert logged.config == config
    assert logged.summary["accuracy"] == pytest.approx(0.75)
    assert logged.summary["f1_macro"] == pytest.approx(2 / 3)
    assert logged.history[0]["accuracy"] == pytest.approx(0.75)

    matrix = logged.table("confusion_matrix_table")
    counts = {(actual, predicted): n for actual, predicted, n in matrix["data"]}
    assert counts[("setosa", "setosa")] == 2
    assert counts[("virginica", "versicolor")] == 1
    assert sum(counts.values()) == len(y_true)

    roc = logged.table("roc_curve_table")
    assert {row[0] for row in roc["data"]} == {"setosa", "virginica"}
    # virginica's own probability column separates it perfectly: a point at fpr 0, tpr 1.
    # (wandb alone would have read the versicolor column for it.)
    assert ["virginica", 0.0, 1.0] in roc["data"]

    assert logged.table("predictions")["columns"] == ["y_true", "y_pred"]

    dataset = logged.artifact("iris-train")
    assert dataset["type"] == "dataset"
    assert dataset["metadata"] == {"rows": 1, "source": "csv"}
    assert sorted(e["path"] for e in dataset["entries"]) == ["parts/schema.json", "train.csv"]
    model = logged.artifact("iris-model")
    assert model["type"] == "model"
    assert model["metadata"] == {"framework": "sklearn", "inputs": ["iris-train:latest"]}
    assert [(e["path"], e["ref"]) for e in model["entries"]] == [
        ("iris/v1", "gs://models-bucket/iris/v1/")  # wandb drops the trailing slash
    ]


def test_the_project_and_entity_come_from_the_settings_unless_a_project_is_given() -> None:
    settings = Settings.from_env({"WANDB_PROJECT": "from-settings", "WANDB_ENTITY": "team-a"})
    with tracked_run("train", group="g", config={}, settings=settings) as default:
        pass
    with tracked_run("train", group="g", config={}, settings=settings, project="from-pipeline") as given:
        pass

    assert (read_offline_run(default.dir).project, read_offline_run(given.dir).project) == (
        "from-settings",
        "from-pipeline",
    )
    assert default.run.entity == given.run.entity == "team-a"


def test_a_single_file_artifact_and_bad_uris(tmp_path: Path) -> None:
    model_file = tmp_path / "model.joblib"
    model_file.write_bytes(b"\x00" * 10)
    with tracked_run("register", group="pipeline-job-43", config={}, settings=Settings.from_env()) as run:
        run.log_artifact("iris-model", "model", uri=str(model_file), metadata={})
        with pytest.raises(FileNotFoundError, match="no file or folder"):
            run.log_artifact("x", "model", uri=str(tmp_path / "missing"), metadata={})
        with pytest.raises(ValueError, match="unsupported URI"):
            run.log_artifact("x", "model", uri="s3://bucket/model", metadata={})
        with pytest.raises(ValueError, match="names no object"):
            run.log_artifact("x", "model", uri="gs://bucket", metadata={})
        with pytest.raises(ValueError, match="'daisy' is not one of"):
            run.log_confusion_matrix(["daisy"], ["setosa"], CLASSES)
        with pytest.raises(ValueError, match="3 is not one of"):
            run.log_roc_curve([3], np.ones((1, 3)) / 3, CLASSES)

    entries = read_offline_run(run.dir).artifact("iris-model")["entries"]
    assert [(e["path"], e["size"]) for e in entries] == [("model.joblib", 10)]


def test_a_failing_body_finishes_the_run_as_failed_and_propagates() -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        tracked_run("evaluate", group="pipeline-job-44", config={"k": 1}, settings=Settings.from_env()) as run,
    ):
        run.log_metrics({"accuracy": 0.1})
        raise RuntimeError("boom")

    logged = read_offline_run(run.dir)
    assert logged.exit_code == 1
    assert logged.summary["accuracy"] == pytest.approx(0.1)


def test_runs_in_one_process_follow_a_changed_wandb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # wandb caches its environment at the first init of a process; earlier tests already ran one.
    other = tmp_path / "other-wandb"
    other.mkdir()
    monkeypatch.setenv("WANDB_DIR", str(other))
    with tracked_run("ingest", group="g", config={}, settings=Settings.from_env()) as run:
        pass
    assert run.dir.parent == other / "wandb"


def test_reader_agrees_with_wandb_leet_on_records_spanning_blocks() -> None:
    # A 100 kB config value spans several 32 KiB blocks of the log.
    with tracked_run("ingest", group="g", config={"blob": "x" * 100_000}, settings=Settings.from_env()) as run:
        run.log_metrics({"rows": 150})
    logged = read_offline_run(run.dir)
    assert logged.config["blob"] == "x" * 100_000

    leet = subprocess.run(
        [str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--json", str(run.dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    types = [json.loads(line)["type"] for line in leet.stdout.splitlines() if line.strip()]
    assert types == logged.record_types


CHILD_RUN = textwrap.dedent(
    """
    import os, sys
    from kfp_mlops.core.config import Settings
    from kfp_mlops.core.tracking import tracked_run
    from wandb.sdk import wandb_setup

    with tracked_run("train", group="g", config={}, settings=Settings.from_env()) as run:
        run.log_metrics({"accuracy": 1.0})
    print(run.dir)
    print(wandb_setup.singleton().assert_service().owns_service)
    """
)


def _child(env: dict[str, str]) -> tuple[Path, bool]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD_RUN],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    run_dir, owns_service = done.stdout.split()
    return Path(run_dir), owns_service == "True"


def test_a_stale_inherited_service_falls_back_to_a_private_one() -> None:
    env = dict(os.environ, WANDB_SERVICE="3-1-unix-/nonexistent/wandb/socket")
    run_dir, owns_service = _child(env)
    assert owns_service
    assert read_offline_run(run_dir).exit_code == 0
