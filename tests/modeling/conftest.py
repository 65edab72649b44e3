"""Fixtures of the modeling tests: Iris split the way the training pipeline splits it by default."""

from __future__ import annotations

import pandas as pd
import pytest

from kfp_mlops.modeling.splitting import Split, split_source


@pytest.fixture(scope="session")
def iris_split() -> Split:
    """Iris split as ingest splits it (120 train / 30 test rows, 40 and 10 per class); never modified."""
    return split_source("iris", "species", test_size=0.2, seed=42)


@pytest.fixture(scope="session")
def iris_train(iris_split: Split) -> pd.DataFrame:
    """The split's 120 training rows; tests that change rows take a copy."""
    return iris_split.train
