"""The model folder (kfp_mlops.modeling.model_bundle): it loads back, and refuses what cannot run here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE, dump_model, load_bundle, save_bundle
from kfp_mlops.modeling.training import fit_model

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory, iris_train: pd.DataFrame) -> tuple[Path, dict[str, Any]]:
    """An Iris model folder as train writes it, and the metadata save_bundle returned."""
    folder = tmp_path_factory.mktemp("bundle") / "model"
    model, metadata = fit_model(iris_train, "species", "logistic_regression", {"C": 2.0}, seed=5)
    return folder, save_bundle(folder, model, {**metadata, "training_data_uri": "memory"})


def test_load_bundle_round_trip(model_folder: tuple[Path, dict[str, Any]], iris_train: pd.DataFrame) -> None:
    """The saved folder loads back into a model that predicts exactly like the trained one."""
    model_dir, metadata = model_folder
    bundle = load_bundle(str(model_dir))
    assert bundle.metadata == metadata
    assert (bundle.feature_names, bundle.classes) == (FEATURES, CLASSES)
    refit, _ = fit_model(iris_train, "species", "logistic_regression", {"C": 2.0}, seed=5)
    np.testing.assert_allclose(
        bundle.model.predict_proba(iris_train[FEATURES]), refit.predict_proba(iris_train[FEATURES])
    )


def test_load_bundle_refuses_another_sklearn_version(tmp_path: Path, model_folder: tuple[Path, dict[str, Any]]) -> None:
    """A model pickled under scikit-learn 0.24 is refused with both versions in the message."""
    folder = tmp_path / "old-model"
    shutil.copytree(model_folder[0], folder)
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
    tmp_path: Path, model_folder: tuple[Path, dict[str, Any]], iris_train: pd.DataFrame
) -> None:
    """A model.joblib replaced after training fails the sha256 check instead of loading."""
    folder = tmp_path / "tampered"
    shutil.copytree(model_folder[0], folder)
    other, _ = fit_model(iris_train, "species", "knn", {}, seed=0)
    (folder / MODEL_FILE).write_bytes(dump_model(other))

    with pytest.raises(
        MlopsError, match=rf"^model {folder}: model\.joblib does not match the sha256 in metadata\.json$"
    ):
        load_bundle(str(folder))
