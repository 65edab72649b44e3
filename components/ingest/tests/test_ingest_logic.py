"""The ingest component's logic: Parquet outputs, artifact metadata and its W&B run.

How a source is split is tested with the split itself, in tests/modeling/test_splitting.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from kfp_mlops.components.ingest.logic import run_ingest
from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.demos import ecommerce
from kfp_mlops.modeling.datasets import read_parquet
from kfp_mlops.modeling.model_bundle import ModelBundle, save_bundle
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.splitting import split_source
from kfp_mlops.modeling.training import fit_model
from tests.support.models import register
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
    refs = {part: metadata[part].pop("wandb_artifact") for part in ("train", "test")}
    assert metadata == {"train": expected.metadata("train"), "test": expected.metadata("test")}

    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    logged = read_offline_run(run_dir)
    assert (logged.job_type, logged.group, logged.exit_code) == ("ingest", "job-123", 0)
    assert logged.name == "ingest-job-123"
    assert logged.config == {
        "source": "iris",
        "label": "species",
        "test_size": 0.2,
        "seed": 3,
        "retrain_kind": "",
        "kfp_run_id": "job-123",
        "kfp_run_url": "",
    }
    assert {k: logged.summary[k] for k in ("train_rows", "test_rows")} == pytest.approx(
        {"train_rows": 120, "test_rows": 30}
    )
    # Names specific to the data set (the source's, as no model name was given).
    assert sorted(a["name"] for a in logged.artifacts) == ["iris-test-data", "iris-train-data"]
    for part, path in (("train", train_path), ("test", test_path)):
        artifact = logged.artifact(f"iris-{part}-data")
        assert artifact["type"] == "dataset"
        assert artifact["metadata"] == metadata[part]
        # The reference the KFP artifact carries names exactly this version.
        assert refs[part] == {
            "name": f"iris-{part}-data",
            "type": "dataset",
            "digest": artifact["digest"],
            "version": None,
        }
        assert [(e["path"], e["size"]) for e in artifact["entries"]] == [(path.name, path.stat().st_size)]


def test_run_ingest_failure_finishes_the_run_as_failed(tmp_path: Path) -> None:
    """A bad source fails the task with its DataError and a failed W&B run; no output is written."""
    train_path = tmp_path / "train.parquet"
    with pytest.raises(DataError, match="data source 'foo': unknown"):
        run_ingest("foo", "species", str(train_path), str(tmp_path / "test.parquet"))

    assert not train_path.exists()
    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    assert read_offline_run(run_dir).exit_code == 1


def test_a_retrain_splits_the_window_and_its_same_regime_history(tmp_path: Path) -> None:
    """retrain_kind set: the champion's columns of the window and the history before it; the sets say which."""
    store_root = str(tmp_path / "store")
    champion = _crowned_autumn_model(tmp_path, store_root)
    windows = tmp_path / "windows"
    windows.mkdir()
    for week in (40, 47, 48, 49):  # week 40 is autumn: another regime than the holiday window
        ecommerce.generate([week], 600, seed=week).to_parquet(windows / f"week-{week}.parquet")
    train_path, test_path = tmp_path / "train.parquet", tmp_path / "test.parquet"

    metadata = run_ingest(
        str(windows / "week-48.parquet"),
        ecommerce.LABEL,
        str(train_path),
        str(test_path),
        retrain_kind="full",
        store_root=store_root,
        model_name="shop",
        history_root=str(windows),
        retrain_policy={"history_windows": 2},
    )

    train = read_parquet(train_path)
    assert list(train.columns) == [*champion.feature_names, ecommerce.LABEL]  # the champion's order, no week
    assert len(train) + len(read_parquet(test_path)) == 1_200  # week 48 and week 47; week 49 is later
    sources = metadata["train"]["sources"]
    assert [(s["uri"], s["role"]) for s in sources] == [
        (str(windows / "week-47.parquet"), "history"),
        (str(windows / "week-48.parquet"), "window"),
    ]
    assert [d["uri"] for d in metadata["train"]["left_out"]] == [str(windows / "week-40.parquet")]
    assert metadata["test"]["retrain_kind"] == "full" and metadata["test"]["base_version"]


def test_a_retrain_without_a_champion_or_with_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    window = tmp_path / "week-48.parquet"
    ecommerce.generate([48], 300, seed=1).to_parquet(window)
    outputs = (str(tmp_path / "train.parquet"), str(tmp_path / "test.parquet"))
    common = {"store_root": str(tmp_path / "store"), "model_name": "shop"}
    with pytest.raises(ConfigError, match=r"retrain of 'shop' .*: the champion cannot be loaded: there is none"):
        run_ingest(str(window), ecommerce.LABEL, *outputs, retrain_kind="full", **common)
    with pytest.raises(ConfigError, match="retrain_kind 'partial': unknown; choose one of incremental, full"):
        run_ingest(str(window), ecommerce.LABEL, *outputs, retrain_kind="partial", **common)
    assert not Path(outputs[0]).exists()


def _crowned_autumn_model(tmp_path: Path, store_root: str) -> ModelBundle:
    autumn = ecommerce.generate(range(38, 44), 300, seed=0).drop(columns=ecommerce.WEEK)
    model, metadata = fit_model(autumn, ecommerce.LABEL, "logistic_regression", {}, seed=0)
    save_bundle(tmp_path / "model", model, {**metadata, "training_data_uri": "memory"})
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(build_profile(autumn, metadata["feature_kinds"], ecommerce.LABEL)))
    store = ModelStore(store_root)
    registered = register(store.root, tmp_path / "model", name="shop", profile_path=profile)
    store.promote(registered, expected_champion=None, by="test", reasons=["first model"])
    return ModelBundle(model, metadata)
