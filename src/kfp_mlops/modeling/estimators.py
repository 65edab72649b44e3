"""The scikit-learn estimators a pipeline can train, by name, and the preprocessing in front of them."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from kfp_mlops.core.configs import refuse_unknown
from kfp_mlops.core.errors import ConfigError

# name -> (import path, defaults that differ from scikit-learn's)
ESTIMATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "logistic_regression": ("sklearn.linear_model:LogisticRegression", {"max_iter": 1000}),
    "random_forest": ("sklearn.ensemble:RandomForestClassifier", {"n_estimators": 100}),
    "gradient_boosting": ("sklearn.ensemble:HistGradientBoostingClassifier", {}),
    "decision_tree": ("sklearn.tree:DecisionTreeClassifier", {}),
    "knn": ("sklearn.neighbors:KNeighborsClassifier", {}),
}


def make_estimator(name: str, hyperparameters: Mapping[str, Any], seed: int) -> Any:
    """Builds an unfitted estimator.

    Args:
        name: a key of :data:`ESTIMATORS`.
        hyperparameters: constructor arguments; each must be one the estimator accepts.
        seed: ``random_state`` for estimators that take one.

    Raises:
        ConfigError: unknown estimator name, unknown hyperparameter, or a value it rejects.
    """
    if name not in ESTIMATORS:
        raise ConfigError(f"estimator {name!r}: unknown; choose one of {', '.join(sorted(ESTIMATORS))}")
    path, defaults = ESTIMATORS[name]
    module, _, cls_name = path.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    base = cls().get_params()
    accepted = set(base)
    refuse_unknown(hyperparameters, accepted, f"hyperparameters of estimator {name!r}")
    # A KFP dict parameter travels as a protobuf Struct, whose numbers are all doubles: 200 arrives as
    # 200.0. A whole number is given back as an int where the estimator's own default is an int.
    given = {
        k: int(v) if isinstance(v, float) and v.is_integer() and type(base[k]) is int else v
        for k, v in hyperparameters.items()
    }
    params = {**defaults, **given}
    if "random_state" in accepted:
        params.setdefault("random_state", seed)
    try:
        estimator = cls(**params)
        # scikit-learn checks values at fit time; checking now turns a late crash into a clear error.
        estimator._validate_params()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"estimator {name!r}: {exc}") from None
    return estimator


def build_pipeline(estimator: Any, numeric: Sequence[str], categorical: Sequence[str]) -> Any:
    """Scales numeric features and one-hot encodes categorical ones in front of ``estimator``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(numeric)),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(categorical)),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("model", estimator)])
