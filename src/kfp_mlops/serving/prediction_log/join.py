"""Reading the log: a window of predictions, and predictions joined with the labels known at a time.

Both read only the partitions of their window: :func:`read_predictions` the prediction hours that
overlap ``[since, until]`` (listing one prefix per day), :func:`join` also the label partitions of
the window's dates and the day before (a label sits under its request's first prediction, which
for a shadow's request can be the previous hour, across midnight).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow.compute as pc

from kfp_mlops.core.errors import DataError
from kfp_mlops.serving.prediction_log.labels import read_labels
from kfp_mlops.serving.prediction_log.partitions import days_between, prediction_segments, read_segments
from kfp_mlops.serving.prediction_log.records import PREDICTION_COLUMNS, PREDICTION_SCHEMA, as_utc, some

if TYPE_CHECKING:
    import pandas as pd


def read_predictions(root: str, *, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    """Every logged prediction with ``since <= timestamp <= until`` (bounds optional).

    Returns:
        Columns :data:`PREDICTION_COLUMNS`, ``timestamp`` as ``datetime64[ns, UTC]``,
        ``features`` as dicts; sorted by predictor, timestamp and request id.

    Raises:
        DataError: a segment in the window is not a segment of this log.
    """
    since = None if since is None else as_utc(since, "since")
    until = None if until is None else as_utc(until, "until")
    table = read_segments(prediction_segments(root, since, until), PREDICTION_SCHEMA, with_predictor=True)
    if since is not None:
        table = table.filter(pc.greater_equal(table["timestamp"], since))
    if until is not None:
        table = table.filter(pc.less_equal(table["timestamp"], until))
    frame = table.to_pandas()
    # One parse for the whole column, not one per row: several times faster on large windows.
    frame["features"] = json.loads("[" + ",".join(frame["features"]) + "]") if len(frame) else []
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns, UTC]")
    frame = frame[list(PREDICTION_COLUMNS)]
    return frame.sort_values(["predictor", "timestamp", "request_id"], ignore_index=True)


def join(root: str, as_of: datetime, *, since: datetime | None = None) -> pd.DataFrame:
    """Predictions made in ``[since, as_of]`` with the labels known at ``as_of``.

    Args:
        root: The log's root.
        as_of: The time the join looks from: later predictions and labels do not exist yet.
        since: Leave out earlier predictions (e.g. the start of a rollout stage); only the
            window's partitions are read.

    Returns:
        One row per (request id, predictor): :data:`PREDICTION_COLUMNS` plus ``label`` (1.0,
        0.0, or NaN while unknown) and ``labelled_at`` (NaT while unknown).

    Raises:
        DataError: a predictor logged a request id twice, or a request id has two labels.
    """
    as_of = as_utc(as_of, "as_of")
    since = None if since is None else as_utc(since, "since")
    predictions = read_predictions(root, since=since, until=as_of)
    twice = predictions[predictions.duplicated(["request_id", "predictor"], keep=False)]
    if not twice.empty:
        pairs = sorted({f"{r} by {p}" for r, p in zip(twice["request_id"], twice["predictor"])})
        raise DataError(f"prediction log {root}: request id(s) logged twice [{len(pairs)}]: {some(pairs)}")
    labels = read_labels(
        root, dates=None if since is None else days_between(since.date() - timedelta(days=1), as_of.date())
    )
    labels = labels[labels["labelled_at"] <= as_of].drop_duplicates()
    relabelled = labels[labels["request_id"].duplicated(keep=False)]["request_id"]
    if not relabelled.empty:
        ids = sorted(set(relabelled))
        raise DataError(f"prediction log {root}: request id(s) labelled twice [{len(ids)}]: {some(ids)}")
    joined = predictions.merge(labels, on="request_id", how="left", validate="many_to_one")
    joined["label"] = joined["label"].astype(float)
    return joined
