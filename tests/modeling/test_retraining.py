"""Retraining (kfp_mlops.modeling.retraining): full retrains, incremental updates by mechanism, the record.

The accuracy they recover on the seasonal e-commerce data is measured in tests/drift/test_policy.py.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import SGDClassifier
from threadpoolctl import threadpool_limits

from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.modeling.calibration import read_calibration
from kfp_mlops.modeling.estimators import build_pipeline
from kfp_mlops.modeling.model_bundle import ModelBundle
from kfp_mlops.modeling.retraining import (
    IncrementalUnsupported,
    incremental_unavailable,
    incremental_updates,
    retrain,
    retrain_full,
    retrain_incremental,
)
from kfp_mlops.modeling.splitting import Split

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SMALL = {"random_forest": {"n_estimators": 10}, "gradient_boosting": {"max_iter": 20}}
MECHANISMS = {
    "logistic_regression": "warm start",
    "random_forest": "replaced trees",
    "gradient_boosting": "added boosting iterations",
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Iris is tiny: OpenMP threads of the boosted trees would only contend with the other tests."""
    with threadpool_limits(limits=1):
        yield


def _champion(rows: pd.DataFrame, estimator: str, **hyperparameters: Any) -> ModelBundle:
    result = retrain_full(rows, label="species", estimator=estimator, hyperparameters=hyperparameters, seed=0)
    return ModelBundle(result.model, {**result.metadata, "model_sha256": f"sha-of-{estimator}"})


@pytest.mark.parametrize("estimator", sorted(MECHANISMS))
def test_incremental_update_by_the_estimators_own_mechanism(iris_split: Split, estimator: str) -> None:
    """A copy of the champion is updated (the champion is not), recalibrated, and recorded."""
    champion = _champion(iris_split.train, estimator, **SMALL.get(estimator, {}))
    before = champion.model.predict_proba(iris_split.test[FEATURES])

    first = retrain_incremental(champion, iris_split.test, seed=1, sources=[{"uri": "w", "rows": 30}])

    np.testing.assert_array_equal(champion.model.predict_proba(iris_split.test[FEATURES]), before)
    assert incremental_unavailable(champion.model) is None
    record = first.record
    assert record["kind"] == "incremental" and record["mechanism"].startswith(MECHANISMS[estimator])
    assert (record["rows"], record["incremental_updates"], record["base_model_sha256"]) == (
        30,
        1,
        f"sha-of-{estimator}",
    )
    assert record["fit_seconds"] > 0 and record["calibration_seconds"] > 0
    assert record["sources"] == [{"uri": "w", "rows": 30}]
    assert read_calibration(first.metadata).rows == 30  # the updated model's own maps
    assert first.metadata["training_rows"] == 30 and first.metadata["metrics"]["train_accuracy"] > 0.8
    assert "model_sha256" not in first.metadata  # save_bundle writes the new one
    assert (first.metadata["feature_names"], first.metadata["classes"]) == (FEATURES, champion.classes)

    second = retrain_incremental(ModelBundle(first.model, first.metadata), iris_split.test)
    assert incremental_updates(second.metadata) == 2
    full = retrain_full(iris_split.train, label="species", estimator=estimator, hyperparameters={}, base=champion)
    assert full.record["kind"] == "full" and incremental_updates(full.metadata) == 0


def test_forest_replaces_its_oldest_trees_and_keeps_its_size(iris_split: Split) -> None:
    champion = _champion(iris_split.train, "random_forest", n_estimators=10)
    updated = retrain_incremental(champion, iris_split.test).model.named_steps["model"]
    old = champion.model.named_steps["model"]

    assert updated.n_estimators == len(updated.estimators_) == 10 and not updated.warm_start
    for kept, original in zip(updated.estimators_[:5], old.estimators_[5:]):  # the newer half stays
        np.testing.assert_array_equal(kept.tree_.threshold, original.tree_.threshold)


