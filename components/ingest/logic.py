"""Ingest, the component's side: split the source, write both sets as Parquet, log them to W&B.

The split is :func:`kfp_mlops.modeling.splitting.split_source`, shared with tests and benchmarks.
A retrain (``retrain_kind`` set by the monitoring pipeline's drift check) splits the window *and*
its recent same-regime history instead (:func:`kfp_mlops.drift.gather_retraining_data`), checked
against the champion before anything is written; the sets' metadata lists the windows read
(``sources``) and the history left out as another regime (``left_out``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kfp_mlops.components.common import dataset_name, tracked_task
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.drift import RetrainPolicy, gather_retraining_data
from kfp_mlops.modeling.datasets import write_parquet
from kfp_mlops.modeling.evaluation import load_champion
from kfp_mlops.modeling.retraining import RETRAIN_KINDS
from kfp_mlops.modeling.splitting import Split, split_frame, split_source


def run_ingest(
    source: str,
    label: str,
    train_path: str,
    test_path: str,
    *,
    test_size: float = 0.2,
    seed: int = 42,
    retrain_kind: str = "",
    store_root: str = "",
    model_name: str = "",
    history_root: str = "",
    retrain_policy: Mapping[str, Any] | None = None,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    outputs: RunOutputs | None = None,
) -> dict[str, dict[str, Any]]:
    """Splits ``source`` into Parquet files at ``train_path``/``test_path`` and logs them to W&B.

    Args:
        source: ``iris``, or a ``.csv``/``.parquet`` path or ``gs://`` URI.
        label: the label column, used to stratify.
        train_path: where the training rows go.
        test_path: where the held-out rows go.
        test_size: the share of rows held out.
        seed: the split's random seed.
        retrain_kind: empty for a training run; ``incremental`` or ``full`` for a retrain of the
            champion of ``model_name`` in ``store_root`` on ``source`` and its history.
        store_root: the model store (a retrain's champion).
        model_name: the registered model (a retrain's champion).
        history_root: where a retrain finds the windows before ``source`` (empty: none).
        retrain_policy: RetrainPolicy fields: how many history windows a retrain kind reads.
        pipeline_job_id: the W&B group.
        wandb_project: the W&B project (empty: the ``WANDB_PROJECT`` setting).
        outputs: the task outputs the W&B run is published to.

    Returns:
        The metadata of the train and test artifacts, keyed "train" and "test"; each names the
        exact W&B artifact version it was logged as (``wandb_artifact``, e.g. ``iris-train-data``).

    Raises:
        ConfigError: an unknown retrain kind or policy field, a retrain without a champion.
        DataError: the source (or, for a retrain, a history window) is unusable; nothing is written.
    """
    params = {"source": source, "label": label, "test_size": test_size, "seed": seed, "retrain_kind": retrain_kind}
    with tracked_task(
        "ingest", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project, outputs=outputs
    ) as run:
        if retrain_kind:
            split, retraining = _retraining_split(
                source,
                label,
                kind=retrain_kind,
                store_root=store_root,
                model_name=model_name,
                history_root=history_root,
                policy=RetrainPolicy.from_dict(retrain_policy or {}),
                test_size=test_size,
                seed=seed,
            )
        else:
            split, retraining = split_source(source, label, test_size=test_size, seed=seed), {}
        write_parquet(split.train, train_path)
        write_parquet(split.test, test_path)
        metadata = {part: {**split.metadata(part), **retraining} for part in ("train", "test")}
        run.log_metrics({"train_rows": len(split.train), "test_rows": len(split.test)})
        stem = dataset_name(model_name, source)
        for part, path in (("train", train_path), ("test", test_path)):
            ref = run.log_artifact(f"{stem}-{part}-data", "dataset", uri=path, metadata=metadata[part])
            metadata[part]["wandb_artifact"] = ref.to_dict()
    return metadata


def _retraining_split(
    window: str,
    label: str,
    *,
    kind: str,
    store_root: str,
    model_name: str,
    history_root: str,
    policy: RetrainPolicy,
    test_size: float,
    seed: int,
) -> tuple[Split, dict[str, Any]]:
    """The split of a retrain's rows (window and same-regime history) and what the sets' metadata records."""
    if kind not in RETRAIN_KINDS:
        raise ConfigError(
            f"retrain_kind {kind!r}: unknown; choose one of {', '.join(RETRAIN_KINDS)} (or leave it empty)"
        )
    champion, version, unloadable = load_champion(store_root, model_name)
    if champion is None:
        why = unloadable or "there is none"
        raise ConfigError(f"retrain of {model_name!r} in {store_root!r}: the champion cannot be loaded: {why}")
    data, left_out = gather_retraining_data(
        window, kind=kind, champion=champion, history_root=history_root, policy=policy
    )
    if data.label != label:
        raise ConfigError(f"retrain: label {label!r} is not the champion's label {data.label!r}")
    split = split_frame(data.rows(), label, test_size=test_size, seed=seed, source=window)
    return split, {"retrain_kind": kind, "base_version": version, "sources": data.sources(), "left_out": left_out}
