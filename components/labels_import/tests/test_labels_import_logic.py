"""The labels_import component: its body appends a file of labels to the log and records what it did."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from kfp_mlops.components.labels_import.component import labels_import
from kfp_mlops.core.errors import DataError
from kfp_mlops.serving.prediction_log import read_labels
from tests.support.prediction_logs import log_predictions
from tests.support.wandb_offline import find_offline_runs, read_offline_run

T0 = (datetime.now(timezone.utc) - timedelta(days=2)).replace(microsecond=0)


def test_the_component_imports_and_records_the_import(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    log_predictions(log, ["r1", "r2", "r3"], T0)
    frame_path = tmp_path / "labels.csv"
    first, second = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    frame_path.write_text(f"request_id,label,labelled_at\nr1,1,{first.isoformat()}\nr3,0,{second.isoformat()}\n")
    out = tmp_path / "out"
    imported = SimpleNamespace(path=str(out / "imported.json"), metadata={})
    count = labels_import.python_func(
        imported=imported,
        wandb_page=SimpleNamespace(path=str(out / "wandb_page"), metadata={}),
        wandb_files=SimpleNamespace(path=str(out / "wandb_files"), metadata={}),
        labels_uri=str(frame_path),
        log_root=log,
        pipeline_job_id="j1",
        kfp_ui_host="https://kubeflow.example.com/pipeline/",
    )
    assert count == 2
    record = json.loads(Path(imported.path).read_text())
    assert record == imported.metadata
    assert (record["labels"], record["positives"], record["log_root"]) == (2, 1, log)
    assert record["first_labelled_at"] == first.isoformat()
    assert sorted(read_labels(log)["request_id"]) == ["r1", "r3"]
    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    logged = read_offline_run(run_dir)
    assert (logged.job_type, logged.group) == ("labels_import", "j1")
    assert logged.summary["labels"] == 2 and logged.summary["segment"] == record["segment"]
    assert logged.config["kfp_run_url"] == "https://kubeflow.example.com/pipeline/#/runs/details/j1"
    # The KFP UI leads to the run: its page, and a copy of the offline run (the pod's disk is gone after the task).
    assert "W&B run `labels_import-j1` was logged offline" in (out / "wandb_page").read_text()
    [copied] = find_offline_runs(out / "wandb_files")
    assert read_offline_run(copied, timeout=0.1).summary["labels"] == 2


def test_a_refused_file_fails_the_task_and_writes_nothing(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    log_predictions(log, ["r1"], T0)
    (tmp_path / "labels.csv").write_text("request_id,label\nr1,1\nr9,0\n")
    imported = SimpleNamespace(path=str(tmp_path / "imported.json"), metadata={})
    with pytest.raises(DataError, match=r"unknown request id\(s\) .*: r9$"):
        labels_import.python_func(
            imported=imported,
            wandb_page=SimpleNamespace(path=str(tmp_path / "wandb_page"), metadata={}),
            wandb_files=SimpleNamespace(path=str(tmp_path / "wandb_files"), metadata={}),
            labels_uri=str(tmp_path / "labels.csv"),
            log_root=log,
        )
    assert read_labels(log).empty and not Path(imported.path).exists()
