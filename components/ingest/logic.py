"""Ingest: load a data source and split it into stratified, seeded train and test sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfp_mlops.components.common import json_safe
from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.modeling.datasets import load_source, write_parquet

if TYPE_CHECKING:
    import pandas as pd

# Stands in for a missing label while splitting, so that rows with no label still reach validate,
# which reports them, instead of failing the split with an obscure sklearn error.
_MISSING_LABEL = "<missing>"


@dataclass(frozen=True)
class Split:
    """A train/test split and the metadata each Dataset artifact carries."""

    train: pd.DataFrame
    test: pd.DataFrame
    source: str
    label: str

    def metadata(self, part: str) -> dict[str, Any]:
        """Row count, schema and class counts of ``part`` ("train" or "test")."""
        frame = self.train if part == "train" else self.test
        return json_safe(
            {
                "source": self.source,
                "split": part,
                "rows": len(frame),
                "columns": list(frame.columns),
                "schema": {str(c): str(t) for c, t in frame.dtypes.items()},
                "label": self.label,
                "class_counts": frame[self.label]
                .astype("string")
                .fillna(_MISSING_LABEL)
                .value_counts()
                .sort_index()
                .to_dict(),
            }
        )


def split_source(source: str, label: str, test_size: float = 0.2, seed: int = 42) -> Split:
    """Loads ``source`` and splits it, stratified on ``label``.

    Raises:
        ConfigError: ``test_size`` is not a fraction in (0, 1).
        DataError: the source is unusable, has no ``label`` column, or a class is too small to split.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size={test_size}: must be a fraction between 0 and 1")
    frame = load_source(source)
    if label not in frame.columns:
        raise DataError(
            f"data source {source!r}: no label column {label!r}; columns are {', '.join(map(str, frame.columns))}"
        )
    strata = frame[label].astype("string").fillna(_MISSING_LABEL)
    counts = strata.value_counts()
    too_small = counts[counts < 2]
    if not too_small.empty:
        raise DataError(
            f"data source {source!r}: label {label!r} has classes with fewer than 2 rows, "
            f"which cannot be split: {', '.join(map(str, too_small.index))}"
        )
    try:
        train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=strata)
    except ValueError as exc:
        raise DataError(f"data source {source!r}: cannot split {len(frame)} rows: {exc}") from None
    return Split(train=train.reset_index(drop=True), test=test.reset_index(drop=True), source=source, label=label)


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

    Returns:
        The metadata of the train and test artifacts, keyed "train" and "test".
    """
    from kfp_mlops.core.tracking import tracked_run

    params = {"source": source, "label": label, "test_size": test_size, "seed": seed}
    with tracked_run("ingest", group=pipeline_job_id, config=params, project=wandb_project or None) as run:
        split = split_source(source, label, test_size=test_size, seed=seed)
        write_parquet(split.train, train_path)
        write_parquet(split.test, test_path)
        metadata = {part: split.metadata(part) for part in ("train", "test")}
        run.log_metrics({"train_rows": len(split.train), "test_rows": len(split.test)})
        for part, path in (("train", train_path), ("test", test_path)):
            run.log_artifact(f"{part}-data", "dataset", uri=path, metadata=metadata[part])
    return metadata
