"""Small real models for tests: Iris fitted by the package's own training code, and stored champions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from kfp_mlops.modeling.model_bundle import METADATA_FILE, PROFILE_FILE, save_bundle
from kfp_mlops.modeling.model_store import ModelStore, RegisteredVersion
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.splitting import split_source
from kfp_mlops.modeling.training import fit_model


def iris_model(folder: Path, estimator: str = "logistic_regression", seed: int = 0) -> Path:
    """Writes a model folder like a store version (model, metadata, reference profile)."""
    train = split_source("iris", "species", seed=seed).train
    model, metadata = fit_model(train, "species", estimator, {}, seed)
    metadata["training_data_uri"] = "iris"
    save_bundle(folder, model, metadata)
    profile = build_profile(train, metadata["feature_kinds"], "species")
    (folder / PROFILE_FILE).write_text(json.dumps(profile))
    return folder


def save_model(
    folder: Path,
    train: pd.DataFrame,
    estimator: str = "logistic_regression",
    hyperparameters: dict[str, Any] | None = None,
) -> Path:
    """Fits ``estimator`` on ``train`` (label ``species``, seed 0) and writes its model folder, as train does."""
    model, metadata = fit_model(train, "species", estimator, hyperparameters or {}, seed=0)
    save_bundle(folder, model, {**metadata, "training_data_uri": "memory"})
    return folder


def register(
    store_root: str, model_dir: Path, *, name: str = "iris", profile_path: Path | None = None
) -> RegisteredVersion:
    """Stores ``model_dir`` as a new version of ``name`` with train's checksum, as register does (no W&B run)."""
    sha256 = json.loads((model_dir / METADATA_FILE).read_text())["model_sha256"]  # as train hands it on
    return ModelStore(store_root).publish(
        name, model_dir, profile_path=profile_path, evaluation={"passed": True}, sha256=sha256
    )


def crown(store_root: str, model_dir: Path, *, name: str = "iris", profile_path: Path | None = None) -> str:
    """Stores ``model_dir`` as a version of ``name`` (no W&B run) and makes it the champion; returns the version."""
    store = ModelStore(store_root)
    current = store.champion(name)
    registered = register(store_root, model_dir, name=name, profile_path=profile_path)
    store.promote(registered, expected_champion=current.version if current else None, by="test", reasons=["crowned"])
    return registered.version
