"""Small real models for serving tests: Iris fitted by the train component's own code."""

from __future__ import annotations

import json
from pathlib import Path

from kfp_mlops.components.ingest.logic import split_source
from kfp_mlops.components.train.logic import fit_model
from kfp_mlops.modeling.model_bundle import PROFILE_FILE, save_bundle
from kfp_mlops.modeling.profile import build_profile


def iris_model(folder: Path, estimator: str = "logistic_regression", seed: int = 0) -> Path:
    """Writes a model folder like a store version (model, metadata, reference profile)."""
    train = split_source("iris", "species", seed=seed).train
    model, metadata = fit_model(train, "species", estimator, {}, seed)
    metadata["training_data_uri"] = "iris"
    save_bundle(folder, model, metadata)
    profile = build_profile(train, metadata["feature_kinds"], "species")
    (folder / PROFILE_FILE).write_text(json.dumps(profile))
    return folder
