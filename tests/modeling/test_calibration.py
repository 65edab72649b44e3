"""Calibration maps (kfp_mlops.modeling.calibration): fitted at training, stored as data, or why not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from kfp_mlops.modeling.calibration import (
    CalibrationUnavailable,
    IsotonicSteps,
    fit_calibration,
    read_calibration,
)
from kfp_mlops.modeling.model_bundle import ModelBundle, load_bundle, save_bundle
from kfp_mlops.modeling.training import fit_model

CLASSES = ["setosa", "versicolor", "virginica"]


def _binary_rows(n: int, seed: int) -> pd.DataFrame:
    """Two features; the label is drawn from a logistic model of the first."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    label = (rng.random(n) < 1 / (1 + np.exp(-(2.0 * x[:, 0] - 1.0)))).astype(int)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": label})


def test_steps_predict_what_isotonic_regression_predicts() -> None:
    """The stored steps reproduce scikit-learn's isotonic fit between, on and beyond the training points."""
    rng = np.random.default_rng(3)
    probability = rng.beta(2, 5, 3_000)
    is_class = rng.random(3_000) < probability**0.8
    steps = IsotonicSteps.fit(probability, is_class)
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(probability, is_class)

    grid = np.r_[np.linspace(-0.1, 1.1, 2_001), probability]
    np.testing.assert_allclose(steps.apply(grid), reference.predict(grid), atol=1e-5)
    assert steps.count.sum() == 3_000 and (np.diff(steps.value) >= 0).all()
    # Each step's value is its rows' class share (what the sampling error is about).
    left, _, _ = steps.locate(probability)
    assert np.bincount(left, weights=is_class, minlength=len(steps.count)) / steps.count == pytest.approx(
        steps.value, abs=1e-5
    )


def test_fit_model_stores_calibration_for_binary_and_multiclass(iris_train: pd.DataFrame) -> None:
    """Binary: a map of the second class; more classes: one per class, rows renormalised to 1."""
    _, binary = fit_model(_binary_rows(2_000, seed=1), "label", "logistic_regression", {}, seed=0)
    model, multi = fit_model(iris_train, "species", "logistic_regression", {}, seed=0)

    assert set(binary["calibration"]["steps"]) == {"1"}
    assert (binary["calibration"]["rows"], binary["calibration"]["folds"]) == (2_000, 3)
    assert set(multi["calibration"]["steps"]) == set(CLASSES)
    calibration = read_calibration(multi)
    calibrated = calibration.calibrate(model.predict_proba(iris_train[list(multi["feature_names"])]))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    json.dumps(binary["calibration"])  # plain JSON, no numpy types


def test_calibration_round_trips_through_the_model_folder(tmp_path: Path) -> None:
    """Saved with metadata.json and read back from the loaded bundle, it calibrates the same."""
    rows = _binary_rows(2_000, seed=2)
    model, metadata = fit_model(rows, "label", "logistic_regression", {}, seed=0)
    saved = save_bundle(tmp_path / "model", model, {**metadata, "training_data_uri": "memory"})

    loaded = load_bundle(str(tmp_path / "model"), sha256=saved["model_sha256"])

    proba = model.predict_proba(rows[["a", "b"]])
    np.testing.assert_array_equal(
        loaded.calibration.calibrate(proba), ModelBundle(model, metadata).calibration.calibrate(proba)
    )
    assert loaded.calibration.steps["1"].to_dict() == metadata["calibration"]["steps"]["1"]


def test_out_of_fold_calibration_undoes_overconfidence() -> None:
    """A deep tree is sure of every training row; out of fold its 1.0 means much less than 1.0."""
    rows = _binary_rows(3_000, seed=4)
    _, metadata = fit_model(rows, "label", "decision_tree", {}, seed=0)
    calibration = read_calibration(metadata)
    sure = calibration.calibrate(np.array([[0.0, 1.0]]))[0, 1]
    assert 0.5 < sure < 0.9


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        (["1"] * 60, r"the calibration rows hold one class only \(1\); calibration needs at least two$"),
        (["0"] * 59 + ["1"], r"class '1' has 1 training row; out-of-fold calibration needs at least 2 per class$"),
    ],
    ids=["single-class", "class-of-one"],
)
def test_training_records_why_there_is_no_calibration(labels: list[str], reason: str) -> None:
    """Training still succeeds; the metadata says why no calibration was fitted."""
    rows = pd.DataFrame({"a": np.arange(60.0), "label": labels})
    _, metadata = fit_model(rows, "label", "decision_tree", {}, seed=0)

    assert list(metadata["calibration"]) == ["unavailable"]
    with pytest.raises(
        CalibrationUnavailable, match=f"^no calibration was fitted when the model was trained: {reason}"
    ):
        read_calibration(metadata)


def test_a_model_without_predict_proba_gets_no_calibration() -> None:
    from sklearn.svm import LinearSVC

    rows = _binary_rows(200, seed=5)
    model = LinearSVC().fit(rows[["a", "b"]], rows["label"].astype(str))
    with pytest.raises(CalibrationUnavailable, match=r"^the model \(LinearSVC\) has no predict_proba$"):
        fit_calibration(model, rows[["a", "b"]], rows["label"].astype(str))


@pytest.fixture(scope="module")
def metadata() -> dict[str, Any]:
    return fit_model(_binary_rows(1_000, seed=6), "label", "logistic_regression", {}, seed=0)[1]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda m: m.pop("calibration"),
            r"^the model has no calibration \(trained before calibration was stored with models\); retrain it",
        ),
        (
            lambda m: m["calibration"].update(version=7),
            r"^the model's calibration has version 7; this version reads 1$",
        ),
        (lambda m: m.update(classes=["no", "yes"]), r"^the model's calibration is for classes \['0', '1'\], the model"),
        (lambda m: m["calibration"]["steps"].pop("1"), r"^the model's calibration is malformed: expected steps for 1$"),
        (
            lambda m: m["calibration"]["steps"]["1"]["value"].reverse(),
            r"^the model's calibration of class '1': steps must be ordered",
        ),
        (
            lambda m: m["calibration"]["steps"]["1"].pop("count"),
            r"^the model's calibration of class '1': no count$",
        ),
    ],
    ids=["before-calibration", "unknown-version", "other-classes", "no-steps", "unordered", "no-counts"],
)
def test_unusable_calibration_says_why(metadata: dict[str, Any], change: Any, reason: str) -> None:
    broken = json.loads(json.dumps(metadata))
    change(broken)
    with pytest.raises(CalibrationUnavailable, match=reason):
        read_calibration(broken)
