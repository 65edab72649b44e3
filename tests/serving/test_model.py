"""ServedModel, the one model code path of every runtime: loading, validation, prediction, feedback."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.core.config import OUTSIDE_STORE_ENV, Settings
from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.model import MODEL_SHA256_ENV, InvalidRequest, ServedModel
from tests.serving.support import FEATURES, IrisModel
from tests.support.models import register

ROW = [5.1, 3.5, 1.4, 0.2]


def _stored(folder: Path) -> str:
    """``folder`` registered in the store servers load from (``KFP_MLOPS_STORE``): its version's URI."""
    return register(Settings.from_env().store_root, folder, name="test").uri


def _folder_outside_the_store(iris_model: IrisModel, tmp_path: Path) -> str:
    """A copy of the Iris model's files in a folder of no store."""
    folder = tmp_path / "outside"
    folder.mkdir()
    for name in ("model.joblib", "metadata.json"):
        (folder / name).write_bytes((Path(iris_model.uri) / name).read_bytes())
    return str(folder)


@pytest.fixture(scope="module")
def served(iris_model: IrisModel) -> ServedModel:
    return ServedModel.load(iris_model.uri, max_batch=50)


def test_predictions_equal_the_pipeline_in_every_input_form(served: ServedModel, iris_model: IrisModel) -> None:
    rows = iris_model.rows[::15]
    expected = iris_model.model.predict_proba(pd.DataFrame(rows, columns=FEATURES))
    order = random.Random(0).sample(range(len(FEATURES)), len(FEATURES))
    forms = {
        "ndarray": served.predict(rows),
        "numpy": served.predict(np.array(rows)),
        "named": served.predict([[row[i] for i in order] for row in rows], [FEATURES[i] for i in order]),
        "records": served.predict([dict(zip(FEATURES, row)) for row in rows]),
    }
    for form, prediction in forms.items():
        np.testing.assert_array_equal(prediction.probabilities, expected, err_msg=form)
        assert prediction.labels == [served.classes[i] for i in expected.argmax(axis=1)], form
        assert prediction.classes == ["setosa", "versicolor", "virginica"]


def test_integers_are_numbers(served: ServedModel) -> None:
    assert served.predict([[5, 3, 1, 0]]).labels == ["setosa"]


