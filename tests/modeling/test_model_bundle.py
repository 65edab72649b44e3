"""The model folder (kfp_mlops.modeling.model_bundle): it loads back, only against a recorded checksum,
and refuses what cannot run here."""

from __future__ import annotations

import hashlib
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
    bundle = load_bundle(str(model_dir), sha256=metadata["model_sha256"])
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
        load_bundle(str(folder), sha256=metadata["model_sha256"])
    assert str(exc.value) == (
        f"model {folder}: trained with scikit-learn 0.24.2, this environment has {sklearn.__version__}; "
        "retrain it or serve it from an image with the same scikit-learn minor version"
    )


def test_load_bundle_detects_a_tampered_model(
    tmp_path: Path, model_folder: tuple[Path, dict[str, Any]], iris_train: pd.DataFrame
) -> None:
    """A model.joblib replaced after training -- its metadata.json rewritten to match -- fails the recorded sha256."""
    folder = tmp_path / "tampered"
    shutil.copytree(model_folder[0], folder)
    other, _ = fit_model(iris_train, "species", "knn", {}, seed=0)
    payload = dump_model(other)
    (folder / MODEL_FILE).write_bytes(payload)
    metadata = json.loads((folder / METADATA_FILE).read_text())
    forged = hashlib.sha256(payload).hexdigest()
    (folder / METADATA_FILE).write_text(json.dumps({**metadata, "model_sha256": forged}))

    recorded = model_folder[1]["model_sha256"]
    with pytest.raises(MlopsError) as exc:
        load_bundle(str(folder), sha256=recorded)
    assert str(exc.value) == (
        f"model {folder}: model.joblib has sha256 {forged}, not the recorded {recorded}; "
        "refusing to load a model other than the one registered"
    )


@pytest.mark.parametrize("sha256", ["", "abc", "Z" * 64])
def test_load_bundle_refuses_without_a_recorded_checksum(
    model_folder: tuple[Path, dict[str, Any]], sha256: str
) -> None:
    """No checksum, no unpickling: the metadata's own model_sha256 is never taken instead."""
    with pytest.raises(MlopsError, match=rf"no recorded sha256 to check model\.joblib against \(got '{sha256}'\)"):
        load_bundle(str(model_folder[0]), sha256=sha256)
