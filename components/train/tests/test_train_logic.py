"""The train component's logic on Iris: the model folder, the reference profile and the W&B run.

Fitting itself is tested in tests/modeling/test_training.py, the folder's loading in test_model_bundle.py.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn

from kfp_mlops.components.train.logic import run_train
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.core.tracking import ArtifactRef
from kfp_mlops.modeling.datasets import write_parquet
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.modeling.splitting import split_source
from tests.support.models import register
from tests.support.wandb_offline import find_offline_runs, read_offline_run, use_offline_wandb

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


# ingest's training data artifact, as its KFP Dataset's metadata names it.
TRAIN_DATA = ArtifactRef("garden-train-data", "dataset", "0123456789abcdef0123456789abcdef", None)


@pytest.fixture(scope="module")
def iris_train() -> pd.DataFrame:
    """Iris training rows as ingest splits them (120 rows, 40 per class)."""
    return split_source("iris", "species", test_size=0.2, seed=42).train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, iris_train: pd.DataFrame) -> tuple[Path, Path, dict[str, Any]]:
    """One run_train on Iris, shared by the model-folder tests (W&B dirs of its own, offline)."""
    root = tmp_path_factory.mktemp("trained")
    train_path = root / "train.parquet"
    write_parquet(iris_train, train_path)
    with pytest.MonkeyPatch.context() as env:
        use_offline_wandb(env, root)
        metadata = run_train(
            str(train_path),
            str(root / "model"),
            str(root / "profile.json"),
            label="species",
            estimator="logistic_regression",
            hyperparameters={"C": 2.0},
            seed=5,
            training_data_uri="/gcs/data-bucket/runs/1/train",
            pipeline_job_id="job-9",
        )
    return root / "model", root / "profile.json", metadata


def test_model_folder_holds_model_and_metadata(trained: tuple[Path, Path, dict[str, Any]]) -> None:
    """model.joblib plus metadata.json with versions, features, classes, data URI and metrics."""
    model_dir, _, metadata = trained
    assert sorted(p.name for p in model_dir.iterdir()) == [METADATA_FILE, MODEL_FILE]
    on_disk = json.loads((model_dir / METADATA_FILE).read_text())
    assert on_disk == {k: v for k, v in metadata.items() if k != "wandb_artifact"}
    assert metadata["wandb_artifact"]["name"] == "train-model"  # no data artifact nor model name: the file stem
    assert on_disk["versions"]["sklearn"] == sklearn.__version__
    assert on_disk["versions"]["numpy"] == np.__version__
    assert {
        k: on_disk[k]
        for k in (
            "estimator",
            "hyperparameters",
            "seed",
            "label",
            "feature_names",
            "classes",
            "training_rows",
            "training_data_uri",
        )
    } == {
        "estimator": "logistic_regression",
        "hyperparameters": {"C": 2.0},
        "seed": 5,
        "label": "species",
        "feature_names": FEATURES,
        "classes": CLASSES,
        "training_rows": 120,
        "training_data_uri": "gs://data-bucket/runs/1/train",  # the /gcs/ mount path, mapped back
    }
    assert on_disk["metrics"]["train_accuracy"] > 0.9
    assert len(on_disk["model_sha256"]) == 64


def test_reference_profile(trained: tuple[Path, Path, dict[str, Any]], iris_train: pd.DataFrame) -> None:
    """Monotonic quantile edges spanning each feature, and the training label shares."""
    _, profile_path, _ = trained
    profile = json.loads(profile_path.read_text())

    assert {k: profile[k] for k in ("version", "rows", "label", "feature_names")} == {
        "version": 1,
        "rows": 120,
        "label": "species",
        "feature_names": FEATURES,
    }
    assert profile["label_shares"] == pytest.approx(dict.fromkeys(CLASSES, 1 / 3))
    for name in FEATURES:
        entry = profile["features"][name]
        edges = entry["quantile_edges"]
        assert all(a < b for a, b in itertools.pairwise(edges)), name
        assert (edges[0], edges[-1]) == (entry["min"], entry["max"])
        assert {k: entry[k] for k in ("min", "max", "mean", "null_share")} == pytest.approx(
            {
                "min": iris_train[name].min(),
                "max": iris_train[name].max(),
                "mean": iris_train[name].mean(),
                "null_share": 0.0,
            }
        )


def test_profile_of_a_categorical_feature(tmp_path: Path, iris_train: pd.DataFrame) -> None:
    """Category frequencies of a string feature sum to 1 (nulls counted apart)."""
    frame = iris_train.copy()
    frame["garden"] = np.where(frame.index % 4 == 0, "north", "south")
    frame.loc[1, "garden"] = None
    train_path = tmp_path / "train.parquet"
    write_parquet(frame, train_path)

    run_train(
        str(train_path),
        str(tmp_path / "model"),
        str(tmp_path / "profile.json"),
        label="species",
        estimator="decision_tree",
        hyperparameters={"max_depth": 3},
        uses=[TRAIN_DATA],
    )

    garden = json.loads((tmp_path / "profile.json").read_text())["features"]["garden"]
    assert garden["kind"] == "categorical"
    assert garden["frequencies"] == pytest.approx({"north": 30 / 119, "south": 89 / 119})
    assert sum(garden["frequencies"].values()) + garden["other_share"] == pytest.approx(1.0)
    assert garden["null_share"] == pytest.approx(1 / 120)
    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    logged = read_offline_run(run_dir)
    assert (logged.job_type, logged.exit_code) == ("train", 0)
    assert logged.summary["train_accuracy"] > 0.9
    # Named after the data set; the exact training data version is the input, never ``:latest``.
    assert sorted(a["name"] for a in logged.artifacts) == ["garden-model", "garden-reference-profile"]
    model_artifact = logged.artifact("garden-model")
    assert model_artifact["metadata"]["inputs"] == [TRAIN_DATA.to_dict()]
    assert sorted(e["path"] for e in model_artifact["entries"]) == [METADATA_FILE, MODEL_FILE]


@pytest.mark.parametrize(
    ("estimator", "hyperparameters", "kind", "fallback"),
    [
        ("logistic_regression", {"C": 2.0}, "incremental", None),
        ("logistic_regression", {"C": 2.0}, "full", None),
        ("random_forest", {}, "full", None),
        ("random_forest", {}, "incremental", "the estimator changes"),
    ],
)
def test_a_retrain_updates_or_replaces_the_champion_and_records_how(
    tmp_path: Path,
    trained: tuple[Path, Path, dict[str, Any]],
    iris_train: pd.DataFrame,
    estimator: str,
    hyperparameters: dict[str, Any],
    kind: str,
    fallback: str | None,
) -> None:
    """retrain_kind: the champion in the store is retrained (never changed); metadata["retraining"] says how."""
    model_dir, profile, champion_metadata = trained
    store = ModelStore(str(tmp_path / "store"))
    registered = register(store.root, model_dir, profile_path=profile)
    store.promote(registered, expected_champion=None, by="test", reasons=["first model"])
    train_path = tmp_path / "train.parquet"
    write_parquet(iris_train, train_path)
    sources = [{"uri": "gs://windows/week-1.parquet", "rows": 120, "role": "window"}]

    metadata = run_train(
        str(train_path),
        str(tmp_path / "model"),
        str(tmp_path / "profile.json"),
        label="species",
        estimator=estimator,
        hyperparameters=hyperparameters,
        seed=5,
        retrain_kind=kind,
        store_root=store.root,
        model_name="iris",
        sources=sources,
    )

    record = metadata["retraining"]
    assert (record["requested_kind"], record["sources"]) == (kind, sources)
    if fallback:
        assert record["kind"] == "full" and fallback in record["fallback"]
    else:
        assert (record["kind"], record["fallback"]) == (kind, None)
    assert record["base_model_sha256"] == champion_metadata["model_sha256"]
    assert record["fit_seconds"] > 0 and metadata["estimator"] == estimator
    assert json.loads((tmp_path / "model" / METADATA_FILE).read_text())["retraining"] == record
    assert store.champion("iris").version == registered.version


def test_a_retrain_without_a_champion_is_refused(tmp_path: Path, iris_train: pd.DataFrame) -> None:
    train_path = tmp_path / "train.parquet"
    write_parquet(iris_train, train_path)
    with pytest.raises(ConfigError, match=r"retrain of 'iris' in .*: the champion cannot be loaded: there is none"):
        run_train(
            str(train_path),
            str(tmp_path / "model"),
            str(tmp_path / "profile.json"),
            label="species",
            estimator="logistic_regression",
            hyperparameters={},
            retrain_kind="full",
            store_root=str(tmp_path / "store"),
            model_name="iris",
        )
    assert not (tmp_path / "model").exists()