@pytest.mark.parametrize(
    ("rows", "names", "status", "reason"),
    [
        ("5.1,3.5", None, 400, "expected a list of rows, got str"),
        ({"sepal_length": 5.1}, None, 400, "expected a list of rows, got dict"),
        ([], None, 400, "empty batch"),
        ([ROW] * 51, None, 413, "batch of 51 rows exceeds the limit of 50"),
        (ROW, None, 400, "expected a 2-D batch"),
        (np.array(ROW), None, 400, "got a 1-D array"),
        ([[5.1, 3.5, 1.4]], None, 400, "row 0 has 3 values, expected 4"),
        ([ROW, [*ROW, 1.0]], None, 400, "row 1 has 5 values, expected 4"),
        ([ROW], ["sepal_length", "sepal_width", "petal_length", "petal_size"], 400, "unknown feature(s) petal_size"),
        ([ROW[:3]], FEATURES[:3], 400, "missing feature(s) petal_width"),
        ([[*ROW, 1.0]], [*FEATURES, "sepal_length"], 400, "duplicate feature names"),
        ([ROW], [1, 2, 3, 4], 400, "feature names must be strings"),
        (
            [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "colour": "red"}],
            None,
            400,
            "unknown feature(s) colour",
        ),
        ([{"sepal_length": 5.1}], None, 400, "missing feature(s) sepal_width, petal_length, petal_width"),
        ([["5.1", 3.5, 1.4, 0.2]], None, 400, "feature 'sepal_length' row 0: expected a number, got str '5.1'"),
        ([[5.1, True, 1.4, 0.2]], None, 400, "feature 'sepal_width' row 0: expected a number, got bool"),
        ([[5.1, 3.5, None, 0.2]], None, 400, "feature 'petal_length' row 0: expected a number, got NoneType"),
        ([[5.1, 3.5, 1.4, [0.2]]], None, 400, "feature 'petal_width' row 0: expected a number, got list"),
        (
            [[math.nan, 3.5, 1.4, 0.2]],
            None,
            400,
            "feature 'sepal_length' row 0: expected a finite number, got float nan",
        ),
        ([ROW, [5.1, math.inf, 1.4, 0.2]], None, 400, "feature 'sepal_width' row 1: expected a finite number"),
        ([[5.1, 3.5, 1.4, -math.inf]], None, 400, "expected a finite number, got float -inf"),
        ([[10**400, 3.5, 1.4, 0.2]], None, 400, "expected a finite number, got int 1000"),
        ([[1e308, 1e308, 1e308, 1e308]], None, 422, "the model cannot score this batch"),
        ([ROW, "5.1"], None, 400, "each row must be a list"),
    ],
)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_malformed_requests_name_what_is_wrong(
    served: ServedModel, rows: object, names: list | None, status: int, reason: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        served.predict(rows, names)
    assert caught.value.status == status
    assert reason in str(caught.value)


def test_categorical_features_take_strings(tmp_path: Path) -> None:
    from kfp_mlops.modeling.model_bundle import save_bundle
    from kfp_mlops.modeling.training import fit_model

    frame = pd.DataFrame(
        {"size": [1.0, 2.0, 3.0, 4.0] * 5, "colour": ["red", "blue"] * 10, "label": ["a", "b", "a", "b"] * 5}
    )
    model, metadata = fit_model(frame, "label", "logistic_regression", {}, seed=0)
    save_bundle(tmp_path, model, metadata)
    served = ServedModel.load(_stored(tmp_path))
    assert served.predict([[1.0, "red"], [2.0, "never seen"]]).labels[0] in {"a", "b"}
    with pytest.raises(InvalidRequest, match="feature 'colour' row 0: expected a category string, got NoneType"):
        served.predict([[1.0, None]])
    with pytest.raises(InvalidRequest, match="feature 'size' row 0: expected a number, got str"):
        served.predict([["big", "red"]])


@pytest.mark.parametrize(
    ("value", "described"),
    [(1.0, "float 1.0"), (math.nan, "float nan"), (3, "int 3"), (True, "bool True"), ([], "list []")],
)
def test_a_number_or_nan_in_a_categorical_feature_is_refused_by_name(
    categorical_model: str, value: object, described: str
) -> None:
    """Once a TypeError inside the one-hot encoder (a 500 on both runtimes); now a 400 naming the feature."""
    served = ServedModel.load(categorical_model)
    with pytest.raises(InvalidRequest) as caught:
        served.predict([[1.0, "red"], [2.0, value]], names=["size", "colour"])
    assert caught.value.status == 400
    assert str(caught.value) == f"feature 'colour' row 1: expected a category string, got {described}"


def test_a_boolean_feature_takes_booleans_only(tmp_path: Path) -> None:
    """scikit-learn would read "True" as an unknown category and answer as if the feature were missing."""
    from kfp_mlops.modeling.model_bundle import save_bundle
    from kfp_mlops.modeling.training import fit_model

    frame = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0] * 5, "member": [True, False] * 10, "label": ["a", "b"] * 10})
    model, metadata = fit_model(frame, "label", "logistic_regression", {}, seed=0)
    save_bundle(tmp_path, model, metadata)
    served = ServedModel.load(_stored(tmp_path))
    assert served.predict([[1.0, True], [2.0, False]]).labels == ["a", "b"]
    for value, described in (("True", "str 'True'"), (1, "int 1"), (None, "NoneType None")):
        with pytest.raises(
            InvalidRequest, match=f"feature 'member' row 0: expected a category boolean, got {described}"
        ):
            served.predict([[1.0, value]])


def test_the_body_limit_fits_a_full_batch_and_never_exceeds_the_ceiling(served: ServedModel) -> None:
    from kfp_mlops.serving.model import MAX_REQUEST_BYTES

    full_batch = json.dumps({"data": {"ndarray": [dict(zip(FEATURES, [-1.2345678901234567e-300] * 4))] * 50}})
    assert len(full_batch) < served.max_request_bytes < 4 * len(full_batch) + 64 * 1024
    wide = ServedModel(served.bundle, version="v", max_batch=10_000_000)
    assert wide.max_request_bytes == MAX_REQUEST_BYTES == 16 * 2**20


def test_correct_answers(served: ServedModel) -> None:
    assert served.correct_answers(["setosa", "virginica", "setosa"], ["setosa", "setosa", "setosa"]) == 2
    assert served.correct_answers([], []) == 0
    with pytest.raises(InvalidRequest, match="feedback has 1 true labels for 2 predictions"):
        served.correct_answers(["setosa", "setosa"], ["setosa"])
    with pytest.raises(InvalidRequest, match=r"unknown class.*: rose; expected setosa, versicolor, virginica"):
        served.correct_answers(["setosa"], ["rose"])


