"""The train component's logic on Iris: estimators, hyperparameters, the model folder and its profile."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from threadpoolctl import threadpool_limits

from kfp_mlops.components.ingest.logic import split_source
from kfp_mlops.components.train.logic import feature_kinds, fit_model, run_train
from kfp_mlops.core.errors import ConfigError, DataError, MlopsError
from kfp_mlops.modeling.datasets import write_parquet
from kfp_mlops.modeling.estimators import ESTIMATORS, make_estimator
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE, dump_model, load_bundle
from tests.support.wandb_offline import find_offline_runs, read_offline_run

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


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
        env.setenv("WANDB_MODE", "offline")
        env.delenv("WANDB_API_KEY", raising=False)
        for var, sub in [
            ("WANDB_DIR", "wandb"),
            ("WANDB_DATA_DIR", "wandb-data"),
            ("WANDB_CACHE_DIR", "wandb-cache"),
            ("WANDB_CONFIG_DIR", "wandb-config"),
        ]:
            (root / sub).mkdir()
            env.setenv(var, str(root / sub))
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


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_estimator_trains_on_iris(iris_train: pd.DataFrame, estimator: str) -> None:
    """Each named estimator fits and predicts Iris well on its own training rows."""
    hyperparameters = {"max_iter": 30} if estimator == "gradient_boosting" else {}  # keeps the test fast
    with threadpool_limits(limits=1):  # 120 rows: OpenMP threads only contend with the W&B service
        model, metadata = fit_model(iris_train, "species", estimator, hyperparameters, seed=0)

    assert metadata["metrics"]["train_accuracy"] > 0.8
    assert (metadata["estimator"], metadata["classes"], metadata["feature_names"]) == (estimator, CLASSES, FEATURES)
    assert type(model.named_steps["model"]).__name__ == ESTIMATORS[estimator][0].split(":")[1]
    proba = model.predict_proba(iris_train[FEATURES])
    assert proba.shape == (120, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_hyperparameters_and_seed_reach_the_estimator(iris_train: pd.DataFrame) -> None:
    """Given values override the defaults; the project's defaults and the seed fill in the rest."""
    model, metadata = fit_model(iris_train, "species", "logistic_regression", {"C": 0.5}, seed=11)
    params = model.named_steps["model"].get_params()
    assert {k: params[k] for k in ("C", "max_iter", "random_state")} == {"C": 0.5, "max_iter": 1000, "random_state": 11}
    assert metadata["hyperparameters"] == {"C": 0.5}

    forest = make_estimator("random_forest", {"n_estimators": 7, "random_state": 3}, seed=99)
    assert {k: forest.get_params()[k] for k in ("n_estimators", "random_state")} == {
        "n_estimators": 7,
        "random_state": 3,
    }


def test_unknown_estimator_lists_the_choices() -> None:
    """A typo in the estimator name is a ConfigError listing every valid name."""
    with pytest.raises(ConfigError) as exc:
        make_estimator("xgboost", {}, seed=0)
    assert str(exc.value) == (
        "estimator 'xgboost': unknown; choose one of "
        "decision_tree, gradient_boosting, knn, logistic_regression, random_forest"
    )


def test_unknown_hyperparameter_lists_the_accepted_ones() -> None:
    """A hyperparameter the estimator does not take is named, with those it does take."""
    with pytest.raises(ConfigError) as exc:
        make_estimator("knn", {"n_neighbours": 3, "depth": 2}, seed=0)
    message = str(exc.value)
    assert message.startswith("estimator 'knn': unknown hyperparameter(s) depth, n_neighbours; it accepts ")
    assert "n_neighbors" in message.split("it accepts ")[1].split(", ")


@pytest.mark.parametrize(
    ("estimator", "hyperparameters", "expected"),
    [
        ("random_forest", {"n_estimators": -1}, "'n_estimators' parameter of RandomForestClassifier must be an int"),
        ("logistic_regression", {"C": "strong"}, "'C' parameter of LogisticRegression must be a float"),
        (
            "decision_tree",
            {"criterion": "bogus"},
            "'criterion' parameter of DecisionTreeClassifier must be a str among",
        ),
        ("knn", {"n_neighbors": 0}, "'n_neighbors' parameter of KNeighborsClassifier must be an int"),
    ],
)
def test_bad_hyperparameter_values_fail_before_fitting(
    estimator: str, hyperparameters: dict[str, Any], expected: str
) -> None:
    """A value the estimator rejects is a ConfigError when built, not a crash at fit time."""
    with pytest.raises(ConfigError, match=rf"^estimator '{estimator}': The {expected}"):
        make_estimator(estimator, hyperparameters, seed=0)


