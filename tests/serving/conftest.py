"""Fixtures for the serving tests: an Iris model trained here, and real model servers.

Every model here is a version of one model store (``serving_store``), as servers load nothing else:
``KFP_MLOPS_STORE`` names it for every server started and every in-process load in this package.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfp_mlops.serving.local.servers import PredictorServer
from kfp_mlops.serving.runtimes.environment import STORE_ENV
from tests.serving.support import FEATURES, Client, IrisModel, serving
from tests.support.gcs_emulator import GcsEmulator
from tests.support.models import register


@pytest.fixture(scope="session")
def serving_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The model store whose versions the servers of this package load."""
    return str(tmp_path_factory.mktemp("serving-store"))


@pytest.fixture(scope="package", autouse=True)
def servers_trust_the_serving_store(serving_store: str) -> Iterator[None]:
    """``KFP_MLOPS_STORE`` for the servers that module fixtures start (between tests)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STORE_ENV, serving_store)
        yield


@pytest.fixture(autouse=True)
def store_of_the_test(serving_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``KFP_MLOPS_STORE`` within each test (the root conftest's isolated_env removes it)."""
    monkeypatch.setenv(STORE_ENV, serving_store)


@pytest.fixture(scope="session")
def iris_model(tmp_path_factory: pytest.TempPathFactory, serving_store: str) -> IrisModel:
    """The Iris model, registered in the serving store: its ``uri`` is the store version."""
    from kfp_mlops.modeling.datasets import IRIS_LABEL, load_iris_frame
    from kfp_mlops.modeling.model_bundle import save_bundle
    from kfp_mlops.modeling.training import fit_model

    frame = load_iris_frame()
    model, metadata = fit_model(frame, IRIS_LABEL, "logistic_regression", {}, seed=0)
    folder = tmp_path_factory.mktemp("iris-model")
    metadata = save_bundle(folder, model, metadata)
    assert metadata["feature_names"] == FEATURES
    return IrisModel(
        uri=register(serving_store, folder).uri,
        model=model,
        rows=frame[FEATURES].values.tolist(),
        labels=frame[IRIS_LABEL].tolist(),
        metadata=metadata,
    )


@pytest.fixture(scope="module")
def outside_store(iris_model: IrisModel) -> Iterator[None]:
    """The opt-out that serves the test model folder, outside any model store, checked by its sha256."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE", "1")
        patch.setenv("MODEL_SHA256", iris_model.metadata["model_sha256"])
        yield


@pytest.fixture(scope="session")
def categorical_model(tmp_path_factory: pytest.TempPathFactory, serving_store: str) -> str:
    """A store version with a numeric feature ``size`` and a categorical one ``colour`` (red / blue)."""
    import pandas as pd

    from kfp_mlops.modeling.model_bundle import save_bundle
    from kfp_mlops.modeling.training import fit_model

    frame = pd.DataFrame(
        {"size": [1.0, 2.0, 3.0, 4.0] * 5, "colour": ["red", "blue"] * 10, "label": ["a", "b", "a", "b"] * 5}
    )
    model, metadata = fit_model(frame, "label", "logistic_regression", {}, seed=0)
    folder = tmp_path_factory.mktemp("categorical-model")
    save_bundle(folder, model, metadata)
    return register(serving_store, folder, name="colours").uri


@pytest.fixture(scope="session")
def old_sklearn_model(iris_model: IrisModel, tmp_path_factory: pytest.TempPathFactory, serving_store: str) -> str:
    """A store version of the Iris model claiming it was trained with scikit-learn 0.24."""
    folder = tmp_path_factory.mktemp("old-model")
    shutil.copytree(iris_model.uri, folder, dirs_exist_ok=True)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["versions"]["sklearn"] = "0.24.2"
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return register(serving_store, folder, name="old").uri


@pytest.fixture(scope="module")
def gcs_model(gcs_emulator: GcsEmulator, iris_model: IrisModel) -> tuple[str, dict[str, str]]:
    """The Iris model registered in a store on the GCS emulator, and the server's environment (that store)."""
    from kfp_mlops.core import storage

    store_root = f"gs://serving-{uuid.uuid4().hex[:10]}/store"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
        storage.ensure_bucket(store_root)
        uri = register(store_root, Path(iris_model.uri)).uri
    return uri, {"STORAGE_EMULATOR_HOST": gcs_emulator.url, STORE_ENV: store_root}


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