def test_version_is_the_store_version_or_a_checksum_prefix(
    iris_model: IrisModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ServedModel.load(iris_model.uri).version == iris_model.uri.rsplit("/", 1)[1]
    folder = _folder_outside_the_store(iris_model, tmp_path)
    monkeypatch.setenv(OUTSIDE_STORE_ENV, "1")
    monkeypatch.setenv(MODEL_SHA256_ENV, iris_model.metadata["model_sha256"])
    assert ServedModel.load(folder).version == iris_model.metadata["model_sha256"][:12]


def test_load_from_gcs(iris_model: IrisModel, gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store_root = f"{gcs_bucket}/store"
    uri = register(store_root, Path(iris_model.uri)).uri
    monkeypatch.setenv("KFP_MLOPS_STORE", store_root)
    served = ServedModel.load(uri)
    assert served.version == uri.rsplit("/", 1)[1]
    assert served.predict([ROW]).labels == ["setosa"]


def test_load_refuses_another_scikit_learn_minor(old_sklearn_model: str) -> None:
    with pytest.raises(MlopsError, match=r"trained with scikit-learn 0\.24\.2, this environment has 1\.9\.\d+"):
        ServedModel.load(old_sklearn_model)


def test_load_refuses_a_model_changed_after_registration(iris_model: IrisModel, tmp_path: Path) -> None:
    uri = _stored(Path(_folder_outside_the_store(iris_model, tmp_path)))
    model_file = Path(uri) / "model.joblib"
    model_file.write_bytes(model_file.read_bytes() + b"x")
    recorded = iris_model.metadata["model_sha256"]
    with pytest.raises(MlopsError, match=rf"model\.joblib has sha256 [0-9a-f]{{64}}, not the recorded {recorded}"):
        ServedModel.load(uri)


def test_a_folder_outside_the_store_needs_the_opt_out_and_its_checksum(
    iris_model: IrisModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder_outside_the_store(iris_model, tmp_path)
    with pytest.raises(MlopsError, match=f"is outside the model store .*; set {OUTSIDE_STORE_ENV}=1"):
        ServedModel.load(folder)
    monkeypatch.setenv(OUTSIDE_STORE_ENV, "1")
    with pytest.raises(MlopsError, match="no recorded sha256 to check"):
        ServedModel.load(folder)
    monkeypatch.setenv(MODEL_SHA256_ENV, "0" * 64)
    with pytest.raises(MlopsError, match=r"not the recorded 0{64}"):
        ServedModel.load(folder)
    assert ServedModel.load(folder, sha256=iris_model.metadata["model_sha256"]).predict([ROW]).labels == ["setosa"]


def test_load_names_a_missing_version(serving_store: str) -> None:
    with pytest.raises(MlopsError, match=r"model iris version v-gone: no sha256 of model\.joblib recorded"):
        ServedModel.load(f"{serving_store}/models/iris/versions/v-gone")


def test_numeric_models_take_the_positional_fast_path(served: ServedModel, iris_model: IrisModel) -> None:
    """The name-free copy of the pipeline scores exactly like the original, on every Iris row."""
    assert served._scorer is not None
    rows = iris_model.rows[:: len(iris_model.rows) // served.max_batch + 1]
    fast = served.predict(rows).probabilities
    slow = iris_model.model.predict_proba(pd.DataFrame(rows, columns=FEATURES))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    reordered = served.predict([row[::-1] for row in rows], names=FEATURES[::-1]).probabilities
    np.testing.assert_allclose(reordered, slow, rtol=0, atol=1e-12)


def test_categorical_models_keep_the_dataframe_path(tmp_path: Path) -> None:
    from kfp_mlops.modeling.model_bundle import load_bundle, save_bundle
    from kfp_mlops.modeling.training import fit_model

    frame = pd.DataFrame(
        {"x": [0.1, 0.2, 0.9, 1.0] * 5, "colour": ["red", "red", "blue", "blue"] * 5, "y": ["a", "a", "b", "b"] * 5}
    )
    model, metadata = fit_model(frame, "y", "logistic_regression", {}, seed=0)
    saved = save_bundle(tmp_path, model, metadata)
    served = ServedModel(load_bundle(str(tmp_path), sha256=saved["model_sha256"]), version="v")
    assert served._scorer is None
    assert served.predict([[0.95, "blue"]], names=["x", "colour"]).labels == ["b"]
