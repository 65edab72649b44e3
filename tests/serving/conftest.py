"""Fixtures for the serving tests: an Iris model trained here, and real model servers."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfp_mlops.serving.local.servers import PredictorServer
from tests.serving.support import FEATURES, Client, IrisModel, serving
from tests.support.gcs_emulator import GcsEmulator


@pytest.fixture(scope="session")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> IrisModel:
    from kfp_mlops.modeling.datasets import IRIS_LABEL, load_iris_frame
    from kfp_mlops.modeling.model_bundle import save_bundle
    from kfp_mlops.modeling.training import fit_model

    frame = load_iris_frame()
    model, metadata = fit_model(frame, IRIS_LABEL, "logistic_regression", {}, seed=0)
    folder = tmp_path_factory.mktemp("iris-model")
    metadata = save_bundle(folder, model, metadata)
    assert metadata["feature_names"] == FEATURES
    return IrisModel(
        uri=str(folder),
        model=model,
        rows=frame[FEATURES].values.tolist(),
        labels=frame[IRIS_LABEL].tolist(),
        metadata=metadata,
    )


@pytest.fixture(scope="session")
def categorical_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model folder with a numeric feature ``size`` and a categorical one ``colour`` (red / blue)."""
    import pandas as pd

    from kfp_mlops.modeling.model_bundle import save_bundle
    from kfp_mlops.modeling.training import fit_model

    frame = pd.DataFrame(
        {"size": [1.0, 2.0, 3.0, 4.0] * 5, "colour": ["red", "blue"] * 10, "label": ["a", "b", "a", "b"] * 5}
    )
    model, metadata = fit_model(frame, "label", "logistic_regression", {}, seed=0)
    folder = tmp_path_factory.mktemp("categorical-model")
    save_bundle(folder, model, metadata)
    return str(folder)


@pytest.fixture(scope="session")
def old_sklearn_model(iris_model: IrisModel, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Iris model folder, claiming it was trained with scikit-learn 0.24."""
    folder = tmp_path_factory.mktemp("old-model")
    shutil.copytree(iris_model.uri, folder, dirs_exist_ok=True)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["versions"]["sklearn"] = "0.24.2"
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return str(folder)


@pytest.fixture(scope="module")
def gcs_model(gcs_emulator: GcsEmulator, iris_model: IrisModel) -> tuple[str, dict[str, str]]:
    """The Iris model as a model-store version folder on the GCS emulator, and the server's environment."""
    from kfp_mlops.core import storage

    uri = f"gs://serving-{uuid.uuid4().hex[:10]}/store/models/iris/versions/v20261126T000000Z-test"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
        storage.ensure_bucket(uri)
        for name in ("model.joblib", "metadata.json"):
            storage.upload_file(Path(iris_model.uri) / name, storage.join(uri, name))
    return uri, {"STORAGE_EMULATOR_HOST": gcs_emulator.url}


@pytest.fixture(scope="module")
def v2_server(iris_model: IrisModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorServer]:
    with serving("v2", iris_model.uri, tmp_path_factory.mktemp("v2")) as server:
        yield server


@pytest.fixture(scope="module")
def seldon_server(iris_model: IrisModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorServer]:
    with serving("seldon", iris_model.uri, tmp_path_factory.mktemp("seldon")) as server:
        yield server


# Each runtime's test module defines its own ``server``; these build on it.
@pytest.fixture(scope="module")
def client(server: PredictorServer) -> Iterator[Client]:
    """A keep-alive HTTP client of the module's server."""
    connection = Client(server.url)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def version(gcs_model: tuple[str, dict[str, str]]) -> str:
    """The store version the module's server was started on."""
    return gcs_model[0].rsplit("/", 1)[1]
