"""The drift check over a streamed window: Parquet record batches counted against the profile.

:func:`check_window_at` gives :func:`~kfp_mlops.drift.check.check_drift`'s verdict for a Parquet
window read a batch at a time (:class:`~kfp_mlops.drift.window.ParquetWindow`). It refuses what
``check_drift`` refuses -- from the file's schema before a row is read
(:func:`~kfp_mlops.drift.check.check_window`), features with every value missing after the last
batch -- and sums each feature's :class:`~kfp_mlops.drift.scores.Counts` over the batches. Counts
are integers, so the sums are exact and the verdict is the loaded window's, float for float
(``tests/drift/test_streaming.py``).

Each batch's features are counted on :data:`COUNTING_THREADS` threads while the window decodes
the next batch. Memory: the dataset's verdict needs a few hundred integers per feature whatever the
window's size; only the features' columns are read (ignored columns are skipped). A model makes it
grow: the prediction check keeps each scored row's class probabilities (8 bytes per class) and
label, because the realized ROC AUC and the label-free estimate's expected AUC rank every scored
row; the features are still read and scored a batch at a time.

It is what :func:`~kfp_mlops.drift.run.run_drift` calls: the window at a location, streamed when it
is Parquet (:func:`~kfp_mlops.drift.window.is_parquet`), loaded when it is CSV, together with the
rows Evidently's report is drawn from. A streamed window's are a uniform
sample without replacement of at most ``report_rows`` rows, their row numbers drawn with
``numpy.random.default_rng(config.seed)`` from the row count in the file's footer before the read,
gathered as the batches pass; a loaded window's are :func:`~kfp_mlops.drift.inputs.sample_rows`'s
(pandas' ``sample``). Either way the report sees at most ``report_rows`` rows, as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kfp_mlops.core.errors import DataError
from kfp_mlops.drift.check import check_drift, check_profile, check_window, verdict_from_counts
from kfp_mlops.drift.config import DriftConfig
from kfp_mlops.drift.inputs import load_data, sample_rows
from kfp_mlops.drift.model_checks import drift_of_predictions, predict
from kfp_mlops.drift.scores import Counts, category_counts, numeric_counts
from kfp_mlops.drift.window import BATCH_ROWS, ParquetWindow, is_parquet, open_window

# Features of a batch are counted on two threads (numpy releases the GIL in the bucketing's ufuncs),
# beside the thread decoding the next batch.
COUNTING_THREADS = 2

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from kfp_mlops.modeling.model_bundle import ModelBundle


@dataclass
class WindowCheck:
    """A window's verdict and the rows its report is drawn from.

    Attributes:
        verdict: :func:`~kfp_mlops.drift.check.check_drift`'s verdict.
        report_rows: At most ``report_rows`` rows of the window's features (None: none asked for).
    """

    verdict: dict[str, Any]
    report_rows: pd.DataFrame | None


def check_window_at(
    location: str,
    profile: Mapping[str, Any],
    *,
    config: DriftConfig | None = None,
    model: ModelBundle | None = None,
    reference_prediction_shares: Mapping[str, float] | None = None,
    reference_performance: Mapping[str, float] | None = None,
    profile_where: str = "reference profile",
    report_rows: int = 0,
    batch_rows: int = BATCH_ROWS,
) -> WindowCheck:
    """Checks the window at ``location``: streamed when it is Parquet (local or ``gs://``), loaded when CSV.

    Args:
        location: The window: ``.parquet``/``.pq`` or ``.csv``, local or ``gs://``, or a KFP Dataset.
        profile: The reference profile.
        config: Thresholds (default :class:`DriftConfig`).
        model: The model the profile belongs to (prediction and performance drift).
        reference_prediction_shares: As for :func:`~kfp_mlops.drift.check.check_drift`.
        reference_performance: As for :func:`~kfp_mlops.drift.check.check_drift`.
        profile_where: Names the profile in errors and the verdict.
        report_rows: How many rows to keep for Evidently's report (0: none).
        batch_rows: Rows per batch of a streamed window.

    Raises:
        ConfigError: the profile or config is unusable (a streamed window: before anything is read).
        DataError: the window is missing or unreadable, lacks or adds columns, has no rows or
            non-numeric numeric features (a streamed window: from its schema, before its rows are
            read), a feature with every value missing, or the model cannot score it.
        StorageError: ``gs://`` failed while being read.
    """
    config = config or DriftConfig()
    where = f"current data {location}"
    if not is_parquet(location):
        frame = load_data(location, "current data")
        verdict = check_drift(
            profile,
            frame,
            config=config,
            model=model,
            reference_prediction_shares=reference_prediction_shares,
            reference_performance=reference_performance,
            where=where,
            profile_where=profile_where,
        )
        return WindowCheck(verdict, sample_rows(frame, report_rows, config.seed) if report_rows else None)
    with open_window(location, where) as window:
        model_inputs = (model, reference_prediction_shares, reference_performance)
        return _check_streamed(profile, window, config, model_inputs, profile_where, report_rows, batch_rows)


def _check_streamed(
    profile: Mapping[str, Any],
    window: ParquetWindow,
    config: DriftConfig,
    model_inputs: tuple[ModelBundle | None, Mapping[str, float] | None, Mapping[str, float] | None],
    profile_where: str,
    report_rows: int,
    batch_rows: int,
) -> WindowCheck:
    """:func:`check_window_at` of an open Parquet window; ``model_inputs``: the model, the reference's
    prediction shares and performance."""
    model, reference_prediction_shares, reference_performance = model_inputs
    check_profile(profile, config, model, profile_where)
    features: Mapping[str, Mapping[str, Any]] = profile["features"]
    names = list(profile["feature_names"])
    non_numeric = [
        f"{name} ({window.types[name]})"
        for name in names
        if name in window.types and features[name]["kind"] == "numeric" and not _is_number(window.types[name])
    ]
    check_window(window.columns, window.rows, non_numeric, [], profile, config, window.where)

    label = profile["label"]
    read = [*names, label] if model is not None and label in window.types else names
    predictions = _Predictions(model, label, window.where) if model is not None else None
    sample = _Sample(window.rows, report_rows, config.seed, names) if report_rows else None
    counts: dict[str, Counts] = {}
    offset = 0
    with ThreadPoolExecutor(COUNTING_THREADS, thread_name_prefix="drift-counts") as counters:
        for batch in window.batches(read, batch_rows):
            parts = counters.map(_counts, [batch.column(n) for n in names], [features[n] for n in names])
            for name, part in zip(names, parts):
                counts[name] = counts[name] + part if name in counts else part
            if predictions is not None:
                predictions.add(batch)
            if sample is not None:
                sample.add(batch, offset)
            offset += batch.num_rows
    all_missing = [name for name in names if counts[name].present == 0]
    if all_missing:
        check_window(window.columns, window.rows, [], all_missing, profile, config, window.where)

    model_checks = None
    if predictions is not None:
        model_checks = predictions.drift(profile, config, reference_prediction_shares, reference_performance)
    verdict = verdict_from_counts(
        profile,
        counts,
        window.rows,
        config=config,
        model_checks=model_checks,
        reference_performance=reference_performance,
        profile_where=profile_where,
    )
    return WindowCheck(verdict, sample.frame() if sample is not None else None)


def _counts(column: pa.Array, entry: Mapping[str, Any]) -> Counts:
    """One batch's counts of one feature."""
    if entry["kind"] == "numeric":
        return numeric_counts(_floats(column), entry)
    return category_counts(_categories(column), len(column), entry)


def _is_number(kind: pa.DataType) -> bool:
    """Numbers as pandas sees them: integers and floats (not booleans, decimals, dates or categories)."""
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _floats(column: pa.Array) -> np.ndarray:
    """A numeric column as float64 with NaN for missing values (what pandas' ``to_numpy`` gives)."""
    import pyarrow as pa

    if column.null_count or (pa.types.is_floating(column.type) and column.type != pa.float64()):
        column = column.cast(pa.float64()).fill_null(math.nan)
    return _values(column).astype(np.float64, copy=False)


def _values(column: pa.Array) -> np.ndarray:
    """A primitive column without nulls as numpy, zero-copy.

    Not ``to_numpy``: it imports pandas, which takes longer than checking a million rows.
    """
    import pyarrow as pa

    kind = column.type
    code = "f" if pa.types.is_floating(kind) else "u" if pa.types.is_unsigned_integer(kind) else "i"
    dtype = np.dtype(f"{code}{kind.bit_width // 8}")
    return np.frombuffer(column.buffers()[1], dtype, len(column), column.offset * dtype.itemsize)


def _categories(column: pa.Array) -> dict[str, int]:
    """Category (as ``str()`` of its value, as pandas' ``astype(str)``) -> count; missing values left out."""
    import pyarrow as pa

    if pa.types.is_dictionary(column.type):
        indices = column.indices.drop_null() if column.null_count else column.indices
        values = column.dictionary.to_pylist()
        counts = np.bincount(_values(indices), minlength=len(values))
    else:
        tallied = column.value_counts()
        values, counts = tallied.field("values").to_pylist(), _values(tallied.field("counts"))
    result: dict[str, int] = {}
    for value, count in zip(values, counts.tolist()):
        if count and value is not None and not (isinstance(value, float) and math.isnan(value)):
            result[str(value)] = result.get(str(value), 0) + count
    return result


def _decoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with its dictionary columns decoded, keeping the file's pandas metadata: its
    ``to_pandas`` has the dtypes ``pandas.read_parquet`` gives (strings as objects, nullable ints)."""
    import pyarrow as pa

    columns = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    schema = pa.schema([(name, c.type) for name, c in zip(batch.schema.names, columns)], metadata=batch.schema.metadata)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


class _Predictions:
    """The model's probabilities (and labels) on the scored rows of every batch."""

    def __init__(self, model: ModelBundle, label: str, where: str) -> None:
        self.model, self.label, self.where = model, label, where
        self.probabilities: list[np.ndarray] = []
        self.labels: list[pd.Series] = []

    def add(self, batch: pa.RecordBatch) -> None:
        frame = _decoded(batch).to_pandas()
        if not frame[self.model.feature_names].notna().all(axis=1).any():
            return  # another batch may have complete rows; none at all is refused in drift()
        scored, proba = predict(self.model, frame, self.where)
        self.probabilities.append(proba)
        if self.label in scored.columns:
            self.labels.append(scored[self.label])

    def drift(
        self,
        profile: Mapping[str, Any],
        config: DriftConfig,
        reference_shares: Mapping[str, float] | None,
        reference_performance: Mapping[str, float] | None,
    ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
        import pandas as pd

        if not self.probabilities:
            raise DataError(f"{self.where}: no row has every feature the model needs; cannot score predictions")
        proba = np.concatenate(self.probabilities)
        scored = (
            pd.concat(self.labels, ignore_index=True).to_frame(self.label)
            if self.labels
            else pd.DataFrame(index=pd.RangeIndex(len(proba)))
        )
        return drift_of_predictions(self.model, scored, proba, profile, config, reference_shares, reference_performance)


class _Sample:
    """A uniform sample of a window's rows, drawn by row number before the read and gathered as batches pass."""

    def __init__(self, rows: int, size: int, seed: int, columns: list[str]) -> None:
        self.columns = columns
        self.picks = (
            np.arange(rows) if rows <= size else np.sort(np.random.default_rng(seed).choice(rows, size, replace=False))
        )
        self.parts: list[pa.RecordBatch] = []

    def add(self, batch: pa.RecordBatch, offset: int) -> None:
        first, last = np.searchsorted(self.picks, [offset, offset + batch.num_rows])
        if last > first:
            self.parts.append(_decoded(batch.select(self.columns).take(self.picks[first:last] - offset)))

    def frame(self) -> pd.DataFrame:
        import pyarrow as pa

        return pa.Table.from_batches(self.parts).to_pandas().reset_index(drop=True)
