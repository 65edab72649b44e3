"""Training (kfp_mlops.modeling.training) on Iris: every estimator, hyperparameters, features by kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from kfp_mlops.core.errors import DataError
from kfp_mlops.modeling.estimators import ESTIMATORS, make_estimator
from kfp_mlops.modeling.training import fit_model

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


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


def test_training_data_without_label_or_features(iris_train: pd.DataFrame) -> None:
    """Training data must hold the label and at least one feature."""
    with pytest.raises(DataError, match=r"^training data: no label column 'target'$"):
        fit_model(iris_train, "target", "knn", {}, seed=0)
    with pytest.raises(DataError, match=r"^training data: no feature columns besides the label$"):
        fit_model(iris_train[["species"]], "species", "knn", {}, seed=0)
