"""The ingest component's logic: Parquet outputs, artifact metadata and its W&B run.

How a source is split is tested with the split itself, in tests/modeling/test_splitting.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from kfp_mlops.components.ingest.logic import run_ingest
from kfp_mlops.core.errors import DataError
from kfp_mlops.modeling.datasets import read_parquet
from kfp_mlops.modeling.splitting import split_source
from tests.support.wandb_offline import find_offline_runs, read_offline_run


def test_run_ingest_writes_parquet_and_logs_an_offline_wandb_run(tmp_path: Path) -> None:
    """run_ingest: Parquet outputs, returned metadata, and a W&B run with two dataset artifacts."""
    train_path, test_path = tmp_path / "out" / "train.parquet", tmp_path / "out" / "test.parquet"

    metadata = run_ingest(
        "iris", "species", str(train_path), str(test_path), test_size=0.2, seed=3, pipeline_job_id="job-123"
    )

    train, test = read_parquet(train_path), read_parquet(test_path)
    expected = split_source("iris", "species", test_size=0.2, seed=3)
    pd.testing.assert_frame_equal(train, expected.train)
    pd.testing.assert_frame_equal(test, expected.test)
    assert metadata == {"train": expected.metadata("train"), "test": expected.metadata("test")}

    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    logged = read_offline_run(run_dir)
    assert (logged.job_type, logged.group, logged.exit_code) == ("ingest", "job-123", 0)
    assert logged.config == {"source": "iris", "label": "species", "test_size": 0.2, "seed": 3}
    assert {k: logged.summary[k] for k in ("train_rows", "test_rows")} == pytest.approx(
        {"train_rows": 120, "test_rows": 30}
    )
    assert sorted(a["name"] for a in logged.artifacts) == ["test-data", "train-data"]
    for part, path in (("train", train_path), ("test", test_path)):
        artifact = logged.artifact(f"{part}-data")
        assert artifact["type"] == "dataset"
        assert artifact["metadata"] == metadata[part]
        assert [(e["path"], e["size"]) for e in artifact["entries"]] == [(path.name, path.stat().st_size)]


def test_run_ingest_failure_finishes_the_run_as_failed(tmp_path: Path) -> None:
    """A bad source fails the task with its DataError and a failed W&B run; no output is written."""
    train_path = tmp_path / "train.parquet"
    with pytest.raises(DataError, match="data source 'foo': unknown"):
        run_ingest("foo", "species", str(train_path), str(tmp_path / "test.parquet"))

    assert not train_path.exists()
    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    assert read_offline_run(run_dir).exit_code == 1