def test_a_categorical_feature_is_one_hot_encoded(iris_train: pd.DataFrame) -> None:
    """A string column becomes one-hot columns in front of the estimator; unseen values still predict."""
    frame = iris_train.copy()
    frame["garden"] = np.where(frame.index % 3 == 0, "north", "south")

    model, metadata = fit_model(frame, "species", "logistic_regression", {}, seed=0)

    assert metadata["feature_kinds"] == {**dict.fromkeys(FEATURES, "numeric"), "garden": "categorical"}
    encoder = model.named_steps["preprocess"].named_transformers_["categorical"]
    assert [list(c) for c in encoder.categories_] == [["north", "south"]]
    assert model.named_steps["preprocess"].transform(frame.head(1)).shape == (1, len(FEATURES) + 2)
    unseen = frame.head(3).assign(garden="west")
    assert list(model.predict(unseen[metadata["feature_names"]])) == list(frame.head(3)["species"])


def test_feature_kinds_by_dtype() -> None:
    """Numbers are numeric; strings, categories and booleans are categorical; the label is left out."""
    frame = pd.DataFrame(
        {
            "n": [1, 2],
            "f": [0.5, 1.5],
            "s": ["a", "b"],
            "b": [True, False],
            "c": pd.Categorical(["x", "y"]),
            "y": [0, 1],
        }
    )
    assert feature_kinds(frame, "y") == {
        "n": "numeric",
        "f": "numeric",
        "s": "categorical",
        "b": "categorical",
        "c": "categorical",
    }


def test_training_data_without_label_or_features(iris_train: pd.DataFrame) -> None:
    """Training data must hold the label and at least one feature."""
    with pytest.raises(DataError, match="^training data: no label column 'target'$"):
        fit_model(iris_train, "target", "knn", {}, seed=0)
    with pytest.raises(DataError, match="^training data: no feature columns besides the label$"):
        fit_model(iris_train[["species"]], "species", "knn", {}, seed=0)


def test_model_folder_holds_model_and_metadata(trained: tuple[Path, Path, dict[str, Any]]) -> None:
    """model.joblib plus metadata.json with versions, features, classes, data URI and metrics."""
    model_dir, _, metadata = trained
    assert sorted(p.name for p in model_dir.iterdir()) == [METADATA_FILE, MODEL_FILE]
    on_disk = json.loads((model_dir / METADATA_FILE).read_text())
    assert on_disk == metadata
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
        assert all(a < b for a, b in zip(edges, edges[1:])), name
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
    assert sorted(a["name"] for a in logged.artifacts) == ["model", "reference-profile"]
    model_artifact = logged.artifact("model")
    assert model_artifact["metadata"]["inputs"] == ["train-data:latest"]
    assert sorted(e["path"] for e in model_artifact["entries"]) == [METADATA_FILE, MODEL_FILE]


def test_load_bundle_round_trip(trained: tuple[Path, Path, dict[str, Any]], iris_train: pd.DataFrame) -> None:
    """The saved folder loads back into a model that predicts exactly like the trained one."""
    model_dir, _, metadata = trained
    bundle = load_bundle(str(model_dir))
    assert bundle.metadata == metadata
    assert (bundle.feature_names, bundle.classes) == (FEATURES, CLASSES)
    refit, _ = fit_model(iris_train, "species", "logistic_regression", {"C": 2.0}, seed=5)
    np.testing.assert_allclose(
        bundle.model.predict_proba(iris_train[FEATURES]), refit.predict_proba(iris_train[FEATURES])
    )


def test_load_bundle_refuses_another_sklearn_version(
    tmp_path: Path, trained: tuple[Path, Path, dict[str, Any]]
) -> None:
    """A model pickled under scikit-learn 0.24 is refused with both versions in the message."""
    folder = tmp_path / "old-model"
    shutil.copytree(trained[0], folder)
    metadata = json.loads((folder / METADATA_FILE).read_text())
    metadata["versions"]["sklearn"] = "0.24.2"
    (folder / METADATA_FILE).write_text(json.dumps(metadata))

    with pytest.raises(MlopsError) as exc:
        load_bundle(str(folder))
    assert str(exc.value) == (
        f"model {folder}: trained with scikit-learn 0.24.2, this environment has {sklearn.__version__}; "
        "retrain it or serve it from an image with the same scikit-learn minor version"
    )


def test_load_bundle_detects_a_tampered_model(
    tmp_path: Path, trained: tuple[Path, Path, dict[str, Any]], iris_train: pd.DataFrame
) -> None:
    """A model.joblib replaced after training fails the sha256 check instead of loading."""
    folder = tmp_path / "tampered"
    shutil.copytree(trained[0], folder)
    other, _ = fit_model(iris_train, "species", "knn", {}, seed=0)
    (folder / MODEL_FILE).write_bytes(dump_model(other))

    with pytest.raises(
        MlopsError, match=rf"^model {folder}: model\.joblib does not match the sha256 in metadata\.json$"
    ):
        load_bundle(str(folder))
