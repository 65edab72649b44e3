"""Train, the component's side: read the training split, fit, write the model folder and profile, log to W&B.

The fitting itself is :func:`kfp_mlops.modeling.training.fit_model`, shared with demos and tests.
A retrain (``retrain_kind`` from the drift check's retrain policy) is
:func:`kfp_mlops.modeling.retraining.retrain` of the champion instead: an incremental update of a
copy of it, or a full retrain, its record (kind, mechanism, fit seconds, sources) in the metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kfp_mlops.components.common import dataset_name, tracked_task
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.core.storage import canonical_uri
from kfp_mlops.core.tracking import ArtifactRef
from kfp_mlops.modeling.datasets import read_parquet
from kfp_mlops.modeling.evaluation import load_champion
from kfp_mlops.modeling.model_bundle import save_bundle
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.retraining import retrain
from kfp_mlops.modeling.training import fit_model


def run_train(
    train_path: str,
    model_dir: str,
    profile_path: str,
    *,
    label: str,
    estimator: str,
    hyperparameters: Mapping[str, Any],
    seed: int = 42,
    training_data_uri: str = "",
    retrain_kind: str = "",
    store_root: str = "",
    model_name: str = "",
    sources: Sequence[Mapping[str, Any]] = (),
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    uses: Sequence[ArtifactRef] = (),
    outputs: RunOutputs | None = None,
) -> dict[str, Any]:
    """Trains, writes the model folder and the reference profile, logs both to W&B.

    Args:
        train_path: the training rows (Parquet).
        model_dir: where the model folder goes.
        profile_path: where the reference profile (JSON) goes.
        label: the label column.
        estimator: the estimator's name.
        hyperparameters: its constructor arguments.
        seed: ``random_state`` for estimators that take one.
        training_data_uri: the training data's URI to record (default: ``train_path``).
        retrain_kind: empty for a training run; ``incremental`` or ``full`` to retrain the champion
            of ``model_name`` in ``store_root`` instead (an incremental update the champion cannot
            take, or with another estimator, falls back to full; the record says why).
        store_root: the model store (a retrain's champion).
        model_name: the registered model (a retrain's champion).
        sources: the windows the training rows came from (a retrain's record).
        pipeline_job_id: the W&B group.
        wandb_project: the W&B project (empty: the ``WANDB_PROJECT`` setting).
        uses: the training data's W&B artifact (ingest's ``<name>-train-data`` version), the
            model's exact input; its name (``iris-train-data``) names the model (``iris-model``).
        outputs: the task outputs the W&B run is published to.

    Returns:
        The model metadata (as written to ``model_dir/metadata.json``) and ``wandb_artifact``, the
        model's W&B artifact version.
    """
    params = {
        "estimator": estimator,
        "hyperparameters": dict(hyperparameters),
        "seed": seed,
        "label": label,
        "retrain_kind": retrain_kind,
    }
    with tracked_task(
        "train", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project, outputs=outputs
    ) as run:
        train = read_parquet(train_path)
        if retrain_kind:
            champion, _, unloadable = load_champion(store_root, model_name)
            if champion is None:
                why = unloadable or "there is none"
                raise ConfigError(f"retrain of {model_name!r} in {store_root!r}: the champion cannot be loaded: {why}")
            retrained = retrain(
                retrain_kind,
                train,
                champion,
                estimator=estimator,
                hyperparameters=hyperparameters,
                seed=seed,
                sources=sources,
            )
            model, metadata = retrained.model, retrained.metadata
            run.log_metrics({f"retrain_{k}": v for k, v in retrained.record.items() if k.endswith("_seconds")})
        else:
            model, metadata = fit_model(train, label, estimator, hyperparameters, seed)
        metadata["training_data_uri"] = canonical_uri(training_data_uri or train_path)
        metadata = save_bundle(model_dir, model, metadata)
        profile = build_profile(train, metadata["feature_kinds"], label)
        Path(profile_path).parent.mkdir(parents=True, exist_ok=True)
        Path(profile_path).write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n")
        run.log_metrics(metadata["metrics"])
        data = next((ref.name for ref in uses if ref.name.endswith("-train-data")), "")
        stem = data.removesuffix("-train-data") or dataset_name(model_name, training_data_uri or train_path)
        ref = run.log_artifact(f"{stem}-model", "model", uri=canonical_uri(model_dir), metadata=metadata, uses=uses)
        run.log_artifact(
            f"{stem}-reference-profile",
            "profile",
            uri=canonical_uri(profile_path),
            metadata={"rows": profile["rows"]},
            uses=uses,
        )
        if "retraining" in metadata:
            run.log_record("retraining", metadata["retraining"])
    return {**metadata, "wandb_artifact": ref.to_dict()}


def render_summary(metadata: Mapping[str, Any]) -> str:
    """The KFP UI's Markdown summary of a trained model: estimator, training metrics, and a retrain's record."""
    lines = [
        "# Training",
        "",
        f"Estimator `{metadata.get('estimator', '?')}` · {len(metadata.get('feature_names', []))} features · "
        f"classes {', '.join(f'`{c}`' for c in metadata.get('classes', []))}",
        "",
        "| metric (training split) | value |",
        "|---|---|",
        *(f"| {name} | {value:.4f} |" for name, value in sorted(metadata.get("metrics", {}).items())),
    ]
    record = metadata.get("retraining")
    if record:
        lines += ["", f"## Retrain: {record.get('kind')}", "", "| field | value |", "|---|---|"]
        lines += [f"| {key} | {json.dumps(value, default=str)} |" for key, value in sorted(record.items())]
    else:
        lines += ["", "Trained from scratch (not a retrain)."]
    return "\n".join(lines) + "\n"