def test_boosting_adds_iterations(iris_split: Split) -> None:
    champion = _champion(iris_split.train, "gradient_boosting", max_iter=20)
    updated = retrain_incremental(champion, iris_split.test)

    assert updated.model.named_steps["model"].n_iter_ > champion.model.named_steps["model"].n_iter_
    assert "iterations added to" in updated.record["mechanism"]


def test_partial_fit_is_an_incremental_mechanism(iris_split: Split) -> None:
    """An estimator with partial_fit (not one of the named ones) gets one more pass over the rows."""
    model = build_pipeline(SGDClassifier(loss="log_loss", random_state=0), FEATURES, [])
    model.fit(iris_split.train[FEATURES], iris_split.train["species"])
    metadata = {"label": "species", "feature_names": FEATURES, "classes": list(model.classes_), "estimator": "sgd"}

    updated = retrain_incremental(ModelBundle(model, metadata), iris_split.test)

    assert updated.record["mechanism"] == "partial_fit (one pass over 30 rows)"


@pytest.mark.parametrize(
    ("estimator", "hyperparameters", "reason"),
    [
        ("knn", {}, "KNeighborsClassifier has no incremental mechanism (no partial_fit, warm start or trees to add)"),
        ("decision_tree", {}, "DecisionTreeClassifier has no incremental mechanism"),
        ("logistic_regression", {"solver": "liblinear"}, "LogisticRegression with the liblinear solver ignores"),
    ],
)
def test_no_mechanism_refuses_and_retrain_falls_back_to_full(
    iris_split: Split, estimator: str, hyperparameters: dict[str, Any], reason: str
) -> None:
    """Binary rows: liblinear fits no more classes."""
    train, test = (rows[rows["species"] != "setosa"] for rows in (iris_split.train, iris_split.test))
    champion = _champion(train, estimator, **hyperparameters)

    assert reason in str(incremental_unavailable(champion.model))
    with pytest.raises(IncrementalUnsupported, match=re.escape(reason)):
        retrain_incremental(champion, test)
    fallback = retrain("incremental", test, champion)
    assert (fallback.record["kind"], fallback.record["requested_kind"]) == ("full", "incremental")
    assert reason in fallback.record["fallback"]
    assert fallback.metadata["hyperparameters"] == hyperparameters  # the champion's, for a full retrain


def test_retrain_runs_the_kind_asked_for(iris_split: Split) -> None:
    champion = _champion(iris_split.train, "logistic_regression")
    rows, sources = iris_split.test, [{"uri": "update rows", "rows": 30, "role": "window"}]

    incremental = retrain("incremental", rows, champion, sources=sources)
    assert (incremental.record["kind"], incremental.record["requested_kind"]) == ("incremental", "incremental")
    assert incremental.record["sources"] == sources and incremental.record["fallback"] is None
    full = retrain("full", rows, champion)
    assert (full.record["kind"], full.record["fallback"]) == ("full", None)
    changed = retrain("incremental", rows, champion, estimator="knn")
    assert changed.record["fallback"] == (
        "the estimator changes (logistic_regression {} -> knn {}): only a full retrain can make it"
    )
    assert changed.metadata["estimator"] == "knn" and changed.metadata["hyperparameters"] == {}
    tuned = retrain("incremental", rows, champion, hyperparameters={"C": 0.5})
    assert (tuned.record["kind"], tuned.metadata["hyperparameters"]) == ("full", {"C": 0.5})
    with pytest.raises(ConfigError, match=r"^retrain kind 'partial': unknown; choose one of incremental, full$"):
        retrain("partial", rows, champion)


def test_update_rows_without_a_class_or_a_feature(iris_split: Split) -> None:
    champion = _champion(iris_split.train, "logistic_regression")
    one_class = iris_split.test[iris_split.test["species"] != "setosa"]
    with pytest.raises(IncrementalUnsupported, match=r"hold no row of class\(es\) setosa; .*retrain fully$"):
        retrain_incremental(champion, one_class)
    with pytest.raises(DataError, match=r"^update rows: lack the model's column\(s\) petal_width; nothing was trained"):
        retrain_incremental(champion, iris_split.test.drop(columns="petal_width"))
