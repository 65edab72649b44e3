"""Fixtures of the drift tests: autumn reference rows of the e-commerce data, a model, files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kfp_mlops.core.config import Settings
from kfp_mlops.demos import ecommerce
from kfp_mlops.modeling.model_bundle import ModelBundle, save_bundle
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.training import fit_model
from tests.support.models import register


@pytest.fixture(scope="session")
def autumn() -> pd.DataFrame:
    """Autumn reference rows (the week column dropped)."""
    return ecommerce.generate(range(35, 46), rows_per_week=1_000, seed=0).drop(columns=ecommerce.WEEK)


@pytest.fixture(scope="session")
def autumn_model(autumn: pd.DataFrame) -> ModelBundle:
    model, metadata = fit_model(autumn, ecommerce.LABEL, "logistic_regression", {}, seed=0)
    return ModelBundle(model, metadata)


@pytest.fixture()
def files(tmp_path: Path, autumn: pd.DataFrame, autumn_model: ModelBundle) -> dict[str, Path]:
    """Reference data, its profile, a model (trained on that data, a version of the test's model store) and two
    windows; ``model_folder`` is the folder train wrote, outside the store."""
    paths = {name: tmp_path / f"{name}.parquet" for name in ("reference", "quiet", "december")}
    autumn.to_parquet(paths["reference"])
    ecommerce.generate([42], 2_000, seed=5).drop(columns="week").to_parquet(paths["quiet"])
    ecommerce.generate([48], 2_000, seed=5).drop(columns="week").to_parquet(paths["december"])
    paths["profile"] = tmp_path / "profile.json"
    paths["profile"].write_text(json.dumps(build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)))
    paths["model_folder"] = tmp_path / "model"
    save_bundle(paths["model_folder"], autumn_model.model, {**autumn_model.metadata, "training_data_uri": "memory"})
    paths["model"] = Path(register(Settings.from_env().store_root, paths["model_folder"], name="autumn").uri)
    return paths
