"""The estimators by name (kfp_mlops.modeling.estimators): unknown names, hyperparameters and values."""

from __future__ import annotations

from typing import Any

import pytest

from kfp_mlops.core.errors import ConfigError
from kfp_mlops.modeling.estimators import make_estimator


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
    assert message.startswith("hyperparameters of estimator 'knn': unknown key(s) depth, n_neighbours; known: ")
    assert "n_neighbors" in message.split("known: ")[1].split(", ")


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
