"""Evaluation (kfp_mlops.modeling.evaluation): metrics, the quality gate, and the comparison with the champion."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score

from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.modeling.datasets import load_iris_frame
from kfp_mlops.modeling.evaluation import GATE_METRICS, evaluate, load_champion
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE, ModelBundle, load_bundle
from kfp_mlops.modeling.splitting import Split, split_source
from tests.support.models import crown, save_model

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


class Models:
    """Model folders trained once per module on the same Iris split."""

    def __init__(self, root: Path, split: Split) -> None:
        self.train, self.test = split.train, split.test
        self.good = save_model(root / "good", self.train, "logistic_regression")
        self.weak = save_model(root / "weak", self.train, "decision_tree", {"max_depth": 1})
        self.fewer_features = save_model(root / "fewer", self.train.drop(columns="petal_width"), "knn")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, iris_split: Split) -> Models:
    """Good, weak and other-feature model folders trained on the Iris split."""
    return Models(tmp_path_factory.mktemp("models"), iris_split)


def _load(folder: Path) -> ModelBundle:
    """Loads a folder save_model wrote, against the checksum train would hand on."""
    return load_bundle(str(folder), sha256=json.loads((folder / METADATA_FILE).read_text())["model_sha256"])


def _sklearn_metrics(bundle: ModelBundle, test: pd.DataFrame) -> dict[str, float]:
    truth = test["species"].to_numpy()
    proba = bundle.model.predict_proba(test[bundle.feature_names])
    predicted = bundle.model.predict(test[bundle.feature_names])
    if proba.shape[1] == 2:
        auc = roc_auc_score(truth, proba[:, 1])
    else:
        auc = roc_auc_score(truth, proba, multi_class="ovr")
    return {
        "accuracy": accuracy_score(truth, predicted),
        "f1_macro": f1_score(truth, predicted, average="macro"),
        "roc_auc": auc,
        "log_loss": log_loss(truth, proba),
    }


def test_metrics_match_sklearn(models: Models) -> None:
    """Accuracy, macro F1, one-vs-rest AUC, log loss and the confusion matrix, as sklearn computes them."""
    bundle = _load(models.good)
    result = evaluate(bundle, models.test)

    assert result.metrics == pytest.approx(_sklearn_metrics(bundle, models.test))
    assert result.metrics == pytest.approx(
        {"accuracy": 0.9333, "f1_macro": 0.9333, "roc_auc": 0.9967, "log_loss": 0.174}, abs=1e-3
    )
    assert result.classes == CLASSES
    expected_matrix = confusion_matrix(
        models.test["species"], bundle.model.predict(models.test[FEATURES]), labels=CLASSES
    )
    assert result.confusion_matrix == expected_matrix.tolist()
    assert result.record() == {
        "metrics": result.metrics,
        "passed": True,
        "champion_version": None,
        "champion_metrics": None,
        "reasons": ["accuracy 0.9333 meets the threshold 0.9", "no champion yet"],
    }
    json.dumps(result.record())  # what the model store keeps must be plain JSON


@pytest.mark.parametrize(
    ("gate_metric", "threshold", "passed", "reason"),
    [
        ("accuracy", 0.9, True, "accuracy 0.9333 meets the threshold 0.9"),
        ("accuracy", 14 / 15, True, f"accuracy 0.9333 meets the threshold {14 / 15}"),  # exactly equal passes
        ("accuracy", 0.95, False, "accuracy 0.9333 misses the threshold 0.95"),
        ("f1_macro", 0.99, False, "f1_macro 0.9333 misses the threshold 0.99"),
        ("roc_auc", 0.99, True, "roc_auc 0.9967 meets the threshold 0.99"),
        ("log_loss", 0.5, True, "log_loss 0.1740 meets the threshold 0.5"),  # lower is better
        ("log_loss", 0.1, False, "log_loss 0.1740 misses the threshold 0.1"),
    ],
)
def test_gate_threshold(models: Models, gate_metric: str, threshold: float, passed: bool, reason: str) -> None:
    """The gate metric must reach the threshold: a minimum, or a maximum for log_loss."""
    result = evaluate(_load(models.good), models.test, gate_metric=gate_metric, threshold=threshold)
    assert (result.passed, result.reasons) == (passed, [reason, "no champion yet"])


def test_unknown_gate_metric_lists_the_choices(models: Models) -> None:
    """Only metrics the gate knows the direction of are accepted."""
    with pytest.raises(ConfigError) as exc:
        evaluate(_load(models.good), models.test, gate_metric="precision")
    assert str(exc.value) == "gate_metric 'precision': unknown; choose one of accuracy, f1_macro, roc_auc, log_loss"
    assert set(GATE_METRICS) == {"accuracy", "f1_macro", "roc_auc", "log_loss"}


def test_test_data_without_the_model_features(models: Models) -> None:
    """Test rows lacking a feature the model needs are refused by feature name."""
    with pytest.raises(MlopsError, match=r"^test data lacks the model's features petal_width$"):
        evaluate(_load(models.good), models.test.drop(columns="petal_width"))


def test_worse_candidate_fails_against_the_champion(store_root: str, models: Models) -> None:
    """A candidate over the threshold but worse than the stored champion does not pass."""
    version = crown(store_root, models.good)
    champion, champion_version, error = load_champion(store_root, "iris")
    assert (champion_version, error) == (version, None)

    result = evaluate(
        _load(models.weak), models.test, threshold=0.5, champion=champion, champion_version=champion_version
    )

    assert result.passed is False
    assert result.metrics["accuracy"] == pytest.approx(2 / 3)
    assert result.champion_metrics == pytest.approx(_sklearn_metrics(_load(models.good), models.test))
    assert result.reasons == [
        "accuracy 0.6667 meets the threshold 0.5",
        f"accuracy 0.6667 vs champion {version} 0.9333: worse (tolerance 0.0)",
    ]
    assert result.record()["champion_version"] == version


def test_equal_candidate_passes_with_zero_tolerance(store_root: str, models: Models) -> None:
    """A candidate exactly as good as the champion is not worse, so it passes."""
    version = crown(store_root, models.good)
    champion, champion_version, _ = load_champion(store_root, "iris")

    result = evaluate(
        _load(models.good),
        models.test,
        max_regression=0.0,
        champion=champion,
        champion_version=champion_version,
    )

    assert result.passed is True
    assert result.champion_metrics == pytest.approx(result.metrics)
    assert result.reasons[1] == f"accuracy 0.9333 vs champion {version} 0.9333: not worse (tolerance 0.0)"


def test_max_regression_tolerates_a_slightly_worse_candidate(models: Models) -> None:
    """Within max_regression of the champion still passes; log_loss compares the other way round."""
    champion = _load(models.good)
    weak = _load(models.weak)
    tolerated = evaluate(weak, models.test, threshold=0.5, max_regression=0.3, champion=champion, champion_version="v1")
    assert tolerated.passed is True
    assert tolerated.reasons[1].endswith(": not worse (tolerance 0.3)")

    by_loss = evaluate(
        weak, models.test, gate_metric="log_loss", threshold=1.0, champion=champion, champion_version="v1"
    )
    assert by_loss.metrics["log_loss"] > by_loss.champion_metrics["log_loss"]
    assert (by_loss.passed, by_loss.reasons[1].endswith(": worse (tolerance 0.0)")) == (False, True)


def test_champion_with_other_features_is_not_compared(tmp_path: Path, models: Models) -> None:
    """A champion with another feature set cannot score these rows: reported, left out of the decision.

    The record still names that champion, so register moves the pointer only if it is unchanged.
    """
    store_root = str(tmp_path / "store")
    version = crown(store_root, models.fewer_features)
    champion, champion_version, _ = load_champion(store_root, "iris")

    result = evaluate(_load(models.good), models.test, champion=champion, champion_version=champion_version)

    assert result.passed is True
    assert result.reasons == [
        "accuracy 0.9333 meets the threshold 0.9",
        f"champion {version} has other features or classes: not compared",
    ]
    assert {k: result.record()[k] for k in ("champion_version", "champion_metrics")} == {
        "champion_version": version,
        "champion_metrics": None,
    }


@pytest.mark.parametrize("breakage", ["another sklearn", "corrupt pickle", "replaced pickle", "unreadable file"])
def test_a_champion_that_cannot_be_loaded_fails_the_gate(tmp_path: Path, models: Models, breakage: str) -> None:
    """Fail closed: a champion that exists but does not load is reported, and the candidate does not pass
    on the threshold alone (it would otherwise replace a champion it was never compared with)."""
    old = tmp_path / "old-model"
    shutil.copytree(models.good, old)
    store_root = str(tmp_path / "store")
    if breakage == "another sklearn":  # a library upgrade: the champion's pickle is from another version
        metadata = json.loads((old / METADATA_FILE).read_text())
        metadata["versions"]["sklearn"] = "0.24.2"
        (old / METADATA_FILE).write_text(json.dumps(metadata))
    version = crown(store_root, old)
    stored = Path(store_root, "models", "iris", "versions", version)
    if breakage == "corrupt pickle":
        (stored / MODEL_FILE).write_bytes((stored / MODEL_FILE).read_bytes()[:100])
    elif breakage == "replaced pickle":
        (stored / MODEL_FILE).write_bytes((models.weak / MODEL_FILE).read_bytes())
    elif breakage == "unreadable file":  # the store answers the pointer, then fails to read the model
        (stored / MODEL_FILE).unlink()
        (stored / MODEL_FILE).mkdir()
    expected = {
        "another sklearn": "trained with scikit-learn 0.24.2",
        "corrupt pickle": "not the recorded",
        "replaced pickle": "not the recorded",
        "unreadable file": "cannot read",
    }[breakage]

    champion, champion_version, error = load_champion(store_root, "iris")

    assert (champion, champion_version) == (None, version)
    assert error is not None and expected in error
    result = evaluate(
        _load(models.good), models.test, champion=champion, champion_version=champion_version, champion_error=error
    )
    assert result.passed is False
    assert result.reasons == [
        "accuracy 0.9333 meets the threshold 0.9",
        f"champion {version} could not be loaded ({error}): "
        "the candidate was not compared with it, so it does not pass",
    ]
    assert result.record()["champion_version"] == version
    assert load_champion(str(tmp_path / "empty-store"), "iris") == (None, None, None)


def test_binary_classification(tmp_path: Path) -> None:
    """Two classes: metrics as sklearn computes them, AUC on the positive class, a 2x2 matrix."""
    frame = load_iris_frame()
    frame = frame[frame["species"] != "setosa"]
    source = tmp_path / "two-classes.csv"
    frame.to_csv(source, index=False)
    split = split_source(str(source), "species", test_size=0.3, seed=1)
    bundle = _load(save_model(tmp_path / "binary", split.train, "logistic_regression"))

    result = evaluate(bundle, split.test, threshold=0.8)

    assert result.classes == ["versicolor", "virginica"]
    assert result.metrics == pytest.approx(_sklearn_metrics(bundle, split.test))
    assert np.array(result.confusion_matrix).sum() == 30
    assert np.array(result.confusion_matrix).shape == (2, 2)
    assert result.passed is True
    assert len(result.roc["fpr"]) == len(result.roc["tpr"]) == len(result.roc["thresholds"])


@pytest.mark.parametrize("binary", [False, True], ids=["three-classes", "two-classes"])
def test_roc_curve_is_json_safe(tmp_path: Path, models: Models, binary: bool) -> None:
    """The micro-averaged ROC has finite thresholds in [0, 1] and runs from (0, 0) to (1, 1)."""
    if binary:
        train = models.train[models.train["species"] != "setosa"]
        test = models.test[models.test["species"] != "setosa"]
        bundle = _load(save_model(tmp_path / "binary", train, "knn"))
    else:
        bundle, test = _load(models.weak), models.test

    roc = evaluate(bundle, test).roc

    thresholds = np.array(roc["thresholds"])
    assert not any(math.isinf(t) or math.isnan(t) for t in roc["thresholds"])
    assert ((thresholds >= 0) & (thresholds <= 1)).all()
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (np.diff(roc["fpr"]) >= 0).all() and (np.diff(roc["tpr"]) >= 0).all()
    json.loads(json.dumps(roc, allow_nan=False))
