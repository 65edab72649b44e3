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
    """Reference data + label gives the profile train would have written."""
    reference = load_reference(str(files["reference"]), label="purchased")
    assert reference.profile == build_profile(autumn, ecommerce.feature_kinds(), "purchased")
    assert reference.rows is not None and reference.explicit_rows
    with pytest.raises(ConfigError, match="name its label column"):
        load_reference(str(files["reference"]))
    with pytest.raises(ConfigError, match="no label column 'target'"):
        load_reference(str(files["reference"]), label="target")
