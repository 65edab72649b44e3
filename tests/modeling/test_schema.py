"""Data schemas (kfp_mlops.modeling.schema): the kind of each feature column."""

from __future__ import annotations

import pandas as pd

from kfp_mlops.modeling.schema import feature_kinds


def test_feature_kinds_by_dtype() -> None:
    """Numbers are numeric; strings, categories and booleans are categorical; the label is left out."""
    frame = pd.DataFrame(
        {
            "n": [1, 2],
            "f": [0.5, 1.5],
            "s": ["a", "b"],
            "b": [True, False],
            "c": pd.Categorical(["x", "y"]),
            "y": [0, 1],
        }
    )
    assert feature_kinds(frame, "y") == {
        "n": "numeric",
        "f": "numeric",
        "s": "categorical",
        "b": "categorical",
        "c": "categorical",
    }
