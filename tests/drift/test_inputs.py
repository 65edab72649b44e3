"""Loading a reference given as data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kfp_mlops.core.errors import ConfigError
from kfp_mlops.demos import ecommerce
from kfp_mlops.drift.inputs import load_reference
from kfp_mlops.modeling.profile import build_profile


def test_reference_data_is_profiled_like_train_does(files: dict[str, Path], autumn: pd.DataFrame) -> None:
    """Reference data + label gives the profile train would have written; a label it lacks is refused."""
    reference = load_reference(str(files["reference"]), label="purchased")
    assert reference.profile == build_profile(autumn, ecommerce.feature_kinds(), "purchased")
    assert reference.rows is not None and reference.explicit_rows
    with pytest.raises(ConfigError, match="no label column 'target' \\(leave the label out for unlabelled data\\)"):
        load_reference(str(files["reference"]), label="target")


def test_unlabelled_reference_data_profiles_every_column(autumn: pd.DataFrame, tmp_path: Path) -> None:
    """No label: every column but the ignored ones is a feature, numeric by dtype; no label shares."""
    path = tmp_path / "unlabelled.parquet"
    autumn.drop(columns="purchased").assign(session="s").to_parquet(path)

    reference = load_reference(str(path), ignore_columns=["session"])

    kinds = ecommerce.feature_kinds()
    assert reference.profile == build_profile(autumn, kinds, None)
    assert (reference.profile["label"], reference.profile["label_shares"]) == (None, {})
    assert {name: entry["kind"] for name, entry in reference.profile["features"].items()} == kinds
