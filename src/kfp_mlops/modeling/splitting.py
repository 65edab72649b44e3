"""Splitting a data source into stratified, seeded train and test sets.

The split is stratified on the label so that every class reaches both sets, and seeded so that the
same seed gives the same rows. Rows without a label are kept (as their own stratum) so that
validation, not the split, reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.modeling.datasets import load_source

if TYPE_CHECKING:
    import pandas as pd

# Stands in for a missing label while splitting, so that rows with no label still reach validate,
# which reports them, instead of failing the split with an obscure sklearn error.
_MISSING_LABEL = "<missing>"


@dataclass(frozen=True)
class Split:
    """A train/test split of one source."""

    train: pd.DataFrame
    test: pd.DataFrame
    source: str
    label: str

    def metadata(self, part: str) -> dict[str, Any]:
        """Row count, schema and class counts of ``part`` ("train" or "test"), as plain JSON values."""
        frame = self.train if part == "train" else self.test
        class_counts = frame[self.label].astype("string").fillna(_MISSING_LABEL).value_counts().sort_index()
        return {
            "source": self.source,
            "split": part,
            "rows": len(frame),
            "columns": [str(c) for c in frame.columns],
            "schema": {str(c): str(t) for c, t in frame.dtypes.items()},
            "label": self.label,
            "class_counts": {str(k): int(v) for k, v in class_counts.items()},
        }


def check_test_size(test_size: float) -> None:
    """Refuses a held-out share that is not a fraction strictly between 0 and 1.

    Raises:
        ConfigError: naming the value.
    """
    if not 0.0 < float(test_size) < 1.0:
        raise ConfigError(f"test_size={test_size}: must be a fraction between 0 and 1")


def split_source(source: str, label: str, test_size: float = 0.2, seed: int = 42) -> Split:
    """Loads ``source`` and splits it, stratified on ``label``.

    Args:
        source: ``iris``, or the path or ``gs://`` URI of a ``.csv`` or ``.parquet`` file.
        label: the label column.
        test_size: the share of rows held out.
        seed: the split's random seed.

    Raises:
        ConfigError: ``test_size`` is not a fraction in (0, 1).
        DataError: the source is unusable, has no ``label`` column, or a class is too small to split.
    """
    check_test_size(test_size)
    return split_frame(load_source(source), label, test_size=test_size, seed=seed, source=source)


def split_frame(frame: pd.DataFrame, label: str, *, test_size: float = 0.2, seed: int = 42, source: str) -> Split:
    """Splits rows already loaded (a retrain's window and history), stratified on ``label``.

    Args:
        frame: the rows.
        label: the label column.
        test_size: the share of rows held out.
        seed: the split's random seed.
        source: where the rows came from (named in errors and recorded in the metadata).

    Raises:
        ConfigError: ``test_size`` is not a fraction in (0, 1).
        DataError: no ``label`` column, or a class is too small to split.
    """
    from sklearn.model_selection import train_test_split

    check_test_size(test_size)
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
