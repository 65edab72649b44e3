"""Ingest, the component's side: split the source, write both sets as Parquet, log them to W&B.

The split is :func:`kfp_mlops.modeling.splitting.split_source`, shared with tests and benchmarks.
"""

from __future__ import annotations

from typing import Any

from kfp_mlops.components.common import tracked_task
from kfp_mlops.modeling.datasets import write_parquet
from kfp_mlops.modeling.splitting import split_source


def run_ingest(
    source: str,
    label: str,
    train_path: str,
    test_path: str,
    *,
    test_size: float = 0.2,
    seed: int = 42,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
) -> dict[str, dict[str, Any]]:
    """Splits ``source`` into Parquet files at ``train_path``/``test_path`` and logs them to W&B.

    Args:
        source: ``iris``, or a ``.csv``/``.parquet`` path or ``gs://`` URI.
        label: the label column, used to stratify.
        train_path: where the training rows go.
        test_path: where the held-out rows go.
        test_size: the share of rows held out.
        seed: the split's random seed.
        pipeline_job_id: the W&B group.
        wandb_project: the W&B project (empty: the ``WANDB_PROJECT`` setting).

    Returns:
        The metadata of the train and test artifacts, keyed "train" and "test".
    """
    params = {"source": source, "label": label, "test_size": test_size, "seed": seed}
    with tracked_task("ingest", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project) as run:
        split = split_source(source, label, test_size=test_size, seed=seed)
        write_parquet(split.train, train_path)
        write_parquet(split.test, test_path)
        metadata = {part: split.metadata(part) for part in ("train", "test")}
        run.log_metrics({"train_rows": len(split.train), "test_rows": len(split.test)})
        for part, path in (("train", train_path), ("test", test_path)):
            run.log_artifact(f"{part}-data", "dataset", uri=path, metadata=metadata[part])
    return metadata
